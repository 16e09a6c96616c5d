"""Compressed variants: models of the repository built from another model's code (`hybridserve models compress`).

A variant is a model of its own (e.g. `model_repo/text_encoder_int8/`, served side by side with
`text_encoder`) whose config.pbtxt says what it is, in parameters:

- `variant_of`: the base model (one of the kit's models, definitions.MODEL_SPECS);
- `variant_method`: `int8-dynamic` (int8 dynamic quantization of the Linear layers) or `prune` (L1 magnitude
  pruning of each Conv2d/Linear weight, made permanent);
- `variant_amount`: the fraction of weights pruned (prune only);
- `variant_max_accuracy_drop`: the accuracy bound; a build whose variant drops more is refused;
- `variant_metric`: what the drop is measured on (`cosine` for embeddings: 1 - the lowest cosine similarity
  to the base's output; `top1` for classifiers: 1 - the top-1 agreement with the base).

`hybridserve models build` rebuilds a variant after its base from these parameters (model.pt and its own
reference.npz; hybridserve.models.compress), and records the accuracy it measured in model.pt's build stamp.
Its tensors are the base's, so `models validate` checks it against the base's spec (`spec_for`).
`find_variants` lists a model's variants with that recorded accuracy (for choosing one per site).

No torch here: validation and discovery stay cheap.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VARIANT_OF = "variant_of"
METHOD = "variant_method"
AMOUNT = "variant_amount"
MAX_DROP = "variant_max_accuracy_drop"
METRIC = "variant_metric"
PARAMETERS = (VARIANT_OF, METHOD, AMOUNT, MAX_DROP, METRIC)

METHODS = {
    "int8-dynamic": "int8 dynamic quantization of the Linear layers (weights int8, activations quantized per batch)",
    "prune": "L1 magnitude pruning of each Conv2d/Linear weight, made permanent (--amount: the fraction zeroed)",
}
# Methods whose TorchScript has no CUDA kernels: served on CPU instances also on GPU targets (publish.render).
CPU_ONLY_METHODS = frozenset({"int8-dynamic"})
METRICS = {
    "cosine": "1 - the lowest cosine similarity between the variant's and the base's output rows",
    "top1": "1 - the fraction of rows whose top-1 class agrees with the base's",
}
# The accuracy each base model is judged by: what its output means.
BASE_METRIC = {"text_encoder": "cosine", "image_classifier": "top1"}
DEFAULT_MAX_DROP = 0.01
SUFFIX = {"int8-dynamic": "int8", "prune": "pruned"}


@dataclass(frozen=True)
class Variant:
    """What a variant's config.pbtxt records; `amount` is None for int8-dynamic."""

    name: str
    base: str
    method: str
    amount: float | None
    max_accuracy_drop: float
    metric: str


@dataclass(frozen=True)
class VariantInfo:
    """A variant found in a repository; `accuracy` is what its last build measured (None: not built yet).

    accuracy keys: metric, drop, samples, agreement, cosine_min, cosine_mean, top1 (None for embeddings),
    max_abs_diff (see hybridserve.models.compress.Accuracy).
    """

    variant: Variant
    path: Path
    accuracy: dict[str, Any] | None
    model_bytes: int | None


def default_name(base: str, method: str) -> str:
    return f"{base}_{SUFFIX[method]}"


def is_variant(config: Any) -> bool:
    return VARIANT_OF in config.parameters


def _float(config: Any, key: str) -> tuple[float | None, str | None]:
    raw = config.parameters[key].string_value
    try:
        value = float(raw)
    except ValueError:
        return None, f"{raw!r} is not a number"
    return (value, None) if math.isfinite(value) else (None, f"{raw!r} is not finite")


def parse_variant(name: str, config: Any) -> tuple[Variant | None, list[tuple[str, str]]]:
    """(the Variant a config records, or None; (field, message) problems). Not a variant: (None, [])."""
    from hybridserve.models.definitions import MODEL_SPECS

    params = config.parameters
    if VARIANT_OF not in params:
        stray = [k for k in PARAMETERS if k in params]
        return None, [(f'parameters["{k}"]', f'only a variant has it; add parameters["{VARIANT_OF}"] naming the base model '
                       "(or remove it)") for k in stray]
    problems: list[tuple[str, str]] = []

    def field(key: str) -> str:
        return f'parameters["{key}"]'

    base = params[VARIANT_OF].string_value
    if base not in MODEL_SPECS:
        problems.append((field(VARIANT_OF), f'"{base}" is not one of the kit\'s models; valid: {", ".join(MODEL_SPECS)}'))
    elif base == name:
        problems.append((field(VARIANT_OF), f'"{base}" is this model itself; a variant needs a name of its own'))
    method = params[METHOD].string_value if METHOD in params else ""
    if method not in METHODS:
        got = f'"{method}" is not a method' if method else "missing"
        problems.append((field(METHOD), f"{got}; valid: {', '.join(METHODS)}"))
    amount = None
    if method == "prune":
        if AMOUNT not in params:
            problems.append((field(AMOUNT), 'missing; the fraction of each layer\'s weights pruned, e.g. "0.2"'))
        else:
            amount, why = _float(config, AMOUNT)
            if why is None and not 0 < amount < 1:
                why = f"{amount:g} is not a fraction between 0 and 1 (exclusive)"
            if why:
                problems.append((field(AMOUNT), why))
                amount = None
    elif AMOUNT in params and method in METHODS:
        problems.append((field(AMOUNT), f"{method} takes no amount; remove it"))
    max_drop = DEFAULT_MAX_DROP
    if MAX_DROP not in params:
        problems.append((field(MAX_DROP), f'missing; the accuracy bound of the build, e.g. "{DEFAULT_MAX_DROP}"'))
    else:
        value, why = _float(config, MAX_DROP)
        if why is None and not 0 <= value <= 1:
            why = f"{value:g} is not within 0..1"
        if why:
            problems.append((field(MAX_DROP), why))
        else:
            max_drop = value
    metric = params[METRIC].string_value if METRIC in params else BASE_METRIC.get(base, "")
    if metric not in METRICS:
        got = f'"{metric}" is not a metric' if metric else "missing"
        problems.append((field(METRIC), f"{got}; valid: {', '.join(METRICS)}"))
    if problems:
        return None, problems
    return Variant(name, base, method, amount, max_drop, metric), []


def spec_for(name: str, config: Any | None):
    """The ModelSpec whose code produces model `name`: its own, or its base's when the config is a variant's."""
    from hybridserve.models.definitions import MODEL_SPECS

    if name in MODEL_SPECS:
        return MODEL_SPECS[name]
    if config is not None and is_variant(config):
        return MODEL_SPECS.get(config.parameters[VARIANT_OF].string_value)
    return None


def read_config(model_dir: Path) -> Any | None:
    """The parsed config.pbtxt of `model_dir`, or None when missing or invalid (validation reports those)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse((Path(model_dir) / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    except (OSError, UnicodeDecodeError, text_format.ParseError):
        return None


def repository_variants(repo_dir: Path) -> list[Variant]:
    """Every well-formed variant of the repository, sorted by name (invalid ones are `models validate`'s to report)."""
    out = []
    for model_dir in sorted(Path(repo_dir).iterdir()) if Path(repo_dir).is_dir() else []:
        if not model_dir.is_dir() or model_dir.name.startswith((".", "__")) or model_dir.is_symlink():
            continue
        config = read_config(model_dir)
        if config is not None and is_variant(config):
            variant, _ = parse_variant(model_dir.name, config)
            if variant is not None:
                out.append(variant)
    return out


def find_variants(repo_dir: Path, model: str | None = None) -> list[VariantInfo]:
    """The compressed variants of `model` (every variant when None) in the repository at `repo_dir`.

    Each with its recorded configuration (method, amount, bound, metric) and, when built, the accuracy its
    build measured against the full-precision base (from model.pt's build stamp) and model.pt's size.
    Reads configs and zip metadata only: no torch, nothing is run.
    """
    from hybridserve.models.build import read_stamp
    from hybridserve.models.definitions import MODEL_SPECS

    out = []
    for variant in repository_variants(repo_dir):
        if model is not None and variant.base != model:
            continue
        spec = MODEL_SPECS[variant.base]
        path = Path(repo_dir) / variant.name
        model_pt = path / str(spec.version) / spec.artifact
        stamp = read_stamp(model_pt) if model_pt.is_file() else None
        out.append(VariantInfo(variant, path, (stamp or {}).get("accuracy"), model_pt.stat().st_size if model_pt.is_file() else None))
    return out


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a model directory name, or None."""
    if not _NAME.fullmatch(name) or name.startswith("__"):
        return f"{name!r} is not a model name; use letters, digits, '_', '.', '-' (e.g. text_encoder_int8)"
    return None


def base_models(repo_dir: Path, names: list[str]) -> list[str]:
    """`names` without the variants: what a server loads unless asked for variants (each site chooses its own)."""
    out = []
    for name in names:
        config = read_config(Path(repo_dir) / name)
        if config is None or not is_variant(config):
            out.append(name)
    return out
