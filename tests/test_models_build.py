"""`hybridserve models build`: deterministic artifacts, correct references, incremental rebuilds."""

from __future__ import annotations

import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from hybridserve.errors import UserError
from hybridserve.models import build as build_mod
from hybridserve.models.build import build_models, read_stamp, sha256_file
from hybridserve.models.definitions import MODEL_SPECS
from hybridserve.models.repository import describe_repository, load_reference

ROOT = Path(__file__).resolve().parents[1]
SOURCE_REPO = ROOT / "model_repo"


def copy_sources(dst: Path) -> Path:
    """The committed part of model_repo (configs, model.py), without any built artifact."""
    shutil.copytree(SOURCE_REPO, dst, ignore=shutil.ignore_patterns("*.pt", "reference.npz", "__pycache__", ".*"))
    return dst


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """Two independent builds in two different directories, run side by side (each model builds in a
    worker process of its own)."""
    repos = [copy_sources(tmp_path_factory.mktemp(label) / "model_repo") for label in ("first", "second")]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda repo: build_models(repo, progress=False), repos))
    return list(zip(repos, results))


def test_two_builds_are_byte_identical(two_builds):
    (_, first), (_, second) = two_builds
    # The kit's models, then the committed variants (built after their base: text_encoder_int8, which search-dev's edge serves).
    assert [r.name for r in first] == [*MODEL_SPECS, "text_encoder_int8"]
    for a, b in zip(first, second):
        assert a.built and b.built
        assert a.model_path.is_file() and a.reference_path.is_file()
        assert sha256_file(a.model_path) == a.model_sha256 == b.model_sha256 == sha256_file(b.model_path)
        assert sha256_file(a.reference_path) == a.reference_sha256 == b.reference_sha256 == sha256_file(b.reference_path)


def test_model_pt_holds_no_checkout_paths(two_builds):
    repo, results = two_builds[0]
    for r in results:
        data = r.model_path.read_bytes()
        with zipfile.ZipFile(r.model_path) as zf:
            assert not [n for n in zf.namelist() if n.endswith(".debug_pkl")]
        assert str(ROOT).encode() not in data
        assert b"site-packages" not in data
        assert read_stamp(r.model_path)["fingerprint"] == r.fingerprint


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_reference_has_the_config_tensors_and_matches_the_eager_model(two_builds):
    import torch

    repo, results = two_builds[0]
    info = describe_repository(repo)
    for r in results:
        if r.name not in MODEL_SPECS:
            continue  # a committed variant (text_encoder_int8): its accuracy against the base is test_models_compress's
        spec, model = MODEL_SPECS[r.name], info.model(r.name)
        inputs, outputs = load_reference(r.reference_path.parent)
        with np.load(r.reference_path) as npz:
            assert sorted(npz.files) == sorted(
                [f"input/{t.name}" for t in model.inputs] + [f"output/{t.name}" for t in model.outputs]
            )
        for t in model.inputs:
            assert inputs[t.name].dtype == t.dtype and inputs[t.name].shape == (build_mod.N_REFERENCE_SAMPLES, *t.dims)
        for t in model.outputs:
            assert outputs[t.name].dtype == t.dtype and outputs[t.name].shape == (build_mod.N_REFERENCE_SAMPLES, *t.dims)
            # Every sample gives its own output: a constant model would pass a lenient comparison.
            assert len(np.unique(outputs[t.name].round(5), axis=0)) == build_mod.N_REFERENCE_SAMPLES

        # The artifact is the model of definitions.py with the spec's seed.
        torch.manual_seed(spec.seed)
        eager = spec.factory().eval()
        args = [torch.from_numpy(inputs[t.name]) for t in spec.inputs]
        with torch.inference_mode():
            expected = eager(*args).numpy()
            # One sample at a time (the server's batches vary) stays within the config's tolerance.
            scripted = torch.jit.load(str(r.model_path))
            one_by_one = np.concatenate([scripted(*(a[i : i + 1] for a in args)).numpy() for i in range(len(args[0]))])
        out = outputs[spec.outputs[0].name]
        np.testing.assert_allclose(expected, out, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one_by_one, out, rtol=model.rtol, atol=model.atol)


def test_text_embeddings_are_unit_length(two_builds):
    _, results = two_builds[0]
    r = next(r for r in results if r.name == "text_encoder")
    _, outputs = load_reference(r.reference_path.parent)
    np.testing.assert_allclose(np.linalg.norm(outputs["embedding"], axis=1), 1.0, rtol=1e-5)


def test_up_to_date_models_are_skipped_and_stale_ones_rebuilt(two_builds, tmp_path):
    source, first = two_builds[0]
    repo = tmp_path / "model_repo"
    shutil.copytree(source, repo)
    stamps = {p: p.stat().st_mtime_ns for p in repo.glob("*/1/*") if p.suffix in (".pt", ".npz")}

    again = build_models(repo, progress=False)
    assert [r.built for r in again] == [False] * len(again)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # A damaged reference set is detected through the sha256 recorded in model.pt.
    damaged = repo / "text_encoder" / "1" / "reference.npz"
    damaged.write_bytes(b"not an npz")
    rebuilt = {r.name: r for r in build_models(repo, progress=False)}
    assert rebuilt["text_encoder"].built and not rebuilt["image_classifier"].built
    expected = {r.name: r for r in first}
    assert rebuilt["text_encoder"].reference_sha256 == expected["text_encoder"].reference_sha256

    forced = build_models(repo, force=True, progress=False, models=["image_classifier"])
    assert [(r.name, r.built) for r in forced] == [("image_classifier", True)]
    assert forced[0].model_sha256 == expected["image_classifier"].model_sha256


def test_changed_definition_source_rebuilds(two_builds, tmp_path, monkeypatch):
    source, first = two_builds[0]
    repo = tmp_path / "model_repo"
    shutil.copytree(source, repo)
    edited = build_mod._definitions_source() + b"\n# an edit\n"
    monkeypatch.setattr(build_mod, "_definitions_source", lambda: edited)

    results = build_models(repo, progress=False)
    assert all(r.built for r in results)
    for new, old in zip(results, first):
        assert new.fingerprint != old.fingerprint
        assert read_stamp(new.model_path)["fingerprint"] == new.fingerprint
        assert new.reference_sha256 == old.reference_sha256  # same model, same numbers


def test_build_refuses_an_invalid_repository(tmp_path):
    repo = copy_sources(tmp_path / "model_repo")
    config = repo / "image_classifier" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "image_classifier"', 'name: "imageclassifier"'))
    with pytest.raises(UserError) as info:
        build_models(repo, progress=False)
    assert any("image_classifier/config.pbtxt: name:" in d for d in info.value.details)
    assert not list(repo.glob("*/1/model.pt"))


def test_build_rejects_a_directory_without_the_kit_models(tmp_path):
    (tmp_path / "other" / "1").mkdir(parents=True)
    (tmp_path / "other" / "config.pbtxt").write_text(
        'name: "other"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'instance_group [ { kind: KIND_CPU count: 1 } ]\n'
        'parameters: { key: "reference_atol" value: { string_value: "0" } }\n'
        'parameters: { key: "reference_rtol" value: { string_value: "0" } }\n'
    )
    (tmp_path / "other" / "1" / "model.py").write_text("class TritonPythonModel:\n    def execute(self, requests):\n        return []\n")
    with pytest.raises(UserError, match="none of the kit's models"):
        build_models(tmp_path, progress=False)
    with pytest.raises(UserError, match="unknown model"):
        build_models(tmp_path, progress=False, models=["nope"])


def test_build_leaves_only_the_artifacts(two_builds):
    repo, _ = two_builds[0]
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == sorted(
        f"{name}/{f}" for name in (*MODEL_SPECS, "text_encoder_int8") for f in ("config.pbtxt", "1/model.py", "1/model.pt", "1/reference.npz")
    )


def test_a_relative_repository_is_built_where_the_caller_is(two_builds, tmp_path, monkeypatch):
    # The workers are forked from a server started by the module's earlier builds, in another directory: a
    # relative path is still the caller's (multiprocessing moves each worker to the caller's current directory).
    monkeypatch.chdir(tmp_path)
    copy_sources(tmp_path / "model_repo")
    [result] = build_models(Path("model_repo"), progress=False, models=["image_classifier"])
    assert result.built and (tmp_path / "model_repo" / "image_classifier" / "1" / "model.pt").is_file()
    assert result.model_sha256 == next(r for r in two_builds[0][1] if r.name == "image_classifier").model_sha256
