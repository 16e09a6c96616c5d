"""Bad model repositories as a platform team would write them: `models validate` refuses each one, naming
the file and field and what is valid (exit code 2, no traceback).

Artifacts are loaded as their backend would load them (TorchScript with torch.jit.load, run once on the
config's inputs); symbolic links are never followed out of the repository (hybridserve.sync.scan).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cliutil import run_cli
from hybridserve.models.repository import Problem, validate_repository




def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _state_dict_as_model_pt(repo: Path) -> None:
    """A common mistake: torch.save(model.state_dict()) is a zip archive too, but not TorchScript."""
    import torch

    torch.save(torch.nn.Linear(3, 2).state_dict(), repo / "image_classifier" / "1" / "model.pt")


def _foreign_model(repo: Path, name: str, *edits: tuple[str, str]) -> Path:
    """A model the kit does not define (so no model-code comparison): a copy of text_encoder under `name`."""
    shutil.copytree(repo / "text_encoder", repo / name)
    config = repo / name / "config.pbtxt"
    edit(config, 'name: "text_encoder"', f'name: "{name}"')
    for old, new in edits:
        edit(config, old, new)
    return config


TE, IC = "text_encoder", "image_classifier"
CASES: dict[str, tuple[Callable[[Path], object], str, str, str]] = {
    # case: (how to break it, file the problem names, its field (prefix), part of the message)
    "0-byte model.pt": (
        lambda r: (r / TE / "1" / "model.pt").write_bytes(b""),
        f"{TE}/1/model.pt", "artifact", "is empty (0 bytes), not a TorchScript archive",
    ),
    "text model.pt": (
        lambda r: (r / IC / "1" / "model.pt").write_text("weights: see the shared drive\n"),
        f"{IC}/1/model.pt", "artifact", "does not load as TorchScript",
    ),
    "state_dict saved as model.pt": (
        _state_dict_as_model_pt,
        f"{IC}/1/model.pt", "artifact", "a state_dict or a pickled nn.Module is not TorchScript",
    ),
    "another model's model.pt": (
        lambda r: shutil.copyfile(r / IC / "1" / "model.pt", r / TE / "1" / "model.pt"),
        f"{TE}/1/model.pt", "input", "forward() fails on zero inputs as model_repo/text_encoder/config.pbtxt declares them (input_ids TYPE_INT64 [1, 32])",
    ),
    "misspelt backend": (
        lambda r: edit(r / TE / "config.pbtxt", 'backend: "python"', 'backend: "pyton"'),
        f"{TE}/config.pbtxt", "backend", '"pyton" is not a Triton backend; did you mean "python"? valid: backend: "python" or backend: "pytorch"',
    ),
    "backend name as platform": (
        lambda r: edit(r / TE / "config.pbtxt", 'backend: "python"', 'platform: "pytorch"'),
        f"{TE}/config.pbtxt", "platform", '"pytorch" is a backend name, not a platform',
    ),
    "misspelt platform": (
        lambda r: edit(r / IC / "config.pbtxt", 'backend: "python"', 'platform: "pytorch_libtorc"'),
        f"{IC}/config.pbtxt", "platform", 'did you mean "pytorch_libtorch"?',
    ),
    "backend contradicts platform": (
        lambda r: edit(r / IC / "config.pbtxt", 'backend: "python"', 'backend: "python"\nplatform: "onnxruntime_onnx"'),
        f"{IC}/config.pbtxt", "platform", '"onnxruntime_onnx" selects the onnxruntime backend, which contradicts backend: "python"',
    ),
    "backend the kit cannot check or serve locally": (
        lambda r: edit(r / TE / "config.pbtxt", 'backend: "python"', 'backend: "onnxruntime"'),
        f"{TE}/config.pbtxt", "backend", "Triton's onnxruntime backend is not supported by the kit",
    ),
    "misspelt cluster_backend": (
        lambda r: edit(r / TE / "config.pbtxt", 'string_value: "pytorch"', 'string_value: "pytorh"'),
        f"{TE}/config.pbtxt", 'parameters["cluster_backend"]', '"pytorh" is not a backend the kit renders for GPU nodes; did you mean "pytorch"?',
    ),
    "default_model_filename leaves the version directory": (
        lambda r: edit(r / TE / "config.pbtxt", 'backend: "python"', 'backend: "python"\ndefault_model_filename: "../../secrets.py"'),
        f"{TE}/config.pbtxt", "default_model_filename", "is not a plain file name",
    ),
    "model.py does not parse": (
        lambda r: (r / TE / "1" / "model.py").write_text("import torch\n\nclass TritonPythonModel(\n"),
        f"{TE}/1/model.py", "line ", "not valid Python",
    ),
    "model.py without TritonPythonModel": (
        lambda r: (r / TE / "1" / "model.py").write_text('import torch\nARTIFACT = "model.pt"\nmodel = torch.jit.load(ARTIFACT)\n'),
        f"{TE}/1/model.py", "", "defines no class TritonPythonModel",
    ),
    # Models the kit does not define: only the artifact itself says what it takes and returns.
    "output dims differ from model.pt": (
        lambda r: _foreign_model(r, "my_encoder", ("dims: [ 64 ]", "dims: [ 32 ]")),
        "my_encoder/1/model.pt", "output[0].dims", "forward() returns shape [64] per batch row for embedding; model_repo/my_encoder/config.pbtxt declares dims [32]",
    ),
    "output data_type differs from model.pt": (
        lambda r: _foreign_model(r, "my_encoder", ("data_type: TYPE_FP32", "data_type: TYPE_FP16")),
        "my_encoder/1/model.pt", "output[0].data_type", "forward() returns TYPE_FP32 for embedding; model_repo/my_encoder/config.pbtxt declares TYPE_FP16",
    ),
    "input data_type model.pt cannot take": (
        lambda r: _foreign_model(r, "my_encoder", ("data_type: TYPE_INT64\n    dims: [ 32 ]", "data_type: TYPE_FP32\n    dims: [ 32 ]")),
        "my_encoder/1/model.pt", "input", "forward() fails on zero inputs",
    ),
    "more outputs declared than model.pt returns": (
        lambda r: _foreign_model(r, "my_encoder", ("output [\n", 'output [\n  { name: "pooled" data_type: TYPE_FP32 dims: [ 64 ] },\n')),
        "my_encoder/1/model.pt", "output", "forward() returns 1 tensor(s); model_repo/my_encoder/config.pbtxt declares 2 (pooled, embedding)",
    ),
    "PyTorch backend cannot map the inputs": (
        lambda r: _foreign_model(
            r, "my_encoder", ('backend: "python"', 'backend: "pytorch"'),
            ("input [\n", 'input [\n  { name: "mask" data_type: TYPE_INT64 dims: [ 32 ] },\n'),
        ),
        "my_encoder/1/model.pt", "input", "neither name forward()'s arguments ['input_ids'] nor follow <name>__<index>",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_model_is_refused_naming_file_and_field(repo, case):
    breaker, file, field, message = CASES[case]
    assert validate_repository(repo) == []  # the positive control: the built copy is valid
    breaker(repo)
    problems = validate_repository(repo)
    matching = [p for p in problems if p.file == f"model_repo/{file}" and p.field.startswith(field) and message in p.message]
    assert matching, "\n".join(map(str, problems))
    assert all(isinstance(p, Problem) and str(p).startswith(p.file) for p in problems)


def test_pytorch_backend_model_is_checked_like_the_clusters_serve_it(repo):
    """backend "pytorch" (as a GPU copy is rendered): model.pt is loaded and run against the config, then a wrong dims is found."""
    config = _foreign_model(repo, "my_encoder", ('backend: "python"', 'backend: "pytorch"'))
    assert validate_repository(repo) == []
    edit(config, "dims: [ 64 ]", "dims: [ 65 ]")
    assert [str(p) for p in validate_repository(repo)] == [
        "model_repo/my_encoder/1/model.pt: output[0].dims: forward() returns shape [64] per batch row for embedding; "
        "model_repo/my_encoder/config.pbtxt declares dims [65]"
    ]


def test_artifacts_are_not_loaded_before_a_build(repo):
    """`models build` validates with require_artifacts=False first: a broken model.pt must not block the build that replaces it."""
    (repo / TE / "1" / "model.pt").write_bytes(b"")
    assert validate_repository(repo, require_artifacts=False) == []
    assert validate_repository(repo) != []


# --------------------------------------------------------------------------------------------- symbolic links


def _link_out(repo: Path) -> Path:
    secret = repo.parent / "credentials"
    secret.write_text("[default]\naws_secret_access_key = not-for-the-bucket\n")
    (repo / TE / "1" / "credentials").symlink_to(secret)
    return secret


LINKS: dict[str, tuple[Callable[[Path], object], str, str]] = {
    # case: (how to make it, path the problem names, part of the message)
    "link out of the repository": (_link_out, f"{TE}/1/credentials", "outside the repository"),
    "dangling link": (lambda r: (r / TE / "1" / "labels.txt").symlink_to("gone.txt"), f"{TE}/1/labels.txt", "which does not exist (a dangling link)"),
    "link loop": (lambda r: (r / TE / "1" / "loop").symlink_to("loop"), f"{TE}/1/loop", "is a symbolic link that loops"),
    "link to a directory": (lambda r: (r / IC / "1" / "shared").symlink_to("../../text_encoder/1"), f"{IC}/1/shared", "is a symbolic link to a directory"),
    "version directory as a link": (lambda r: (r / IC / "2").symlink_to("1"), f"{IC}/2", "is a symbolic link to a directory"),
    "model directory as a link": (lambda r: (r / "encoder").symlink_to(TE), "encoder", "is a symbolic link to a directory"),
    "link to a hidden file of the repository": (
        lambda r: ((r / TE / ".env").write_text("TOKEN=x\n"), (r / TE / "1" / "env").symlink_to("../.env")),
        f"{TE}/1/env", "a file the sync does not upload",
    ),
    "FIFO": (lambda r: os.mkfifo(r / TE / "1" / "pipe"), f"{TE}/1/pipe", "is not a regular file"),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_bad_link_is_refused_naming_its_path(repo, case):
    make, path, message = LINKS[case]
    make(repo)
    problems = validate_repository(repo)
    assert [p for p in problems if p.file == f"model_repo/{path}" and message in p.message], "\n".join(map(str, problems))


def test_a_link_to_a_file_of_the_repository_is_allowed(repo):
    """Sharing weights between versions: 2/model.pt -> ../1/model.pt is checked and synced as a file."""
    version = repo / IC / "2"
    version.mkdir()
    shutil.copyfile(repo / IC / "1" / "model.py", version / "model.py")
    for name in ("model.pt", "reference.npz"):
        (version / name).symlink_to(f"../1/{name}")
    assert validate_repository(repo) == []
    # ... and the linked file is checked like any other: a broken target is found through the link.
    (repo / IC / "1" / "model.pt").write_bytes(b"")
    files = {p.file for p in validate_repository(repo)}
    assert {"model_repo/image_classifier/1/model.pt", "model_repo/image_classifier/2/model.pt"} <= files


def test_a_link_out_is_never_read(repo):
    """config.pbtxt linked to a file outside: reported as a link, not parsed (its content never reaches a message)."""
    outside = repo.parent / "private.txt"
    outside.write_text("password: hunter2\n")
    config = repo / TE / "config.pbtxt"
    config.unlink()
    config.symlink_to(outside)
    problems = [str(p) for p in validate_repository(repo)]
    assert any(p.startswith("model_repo/text_encoder/config.pbtxt: is a symbolic link to") for p in problems), problems
    assert not any("hunter2" in p or "password" in p for p in problems)


# --------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("case", ["0-byte model.pt", "misspelt backend", "backend contradicts platform", "another model's model.pt"])
def test_cli_models_validate_exits_2_naming_file_and_field(repo, capsys, case):
    breaker, file, field, message = CASES[case]
    breaker(repo)
    code, out, err = run_cli(["models", "validate", "--repo", "model_repo"], capsys)
    assert code == 2
    assert f"model_repo/{file}: {field}" in err and " ".join(message.split()) in err


def test_cli_models_validate_names_a_link_out(repo, capsys):
    _link_out(repo)
    code, out, err = run_cli(["models", "validate", "--repo", "model_repo"], capsys)
    assert code == 2
    assert "model_repo/text_encoder/1/credentials: is a symbolic link to" in err and "outside the repository" in err
