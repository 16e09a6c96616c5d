"""The Triton model repository: validation against Triton's own config schema, description, references.

`validate_repository` parses every `config.pbtxt` with Triton's protobuf schema
(`tritonclient.grpc.model_config_pb2`) and checks the layout rules the kit relies on, the backend, and
(with the built artifacts) that each artifact loads as that backend would load it and takes and returns
what the config declares (hybridserve.models.artifacts); every problem names its file and field, and
all are reported at once. The files are those the sync uploads (hybridserve.sync.scan.walk_model): a
symbolic link out of the repository, to a directory, dangling or looping is a problem, and is never read.
Other modules call `ensure_valid` before syncing or serving, `describe_repository` to learn the tensors, and `load_reference` for the
reference inputs/outputs that `hybridserve models build` wrote.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridserve.errors import UserError
from hybridserve.models.reference import REFERENCE_FILE, read_reference

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

CONFIG_FILE = "config.pbtxt"
TOLERANCE_PARAMETERS = ("reference_atol", "reference_rtol")
# Optional: the tolerances on GPU nodes (hybridserve.publish renders them in as reference_*): cuDNN
# convolutions run in TF32 on Ampere and newer GPUs by default, off by about 1e-3 from float32 on a CPU.
GPU_TOLERANCE_PARAMETERS = ("gpu_reference_atol", "gpu_reference_rtol")
BUILD_HINT = "run `hybridserve models build`"

# File names a model.py refers to in a string literal, e.g. "model.pt": those must exist next to it.
_LOADED_FILE = re.compile(r"""["']([\w.-]+\.(?:pt|pt2|pth|ts|onnx|plan|safetensors|bin))["']""")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the repository: the file, the config field (or location), and what is wrong."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


@dataclass(frozen=True)
class TensorInfo:
    """An input or output as config.pbtxt declares it; `dims` exclude the batch dimension."""

    name: str
    data_type: str  # Triton's enum name, e.g. "TYPE_FP32"
    dtype: "np.dtype"
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelInfo:
    """One model of the repository."""

    name: str
    path: Path
    backend: str
    versions: tuple[int, ...]  # ascending
    max_batch_size: int
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    atol: float | None  # parameters reference_atol / reference_rtol (None when absent or invalid)
    rtol: float | None

    @property
    def latest_version(self) -> int:
        return self.versions[-1]

    def version_dir(self, version: int | None = None) -> Path:
        """The directory of `version` (default: the latest)."""
        return self.path / str(self.latest_version if version is None else version)


@dataclass(frozen=True)
class RepositoryInfo:
    """The models of a repository, sorted by name."""

    path: Path
    models: tuple[ModelInfo, ...]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def model(self, name: str) -> ModelInfo:
        for m in self.models:
            if m.name == name:
                return m
        raise UserError(f"model {name!r} is not in {display_path(self.path)} (it has: {', '.join(self.names) or 'none'})")


def display_path(path: Path) -> str:
    """Relative to the working directory when below it (so messages read `model_repo/...`), else absolute."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- parsing -------------------------------------------------------------------------------------


def _parse_config(path: Path) -> tuple[Any | None, list[Problem]]:
    """Parse one config.pbtxt with Triton's schema; a syntax error becomes a Problem with line and column."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        # A binary file (a model saved under the wrong name, a corrupted copy): say what the file should be.
        return None, [Problem(shown, "", f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                              "config.pbtxt is Triton's model configuration in protobuf text format")]
    except OSError as exc:
        return None, [Problem(shown, "", f"cannot read: {exc.strerror or exc}")]
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig()), []
    except text_format.ParseError as exc:
        line, column = exc.GetLine(), exc.GetColumn()
        message = re.sub(r"^\d+:\d+ : ", "", str(exc))
        where = f"line {line}, column {column}" if line else "syntax"
        return None, [Problem(shown, where, f"not valid Triton model configuration text: {message}")]


def version_of(dirname: str) -> int | None:
    """The version a directory name stands for, or None: Triton loads only 1, 2, ... (ASCII digits, no leading 0)."""
    # Not str.isdigit(): it accepts "01" (which Triton skips, and which would duplicate version 1) and non-ASCII digits.
    return int(dirname) if re.fullmatch(r"[1-9][0-9]*", dirname) else None


def _version_dirs(model_dir: Path) -> tuple[list[int], list[Path]]:
    """(positive integer versions, other sub-directories); links are not directories here (walk_model refuses them)."""
    from hybridserve.sync.scan import is_ignored

    versions, others = [], []
    for sub in sorted(model_dir.iterdir()):
        if sub.is_symlink() or not sub.is_dir() or is_ignored(sub.name):
            continue
        version = version_of(sub.name)
        if version is not None:
            versions.append(version)
        else:
            others.append(sub)
    return sorted(versions), others


def _tolerance(config: Any, key: str) -> tuple[float | None, str | None]:
    """(value, None) or (None, why it is not a valid tolerance)."""
    if key not in config.parameters:
        example = f'parameters: {{ key: "{key}" value: {{ string_value: "1e-4" }} }}'
        return None, f"missing; the smoke test compares outputs with the reference within it, e.g. {example}"
    raw = config.parameters[key].string_value
    try:
        value = float(raw)
    except ValueError:
        return None, f"{raw!r} is not a number; give a non-negative float such as \"1e-4\""
    if not math.isfinite(value) or value < 0:
        return None, f"{raw!r} is not a non-negative finite float"
    return value, None


def _tensor_infos(tensors: Any) -> tuple[TensorInfo, ...]:
    import numpy as np
    from tritonclient.grpc import model_config_pb2

    from hybridserve.models.definitions import TRITON_TO_NUMPY

    out = []
    for t in tensors:
        type_name = model_config_pb2.DataType.Name(t.data_type)
        dtype = np.dtype(object) if type_name == "TYPE_STRING" else np.dtype(TRITON_TO_NUMPY.get(type_name, "void"))
        out.append(TensorInfo(t.name, type_name, dtype, tuple(int(d) for d in t.dims)))
    return tuple(out)


# --- validation ----------------------------------------------------------------------------------


def validate_repository(repo_dir: Path, *, require_artifacts: bool = True) -> list[Problem]:
    """Every problem of the repository at `repo_dir`, each naming its file and field; [] when valid.

    With `require_artifacts=False` the built, git-ignored files (model.pt, reference.npz) are not
    required, so a fresh checkout validates before `hybridserve models build`.
    """
    from hybridserve.sync.scan import model_dirs, walk_model

    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        return [Problem(display_path(repo_dir), "", _not_a_repository(repo_dir))]
    found = model_dirs(repo_dir)  # the directories the sync uploads as models
    if not found:
        return [Problem(display_path(repo_dir), "", f"no model directories; expected <model>/{CONFIG_FILE} and <model>/1/")]
    problems: list[Problem] = []
    for model_dir in found:
        unsyncable: list[tuple[Path, str]] = []
        for _ in walk_model(model_dir, problems=unsyncable):
            pass
        problems.extend(Problem(display_path(path), "", why) for path, why in unsyncable)
        if model_dir.is_symlink():
            continue
        problems.extend(_check_model(model_dir, require_artifacts, frozenset(path for path, _ in unsyncable)))
    return problems


def _not_a_repository(path: Path) -> str:
    what = "is a file, not a directory" if path.exists() else "does not exist"
    return f"{what}; pass --repo the directory that holds <model>/{CONFIG_FILE} and <model>/1/"


def _check_model(model_dir: Path, require_artifacts: bool, unreadable: frozenset[Path] = frozenset()) -> list[Problem]:
    """The problems of one model; files in `unreadable` (links walk_model refused, already reported) are not read."""
    from tritonclient.grpc import model_config_pb2

    from hybridserve.models.artifacts import default_artifact, did_you_mean, filename_problem, kind_problems
    from hybridserve.publish.render import CLUSTER_BACKEND, CLUSTER_BACKENDS

    config_path = model_dir / CONFIG_FILE
    cfg = display_path(config_path)
    if config_path in unreadable:
        return _check_version_dirs(model_dir)[1]
    if not config_path.is_file():
        return [Problem(cfg, "", "missing; every model directory needs a Triton config.pbtxt")]
    config, problems = _parse_config(config_path)
    if config is None:  # the layout can still be checked; the files each version needs depend on the config
        return problems + _check_version_dirs(model_dir)[1]

    def add(field: str, message: str) -> None:
        problems.append(Problem(cfg, field, message))

    if config.name != model_dir.name:
        got = f'"{config.name}" does not match the directory name' if config.name else "missing"
        add("name", f'{got}; set name: "{model_dir.name}" (Triton requires the directory name)')

    kind, kind_issues = kind_problems(config)
    for field, message in kind_issues:
        add(field, message)
    if not (config.backend or config.platform):
        add("backend", 'missing; the kit\'s models run on Triton\'s Python backend: backend: "python"')
    artifact = None
    if config.default_model_filename:
        why = filename_problem(config.default_model_filename)
        if why:
            add("default_model_filename", why)
        else:
            artifact = config.default_model_filename
    elif kind is not None:
        artifact = default_artifact(kind)
    # The backend the clusters serve the model with (hybridserve.publish.render): checked here, so a misspelt
    # one is found by `models validate`, not by the first publication.
    served_by = kind
    if CLUSTER_BACKEND in config.parameters:
        value = config.parameters[CLUSTER_BACKEND].string_value
        if value in CLUSTER_BACKENDS:
            served_by = value
        else:
            hint = did_you_mean(value, CLUSTER_BACKENDS)
            add(f'parameters["{CLUSTER_BACKEND}"]', f'"{value}" is not a backend the kit renders for GPU nodes; {hint}'
                f"valid: {', '.join(CLUSTER_BACKENDS)} (or remove it to keep the model's own backend)")

    # Batching and instances.
    mbs = config.max_batch_size
    if mbs < 0:
        add("max_batch_size", f"{mbs} is negative; use 0 (no batching) or a positive size")
    if config.HasField("dynamic_batching"):
        if mbs <= 0:
            add("max_batch_size", f"is {mbs} but dynamic_batching is set; set it > 0 (e.g. 64) or remove dynamic_batching")
        for i, size in enumerate(config.dynamic_batching.preferred_batch_size):
            if size <= 0 or (mbs > 0 and size > mbs):
                add(f"dynamic_batching.preferred_batch_size[{i}]", f"{size} is not within 1..max_batch_size ({mbs})")
    for i, group in enumerate(config.instance_group):
        if group.count <= 0:
            add(f"instance_group[{i}].count", f"is {group.count}; set a count > 0 (e.g. count: 1)")

    # Tensors: well-formed, then equal to what the model code produces (a variant's: its base's code).
    from hybridserve.models.variants import parse_variant, spec_for

    for field, message in parse_variant(model_dir.name, config)[1]:
        add(field, message)
    spec = spec_for(model_dir.name, config)
    before_tensors = len(problems)
    for io, tensors, expected in (
        ("input", config.input, spec.inputs if spec else None),
        ("output", config.output, spec.outputs if spec else None),
    ):
        if not tensors:
            add(io, f"no {io} declared")
        seen: set[str] = set()
        for i, t in enumerate(tensors):
            if not t.name:
                add(f"{io}[{i}].name", "missing")
            elif t.name in seen:
                add(f"{io}[{i}].name", f'"{t.name}" is declared twice')
            seen.add(t.name)
            if t.data_type == model_config_pb2.TYPE_INVALID:
                add(f"{io}[{i}].data_type", "missing (e.g. TYPE_FP32)")
            if not t.dims and not t.HasField("reshape"):
                add(f"{io}[{i}].dims", "missing; give the shape without the batch dimension, e.g. dims: [ 10 ]")
            for j, d in enumerate(t.dims):
                if d == 0 or d < -1:
                    add(f"{io}[{i}].dims[{j}]", f"{d} is not a size; use a positive size or -1 (variable)")
        if expected is None:
            continue  # not one of the kit's models: no code to compare with
        by_name = {t.name: (i, t) for i, t in enumerate(tensors)}
        for e in expected:
            if e.name not in by_name:
                add(io, f'the model code has {io} "{e.name}" ({e.data_type}, dims {list(e.dims)}); config.pbtxt lacks it')
                continue
            i, t = by_name[e.name]
            got_type = model_config_pb2.DataType.Name(t.data_type)
            if got_type != e.data_type and t.data_type != model_config_pb2.TYPE_INVALID:
                add(f"{io}[{i}].data_type", f"{got_type} does not match the model code ({e.data_type})")
            if tuple(t.dims) != e.dims and t.dims:
                add(f"{io}[{i}].dims", f"{list(t.dims)} does not match the model code ({list(e.dims)})")
        wanted = sorted(e.name for e in expected)
        for name, (i, _) in by_name.items():
            if name and name not in wanted:
                add(f"{io}[{i}].name", f'"{name}" is not an {io} of the model code (it has: {", ".join(wanted)})')
    # A reference set is only comparable with a config that agrees with the code (a rebuild would not fix it).
    tensors_agree = len(problems) == before_tensors

    for key in TOLERANCE_PARAMETERS:
        _, why = _tolerance(config, key)
        if why:
            add(f'parameters["{key}"]', why)
    for key in GPU_TOLERANCE_PARAMETERS:
        if key in config.parameters:
            _, why = _tolerance(config, key)
            if why:
                add(f'parameters["{key}"]', why)

    # Versions and the files each needs.
    versions, version_problems = _check_version_dirs(model_dir)
    problems.extend(version_problems)
    if config.version_policy.WhichOneof("policy_choice") == "specific":
        for i, v in enumerate(config.version_policy.specific.versions):
            if v not in versions:
                where = display_path(model_dir / str(v))
                add(f"version_policy.specific.versions[{i}]", f"version {v} has no directory {where}/")
    for version in versions:
        problems.extend(
            _check_version_files(
                model_dir / str(version),
                kind,
                artifact,
                spec,
                config,
                check_reference=require_artifacts and tensors_agree,
                require_artifacts=require_artifacts,
                served_by=served_by,
                check_io=tensors_agree,
                unreadable=unreadable,
            )
        )
    return problems


def _check_version_dirs(model_dir: Path) -> tuple[list[int], list[Problem]]:
    versions, others = _version_dirs(model_dir)
    problems = []
    for other in others:
        why = f'"{other.name}" is not a positive integer'
        if other.name.isascii() and other.name.isdigit() and int(other.name) > 0:
            why = f'"{other.name}" has a leading zero, so Triton skips it; rename it to {int(other.name)}'
        problems.append(Problem(display_path(other), "version directory", f"{why}; Triton only loads versions named 1, 2, ..."))
    if not versions:
        where = display_path(model_dir / "1")
        problems.append(Problem(display_path(model_dir), "version directory", f"none; put the model files in {where}/"))
    return versions, problems


def _check_version_files(
    vdir: Path,
    kind: str | None,
    artifact: str | None,
    spec,
    config,
    *,
    check_reference: bool,
    require_artifacts: bool,
    served_by: str | None = None,
    check_io: bool = True,
    unreadable: frozenset[Path] = frozenset(),
) -> list[Problem]:
    """The files of one version directory, each loaded as its backend would load it (with require_artifacts).

    served_by: the backend the clusters serve it with (parameter cluster_backend, else `kind`); "pytorch"
    means model.pt itself must take the config's inputs and return its outputs. check_io False: the config's
    tensors already disagree with the kit's model code, which says more than running the model would.
    """
    from hybridserve.models import artifacts

    if kind is None or artifact is None:
        return []  # the backend itself is the problem (reported): which files it needs is unknown
    problems: list[Problem] = []

    def missing(name: str, loaded_by: str) -> None:
        built = spec is not None and name == spec.artifact  # `models build` makes it
        message = f"missing; {loaded_by} loads it" + (f"; {BUILD_HINT}" if built else "")
        problems.append(Problem(display_path(vdir / name), "artifact", message))

    if vdir / artifact in unreadable:
        return problems  # a refused link, reported by validate_repository
    if not (vdir / artifact).is_file():
        if kind == "python" or require_artifacts:  # model.py is source; other backends' files are built
            missing(artifact, f"the {kind} backend")
        return problems
    torchscript: list[str] = []  # files loaded with torch.jit.load
    if kind == "python":
        shown = display_path(vdir / artifact)
        try:
            source = (vdir / artifact).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [Problem(shown, "artifact", f"cannot read as Python source: {exc}")]
        problems.extend(Problem(shown, field, message) for field, message in artifacts.python_source_problems(source))
        if require_artifacts:
            for name in sorted(set(_LOADED_FILE.findall(source))):
                if vdir / name in unreadable:
                    continue
                if not (vdir / name).is_file():
                    missing(name, artifact)
                elif name.endswith(artifacts.TORCHSCRIPT_SUFFIXES) and artifacts.loads_torchscript(source):
                    torchscript.append(name)
    elif kind == "pytorch":
        torchscript.append(artifact)
    if served_by == "pytorch" and kind == "python":
        # The clusters serve this version's model.pt with the PyTorch backend (render.CLUSTER_BACKENDS).
        if (vdir / "model.pt").is_file() and "model.pt" not in torchscript and vdir / "model.pt" not in unreadable:
            torchscript.append("model.pt")
    if require_artifacts:
        for name in torchscript:
            as_served = kind == "pytorch" or (served_by == "pytorch" and name == "model.pt")
            problems.extend(_check_torchscript(vdir / name, config, as_served=as_served, check_io=check_io))
    if spec is not None and check_reference:
        problems.extend(_check_reference(vdir, config))
    return problems


def _check_torchscript(path: Path, config, *, as_served: bool, check_io: bool) -> list[Problem]:
    """`path` loads as TorchScript; as_served (the PyTorch backend serves it): its forward() maps the config's
    inputs, and run once on inputs as the config declares, it returns the config's outputs."""
    from hybridserve.models import artifacts
    from hybridserve.models.variants import spec_for

    shown = display_path(path)
    module, why = artifacts.load_torchscript(path)
    if module is None:
        spec = spec_for(path.parent.parent.name, config)  # a compressed variant is built too
        built = spec is not None and path.name == spec.artifact
        return [Problem(shown, "artifact", why + (f"; {BUILD_HINT}" if built else ""))]
    if not as_served:
        return []
    config_shown = display_path(path.parent.parent / CONFIG_FILE)
    found = artifacts.libtorch_io_problems(config, module)
    if not found and check_io:
        found = artifacts.io_run_problems(config, module, config_shown=config_shown)
    return [Problem(shown, field, message) for field, message in found]


def _check_reference(vdir: Path, config) -> list[Problem]:
    """reference.npz exists and holds every config tensor with the config's dtype and dims."""
    import numpy as np

    path = vdir / REFERENCE_FILE
    shown = display_path(path)
    if not path.is_file():
        return [Problem(shown, "artifact", f"missing; the smoke test needs it; {BUILD_HINT}")]
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:  # a truncated or foreign file: zipfile, ValueError, OSError...
        return [Problem(shown, "artifact", f"unreadable ({exc}); {BUILD_HINT}")]
    problems: list[Problem] = []
    batched = config.max_batch_size > 0
    batch_sizes = set()
    for prefix, tensors in (("input", config.input), ("output", config.output)):
        for t in _tensor_infos(tensors):
            key = f"{prefix}/{t.name}"
            if key not in arrays:
                problems.append(Problem(shown, key, f"missing; {BUILD_HINT}"))
                continue
            a = arrays[key]
            if a.dtype != t.dtype:
                problems.append(Problem(shown, key, f"dtype {a.dtype} does not match config.pbtxt ({t.data_type}); {BUILD_HINT}"))
            inner = a.shape[1:] if batched else a.shape
            if len(inner) != len(t.dims) or any(d not in (-1, s) for d, s in zip(t.dims, inner)):
                message = f"shape {list(a.shape)} does not match config.pbtxt dims {list(t.dims)}; {BUILD_HINT}"
                problems.append(Problem(shown, key, message))
            if batched and a.ndim:
                batch_sizes.add(a.shape[0])
    if len(batch_sizes) > 1:
        problems.append(Problem(shown, "", f"arrays disagree on the number of samples ({sorted(batch_sizes)}); {BUILD_HINT}"))
    return problems


# --- description ---------------------------------------------------------------------------------


def describe_repository(repo_dir: Path) -> RepositoryInfo:
    """The repository's models as their configs declare them (no artifact checks; see `ensure_valid`).

    Raises UserError when a config cannot be parsed.
    """
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        raise UserError(f"model repository {display_path(repo_dir)}: {_not_a_repository(repo_dir)}")
    models = []
    problems: list[Problem] = []
    for model_dir in sorted(repo_dir.iterdir()):
        if not model_dir.is_dir() or model_dir.name.startswith((".", "__")) or not (model_dir / CONFIG_FILE).is_file():
            continue
        config, parse_problems = _parse_config(model_dir / CONFIG_FILE)
        if config is None:
            problems.extend(parse_problems)
            continue
        versions, _ = _version_dirs(model_dir)
        models.append(
            ModelInfo(
                name=config.name or model_dir.name,
                path=model_dir,
                backend=config.backend or config.platform,
                versions=tuple(versions),
                max_batch_size=config.max_batch_size,
                inputs=_tensor_infos(config.input),
                outputs=_tensor_infos(config.output),
                atol=_tolerance(config, "reference_atol")[0],
                rtol=_tolerance(config, "reference_rtol")[0],
            )
        )
    if problems:
        raise UserError(f"cannot read the model repository {display_path(repo_dir)}", details=[str(p) for p in problems])
    return RepositoryInfo(path=repo_dir, models=tuple(models))


def ensure_valid(repo_dir: Path, *, require_artifacts: bool = True) -> RepositoryInfo:
    """`describe_repository` after `validate_repository` found nothing; else UserError listing every problem (exit 2)."""
    problems = validate_repository(repo_dir, require_artifacts=require_artifacts)
    if problems:
        raise UserError(
            f"the model repository {display_path(Path(repo_dir))} has {len(problems)} problem(s):",
            exit_code=2,
            details=[str(p) for p in problems],
        )
    return describe_repository(repo_dir)


def load_reference(version_dir: Path) -> tuple[dict[str, "np.ndarray"], dict[str, "np.ndarray"]]:
    """(inputs, outputs) of `version_dir/reference.npz`, keyed by Triton tensor name, batch dimension first."""
    path = Path(version_dir) / REFERENCE_FILE
    if not path.is_file():
        raise UserError(f"{display_path(path)} is missing; {BUILD_HINT}")
    try:
        inputs, outputs = read_reference(path)
    except Exception as exc:
        raise UserError(f"{display_path(path)} is unreadable ({exc}); {BUILD_HINT}") from exc
    if not inputs or not outputs:
        raise UserError(f"{display_path(path)} holds no input/<name> or output/<name> arrays; {BUILD_HINT}")
    return inputs, outputs
