"""Compressed variants: `hybridserve models compress`, their accuracy, the bound, build, validate, publish, serving."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cliutil import run_cli
from hybridserve.errors import UserError
from hybridserve.models import compress as C
from hybridserve.models import variants as V
from hybridserve.models.build import build_models, read_stamp, sha256_file
from hybridserve.models.definitions import MODEL_SPECS
from hybridserve.models.repository import validate_repository

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.fixture(scope="module")
def compressed(built_model_repo, tmp_path_factory) -> Path:
    """A built repository with text_encoder_int8 (int8-dynamic) and image_classifier_pruned (prune 0.2)."""
    repo = tmp_path_factory.mktemp("compressed") / "model_repo"
    shutil.copytree(built_model_repo, repo, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(repo / "text_encoder_int8", ignore_errors=True)  # the committed variant: made here from scratch
    C.compress(repo, "text_encoder", "int8-dynamic")
    C.compress(repo, "image_classifier", "prune", amount=0.2)
    return repo


@pytest.fixture
def variant_repo(compressed, tmp_path, monkeypatch) -> Path:
    copy = tmp_path / "model_repo"
    shutil.copytree(compressed, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    return copy


# --- accuracy (numpy) ----------------------------------------------------------------------------


def test_accuracy_of_identical_outputs_is_perfect():
    x = np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    for metric in V.METRICS:
        acc = C.accuracy(x, x.copy(), metric=metric, atol=1e-4, rtol=1e-3)
        assert (acc.drop, acc.agreement, acc.max_abs_diff, acc.samples) == (0.0, 1.0, 0.0, 16)
        assert acc.cosine_min == pytest.approx(1.0)


def test_accuracy_cosine_and_top1_and_agreement():
    base = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 2.0, 0.0]], dtype=np.float32)
    variant = base.copy()
    variant[0] = [1.0, 1.0, 0.0]  # 45 degrees off: cosine 1/sqrt(2), arg-max still 0 (first of a tie)
    variant[3] = [2.0, 1.0, 0.0]  # arg-max flips from 1 to 0
    cos = C.accuracy(base, variant, metric="cosine", atol=1e-4, rtol=1e-3)
    assert cos.cosine_min == pytest.approx(1 / np.sqrt(2))
    assert cos.drop == pytest.approx(1 - 1 / np.sqrt(2))
    assert cos.agreement == 0.5 and cos.max_abs_diff == 1.0 and cos.top1 is None
    top = C.accuracy(base, variant, metric="top1", atol=1e-4, rtol=1e-3)
    assert top.top1 == 0.75 and top.drop == pytest.approx(0.25)
    with pytest.raises(ValueError, match="shape"):
        C.accuracy(base, variant[:2], metric="top1", atol=0, rtol=0)


# --- compression (torch) -------------------------------------------------------------------------


def test_int8_dynamic_quantizes_every_linear_and_stays_close():
    import torch
    from torch import nn

    torch.manual_seed(MODEL_SPECS["text_encoder"].seed)
    base = MODEL_SPECS["text_encoder"].factory().eval()
    q = C.compress_module(base, "int8-dynamic")
    linears = [m for m in base.modules() if isinstance(m, nn.Linear)]
    assert linears and not [m for m in q.modules() if type(m) is nn.Linear]  # all replaced
    assert all(isinstance(m, nn.Linear) and m.weight.dtype == torch.float32 for m in linears)  # base untouched
    ids = torch.from_numpy(MODEL_SPECS["text_encoder"].sample_inputs(np.random.default_rng(1), 16)["input_ids"])
    with torch.inference_mode():
        want, got = base(ids).numpy(), torch.jit.trace(q, ids[:2])(ids).numpy()
    acc = C.accuracy(want, got, metric="cosine", atol=1e-4, rtol=1e-3)
    assert 0 < acc.drop < 1e-3 and acc.max_abs_diff > 0  # changed, but little


def test_prune_zeroes_the_fraction_of_each_layer_permanently():
    import torch
    from torch import nn

    torch.manual_seed(0)
    base = MODEL_SPECS["image_classifier"].factory().eval()
    pruned = C.compress_module(base, "prune", 0.3)
    assert C.zero_fraction(base) == 0.0
    for layer in pruned.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            assert not hasattr(layer, "weight_mask") and "weight_orig" not in dict(layer.named_parameters())
            assert float((layer.weight == 0).float().mean()) == pytest.approx(0.3, abs=0.01)
    assert C.zero_fraction(pruned) == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="amount"):
        C.compress_module(base, "prune", 1.5)


# --- `models compress` ---------------------------------------------------------------------------


def test_compress_writes_a_variant_that_validates_and_records_itself(compressed):
    int8 = compressed / "text_encoder_int8"
    assert sorted(p.name for p in (int8 / "1").iterdir()) == ["model.pt", "model.py", "reference.npz"]
    assert (int8 / "1" / "model.py").read_bytes() == (compressed / "text_encoder" / "1" / "model.py").read_bytes()
    config = V.read_config(int8)
    assert config.name == "text_encoder_int8"
    variant, problems = V.parse_variant(config.name, config)
    assert problems == [] and variant == V.Variant("text_encoder_int8", "text_encoder", "int8-dynamic", None, 0.01, "cosine")
    # Dynamic quantization depends on the batch: the variant's tolerance is widened, and says why.
    assert float(config.parameters["reference_atol"].string_value) > 1e-4
    assert "reference_atol is" in (int8 / "config.pbtxt").read_text()
    assert validate_repository(compressed) == []
    # Smaller on disk: the Linear weights are int8.
    base_pt, int8_pt = compressed / "text_encoder/1/model.pt", int8 / "1/model.pt"
    assert int8_pt.stat().st_size < 0.8 * base_pt.stat().st_size
    # Its own reference: the base's inputs, the variant's outputs.
    with np.load(int8 / "1/reference.npz") as v, np.load(compressed / "text_encoder/1/reference.npz") as b:
        assert np.array_equal(v["input/input_ids"], b["input/input_ids"])
        assert not np.array_equal(v["output/embedding"], b["output/embedding"])
        assert np.allclose(v["output/embedding"], b["output/embedding"], atol=0.05)


def test_find_variants_lists_each_models_variants_with_their_accuracy(compressed):
    found = V.find_variants(compressed, "text_encoder")
    assert [f.variant.name for f in found] == ["text_encoder_int8"]
    acc = found[0].accuracy
    assert acc["metric"] == "cosine" and acc["samples"] == 8 + C.N_EVAL_EXTRA and 0 < acc["drop"] <= 0.01
    assert found[0].model_bytes == (compressed / "text_encoder_int8/1/model.pt").stat().st_size
    pruned = V.find_variants(compressed, "image_classifier")
    assert [(f.variant.method, f.variant.amount, f.accuracy["metric"]) for f in pruned] == [("prune", 0.2, "top1")]
    assert pruned[0].accuracy["top1"] >= 0.99
    assert {f.variant.name for f in V.find_variants(compressed)} == {"text_encoder_int8", "image_classifier_pruned"}


def test_pruned_model_is_stored_dense_and_says_so(compressed):
    stamp = read_stamp(compressed / "image_classifier_pruned/1/model.pt")
    assert stamp["zero_fraction"] == pytest.approx(0.2, abs=0.01)
    base, pruned = (compressed / n / "1/model.pt" for n in ("image_classifier", "image_classifier_pruned"))
    assert abs(pruned.stat().st_size - base.stat().st_size) < 0.02 * base.stat().st_size


def test_a_variant_beyond_the_bound_is_refused_with_the_numbers_and_nothing_written(variant_repo, capsys):
    before = sorted(p.name for p in variant_repo.iterdir())
    code, out, err = run_cli(["models", "compress", "image_classifier", "--method", "prune", "--amount", "0.5",
                              "--name", "ic_half", "--max-accuracy-drop", "0.01", "--repo", str(variant_repo)], capsys)
    assert code == 2
    assert "variant ic_half is beyond its accuracy bound: top1 drop" in err and "> 0.01 (variant_max_accuracy_drop)" in err
    assert "top-1 agreement" in err and "nothing was written" in err
    assert sorted(p.name for p in variant_repo.iterdir()) == before  # no variant, no hidden staging directory


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["text_encoder", "--method", "int8-dynamic", "--amount", "0.3"], "--amount: int8-dynamic takes no amount"),
        (["image_classifier", "--method", "prune"], "--amount: prune needs the fraction"),
        (["image_classifier", "--method", "prune", "--amount", "1.2"], "--amount 1.2: a fraction between 0 and 1"),
        (["text_encoder", "--method", "int4"], "--method 'int4': valid: int8-dynamic, prune"),
        (["resnet", "--method", "prune", "--amount", "0.2"], "MODEL 'resnet': not one of the kit's models; valid: text_encoder, image_classifier"),
        (["text_encoder", "--method", "int8-dynamic", "--max-accuracy-drop", "2"], "--max-accuracy-drop 2: a fraction within 0..1"),
        (["text_encoder", "--method", "int8-dynamic", "--name", "../x"], "--name: '../x' is not a model name"),
        (["text_encoder", "--method", "int8-dynamic"], "model_repo/text_encoder_int8 exists; pass --force"),
    ],
)
def test_compress_bad_input_exits_2_naming_the_flag(variant_repo, capsys, args, message):
    before = sorted(p.name for p in variant_repo.iterdir())
    code, out, err = run_cli(["models", "compress", *args, "--repo", str(variant_repo)], capsys)
    assert code == 2 and message in err, err
    assert sorted(p.name for p in variant_repo.iterdir()) == before


def test_compress_without_the_bases_version_directory_exits_2(variant_repo, capsys):
    shutil.rmtree(variant_repo / "text_encoder" / "1")
    code, out, err = run_cli(["models", "compress", "text_encoder", "--method", "int8-dynamic", "--name", "te8",
                              "--repo", str(variant_repo)], capsys)
    assert code == 2 and "model_repo/text_encoder/1/: missing; the variant copies the base model's files" in err
    assert not (variant_repo / "te8").exists()


def test_compare_refuses_a_model_that_is_not_a_variant_of_the_base(variant_repo, capsys):
    code, out, err = run_cli(["models", "compare", "text_encoder", "image_classifier_pruned", "--repo", str(variant_repo)], capsys)
    assert code == 2
    assert "VARIANT 'image_classifier_pruned': not a variant of 'text_encoder'" in err and "text_encoder_int8" in err


# --- build and validate --------------------------------------------------------------------------


def test_build_rebuilds_a_variant_after_its_base_byte_identically(variant_repo):
    int8_pt = variant_repo / "text_encoder_int8/1/model.pt"
    made_by_compress = sha256_file(int8_pt)
    results = build_models(variant_repo, progress=False)
    assert [(r.name, r.built) for r in results] == [
        ("text_encoder", False), ("image_classifier", False), ("image_classifier_pruned", False), ("text_encoder_int8", False)
    ]
    int8_pt.unlink()
    (variant_repo / "text_encoder_int8/1/reference.npz").unlink()
    results = {r.name: r for r in build_models(variant_repo, progress=False)}
    assert results["text_encoder_int8"].built and not results["text_encoder"].built
    assert sha256_file(int8_pt) == made_by_compress
    assert validate_repository(variant_repo) == []


def test_build_refuses_a_variant_whose_bound_was_tightened(variant_repo):
    edit(variant_repo / "text_encoder_int8/config.pbtxt",
         'key: "variant_max_accuracy_drop"\n  value: { string_value: "0.01" }',
         'key: "variant_max_accuracy_drop"\n  value: { string_value: "0" }')
    with pytest.raises(UserError) as info:
        build_models(variant_repo, progress=False)
    assert info.value.exit_code == 2
    assert "text_encoder_int8 is beyond its accuracy bound: cosine drop" in info.value.message


def test_validate_names_the_field_of_a_broken_variant(variant_repo):
    config = variant_repo / "text_encoder_int8/config.pbtxt"
    edit(config, '"variant_method"\n  value: { string_value: "int8-dynamic" }', '"variant_method"\n  value: { string_value: "int4" }')
    edit(config, 'string_value: "text_encoder" }', 'string_value: "bert" }')
    edit(variant_repo / "text_encoder/config.pbtxt", 'key: "reference_atol"', 'key: "variant_amount"\n  value: { string_value: "0.5" }\n}\nparameters: {\n  key: "reference_atol"')
    problems = {str(p) for p in validate_repository(variant_repo, require_artifacts=False)}
    shown = "model_repo/text_encoder_int8/config.pbtxt"
    assert f"{shown}: parameters[\"variant_of\"]: \"bert\" is not one of the kit's models; valid: text_encoder, image_classifier" in problems
    assert f"{shown}: parameters[\"variant_method\"]: \"int4\" is not a method; valid: int8-dynamic, prune" in problems
    assert ("model_repo/text_encoder/config.pbtxt: parameters[\"variant_amount\"]: only a variant has it; add "
            "parameters[\"variant_of\"] naming the base model (or remove it)") in problems


def test_validate_checks_a_variant_against_its_bases_code(variant_repo):
    edit(variant_repo / "text_encoder_int8/config.pbtxt", "dims: [ 64 ]", "dims: [ 32 ]")
    problems = [str(p) for p in validate_repository(variant_repo, require_artifacts=False)]
    assert problems == ["model_repo/text_encoder_int8/config.pbtxt: output[0].dims: [32] does not match the model code ([64])"]


def test_a_variant_validates_without_its_base(variant_repo):
    shutil.rmtree(variant_repo / "text_encoder")
    assert validate_repository(variant_repo) == []


# --- publish: GPU targets --------------------------------------------------------------------------


def test_gpu_render_keeps_int8_variants_on_cpu_instances(variant_repo, tmp_path):
    from hybridserve.publish.render import Target, render_config, render_repository

    gpu = Target("aws", gpu=True, instances_per_gpu=2)
    out = render_repository(variant_repo, tmp_path / "aws", gpu)
    from tritonclient.grpc import model_config_pb2

    int8 = V.read_config(out.path / "text_encoder_int8")
    assert [(g.kind, g.count) for g in int8.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 1)]
    assert int8.backend == "pytorch" and int8.default_model_filename == "model.pt"
    # CPU kernels: the CPU tolerance stays (the GPU one is not substituted).
    source = V.read_config(variant_repo / "text_encoder_int8")
    assert int8.parameters["reference_atol"].string_value == source.parameters["reference_atol"].string_value
    assert "instance_group stays KIND_CPU (int8-dynamic runs on CPU only)" in (out.path / "text_encoder_int8/config.pbtxt").read_text()
    # A pruned variant is dense float32: GPU instances as its base.
    pruned = V.read_config(out.path / "image_classifier_pruned")
    assert [(g.kind, g.count) for g in pruned.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 2)]
    assert pruned.parameters["reference_atol"].string_value == "5e-3"

    # An int8 variant declared on GPU instances is refused, naming the model and field.
    rel = "text_encoder_int8/config.pbtxt"
    source_bytes = (variant_repo / rel).read_bytes().replace(b"kind: KIND_CPU", b"kind: KIND_GPU")
    with pytest.raises(UserError, match=r"text_encoder_int8/config.pbtxt: instance_group\[0\].kind: KIND_GPU, but this model is a int8-dynamic variant"):
        render_config(source_bytes, rel, gpu)


def test_the_digest_names_variant_artifacts_by_their_build_fingerprint(variant_repo):
    from hybridserve.publish.digest import built_artifacts

    artifacts = built_artifacts(variant_repo)
    variant = V.parse_variant("text_encoder_int8", V.read_config(variant_repo / "text_encoder_int8"))[0]
    fp = "build:" + C.variant_fingerprint(variant)
    assert artifacts["text_encoder_int8/1/model.pt"] == artifacts["text_encoder_int8/1/reference.npz"] == fp
    assert "image_classifier_pruned/1/model.pt" in artifacts and "text_encoder/1/model.pt" in artifacts


def test_publish_finds_a_stale_variant(variant_repo):
    from hybridserve.publish.store import check_built

    check_built(variant_repo)  # as compress built them
    edit(variant_repo / "image_classifier_pruned/config.pbtxt", 'string_value: "0.2"', 'string_value: "0.25"')
    with pytest.raises(UserError) as info:
        check_built(variant_repo)
    assert info.value.details == ["image_classifier_pruned/1/model.pt: not built from the current definitions"]


# --- served by the real tritonserver ---------------------------------------------------------------


@pytest.mark.servers
def test_the_served_variants_pass_the_gates_correctness_check_against_their_own_reference(compressed, tmp_path):
    from hybridserve.local.triton import TritonServer
    from smoke_tests import SmokeOptions, run_smoke
    from smoke_tests.options import ModelTarget

    names = ["text_encoder", "text_encoder_int8", "image_classifier_pruned"]
    with TritonServer(compressed, names, log_path=tmp_path / "triton.log", work_dir=tmp_path / "work") as server:
        options = SmokeOptions(url=server.grpc_url, models=[ModelTarget(n) for n in names], model_repo=compressed,
                               throughput=False)
        report = run_smoke(options)
        # The variant's reference is its own: against the base's reference it would fail the base's tolerance.
        base_ref = tmp_path / "swapped"
        shutil.copytree(compressed, base_ref)
        shutil.copyfile(compressed / "text_encoder/1/reference.npz", base_ref / "text_encoder_int8/1/reference.npz")
        config = base_ref / "text_encoder_int8/config.pbtxt"
        config.write_text(C.set_tolerance(config.read_text(), "reference_atol", "1e-4"))
        swapped = run_smoke(SmokeOptions(url=server.grpc_url, models=[ModelTarget("text_encoder_int8")],
                                         model_repo=base_ref, throughput=False))
    assert report.exit_code == 0, [str(v) for m in report.models for v in m.violations]
    assert [(m.name, m.correctness.status) for m in report.models] == [(n, "passed") for n in names]
    assert swapped.models[0].correctness.status == "failed"


@pytest.mark.servers
def test_bench_compress_quick_prints_the_table():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_compress.py"), "--quick", "--json"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "size on disk (model.pt)" in proc.stdout and "peak throughput" in proc.stdout and "p99 latency" in proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == {"base", "variant", "accuracy", "size_ratio", "throughput_ratio", "p99_ratio"}
    assert result["base"]["correctness"] == result["variant"]["correctness"] == "passed"
    assert 0 < result["size_ratio"] < 1 and result["throughput_ratio"] > 0 and result["p99_ratio"] > 0
    assert result["accuracy"]["metric"] == "cosine" and result["accuracy"]["drop"] <= 0.01


def test_validate_says_how_to_rebuild_a_broken_variant_artifact(variant_repo):
    (variant_repo / "text_encoder_int8/1/model.pt").write_bytes(b"not a zip")
    problems = [str(p) for p in validate_repository(variant_repo)]
    assert len(problems) == 1 and problems[0].startswith("model_repo/text_encoder_int8/1/model.pt: artifact: does not load as TorchScript")
    assert problems[0].endswith("; run `hybridserve models build`")


def test_every_committed_variant_ships_its_bases_model_py():
    # model.py is generic (tensor names come from config.pbtxt); a variant's copy that lags behind its base's would
    # serve the variant with old handling (e.g. the thread rule), which no accuracy check would notice.
    from hybridserve.models.variants import find_variants
    from hybridserve.paths import model_repo_dir

    repo = model_repo_dir()
    infos = find_variants(repo)
    assert infos, "model_repo/ holds no variant"
    for info in infos:
        base = repo / info.variant.base / "1" / "model.py"
        assert (info.path / "1" / "model.py").read_bytes() == base.read_bytes(), info.path
