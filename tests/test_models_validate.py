"""`hybridserve models validate`: Triton's schema, the layout rules, every problem with file and field."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hybridserve.errors import UserError
from hybridserve.models.repository import (
    Problem,
    describe_repository,
    ensure_valid,
    load_reference,
    validate_repository,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCE_REPO = ROOT / "model_repo"




def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_the_committed_repository_is_valid_before_a_build():
    assert validate_repository(SOURCE_REPO, require_artifacts=False) == []


def test_a_built_repository_is_valid_and_described(repo):
    assert validate_repository(repo) == []
    info = ensure_valid(repo)
    assert info.names == ["image_classifier", "text_encoder", "text_encoder_int8"]  # the int8 variant search-dev's edge site serves
    text = info.model("text_encoder")
    assert text.versions == (1,) and text.max_batch_size == 64 and text.backend == "python"
    assert [(t.name, t.dtype, t.dims) for t in text.inputs] == [("input_ids", np.dtype("int64"), (32,))]
    assert [(t.name, t.dtype, t.dims) for t in text.outputs] == [("embedding", np.dtype("float32"), (64,))]
    assert (text.atol, text.rtol) == (1e-4, 1e-3)
    image = info.model("image_classifier")
    assert [(t.name, t.data_type, t.dims) for t in image.inputs] == [("image", "TYPE_FP32", (3, 32, 32))]
    inputs, outputs = load_reference(image.version_dir())
    assert set(inputs) == {"image"} and set(outputs) == {"logits"}
    with pytest.raises(UserError, match="not in"):
        info.model("nope")


def test_problem_reads_file_field_message(repo):
    edit(repo / "text_encoder" / "config.pbtxt", "data_type: TYPE_INT64", "data_type: TYPE_FP16")
    problems = validate_repository(repo)
    assert (
        "model_repo/text_encoder/config.pbtxt: input[0].data_type: TYPE_FP16 does not match the model code (TYPE_INT64)"
        in [str(p) for p in problems]
    )


def _bad_syntax(repo: Path) -> int:
    config = repo / "text_encoder" / "config.pbtxt"
    edit(config, "max_batch_size: 64", "max_batch_size 64")  # missing colon
    return next(i for i, line in enumerate(config.read_text().splitlines(), 1) if line.startswith("max_batch_size 64"))


BROKEN: dict[str, tuple[Callable[[Path], object], str, str, str]] = {
    # case: (how to break it, file the problem names, field, part of the message)
    "bad pbtxt syntax": (_bad_syntax, "text_encoder/config.pbtxt", "line {}, column 16", 'Expected ":"'),
    "unknown field": (
        lambda r: edit(r / "text_encoder" / "config.pbtxt", "max_batch_size: 64", "max_batch_sise: 64"),
        "text_encoder/config.pbtxt",
        "line ",
        'no field named "max_batch_sise"',
    ),
    "wrong dtype": (
        lambda r: edit(r / "image_classifier" / "config.pbtxt", "data_type: TYPE_FP32", "data_type: TYPE_FP16"),
        "image_classifier/config.pbtxt",
        "input[0].data_type",
        "TYPE_FP16 does not match the model code (TYPE_FP32)",
    ),
    "wrong dims": (
        lambda r: edit(r / "text_encoder" / "config.pbtxt", "dims: [ 32 ]", "dims: [ 16 ]"),
        "text_encoder/config.pbtxt",
        "input[0].dims",
        "[16] does not match the model code ([32])",
    ),
    "renamed output": (
        lambda r: edit(r / "text_encoder" / "config.pbtxt", 'name: "embedding"', 'name: "embeddings"'),
        "text_encoder/config.pbtxt",
        "output[0].name",
        '"embeddings" is not an output of the model code',
    ),
    "non-integer version directory": (
        lambda r: (r / "text_encoder" / "v2").mkdir(),
        "text_encoder/v2",
        "version directory",
        "not a positive integer",
    ),
    "version zero": (
        lambda r: (r / "text_encoder" / "0").mkdir(),
        "text_encoder/0",
        "version directory",
        "not a positive integer",
    ),
    "no version": (
        lambda r: shutil.rmtree(r / "image_classifier" / "1"),
        "image_classifier",
        "version directory",
        "none",
    ),
    "name mismatch": (
        lambda r: edit(r / "image_classifier" / "config.pbtxt", 'name: "image_classifier"', 'name: "classifier"'),
        "image_classifier/config.pbtxt",
        "name",
        '"classifier" does not match the directory name',
    ),
    "missing built artifact": (
        lambda r: (r / "image_classifier" / "1" / "model.pt").unlink(),
        "image_classifier/1/model.pt",
        "artifact",
        "run `hybridserve models build`",
    ),
    "missing model.py": (
        lambda r: (r / "text_encoder" / "1" / "model.py").unlink(),
        "text_encoder/1/model.py",
        "artifact",
        "python backend loads it",
    ),
    "missing reference": (
        lambda r: (r / "text_encoder" / "1" / "reference.npz").unlink(),
        "text_encoder/1/reference.npz",
        "artifact",
        "run `hybridserve models build`",
    ),
    "max_batch_size 0 with dynamic batching": (
        lambda r: edit(r / "text_encoder" / "config.pbtxt", "max_batch_size: 64", "max_batch_size: 0"),
        "text_encoder/config.pbtxt",
        "max_batch_size",
        "dynamic_batching is set",
    ),
    "preferred batch above max": (
        lambda r: edit(r / "text_encoder" / "config.pbtxt", "preferred_batch_size: [ 16, 32 ]", "preferred_batch_size: [ 16, 128 ]"),
        "text_encoder/config.pbtxt",
        "dynamic_batching.preferred_batch_size[1]",
        "128 is not within 1..max_batch_size (64)",
    ),
    "zero instances": (
        lambda r: edit(r / "image_classifier" / "config.pbtxt", "count: 1", "count: 0"),
        "image_classifier/config.pbtxt",
        "instance_group[0].count",
        "count > 0",
    ),
    "negative tolerance": (
        lambda r: edit(r / "text_encoder" / "config.pbtxt", 'string_value: "1e-4"', 'string_value: "-1e-4"'),
        "text_encoder/config.pbtxt",
        'parameters["reference_atol"]',
        "not a non-negative",
    ),
    "tolerance not a number": (
        lambda r: edit(r / "image_classifier" / "config.pbtxt", 'string_value: "1e-3"', 'string_value: "tight"'),
        "image_classifier/config.pbtxt",
        'parameters["reference_rtol"]',
        "not a number",
    ),
    "reference with the wrong dtype": (
        lambda r: _rewrite_reference(r / "text_encoder" / "1", "output/embedding", np.float64),
        "text_encoder/1/reference.npz",
        "output/embedding",
        "dtype float64 does not match config.pbtxt (TYPE_FP32)",
    ),
}


def _rewrite_reference(version_dir: Path, key: str, dtype) -> None:
    inputs, outputs = load_reference(version_dir)
    arrays = {f"input/{k}": v for k, v in inputs.items()} | {f"output/{k}": v for k, v in outputs.items()}
    arrays[key] = arrays[key].astype(dtype)
    with open(version_dir / "reference.npz", "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_repository_problem_names_file_and_field(repo, case):
    breaker, file, field, message = BROKEN[case]
    line = breaker(repo)
    if isinstance(line, int):
        field = field.format(line)
    problems = validate_repository(repo)
    matching = [p for p in problems if p.file == f"model_repo/{file}" and p.field.startswith(field) and message in p.message]
    assert matching, "\n".join(map(str, problems))
    assert all(isinstance(p, Problem) and p.file and str(p).startswith(p.file) for p in problems)


def test_all_problems_are_reported_at_once(repo):
    for case in ("wrong dtype", "zero instances", "missing built artifact", "bad pbtxt syntax", "non-integer version directory"):
        BROKEN[case][0](repo)
    with pytest.raises(UserError) as info:
        ensure_valid(repo)
    assert info.value.exit_code == 2
    details = "\n".join(info.value.details)
    for fragment in (
        "model_repo/image_classifier/config.pbtxt: input[0].data_type",
        "model_repo/image_classifier/config.pbtxt: instance_group[0].count",
        "model_repo/image_classifier/1/model.pt: artifact",
        "model_repo/text_encoder/config.pbtxt: line ",
        "model_repo/text_encoder/v2: version directory",  # checked although that model's config does not parse
    ):
        assert fragment in details
    assert len(info.value.details) >= 5


def test_artifacts_are_optional_when_not_required(repo):
    for p in repo.glob("*/1/model.pt"):
        p.unlink()
    assert validate_repository(repo, require_artifacts=False) == []
    assert len(validate_repository(repo)) == len(list(repo.glob("*/config.pbtxt"))) == 3  # each model's model.pt, the int8 variant's too


def test_describe_fails_on_unparseable_config_and_load_reference_explains(repo):
    _bad_syntax(repo)
    with pytest.raises(UserError, match="cannot read the model repository"):
        describe_repository(repo)
    (repo / "image_classifier" / "1" / "reference.npz").unlink()
    with pytest.raises(UserError, match="hybridserve models build"):
        load_reference(repo / "image_classifier" / "1")


def test_missing_repository_directory(tmp_path):
    problems = validate_repository(tmp_path / "absent")
    assert len(problems) == 1 and "does not exist" in problems[0].message


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hybridserve", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_validate_exit_codes(repo):
    ok = _cli("models", "validate", "--repo", str(repo), cwd=repo.parent)
    assert ok.returncode == 0, ok.stderr
    assert "text_encoder" in ok.stdout and "image_classifier" in ok.stdout

    BROKEN["wrong dims"][0](repo)
    BROKEN["missing built artifact"][0](repo)
    bad = _cli("models", "validate", "--repo", "model_repo", cwd=repo.parent)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    err = " ".join(bad.stderr.split())  # rich wraps long lines
    assert "model_repo/text_encoder/config.pbtxt: input[0].dims:" in err
    assert "model_repo/image_classifier/1/model.pt: artifact: missing" in err
