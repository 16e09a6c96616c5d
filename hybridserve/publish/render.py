"""Per-target copies of the model repository: the same models, configured for the nodes that serve them.

The local plane runs Triton on CPU with the Python backend, so `model_repo/` holds configs with
`instance_group` KIND_CPU and `backend: "python"` (model.py runs the TorchScript model.pt with torch),
and that is what the local plane proved correct. The clusters run NVIDIA's stock Triton image on GPU
nodes, whose Python has no torch (server issue #5461: the Python backend serves model.py, not its
packages), but whose PyTorch backend runs TorchScript natively. So their copy of each config.pbtxt gets
`instance_group [ { kind: KIND_GPU, count: N } ]` (N instances on each GPU; except a compressed variant
whose kernels are CPU-only, int8-dynamic, which keeps its KIND_CPU instances and CPU tolerances), and a model whose config
says `parameters { key: "cluster_backend" value: { string_value: "pytorch" } }` is served there by the
PyTorch (libtorch) backend from the same model.pt (`backend: "pytorch"`, `default_model_filename`).
Nothing else changes: tensor names, batching, warmup and tolerances stay; every other file (model.py,
model.pt, reference.npz, labels...) is copied byte for byte, so the clusters load exactly the artifacts
the local plane served.

The PyTorch backend finds inputs by the TorchScript forward() argument names, by `<name>__<index>`, or
else by the config's order (triton-inference-server/pytorch_backend, ModelInstanceState::
GetNamingConvention); hybridserve.models.artifacts checks model.pt that way (and runs it once on the
config's inputs), for the source repository and for each rendered copy.

Configs are edited through Triton's protobuf schema (tritonclient's model_config_pb2 and
google.protobuf.text_format, as hybridserve.models.repository parses them). text_format drops comments,
so a GPU copy starts with a fixed header saying where it came from; its bytes depend only on the source
config and the target (maps are printed sorted), so the content digest (digest.py) is stable. A CPU
target's configs are the source bytes, comments and all.

Which files belong to the repository follows the sync (hybridserve/sync/scan.py): every non-hidden
directory directly under the repository is a model; hidden files, `__pycache__` and `*.pyc` never count.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.sync.scan import CONFIG_NAME, model_dirs, walk_model

TARGET_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_INSTANCES_PER_GPU = 16
CLUSTER_BACKEND = "cluster_backend"  # config parameter: the backend GPU targets serve the model with
CLUSTER_BACKENDS = {"pytorch": "model.pt"}  # backend -> the artifact it loads from each version directory


@dataclass(frozen=True)
class Target:
    """Where a copy of the repository runs: `name` ("local", "aws", "openstack", ...), on GPUs or not.

    instances_per_gpu: Triton's instance_group count on a GPU target (model instances on each GPU);
    a CPU target keeps the configs as written, so it must stay 1 there.
    """

    name: str
    gpu: bool
    instances_per_gpu: int = 1
    # GPU targets only: keep each model's own backend (no `cluster_backend` switch). The edge runtime's Triton has
    # the Python backend only (hybridserve.local.triton), so an edge GPU host gets GPU instance groups, not libtorch.
    keep_backend: bool = False

    def __post_init__(self) -> None:
        bad = []
        if not isinstance(self.keep_backend, bool) or (self.keep_backend and not self.gpu):
            bad.append(f"keep_backend {self.keep_backend!r}: true only on a GPU target (a CPU target keeps every config as written)")
        if not isinstance(self.name, str) or not TARGET_NAME.fullmatch(self.name):
            bad.append(f"name {self.name!r}: a lowercase name such as 'local', 'aws' or 'openstack'")
        if not isinstance(self.gpu, bool):
            bad.append(f"gpu {self.gpu!r}: true or false")
        n = self.instances_per_gpu
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_INSTANCES_PER_GPU:
            bad.append(f"instances_per_gpu {n!r}: an integer from 1 to {MAX_INSTANCES_PER_GPU}")
        elif not self.gpu and n != 1:
            bad.append(
                f"instances_per_gpu {n} on CPU target {self.name!r}: only a GPU target (gpu=True) has instances per "
                "GPU; a CPU target serves the configs as written (their instance_group count)"
            )
        if bad:
            raise UserError(f"invalid publication target {self.name!r}:", details=bad)

    @property
    def label(self) -> str:
        return f"{self.name} (GPU, {self.instances_per_gpu} instance(s) per GPU)" if self.gpu else f"{self.name} (CPU)"


@dataclass(frozen=True)
class RenderedRepository:
    """A rendered copy: its directory, the target, every file (relative posix paths) and the configs rewritten."""

    path: Path
    target: Target
    files: tuple[str, ...]
    rewritten: tuple[str, ...]


def _pb():
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format, model_config_pb2


def render_config(source: bytes, rel: str, target: Target) -> bytes:
    """The target's bytes of the config.pbtxt `source`; `rel` ("<model>/config.pbtxt") names it in the header
    and in errors, so the bytes do not depend on where the repository is."""
    if not target.gpu:
        return source
    text_format, model_config_pb2 = _pb()
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(source.decode("utf-8"), config)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise UserError(f"{rel}: not a valid Triton model configuration ({exc}); run `hybridserve models validate`") from None
    cpu_only = cpu_only_method(config)
    if cpu_only is None:
        config.ClearField("instance_group")
        group = config.instance_group.add()
        group.kind = model_config_pb2.ModelInstanceGroup.KIND_GPU
        group.count = target.instances_per_gpu
        for gpu_key in ("gpu_reference_atol", "gpu_reference_rtol"):
            if gpu_key in config.parameters:  # the smoke gate reads reference_* from the served config
                config.parameters[gpu_key.removeprefix("gpu_")].string_value = config.parameters[gpu_key].string_value
    else:
        # A compressed variant whose TorchScript has no CUDA kernels (hybridserve.models.variants): served by
        # CPU instances of the GPU node, as the local plane proved it (instance_group and tolerances as written).
        groups = model_config_pb2.ModelInstanceGroup.Kind
        for i, g in enumerate(config.instance_group):
            if g.kind != model_config_pb2.ModelInstanceGroup.KIND_CPU:
                raise UserError(
                    f"{rel}: instance_group[{i}].kind: {groups.Name(g.kind)}, but this model is a {cpu_only} variant, "
                    "whose quantized kernels run on CPU only; write KIND_CPU (the GPU copy keeps it)"
                )
    backend = None if target.keep_backend else cluster_backend(config, rel)
    switched = ""
    if backend is not None:
        config.backend = backend
        config.ClearField("platform")
        config.default_model_filename = CLUSTER_BACKENDS[backend]
        switched = f"backend {backend} (parameter {CLUSTER_BACKEND}) on {CLUSTER_BACKENDS[backend]}; "
    groups = (f"instance_group is KIND_GPU, count {target.instances_per_gpu} per GPU" if cpu_only is None else
              f"instance_group stays KIND_CPU ({cpu_only} runs on CPU only)")
    header = (
        f"# {rel} rendered by hybridserve.publish for GPU nodes: {switched}{groups};\n"
        "# everything else as in the source (its comments dropped).\n"
    )
    return (header + text_format.MessageToString(config)).encode("utf-8")


def cpu_only_method(config) -> str | None:
    """The compression method when the config is a variant that runs on CPU only (variants.CPU_ONLY_METHODS), else None."""
    from hybridserve.models.variants import CPU_ONLY_METHODS, METHOD, is_variant

    if is_variant(config) and METHOD in config.parameters:
        method = config.parameters[METHOD].string_value
        return method if method in CPU_ONLY_METHODS else None
    return None


def cluster_backend(config, rel: str) -> str | None:
    """The backend a GPU target serves this model with (parameter cluster_backend), or None: as written."""
    if CLUSTER_BACKEND not in config.parameters:
        return None
    value = config.parameters[CLUSTER_BACKEND].string_value
    if value not in CLUSTER_BACKENDS:
        raise UserError(
            f'{rel}: parameters["{CLUSTER_BACKEND}"]: {value!r} is not a backend the kit renders for GPU nodes; '
            f"valid: {', '.join(CLUSTER_BACKENDS)} (or remove it to keep the model's own backend)"
        )
    return value


def libtorch_io_problems(config, model_pt: Path, shown: str) -> list[str]:
    """How the PyTorch backend would map the config's inputs onto model.pt's forward(); [] when it can.

    hybridserve.models.artifacts has the rule (validate_repository applies it to every model the PyTorch
    backend serves, so to each rendered GPU copy); this names `shown` in each problem.
    """
    from hybridserve.models import artifacts

    module, why = artifacts.load_torchscript(model_pt)
    if module is None:
        return [f"{shown}: {model_pt.name} {why}; the PyTorch backend could not serve it"]
    return [f"{shown}: {field}: {message}" for field, message in artifacts.libtorch_io_problems(config, module)]


def target_problems(repo_dir: Path, target: Target, *, shown_as: str | None = None) -> list[str]:
    """The target rule on the configs of `repo_dir`: on a GPU target every instance_group is KIND_GPU, on a
    CPU target none is. Each problem names the file (under `shown_as` when given) and the field."""
    text_format, model_config_pb2 = _pb()
    kinds = model_config_pb2.ModelInstanceGroup.Kind
    gpu = model_config_pb2.ModelInstanceGroup.KIND_GPU
    root = shown_as or str(repo_dir)
    problems = []
    for model_dir in model_dirs(repo_dir):
        path = model_dir / CONFIG_NAME
        if not path.is_file():
            continue
        config = model_config_pb2.ModelConfig()
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), config)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            problems.append(f"{root}/{model_dir.name}/{CONFIG_NAME}: not a valid Triton model configuration ({exc})")
            continue
        shown = f"{root}/{model_dir.name}/{CONFIG_NAME}"
        # model.pt against the config (PyTorch backend naming, inputs and outputs): validate_repository.
        if target.gpu and not config.instance_group:
            problems.append(f"{shown}: instance_group: missing on GPU target {target.name!r}; it must be KIND_GPU")
        cpu_only = cpu_only_method(config)
        for i, g in enumerate(config.instance_group):
            if target.gpu and cpu_only is not None:
                if g.kind != model_config_pb2.ModelInstanceGroup.KIND_CPU:
                    problems.append(
                        f"{shown}: instance_group[{i}].kind: {kinds.Name(g.kind)} on GPU target {target.name!r}; this "
                        f"{cpu_only} variant has CPU kernels only, so it must stay KIND_CPU"
                    )
            elif target.gpu and g.kind != gpu:
                problems.append(
                    f"{shown}: instance_group[{i}].kind: {kinds.Name(g.kind)} on GPU target {target.name!r}; "
                    "every instance group must be KIND_GPU there"
                )
            if not target.gpu and g.kind == gpu:
                problems.append(
                    f"{shown}: instance_group[{i}].kind: KIND_GPU on CPU target {target.name!r}, which has no GPU; "
                    "write KIND_CPU in model_repo/ (the clusters' copies are rendered with KIND_GPU)"
                )
    return problems


def check_source(repo_dir: Path, target: Target, *, require_artifacts: bool = False) -> None:
    """UserError listing every problem of the source repository, for `target` (configs as rendered for it)."""
    from hybridserve.models.repository import display_path, validate_repository

    repo_dir = Path(repo_dir)
    problems = [str(p) for p in validate_repository(repo_dir, require_artifacts=require_artifacts)]
    if not problems and not target.gpu:
        problems = target_problems(repo_dir, target, shown_as=display_path(repo_dir))
    if problems:
        raise UserError(
            f"the model repository {display_path(repo_dir)} cannot be published to {target.label}: "
            f"{len(problems)} problem(s):",
            details=problems,
        )


def render_repository(repo_dir: Path, out_dir: Path, target: Target, *, require_artifacts: bool = True) -> RenderedRepository:
    """Write `target`'s copy of the repository at `repo_dir` into `out_dir` (new or empty), then validate it.

    Validation: hybridserve.models.repository.validate_repository on the copy (with `require_artifacts`,
    the built model.pt and reference.npz must be there) and the target rule (target_problems). A problem
    names the source file and field; UserError lists them all.
    """
    from hybridserve.models.repository import display_path, validate_repository

    repo_dir, out_dir = Path(repo_dir), Path(out_dir)
    check_source(repo_dir, target)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"cannot render into {out_dir}: it exists and is not an empty directory")
    out_dir.mkdir(parents=True, exist_ok=True)

    files: list[str] = []
    rewritten: list[str] = []
    for model_dir in model_dirs(repo_dir):
        for path in walk_model(model_dir):
            rel = path.relative_to(repo_dir).as_posix()
            dest = out_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if rel == f"{model_dir.name}/{CONFIG_NAME}":
                source = path.read_bytes()
                rendered = render_config(source, rel, target)
                dest.write_bytes(rendered)
                if rendered != source:
                    rewritten.append(rel)
            else:
                shutil.copyfile(path, dest)  # the bytes only: what the local plane served
            files.append(rel)

    shown = f"{display_path(repo_dir)} (rendered for {target.name})"
    problems = [
        str(p).replace(display_path(out_dir), shown, 1)
        for p in validate_repository(out_dir, require_artifacts=require_artifacts)
    ]
    problems += target_problems(out_dir, target, shown_as=shown)
    if problems:
        raise UserError(f"the copy of {display_path(repo_dir)} for {target.label} is not valid:", details=problems)
    return RenderedRepository(path=out_dir, target=target, files=tuple(files), rewritten=tuple(rewritten))
