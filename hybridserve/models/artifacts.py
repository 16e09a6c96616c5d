"""What a config.pbtxt's backend is, and whether its artifacts load as that backend would load them.

`kind_problems` judges `backend` / `platform` against the backends Triton has; the kit serves two of
them: `python` (the local plane's only backend, and the clusters') and `pytorch` (the clusters' PyTorch
backend, on TorchScript). `python_source_problems` parses a Python backend model.py; `torchscript_problems`
loads a TorchScript file with torch.jit.load, maps the config's inputs onto forward() the way the PyTorch
backend does (`libtorch_io_problems`), runs it once on inputs shaped and typed as the config declares,
and compares what it returns with the config's outputs (count, data type, dims).

Each check returns (field, message) pairs; hybridserve.models.repository turns them into Problems that
name the file. torch is imported only when a TorchScript file is checked.
"""

from __future__ import annotations

import ast
import difflib
import re
import warnings
from pathlib import Path
from typing import Any

# Triton's backends and the platform names that select them, with the file each loads from a version
# directory by default. Source: triton-inference-server/server docs/user_guide/model_configuration.md
# ("Platform and Backend" / default model filenames) and docs/user_guide/model_repository.md, r25.x,
# checked 2026-12-01. NVIDIA's stock image (what the clusters run) ships all of them.
TRITON_BACKENDS: dict[str, str] = {
    "python": "model.py",
    "pytorch": "model.pt",
    "onnxruntime": "model.onnx",
    "tensorrt": "model.plan",
    "tensorflow": "model.savedmodel",
    "openvino": "model.xml",
    "dali": "model.dali",
    "fil": "xgboost.model",
}
TRITON_PLATFORMS: dict[str, str | None] = {  # platform -> the backend it means (None: no backend, no files)
    "pytorch_libtorch": "pytorch",
    "onnxruntime_onnx": "onnxruntime",
    "tensorrt_plan": "tensorrt",
    "tensorflow_savedmodel": "tensorflow",
    "tensorflow_graphdef": "tensorflow",
    "ensemble": None,
}
# What the kit serves and can check here: the local plane has only Triton's Python backend (nvidia-pytriton
# wheel); the clusters serve model.pt with the PyTorch backend (hybridserve.publish.render, cluster_backend).
KIT_BACKENDS = ("python", "pytorch")
# File names a model.py loads with torch.jit.load (checked as TorchScript when model.py calls it).
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts")
_NAMED_INDEX = re.compile(r"(.+)__(\d+)")


def did_you_mean(value: str, choices) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"? ' if close else ""


def kind_problems(config: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """(the backend the kit checks the model as, or None; problems with `backend` / `platform`)."""
    backend, platform = config.backend, config.platform
    valid = "valid: " + " or ".join(f'backend: "{k}"' for k in KIT_BACKENDS)
    problems: list[tuple[str, str]] = []
    if backend and backend not in TRITON_BACKENDS:
        hint = ""
        if backend in TRITON_PLATFORMS:
            hint = f'"{backend}" is a platform name, not a backend (write platform: "{backend}" or backend: "{TRITON_PLATFORMS[backend]}"); '
        problems.append(("backend", f'"{backend}" is not a Triton backend; {hint or did_you_mean(backend, TRITON_BACKENDS)}{valid}'))
        return None, problems
    if platform and platform not in TRITON_PLATFORMS:
        hint = ""
        if platform in TRITON_BACKENDS:
            hint = f'"{platform}" is a backend name, not a platform (write backend: "{platform}"); '
        problems.append(
            ("platform", f'"{platform}" is not a Triton platform; {hint or did_you_mean(platform, TRITON_PLATFORMS)}'
             f'the kit takes platform: "pytorch_libtorch" (the PyTorch backend), or no platform and {valid.removeprefix("valid: ")}')
        )
        return None, problems
    if backend and platform and TRITON_PLATFORMS[platform] != backend:
        means = TRITON_PLATFORMS[platform]
        problems.append(
            ("platform", f'"{platform}" selects the {means or "ensemble scheduler, no"} backend, which contradicts backend: '
             f'"{backend}"; remove platform (backend alone selects the backend)')
        )
        return None, problems
    kind = backend or (TRITON_PLATFORMS[platform] if platform else None)
    if platform == "ensemble" or (kind is not None and kind not in KIT_BACKENDS):
        what = 'platform "ensemble"' if platform == "ensemble" else f'Triton\'s {kind} backend'
        field = "platform" if not backend else "backend"
        problems.append(
            (field, f"{what} is not supported by the kit: the local plane has only the Python backend, the clusters "
             f"serve TorchScript with the PyTorch backend, and only those artifacts are checked here; {valid}")
        )
        return None, problems
    return kind, problems


def default_artifact(kind: str) -> str:
    return TRITON_BACKENDS[kind]


def filename_problem(name: str) -> str | None:
    """Why default_model_filename `name` is not a plain file name in the version directory, or None."""
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        return f'"{name}" is not a plain file name; give a file of the version directory, e.g. "model.pt"'
    return None


# --- Python backend ------------------------------------------------------------------------------


def python_source_problems(source: str) -> list[tuple[str, str]]:
    """model.py as the Python backend loads it: valid Python defining class TritonPythonModel with execute().

    "`execute` must be implemented in every Python model" (triton-inference-server/python_backend README,
    checked 2026-12-01); initialize, finalize and auto_complete_config are optional.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [(f"line {exc.lineno}", f"not valid Python ({exc.msg}); the Python backend could not import it")]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TritonPythonModel":
            methods = {n.name for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            if "execute" not in methods:
                return [("TritonPythonModel", "has no execute(self, requests) method; the Python backend calls it for every batch")]
            return []
    return [("", "defines no class TritonPythonModel at its top level; the Python backend loads that class")]


def loads_torchscript(source: str) -> bool:
    return "torch.jit.load" in source


# --- TorchScript (PyTorch backend, or model.py with torch.jit.load) ------------------------------


def load_torchscript(path: Path):
    """(module, None) or (None, why it does not load as TorchScript)."""
    import torch

    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if size == 0:
        return None, "is empty (0 bytes), not a TorchScript archive (an interrupted copy or build?)"
    try:
        with warnings.catch_warnings():
            # torch 2.13 marks torch.jit.load deprecated in favour of torch.export; Triton's PyTorch backend
            # still loads TorchScript, so that is what is checked.
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=Warning)
            return torch.jit.load(str(path), map_location="cpu"), None
    except Exception as exc:  # noqa: BLE001 - any load failure is the finding
        text = str(exc).strip()
        first = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__  # torch adds advice
        return None, (
            f"does not load as TorchScript (torch.jit.load: {type(exc).__name__}: {first}); save it with "
            "torch.jit.save (a state_dict or a pickled nn.Module is not TorchScript)"
        )


def forward_arguments(module) -> list[str]:
    return [a.name for a in module.forward.schema.arguments[1:]]  # [0] is self


def libtorch_io_problems(config: Any, module) -> list[tuple[str, str]]:
    """How the PyTorch backend would map the config's inputs onto forward(); [] when it can.

    Forward-argument names or `<name>__<index>` map by name; any other naming falls back to the config's
    order, which is only unambiguous with as many inputs as forward() takes (triton-inference-server/
    pytorch_backend, ModelInstanceState::GetNamingConvention).
    """
    arguments = forward_arguments(module)
    names = [t.name for t in config.input]
    if all(n in arguments for n in names) or all(_NAMED_INDEX.fullmatch(n) for n in names):
        return []
    if len(names) == len(arguments):
        return []  # strict config ordering: the config lists them in forward()'s order
    return [(
        "input",
        f"{names} neither name forward()'s arguments {arguments} nor follow <name>__<index>, and their count "
        f"differs from forward()'s ({len(arguments)}); the PyTorch backend could not map them",
    )]


def _model_shape(tensor: Any) -> list[int]:
    """The shape the model sees for one config tensor (reshape applies), without the batch dimension."""
    return list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)


def _ordered_inputs(config: Any, arguments: list[str]) -> list[int] | None:
    """Indices of config.input in forward()'s argument order, as the PyTorch backend maps them."""
    names = [t.name for t in config.input]
    if names and all(n in arguments for n in names):
        return sorted(range(len(names)), key=lambda i: arguments.index(names[i]))
    if names and all(_NAMED_INDEX.fullmatch(n) for n in names):
        return sorted(range(len(names)), key=lambda i: int(_NAMED_INDEX.fullmatch(names[i]).group(2)))
    return list(range(len(names)))


def io_run_problems(config: Any, module, *, config_shown: str) -> list[tuple[str, str]]:
    """Run `module` once on zero inputs shaped and typed as `config` declares; compare its outputs with the config.

    Batch size 1 when max_batch_size > 0; a variable dimension (-1) is given size 1. Outputs map by
    `<name>__<index>` when every output is so named, else in the config's order (as the PyTorch backend).
    """
    import numpy as np
    import torch
    from tritonclient.grpc import model_config_pb2

    from hybridserve.models.definitions import TRITON_TO_NUMPY

    type_name = model_config_pb2.DataType.Name
    batched = config.max_batch_size > 0
    arrays = []
    for t in config.input:
        numpy_name = TRITON_TO_NUMPY.get(type_name(t.data_type))
        if numpy_name is None:
            return []  # TYPE_STRING / TYPE_BF16: no zero tensor to make here; the server's warmup checks those
        shape = ([1] if batched else []) + [1 if d == -1 else d for d in _model_shape(t)]
        arrays.append(torch.from_numpy(np.zeros(shape, dtype=numpy_name)))
    order = _ordered_inputs(config, forward_arguments(module))
    described = ", ".join(
        f"{config.input[i].name} {type_name(config.input[i].data_type)} {list(arrays[i].shape)}" for i in order
    )
    try:
        with torch.inference_mode():
            result = module(*[arrays[i] for i in order])
    except Exception as exc:  # noqa: BLE001 - the model refusing the declared inputs is the finding
        # TorchScript errors carry a "Traceback of TorchScript" and the serialized code; the line naming the
        # error (e.g. "RuntimeError: Expected 4-dimensional input ...") is what the user needs.
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        named = [ln for ln in lines if re.match(r"[\w.]*(Error|Exception)\b", ln)]
        message = named[-1] if named else (lines[0] if lines else type(exc).__name__)
        if "Traceback" in message:
            message = type(exc).__name__
        return [(
            "input",
            f"forward() fails on zero inputs as {config_shown} declares them ({described}): {message}; "
            "the model file is not the one the config describes, or the config's input data_type or dims are wrong",
        )]
    outputs = [result] if isinstance(result, torch.Tensor) else list(result) if isinstance(result, (tuple, list)) else None
    if outputs is None or not all(isinstance(o, torch.Tensor) for o in outputs):
        return [("output", f"forward() returns {type(result).__name__}, not a tensor or a tuple of tensors")]
    declared = list(config.output)
    if len(outputs) != len(declared):
        return [(
            "output",
            f"forward() returns {len(outputs)} tensor(s); {config_shown} declares {len(declared)} "
            f"({', '.join(t.name for t in declared) or 'none'})",
        )]
    names = [t.name for t in declared]
    by_index = all(_NAMED_INDEX.fullmatch(n) for n in names)
    problems = []
    for i, t in enumerate(declared):
        j = int(_NAMED_INDEX.fullmatch(t.name).group(2)) if by_index else i
        if j >= len(outputs):
            problems.append((f"output[{i}].name", f'"{t.name}" names output index {j}; forward() returns {len(outputs)}'))
            continue
        out = outputs[j]
        want = type_name(t.data_type)
        got = _triton_type(out.dtype)
        if got != want:
            problems.append((f"output[{i}].data_type", f"forward() returns {got or out.dtype} for {t.name}; {config_shown} declares {want}"))
        shape = list(out.shape[1:] if batched else out.shape)
        dims = _model_shape(t)
        if len(shape) != len(dims) or any(d not in (-1, s) for d, s in zip(dims, shape)):
            per = " per batch row" if batched else ""
            problems.append((f"output[{i}].dims", f"forward() returns shape {shape}{per} for {t.name}; {config_shown} declares dims {dims}"))
    return problems


def _triton_type(dtype) -> str | None:
    import torch

    from hybridserve.models.definitions import TRITON_TO_NUMPY

    numpy_to_triton = {v: k for k, v in TRITON_TO_NUMPY.items()}
    if dtype == torch.bfloat16:
        return "TYPE_BF16"
    return numpy_to_triton.get(str(dtype).removeprefix("torch."))  # torch.int64 -> "int64", the numpy name
