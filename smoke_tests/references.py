"""Reference sets of a built model repository, read from the on-disk contract of `hybridserve models build`.

For model `M`: `M/config.pbtxt` (Triton's text format; parameters `reference_atol` / `reference_rtol` as
string floats) and `M/<version>/reference.npz` holding `input/<TRITON_INPUT_NAME>` and
`output/<TRITON_OUTPUT_NAME>`, batch dimension first. The reader needs only numpy and protobuf (both
ship with tritonclient), so the gate also runs where the kit is not installed (the file format: `reference_file`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoke_tests.errors import bad_input
from smoke_tests.reference_file import REFERENCE_FILE, read_reference

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@dataclass
class TensorDecl:
    name: str
    datatype: str  # Triton's wire name: "FP32", "INT64", ...
    dims: tuple[int, ...]  # without the batch dimension


@dataclass
class ModelReference:
    name: str
    version: str
    version_dir: Path
    max_batch_size: int
    atol: float
    rtol: float
    inputs: dict[str, "np.ndarray"] = field(repr=False)
    outputs: dict[str, "np.ndarray"] = field(repr=False)
    declared_inputs: list[TensorDecl] = field(default_factory=list)
    declared_outputs: list[TensorDecl] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0]) if self.inputs else 0


def _parse_config(path: Path) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise bad_input(f"{path}: not a valid Triton config.pbtxt: {exc}") from None


def _tolerance(config: Any, key: str, default: float, path: Path) -> float:
    if key not in config.parameters:
        return default
    text = config.parameters[key].string_value
    try:
        value = float(text)
    except ValueError:
        raise bad_input(f"{path}: parameter {key} = {text!r} is not a number") from None
    if not value >= 0:
        raise bad_input(f"{path}: parameter {key} = {text!r} must be 0 or more")
    return value


def _decls(tensors) -> list[TensorDecl]:
    from tritonclient.grpc import model_config_pb2

    out = []
    for t in tensors:
        enum_name = model_config_pb2.DataType.Name(t.data_type)  # "TYPE_FP32"
        out.append(TensorDecl(t.name, enum_name.removeprefix("TYPE_").replace("STRING", "BYTES"), tuple(int(d) for d in t.dims)))
    return out


def _version_dir(model_dir: Path, version: str | None) -> Path | None:
    if version is not None:
        candidate = model_dir / version
        return candidate if (candidate / REFERENCE_FILE).is_file() else None
    versions = sorted((int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)
    for v in versions:
        if (model_dir / str(v) / REFERENCE_FILE).is_file():
            return model_dir / str(v)
    return None


def models_with_references(repo_dir: Path) -> list[str]:
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():  # the CLI asks this before SmokeOptions.validate() runs
        what = "is a file, not a directory" if repo_dir.exists() else "no such directory"
        raise bad_input(f"--model-repo {repo_dir}: {what}; expected the built model repository (model_repo/)")
    return sorted(
        p.name
        for p in repo_dir.iterdir()
        if p.is_dir() and (p / "config.pbtxt").is_file() and _version_dir(p, None) is not None and not _is_variant(p)
    )


# A compressed variant (config parameter `variant_of`, hybridserve models compress) is loaded only where a site
# chooses it, so it is checked only when named (--model NAME), not by default.
_VARIANT_OF = re.compile(r'key\s*:\s*"variant_of"')


def _is_variant(model_dir: Path) -> bool:
    try:
        return bool(_VARIANT_OF.search((model_dir / "config.pbtxt").read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def load_model_reference(repo_dir: Path, name: str, version: str | None = None) -> ModelReference:
    """The reference of model `name` (its newest version with a reference, or `version`). Bad input -> exit 2."""
    model_dir = Path(repo_dir) / name
    config_path = model_dir / "config.pbtxt"
    if not config_path.is_file():
        known = ", ".join(models_with_references(repo_dir)) or "none"
        raise bad_input(f"model {name!r}: no {config_path} in the model repository (models with references: {known})")
    vdir = _version_dir(model_dir, version)
    if vdir is None:
        which = f"version {version}" if version else "any version"
        raise bad_input(
            f"model {name!r}: no {REFERENCE_FILE} for {which} under {model_dir}; run `hybridserve models build`, "
            "pass --model-repo with the built repository, or --no-correctness"
        )
    config = _parse_config(config_path)
    path = vdir / REFERENCE_FILE
    try:
        inputs, outputs = read_reference(path)
    except (OSError, ValueError) as exc:
        raise bad_input(f"{path}: cannot read the reference set: {exc}") from None
    if not inputs or not outputs:
        raise bad_input(f"{path}: expected arrays named input/<NAME> and output/<NAME>, found {sorted(inputs) + sorted(outputs) or 'none'}")
    rows = {a.shape[0] if a.ndim else None for a in (*inputs.values(), *outputs.values())}
    if len(rows) != 1 or None in rows:
        raise bad_input(f"{path}: every reference array needs the same batch dimension first; found shapes "
                        + ", ".join(f"{k}{tuple(a.shape)}" for k, a in {**inputs, **outputs}.items()))
    return ModelReference(
        name=name,
        version=vdir.name,
        version_dir=vdir,
        max_batch_size=int(config.max_batch_size),
        atol=_tolerance(config, "reference_atol", DEFAULT_ATOL, config_path),
        rtol=_tolerance(config, "reference_rtol", DEFAULT_RTOL, config_path),
        inputs=inputs,
        outputs=outputs,
        declared_inputs=_decls(config.input),
        declared_outputs=_decls(config.output),
    )
