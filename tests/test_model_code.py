"""model_repo's model.py (the Python backend stub's code), the parts that can run without Triton."""

import ast
import types

import pytest
import torch

from hybridserve.paths import model_repo_dir


def _function(name: str, **globals_):
    source = (model_repo_dir() / "text_encoder" / "1" / "model.py").read_text()
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace: dict = dict(globals_)
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "model.py", "exec"), namespace)
    return namespace[name]


def test_a_gpu_instance_runs_on_the_gpu_triton_gave_it_and_a_cpu_instance_on_the_cpu():
    # The edge GPU rendering declares KIND_GPU instances of the Python backend: the stub must use that GPU.
    with_cuda = types.SimpleNamespace(device=torch.device, cuda=types.SimpleNamespace(is_available=lambda: True))
    device = _function("_device", torch=with_cuda)
    assert device({"model_instance_kind": "GPU", "model_instance_device_id": "1"}) == torch.device("cuda:1")
    assert device({"model_instance_kind": "CPU", "model_instance_device_id": "0"}) == torch.device("cpu")
    assert device({}) == torch.device("cpu")


def test_a_gpu_instance_without_cuda_fails_its_load_instead_of_serving_from_the_cpu():
    without_cuda = types.SimpleNamespace(device=torch.device, cuda=types.SimpleNamespace(is_available=lambda: False))
    with pytest.raises(RuntimeError, match="KIND_GPU instance, but torch sees no CUDA device"):
        _function("_device", torch=without_cuda)({"model_instance_kind": "GPU", "model_instance_device_id": "0"})


def test_every_model_ships_the_same_stub():
    sources = {p.parent.parent.name: p.read_bytes() for p in model_repo_dir().glob("*/*/model.py")}
    assert len(sources) >= 3 and len(set(sources.values())) == 1, sorted(sources)
