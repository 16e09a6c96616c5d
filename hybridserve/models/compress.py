"""`hybridserve models compress` and `hybridserve models compare`: compressed variants and what they cost.

`compress MODEL --method int8-dynamic|prune [--amount X] [--max-accuracy-drop D]` adds a variant of a kit
model to the repository (hybridserve.models.variants): `<repo>/<MODEL>_int8/` or `<MODEL>_pruned/`, with
a config.pbtxt copied from the base's (name, tolerance and the variant parameters changed), the base's
model.py, and the built model.pt and its own reference.npz. Served by the same generic model.py with
torch.jit.load, side by side with the base.

- int8-dynamic: `torch.ao.quantization.quantize_dynamic` on every nn.Linear (int8 weights, activations
  quantized per call; x86/fbgemm kernels). Deprecated in torch 2.13 in favour of torchao but present and
  traceable (torchao's int8 path is not TorchScript-serialisable). No CUDA kernels: CPU only. Activations
  are quantized with one scale per call, so a row's output depends a little on the rows batched with it;
  the variant's reference_atol covers 4x the largest such change measured at build time.
- prune: `torch.nn.utils.prune.l1_unstructured` on the weight of every Conv2d and Linear, each layer
  losing `amount` of its weights (smallest |w|), then `prune.remove` makes it permanent. Unstructured
  zeros stay in a dense tensor: model.pt is as large as the base's (the report says so, with the
  fraction of zero weights); it only shrinks under compression (e.g. in transit).

Accuracy is measured against the full-precision base on an evaluation set: the base's reference inputs
plus `N_EVAL_EXTRA` more drawn the same way (`Accuracy`). A drop beyond the bound (`--max-accuracy-drop`,
recorded in the config) is refused: exit code 2 with the numbers and nothing written (the variant is
built in a hidden temporary directory of the repository and renamed into place only when it passes).
`hybridserve models build` rebuilds a variant from its config the same way, in a fresh interpreter
(`python -m hybridserve.models.compress`), after its base; the bound applies there too.

`compare BASE VARIANT` serves both from the repository on one local tritonserver and runs the smoke gate
on both in one run (same server, one after the other): correctness against each one's own reference,
peak throughput, p99; the table gives size, accuracy change, throughput and p99 change (`measure`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from hybridserve.errors import UserError
from hybridserve.models import variants as V

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

COMPRESS_FORMAT = 1  # bump when this module changes what a variant's build writes
N_EVAL_EXTRA = 248  # with the 8 reference samples: 256 rows of evaluation
REFUSED_EXIT = 3  # the worker's exit code when the variant is beyond its bound (nothing written)
TOLERANCE_MARGIN = 4.0  # reference_atol >= this x the largest batch-composition change measured
# "agreement": a row agrees when every value is within the kit models' reference tolerance of the base's
# (model_repo/*/config.pbtxt reference_atol / reference_rtol): the smoke gate's notion of "the same output".
AGREEMENT_ATOL, AGREEMENT_RTOL = 1e-4, 1e-3


# --- accuracy (numpy only) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """The variant's outputs against the full-precision base's, on `samples` rows.

    agreement: fraction of rows within the reference tolerance (|v - b| <= atol + rtol |b|, every value;
    AGREEMENT_ATOL / AGREEMENT_RTOL in a build); cosine_min / cosine_mean: cosine similarity of each row's output vectors; top1: fraction of rows
    with the same arg-max (classifiers; None for embeddings); max_abs_diff over all values; drop: what the
    bound is checked on, per `metric` (variants.METRICS); batch_sensitivity: the largest change of a row's
    variant output when it is batched with other rows (0 for a batch-independent model).
    """

    metric: str
    samples: int
    agreement: float
    cosine_min: float
    cosine_mean: float
    top1: float | None
    max_abs_diff: float
    drop: float
    batch_sensitivity: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy(base: "np.ndarray", variant: "np.ndarray", *, metric: str, atol: float, rtol: float,
             batch_sensitivity: float = 0.0) -> Accuracy:
    """Accuracy of `variant` against `base` (same shape, rows first)."""
    import numpy as np

    if base.shape != variant.shape:
        raise ValueError(f"outputs differ in shape: base {base.shape}, variant {variant.shape}")
    if metric not in V.METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(V.METRICS)}")
    b = base.reshape(len(base), -1).astype(np.float64)
    v = variant.reshape(len(variant), -1).astype(np.float64)
    agreement = float(np.mean(np.all(np.isclose(v, b, atol=atol, rtol=rtol), axis=1)))
    norms = np.linalg.norm(b, axis=1) * np.linalg.norm(v, axis=1)
    same = np.all(b == v, axis=1)  # exactly 1 for equal rows (no rounding), also for zero rows
    cosine = np.where(same, 1.0, np.clip(np.sum(b * v, axis=1) / np.maximum(norms, 1e-300), -1.0, 1.0))
    top1 = float(np.mean(np.argmax(b, axis=1) == np.argmax(v, axis=1))) if metric == "top1" else None
    drop = 1.0 - float(cosine.min()) if metric == "cosine" else 1.0 - (top1 if top1 is not None else agreement)
    return Accuracy(
        metric=metric,
        samples=len(b),
        agreement=agreement,
        cosine_min=float(cosine.min()),
        cosine_mean=float(cosine.mean()),
        top1=top1,
        max_abs_diff=float(np.abs(v - b).max()) if b.size else 0.0,
        drop=max(0.0, drop),
        batch_sensitivity=float(batch_sensitivity),
    )


def describe_accuracy(acc: dict[str, Any]) -> str:
    top1 = f", top-1 agreement {acc['top1']:.4f}" if acc.get("top1") is not None else ""
    return (f"{acc['metric']} drop {acc['drop']:.3g} on {acc['samples']} samples (agreement within the reference "
            f"tolerance {acc['agreement']:.4f}, cosine min {acc['cosine_min']:.6f} mean {acc['cosine_mean']:.6f}"
            f"{top1}, max |diff| {acc['max_abs_diff']:.3g})")


# --- compression (torch) -------------------------------------------------------------------------


def compress_module(module: "torch.nn.Module", method: str, amount: float | None = None) -> "torch.nn.Module":
    """A compressed copy of `module` (eval mode); `module` is left as it is."""
    import copy
    import warnings

    import torch
    from torch import nn

    module = copy.deepcopy(module).eval()
    if method == "int8-dynamic":
        with warnings.catch_warnings():
            # torch 2.13 deprecates torch.ao.quantization (and quantized tensor creation) for torchao; the
            # kernels are still there and serialise to TorchScript, which torchao's int8 path does not.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated", category=UserWarning)
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
    if method == "prune":
        from torch.nn.utils import prune

        if amount is None or not 0 < amount < 1:
            raise ValueError(f"prune needs an amount between 0 and 1, got {amount!r}")
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                prune.l1_unstructured(layer, "weight", amount=amount)
                prune.remove(layer, "weight")  # permanent: weight is a plain (zero-filled) parameter again
        return module
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(V.METHODS)}")


def zero_fraction(module: "torch.nn.Module") -> float:
    """Fraction of the Conv2d/Linear weights that are exactly 0 (float weights only)."""
    from torch import nn

    total = zeros = 0
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer.weight.is_floating_point():
            total += layer.weight.numel()
            zeros += int((layer.weight == 0).sum())
    return zeros / total if total else 0.0


# --- build (fingerprint, worker) -----------------------------------------------------------------


def variant_fingerprint(variant: V.Variant) -> str:
    """What a variant's artifacts depend on: its base's build fingerprint, the variant's parameters, this code."""
    from hybridserve.models import build
    from hybridserve.models.definitions import MODEL_SPECS

    inputs = {
        "format": COMPRESS_FORMAT,
        "base": variant.base,
        "base_fingerprint": build.fingerprint(MODEL_SPECS[variant.base]),
        "method": variant.method,
        "amount": variant.amount,
        "max_accuracy_drop": variant.max_accuracy_drop,
        "metric": variant.metric,
        "eval_extra": N_EVAL_EXTRA,
        "compress_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "torch": metadata.version("torch"),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class WorkerResult:
    accuracy: dict[str, Any]
    zero_fraction: float
    refused: bool


class Refused(UserError):
    """A variant beyond its accuracy bound; `accuracy` holds the numbers."""

    def __init__(self, message: str, accuracy: dict[str, Any], details: list[str]):
        super().__init__(message, exit_code=2, details=details)
        self.accuracy = accuracy


def run_worker(variant_config: Path, version_dir: Path, fp: str, *, timeout: float = 900) -> WorkerResult:
    """Build the variant whose config is `variant_config` into `version_dir` in a fresh interpreter.

    Raises Refused (exit 2, nothing written) when its accuracy drop exceeds the recorded bound, UserError
    when the build fails.
    """
    from hybridserve.models.build import run_fresh

    name = variant_config.parent.name.lstrip(".").split(".compress-")[0]
    try:
        proc = run_fresh("hybridserve.models.compress", [str(variant_config), str(version_dir), fp], timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise UserError(f"building variant {name} took longer than {timeout:g} s") from exc
    if proc.returncode not in (0, REFUSED_EXIT):
        raise UserError(
            f"building variant {name} failed (exit code {proc.returncode}):",
            exit_code=1,
            details=(proc.stderr.strip().splitlines() or ["(no output)"])[-20:],
        )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    out = WorkerResult(result["accuracy"], result["zero_fraction"], proc.returncode == REFUSED_EXIT)
    if out.refused:
        acc = out.accuracy
        raise Refused(
            f"variant {name} is beyond its accuracy bound: {acc['metric']} drop {acc['drop']:.4g} > "
            f"{result['max_accuracy_drop']:g} ({V.MAX_DROP}); nothing was written",
            acc,
            [describe_accuracy(acc),
             "loosen --max-accuracy-drop, compress less (a smaller --amount), or keep the full-precision model"],
        )
    return out


def _outputs(module, inputs: list["torch.Tensor"]) -> list["np.ndarray"]:
    import torch

    with torch.inference_mode():
        got = module(*inputs)
    got = (got,) if isinstance(got, torch.Tensor) else tuple(got)
    return [g.numpy() for g in got]


def _build_variant(config_path: Path, version_dir: Path, fp: str) -> int:
    """The worker: build model.pt + reference.npz of the variant `config_path` describes. Exit code 0 or REFUSED_EXIT."""
    import io
    import warnings

    import numpy as np
    import torch

    from hybridserve.models import build
    from hybridserve.models.definitions import MODEL_SPECS
    from hybridserve.models.reference import REFERENCE_FILE, reference_key

    config = V.read_config(config_path.parent)
    variant, problems = V.parse_variant(config.name, config)
    if variant is None:
        raise SystemExit(f"{config_path}: not a valid variant: {problems}")
    spec = MODEL_SPECS[variant.base]

    # The base exactly as `models build` makes it (same seeds, threads, determinism).
    build.deterministic_torch()
    torch.manual_seed(spec.seed)
    base = spec.factory().eval()
    base.requires_grad_(False)
    compressed = compress_module(base, variant.method, variant.amount)
    zeros = zero_fraction(compressed)

    samples = spec.sample_inputs(np.random.default_rng(spec.seed), build.N_REFERENCE_SAMPLES)
    extra = spec.sample_inputs(np.random.default_rng(spec.seed + 1), N_EVAL_EXTRA)
    inputs = [torch.from_numpy(samples[t.name]) for t in spec.inputs]
    evaluation = [torch.from_numpy(np.concatenate([samples[t.name], extra[t.name]])) for t in spec.inputs]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace/save/load (see build.py)
        # No check_trace: its comparison imports torch.distributed.tensor (3.5 s); the saved file is compared
        # with the eager compressed module below, on all rows (as build.py does).
        traced = torch.jit.trace(compressed, tuple(x[:2] for x in inputs), check_trace=False)
        raw = io.BytesIO()
        torch.jit.save(traced, raw)
        plain = build._repack_torchscript(raw.getvalue(), {})
        loaded = torch.jit.load(io.BytesIO(plain), map_location="cpu").eval()

    # The references are the saved TorchScript's outputs on the base's reference inputs, as one batch (as
    # the smoke gate sends them); the evaluation runs the same file on all rows at once.
    got = _outputs(loaded, inputs)
    evaluated = _outputs(loaded, evaluation)
    base_eval = _outputs(base, evaluation)
    for t, g, e in zip(spec.outputs, evaluated, _outputs(compressed, evaluation)):
        if not np.allclose(g, e, rtol=1e-5, atol=1e-6):
            raise RuntimeError(f"{variant.name}: traced and eager model disagree on {t.name}; the trace does not generalise")
    singles = [_outputs(loaded, [x[i : i + 1] for x in inputs]) for i in range(build.N_REFERENCE_SAMPLES)]
    n = build.N_REFERENCE_SAMPLES
    sensitivity = 0.0
    for k in range(len(got)):
        single = np.concatenate([s[k] for s in singles])
        sensitivity = max(sensitivity, float(np.abs(single - got[k]).max()), float(np.abs(evaluated[k][:n] - got[k]).max()))

    # One output per kit model; with several, the worst one counts.
    results = [accuracy(b, v, metric=variant.metric, atol=AGREEMENT_ATOL, rtol=AGREEMENT_RTOL, batch_sensitivity=sensitivity)
               for b, v in zip(base_eval, evaluated)]
    acc = max(results, key=lambda a: a.drop).to_dict()
    refused = acc["drop"] > variant.max_accuracy_drop
    print(json.dumps({"accuracy": acc, "zero_fraction": zeros, "max_accuracy_drop": variant.max_accuracy_drop}))
    if refused:
        return REFUSED_EXIT

    arrays: dict[str, np.ndarray] = {}
    for t in spec.inputs:
        arrays[reference_key("input", t.name)] = np.asarray(samples[t.name], dtype=t.numpy_dtype)
    for t, out in zip(spec.outputs, got):
        if out.shape[1:] != t.dims or out.dtype != np.dtype(t.numpy_dtype):
            raise RuntimeError(f"{variant.name}: output {t.name} is {out.dtype}{list(out.shape)}, the spec says {t.numpy_dtype}{list(t.dims)}")
        arrays[reference_key("output", t.name)] = out
    npz = build._npz_bytes(arrays)
    stamp = {"fingerprint": fp, "reference_sha256": hashlib.sha256(npz).hexdigest(), "accuracy": acc,
             "zero_fraction": zeros, "variant_of": variant.base, "method": variant.method}
    final = build._repack_torchscript(plain, {build.STAMP_RECORD: json.dumps(stamp, sort_keys=True).encode()})
    version_dir.mkdir(parents=True, exist_ok=True)
    build._write_atomic(version_dir / REFERENCE_FILE, npz)
    build._write_atomic(version_dir / spec.artifact, final)
    return 0


# --- the variant's config ------------------------------------------------------------------------


def _nice_ceil(x: float) -> float:
    """x rounded up to one significant digit (2.3e-3 -> 3e-3)."""
    if x <= 0:
        return 0.0
    exp = math.floor(math.log10(x))
    return math.ceil(round(x / 10**exp, 9)) * 10**exp


def variant_config_text(base_text: str, variant: V.Variant, command: str) -> str:
    """The variant's config.pbtxt: the base's (comments kept) with the name and the variant parameters."""
    text, n = re.subn(r'(?m)^name:\s*"[^"]*"', f'name: "{variant.name}"', base_text, count=1)
    if n != 1:
        raise UserError(f'the config.pbtxt of {variant.base} has no top-level name: "..." line to rename')
    params = [(V.VARIANT_OF, variant.base), (V.METHOD, variant.method)]
    if variant.amount is not None:
        params.append((V.AMOUNT, f"{variant.amount:g}"))
    params += [(V.MAX_DROP, f"{variant.max_accuracy_drop:g}"), (V.METRIC, variant.metric)]
    header = (
        f"# Compressed variant of {variant.base} ({V.METHODS[variant.method]}), made by\n"
        f"# `{command}`; `hybridserve models build` rebuilds model.pt and reference.npz from these\n"
        f"# parameters and refuses a build whose {variant.metric} drop exceeds {V.MAX_DROP}.\n"
    )
    block = "".join(f'parameters: {{\n  key: "{k}"\n  value: {{ string_value: "{v}" }}\n}}\n' for k, v in params)
    return header + text.rstrip("\n") + "\n\n# What this variant is (hybridserve.models.variants).\n" + block


def set_tolerance(text: str, key: str, value: str) -> str:
    new, n = re.subn(rf'(key:\s*"{key}"\s*value:\s*\{{\s*string_value:\s*")[^"]*(")', rf"\g<1>{value}\g<2>", text, count=1)
    if n != 1:
        raise UserError(f"the variant's config.pbtxt has no {key} parameter to widen")
    return new


# --- `hybridserve models compress` ---------------------------------------------------------------


@dataclass(frozen=True)
class CompressResult:
    variant: V.Variant
    path: Path
    accuracy: dict[str, Any]
    zero_fraction: float
    base_bytes: int | None
    variant_bytes: int
    reference_atol: str


def compress(repo_dir: Path, model: str, method: str, *, amount: float | None = None,
             max_accuracy_drop: float = V.DEFAULT_MAX_DROP, name: str | None = None, force: bool = False,
             command: str | None = None) -> CompressResult:
    """Add the variant to `repo_dir` (see the module docstring). Bad input: UserError exit 2 before anything is written."""
    from hybridserve.models.definitions import MODEL_SPECS
    from hybridserve.models.repository import CONFIG_FILE, display_path
    from hybridserve.sync.scan import is_ignored

    repo_dir = Path(repo_dir)
    if model not in MODEL_SPECS:
        raise UserError(f"MODEL {model!r}: not one of the kit's models; valid: {', '.join(MODEL_SPECS)}", exit_code=2)
    if method not in V.METHODS:
        raise UserError(f"--method {method!r}: valid: {', '.join(V.METHODS)}", exit_code=2)
    if method == "prune" and amount is None:
        raise UserError("--amount: prune needs the fraction of each layer's weights to zero, e.g. --amount 0.2", exit_code=2)
    if method == "prune" and not 0 < amount < 1:
        raise UserError(f"--amount {amount:g}: a fraction between 0 and 1 (exclusive), e.g. 0.2", exit_code=2)
    if method != "prune" and amount is not None:
        raise UserError(f"--amount: {method} takes no amount (only prune does); remove it", exit_code=2)
    if not (math.isfinite(max_accuracy_drop) and 0 <= max_accuracy_drop <= 1):
        raise UserError(f"--max-accuracy-drop {max_accuracy_drop:g}: a fraction within 0..1, e.g. 0.01", exit_code=2)
    name = name or V.default_name(model, method)
    why = V.name_problem(name) or (f"{name!r} is the base model itself" if name == model else None)
    if why is None and name in MODEL_SPECS:
        why = f"{name!r} is another of the kit's models"
    if why:
        raise UserError(f"--name: {why}", exit_code=2)
    base_config = repo_dir / model / CONFIG_FILE
    if not base_config.is_file():
        raise UserError(f"{display_path(base_config)}: missing; the variant copies the base model's config "
                        f"(pass --repo the repository that holds {model}/)", exit_code=2)
    base_version = repo_dir / model / str(MODEL_SPECS[model].version)
    if not base_version.is_dir():
        raise UserError(f"{display_path(base_version)}/: missing; the variant copies the base model's files (model.py) "
                        "from it", exit_code=2)
    target = repo_dir / name
    if target.exists() and not force:
        raise UserError(f"{display_path(target)} exists; pass --force to replace it, or --name another name", exit_code=2)

    spec = MODEL_SPECS[model]
    metric = V.BASE_METRIC.get(model, "cosine")
    variant = V.Variant(name, model, method, amount, max_accuracy_drop, metric)
    command = command or (f"hybridserve models compress {model} --method {method}"
                          + (f" --amount {amount:g}" if amount is not None else "")
                          + f" --max-accuracy-drop {max_accuracy_drop:g}")
    text = variant_config_text(base_config.read_text(encoding="utf-8"), variant, command)

    staging = repo_dir / f".{name}.compress-{os.getpid()}"  # hidden: never synced nor served
    shutil.rmtree(staging, ignore_errors=True)
    try:
        vdir = staging / str(spec.version)
        vdir.mkdir(parents=True)
        for src in sorted(base_version.iterdir()):
            # The base's own files (model.py), not its built artifacts: those are the variant's own.
            if src.is_file() and not src.is_symlink() and not is_ignored(src.name) and src.name not in (spec.artifact, "reference.npz"):
                shutil.copyfile(src, vdir / src.name)
        (staging / CONFIG_FILE).write_text(text, encoding="utf-8")
        result = run_worker(staging / CONFIG_FILE, vdir, variant_fingerprint(variant))
        sensitivity = result.accuracy.get("batch_sensitivity", 0.0)
        from hybridserve.models.repository import _tolerance

        config = V.read_config(staging)
        atol = _tolerance(config, "reference_atol")[0] or 0.0
        wanted = _nice_ceil(TOLERANCE_MARGIN * sensitivity)
        atol_text = config.parameters["reference_atol"].string_value
        if wanted > atol:
            # Dynamic quantization: a row's output depends on its batch-mates (one activation scale per call).
            atol_text = f"{wanted:g}"
            text = set_tolerance(text, "reference_atol", atol_text)
            text = text.replace(
                "# What this variant is",
                f"# reference_atol is {atol_text} (not the base's {atol:g}): {TOLERANCE_MARGIN:g}x the largest change of "
                f"a row's output\n# with the rows batched with it ({sensitivity:.2g}), measured by the build.\n"
                "# What this variant is", 1)
            (staging / CONFIG_FILE).write_text(text, encoding="utf-8")
        if target.exists():  # --force: swap, then drop the old one
            old = repo_dir / f".{name}.old-{os.getpid()}"
            os.rename(target, old)
            os.rename(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    base_pt = repo_dir / model / str(spec.version) / spec.artifact
    return CompressResult(
        variant=variant,
        path=target,
        accuracy=result.accuracy,
        zero_fraction=result.zero_fraction,
        base_bytes=base_pt.stat().st_size if base_pt.is_file() else None,
        variant_bytes=(target / str(spec.version) / spec.artifact).stat().st_size,
        reference_atol=atol_text,
    )


def _fmt_bytes(n: int | None) -> str:
    return "-" if n is None else f"{n / 1024:.0f} KiB"


def _ratio(new: float | None, old: float | None) -> str:
    if new is None or old is None or old == 0:
        return "-"
    return f"{new / old:.2f}x ({(new / old - 1) * 100:+.1f} %)"


RepoOption = Annotated[
    Optional[Path],
    typer.Option("--repo", help="Model repository directory. Default: model_repo/ of the checkout.", show_default=False),
]


def compress_command(
    model: Annotated[str, typer.Argument(help="The kit model to compress (text_encoder, image_classifier).", show_default=False)],
    method: Annotated[str, typer.Option("--method", help="int8-dynamic (Linear layers) or prune (Conv2d/Linear weights).", show_default=False)],
    amount: Annotated[Optional[float], typer.Option("--amount", help="prune: fraction of each layer's weights zeroed (0..1).", show_default=False)] = None,
    max_accuracy_drop: Annotated[float, typer.Option("--max-accuracy-drop", help="Refuse the variant when its accuracy drops more: 1 - min cosine similarity (embeddings) or 1 - top-1 agreement (classifiers).")] = V.DEFAULT_MAX_DROP,
    name: Annotated[Optional[str], typer.Option("--name", help="The variant's model name. Default: MODEL_int8 / MODEL_pruned.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing variant of that name.")] = False,
    measure_it: Annotated[bool, typer.Option("--measure", help="Then serve base and variant on a temporary local tritonserver and measure both with the smoke gate (quick profile).")] = False,
    repo: RepoOption = None,
) -> None:
    """Add a compressed variant of MODEL to the repository, served side by side with it (exit 2 beyond the accuracy bound)."""
    from hybridserve.console import make_console
    from hybridserve.models.build import build_models
    from hybridserve.models.repository import display_path
    from hybridserve.paths import model_repo_dir

    repo_dir = repo or model_repo_dir()
    result = compress(repo_dir, model, method, amount=amount, max_accuracy_drop=max_accuracy_drop, name=name, force=force)
    console = make_console()
    console.print(f"[green]wrote[/] {display_path(result.path)} (config.pbtxt, 1/model.pt, 1/reference.npz); "
                  "commit its config.pbtxt and model.py, the build recreates the rest")
    if measure_it:
        build_models(repo_dir, progress=False, models=[model, result.variant.name])
        print_comparison(console, measure(repo_dir, model, result.variant.name))
    else:
        acc = result.accuracy
        table = _table(f"models compress: {result.variant.name}")
        table.add_row("size on disk (model.pt)", _fmt_bytes(result.base_bytes), _fmt_bytes(result.variant_bytes),
                      _ratio(result.variant_bytes, result.base_bytes))
        _accuracy_rows(table, acc, result.variant, result.zero_fraction)
        console.print(table)


def _table(title: str):
    from rich.table import Table

    table = Table(title=title)
    table.caption = (f"accuracy against the full-precision model on its reference inputs and {N_EVAL_EXTRA} more; agreement: "
                     "rows equal within the gate's tolerance of the base models (a quantized model rarely is: see cosine)")
    for column in ("", "base", "variant", "change"):
        table.add_column(column, no_wrap=True)
    return table


def _accuracy_rows(table, acc: dict[str, Any], variant: V.Variant, zeros: float | None) -> None:
    table.add_row(f"accuracy: {acc['metric']} drop", "0", f"{acc['drop']:.3g}", f"bound {variant.max_accuracy_drop:g}")
    table.add_row(f"agreement (within {AGREEMENT_ATOL:g} + {AGREEMENT_RTOL:g}|x|)", "1", f"{acc['agreement']:.4f}", f"{acc['samples']} samples")
    table.add_row("cosine similarity min / mean", "1 / 1", f"{acc['cosine_min']:.6f} / {acc['cosine_mean']:.6f}", "")
    if acc.get("top1") is not None:
        table.add_row("top-1 agreement", "1", f"{acc['top1']:.4f}", "")
    table.add_row("max |diff|", "0", f"{acc['max_abs_diff']:.3g}", "")
    if zeros:
        table.add_row("zero weights (Conv2d/Linear)", "", f"{zeros:.1%}", "stored dense: same file size")


# --- `hybridserve models compare`: one server, one gate run --------------------------------------


@dataclass(frozen=True)
class Measured:
    name: str
    model_bytes: int
    correctness: str
    throughput: float | None  # peak inferences/s
    p99_ms: float | None  # at `concurrency`
    concurrency: int | None


@dataclass(frozen=True)
class Comparison:
    base: Measured
    variant: Measured
    variant_info: V.VariantInfo
    exit_code: int
    gate_messages: list[str]


def measure(repo_dir: Path, base: str, variant: str, *, profile: "str | Any" = "quick", work_dir: Path | None = None) -> Comparison:
    """Serve `base` and `variant` from the built repository on one tritonserver and run the smoke gate on both.

    The gate checks each against its own reference, then sweeps them one after the other on the same
    server; p99 is compared at the highest concurrency both measured.
    """
    import tempfile

    from hybridserve.local.triton import TritonServer
    from hybridserve.models.definitions import MODEL_SPECS
    from hybridserve.models.repository import display_path
    from smoke_tests import PROFILES, SmokeOptions, run_smoke
    from smoke_tests.options import ModelTarget

    repo_dir = Path(repo_dir)
    found = {v.variant.name: v for v in V.find_variants(repo_dir)}
    if variant not in found or found[variant].variant.base != base:
        have = ", ".join(f"{n} (of {v.variant.base})" for n, v in found.items()) or "none"
        raise UserError(f"VARIANT {variant!r}: not a variant of {base} in {display_path(repo_dir)} (variants: {have})", exit_code=2)
    if isinstance(profile, str):  # else a smoke_tests MeasurementProfile (the benchmark's short one)
        if profile not in PROFILES:
            raise UserError(f"--profile {profile!r}: valid: {', '.join(PROFILES)}", exit_code=2)
        profile = PROFILES[profile]
    spec = MODEL_SPECS[base]
    with tempfile.TemporaryDirectory(prefix="hybridserve-compare-") as tmp:
        work = Path(work_dir or tmp)
        with TritonServer(repo_dir, [base, variant], log_path=work / "triton.log", work_dir=work / "triton") as server:
            options = SmokeOptions(url=server.grpc_url, models=[ModelTarget(base), ModelTarget(variant)],
                                   model_repo=repo_dir, profile=profile)
            report = run_smoke(options)
    by_name = {m.name: m for m in report.models}
    common = sorted({lv.concurrency for lv in by_name[base].sweep} & {lv.concurrency for lv in by_name[variant].sweep})
    at = common[-1] if common else None

    def measured(name: str) -> Measured:
        m = by_name[name]
        level = m.level(at) if at is not None else None
        return Measured(name, (repo_dir / name / str(spec.version) / spec.artifact).stat().st_size, m.correctness.status,
                        m.throughput, level.p99_ms if level else None, at)

    messages = [str(v) for m in report.models for v in m.violations]
    if report.error is not None:
        messages.append(report.error.message)
    return Comparison(measured(base), measured(variant), found[variant], int(report.exit_code), messages)


def print_comparison(console, c: Comparison) -> None:
    v = c.variant_info.variant
    table = _table(f"{c.base.name} vs {c.variant.name} ({v.method}"
                   + (f" {v.amount:g}" if v.amount is not None else "") + "), one server, one gate run")
    table.columns[1].header, table.columns[2].header = c.base.name, c.variant.name
    table.add_row("size on disk (model.pt)", _fmt_bytes(c.base.model_bytes), _fmt_bytes(c.variant.model_bytes),
                  _ratio(c.variant.model_bytes, c.base.model_bytes))
    if c.variant_info.accuracy:
        _accuracy_rows(table, c.variant_info.accuracy, v, None)
    table.add_row("gate correctness (own reference)", c.base.correctness, c.variant.correctness, "")
    table.add_row("peak throughput (infer/s)", _num(c.base.throughput), _num(c.variant.throughput),
                  _ratio(c.variant.throughput, c.base.throughput))
    table.add_row(f"p99 latency (ms) at concurrency {c.base.concurrency}", _num(c.base.p99_ms), _num(c.variant.p99_ms),
                  _ratio(c.variant.p99_ms, c.base.p99_ms))
    console.print(table)
    for message in c.gate_messages:
        console.print(f"[yellow]gate:[/] {message}", highlight=False)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def compare_command(
    base: Annotated[str, typer.Argument(help="The full-precision model, e.g. text_encoder.", show_default=False)],
    variant: Annotated[str, typer.Argument(help="Its variant, e.g. text_encoder_int8.", show_default=False)],
    profile: Annotated[str, typer.Option("--profile", help="The smoke gate's measurement profile: quick or default.")] = "quick",
    repo: RepoOption = None,
) -> None:
    """Serve BASE and VARIANT on one local tritonserver, run the smoke gate on both, print size, accuracy, throughput and p99 change."""
    from hybridserve.console import make_console
    from hybridserve.models.build import build_models
    from hybridserve.paths import model_repo_dir

    repo_dir = repo or model_repo_dir()
    names = {v.variant.name for v in V.find_variants(repo_dir, base)}
    if variant not in names:
        raise UserError(f"VARIANT {variant!r}: not a variant of {base!r} in the repository (its variants: "
                        f"{', '.join(sorted(names)) or 'none'}; make one with `hybridserve models compress`)", exit_code=2)
    build_models(repo_dir, progress=False, models=[base, variant])
    comparison = measure(repo_dir, base, variant, profile=profile)
    print_comparison(make_console(), comparison)
    if comparison.exit_code:
        raise typer.Exit(comparison.exit_code)


if __name__ == "__main__":
    sys.exit(_build_variant(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
