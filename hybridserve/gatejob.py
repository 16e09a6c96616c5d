"""The smoke gate as an in-cluster Job: the files it mounts and its command line. No Pulumi here.

The Job runs a stock image (the Triton SDK image of the serving release: python3, numpy, tritonclient)
with the gate's own code and the reference sets mounted from one ConfigMap at `GATE_DIR`:

    /gate/smoke_tests/*.py                      the gate (it imports nothing of the kit)
    /gate/agreement.py                          old against new on the same inputs (hybridserve/gateagreement.py)
    /gate/model_repo/<model>/config.pbtxt       the served config (tensor names, tolerances)
    /gate/model_repo/<model>/<v>/reference.npz  inputs and expected outputs from `hybridserve models build`

Its command line is relative to that directory (the container's workingDir), so a test can lay the
same files out anywhere and run the very same command (tests/test_triton_service.py does, against
the local plane). `configmap_payload` turns the files into ConfigMap `data` / `binaryData` plus the
volume `items` that put each key back at its path (ConfigMap keys cannot hold '/').
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from hybridserve.errors import UserError

GATE_DIR = "/gate"
GATE_REPO = "model_repo"
URL_ENV = "HYBRIDSERVE_TRITON_URL"  # the gate's --url default (smoke_tests CLI)
METRICS_URL_ENV = "HYBRIDSERVE_TRITON_METRICS_URL"  # its --metrics-url default
# Kubernetes keeps a ConfigMap in etcd: 1 MiB in all; leave room for the object's metadata.
CONFIGMAP_BUDGET = 900 * 1024
_GATE_FILES = ("*.py", "report.schema.json")
AGREEMENT_FILE = "agreement.py"  # the candidate gate's agreement step, run as a script from GATE_DIR


def _smoke_tests_dir() -> Path:
    import smoke_tests

    return Path(smoke_tests.__file__).resolve().parent


def gate_code() -> dict[str, bytes]:
    """The smoke_tests package as files (relative paths under GATE_DIR), sorted."""
    root = _smoke_tests_dir()
    files: dict[str, bytes] = {}
    for pattern in _GATE_FILES:
        for path in root.glob(pattern):
            files[f"smoke_tests/{path.name}"] = path.read_bytes()
    return dict(sorted(files.items()))


def _reference_versions(model_dir: Path) -> list[Path]:
    return sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / "reference.npz").is_file()), key=lambda p: int(p.name))


def gate_files(repo_dir: Path, models: Iterable[str], config_of: Callable[[str], bytes]) -> dict[str, bytes]:
    """Every file the gate's Job mounts: its code, and per model the served config and the reference sets.

    config_of(model): the config.pbtxt bytes the site serves (the target rendering). A model without
    any reference.npz is a UserError: the gate could not check its outputs (`hybridserve models build`).
    """
    files = gate_code()
    files[AGREEMENT_FILE] = Path(__file__).with_name("gateagreement.py").read_bytes()
    missing = []
    for model in models:
        model_dir = Path(repo_dir) / model
        versions = _reference_versions(model_dir) if model_dir.is_dir() else []
        if not versions:
            missing.append(model)
            continue
        files[f"{GATE_REPO}/{model}/config.pbtxt"] = config_of(model)
        for vdir in versions:
            files[f"{GATE_REPO}/{model}/{vdir.name}/reference.npz"] = (vdir / "reference.npz").read_bytes()
    if missing:
        raise UserError(
            f"the smoke gate needs the reference sets of {', '.join(missing)} in {repo_dir}; run `hybridserve models build`"
        )
    return files


def _key(path: str) -> str:
    return path.replace("/", "__")


def configmap_payload(files: Mapping[str, bytes]) -> tuple[dict[str, str], dict[str, str], list[dict[str, str]]]:
    """(data, binaryData, volume items) of a ConfigMap holding `files`; UserError when it exceeds the budget."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    items: list[dict[str, str]] = []
    size = 0
    for path, content in sorted(files.items()):
        key = _key(path)
        try:
            data[key] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[key] = base64.b64encode(content).decode()
        size += len(content)
        items.append({"key": key, "path": path})
    if size > CONFIGMAP_BUDGET:
        raise UserError(
            f"the smoke gate's files are {size / 1024:.0f} KiB, more than a ConfigMap holds ({CONFIGMAP_BUDGET // 1024} KiB); "
            "reduce the reference sets (hybridserve.models.build.N_REFERENCE_SAMPLES) or the models the gate checks"
        )
    return data, binary, items


def files_digest(files: Mapping[str, bytes]) -> str:
    h = hashlib.sha256()
    for path, content in sorted(files.items()):
        h.update(path.encode() + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()


def gate_command(spec: Mapping, *, profile: str, max_concurrency: int, client_processes: int,
                 window_s: float | None = None) -> list[str]:
    """The Job's command line, relative to GATE_DIR; the endpoints come from URL_ENV and METRICS_URL_ENV (the Job sets them).
    window_s: the measurement window (seconds), None for the profile's."""
    command = [
        "python3", "-m", "smoke_tests",
        "--model-repo", GATE_REPO,
        "--slos", json.dumps(spec, sort_keys=True, separators=(",", ":")),
        "--profile", profile,
        "--max-concurrency", str(max_concurrency),
        "--client-processes", str(client_processes),
        "--json", "-",  # the report as one marked line after the human one: `kubectl logs` keeps both
    ]
    if window_s is not None:  # only when set: the Jobs of stacks without it keep their command (and name)
        command += ["--window", f"{window_s:g}"]
    return command


def agreement_command(wait_s: float) -> list[str]:
    """The candidate gate's agreement step, relative to GATE_DIR; the two servers come from
    hybridserve.gateagreement.CANDIDATE_ENV and SERVED_ENV (the Job sets them)."""
    return ["python3", AGREEMENT_FILE, "--model-repo", GATE_REPO, "--wait-s", f"{wait_s:g}"]
