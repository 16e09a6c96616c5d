"""The local serving plane: SeaweedFS (encrypted, versioned bucket) -> sync -> tritonserver -> smoke test.

`run_plane()` does one `hybridserve local up`: every phase is timed and reported on a rich console, every
server is stopped in `finally` (also on Ctrl-C and SIGTERM) unless `keep=True` and the plane came up.

While servers run, `<state_dir>/plane.json` records their process ids and endpoints, so `local down` can
stop a kept plane (or one whose `up` was killed) and `local status` can show it. The record never holds the
S3 secret key: that stays in the 0600 identity file next to it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hybridserve.console import make_console
from hybridserve.errors import UserError
from hybridserve.local.process import read_since, signals_deferred
from hybridserve.sync.scan import HASH_CACHE_NAME  # the sync's sha256 cache in the state dir, as `hybridserve sync` keeps it
from smoke_tests.errors import GateError

RECORD_NAME = "plane.json"
DEFAULT_BUCKET = "hybridserve-models"
DEFAULT_PREFIX = "models"


# --------------------------------------------------------------------------------------------- options / results


@dataclass
class PlaneOptions:
    state_dir: Path
    repo_dir: Path
    bucket: str = DEFAULT_BUCKET
    prefix: str = DEFAULT_PREFIX
    keep: bool = False
    smoke: bool = True
    smoke_profile: str = "quick"  # smoke_tests.PROFILES: "quick" keeps the demo well under 3 minutes
    smoke_window: float | None = None  # the profile's measurement window replaced (seconds), as `smoke --window`
    startup_timeout: float = 180.0
    # The smoke gate's SLO flags, as `hybridserve smoke` takes them ([MODEL=]N[@CONCURRENCY]).
    min_throughput: tuple[str, ...] = ()
    max_p99_ms: tuple[str, ...] = ()
    max_error_rate: tuple[str, ...] = ()
    variants: bool = False  # also serve the compressed variants (default: the base models; each site chooses its own)


@dataclass
class ModelCheck:
    """One model's line in the result table."""

    name: str
    ready: bool
    correct: bool | None = None  # None: not checked
    throughput: float | None = None  # peak inferences per second
    # The highest stable throughput before saturation or the p99 limit, and its concurrency (smoke_tests'
    # Capacity); capacity_found False: throughput still grew at the last level, a lower bound.
    capacity: float | None = None
    capacity_concurrency: int | None = None
    capacity_found: bool = False
    detail: str = ""


@dataclass
class PlaneResult:
    endpoints: dict[str, str]
    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    smoke_ran: bool = False
    passed: bool = True
    models: list[ModelCheck] = field(default_factory=list)
    smoke_rendering: Any = None  # the smoke library's report (rich-renderable), when it ran
    smoke_report_path: Path | None = None
    kept: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    failure: str | None = None  # a phase that ran but did not pass (the smoke gate): what to tell the user


# --------------------------------------------------------------------------------------------- the record


def record_path(state_dir: Path) -> Path:
    return Path(state_dir) / RECORD_NAME


def check_state_dir(state_dir: Path) -> None:
    """UserError unless `state_dir` is a directory or does not exist yet (`local up` creates it)."""
    state_dir = Path(state_dir)
    if state_dir.exists() and not state_dir.is_dir():
        raise UserError(
            f"--state-dir {state_dir}: is a file, not a directory. Pass a directory for the plane's data, keys, "
            "logs and plane.json (created if missing), or omit it for <repo>/.state.",
            exit_code=2,
        )


def read_record(state_dir: Path) -> dict[str, Any] | None:
    check_state_dir(state_dir)
    path = record_path(state_dir)
    fix = "If no plane is running, delete it; otherwise stop the processes it names by hand."
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, but it should be the plane's record (a JSON file). Remove it.") from None
    except ValueError:  # also a UnicodeDecodeError
        raise UserError(f"{path} is not valid JSON. {fix}") from None
    # Someone's edit, or another tool's file: never KeyError on it, and never signal what it would make us guess.
    processes = record.get("processes", []) if isinstance(record, dict) else None
    if not isinstance(processes, list) or not all(
        isinstance(p, dict)
        and isinstance(p.get("name"), str)
        and isinstance(p.get("match"), str)
        and all(isinstance(p.get(k), int) and not isinstance(p.get(k), bool) and p.get(k) > 0 for k in ("pid", "pgid"))
        for p in processes
    ):
        raise UserError(
            f"{path} is not a local plane record: expected a JSON object whose \"processes\" list holds "
            f"{{\"name\", \"pid\", \"pgid\", \"match\"}} entries. {fix}"
        )
    return record


def _write_record(state_dir: Path, record: dict[str, Any]) -> None:
    path = record_path(state_dir)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, path)  # atomic: `down` never reads half a record


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a process from /proc, None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces and parentheses
    return fields[0], int(fields[2])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def group_members(pgid: int, match: str) -> list[int]:
    """Live (not zombie) processes in group `pgid` whose command line contains `match`.

    Matching the command line guards against a recycled process id: we only ever signal our own servers.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        st = _proc_stat(int(entry.name))
        if st and st[1] == pgid and st[0] != "Z" and match in _cmdline(int(entry.name)):
            members.append(int(entry.name))
    return members


def recorded_alive(record: dict[str, Any]) -> dict[str, list[int]]:
    """Recorded process name -> pids of its group still running."""
    alive = {}
    for proc in record.get("processes", []):
        pids = group_members(proc["pgid"], proc["match"])
        if pids:
            alive[proc["name"]] = pids
    return alive


def stop_recorded(state_dir: Path, *, term_wait: float | None = None) -> list[str]:
    """Stop every recorded process group (SIGTERM, bounded wait, SIGKILL) and delete the record.

    The wait is the record's per-process `term_wait` (weed never honours SIGTERM in time, tritonserver
    does), or `term_wait` when given.

    Returns one line per process for the user. No record: nothing to do, empty list.
    """
    record = read_record(state_dir)
    if record is None:
        return []
    lines = []
    # Triton first: it reads from the store, so the store goes last.
    for proc in reversed(record.get("processes", [])):
        pgid, match = proc["pgid"], proc["match"]
        if not group_members(pgid, match):
            lines.append(f"{proc['name']} (pid {proc['pid']}): not running")
            continue
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + (term_wait if term_wait is not None else proc.get("term_wait", 10))
        while time.monotonic() < deadline and group_members(pgid, match):
            time.sleep(0.2)
        how = "stopped"
        if group_members(pgid, match):
            _signal_group(pgid, signal.SIGKILL)  # weed ignores SIGTERM for over a minute
            how = "killed after SIGTERM timed out"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and group_members(pgid, match):
                time.sleep(0.2)
        left = group_members(pgid, match)
        lines.append(f"{proc['name']} (pid {proc['pid']}): " + (how if not left else f"STILL RUNNING: pids {left}"))
        if left:
            raise UserError(f"could not stop {proc['name']} (pids {left}); record kept in {record_path(state_dir)}", exit_code=3)
    record_path(state_dir).unlink(missing_ok=True)
    return lines


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------- phases


LOG_TAIL_LINES = 20


@dataclass
class _Logs:
    """The plane's server logs and where this run's lines start in them (the files are kept across runs)."""

    paths: dict[str, Path]
    offsets: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, path in self.paths.items():
            self.offsets[name] = path.stat().st_size if path.exists() else 0

    def tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        path = self.paths[name]
        text = read_since(path, self.offsets[name]).splitlines()[-lines:]
        return f"Last log lines ({path}):\n" + ("\n".join(text) if text else "(nothing logged by this run)")


def _phase_error(title: str, exc: BaseException, log_tail: str | None) -> UserError:
    """What `local up` says when a phase fails: the phase, the reason, the log that explains it."""
    if isinstance(exc, GateError):
        message, code, details = exc.message, exc.exit_code, exc.details
    else:  # not a mistake we foresaw: still no traceback, but the exception's type says what broke
        message, code, details = f"{type(exc).__name__}: {exc}", 3, []
    message = f"local up failed in phase '{title}': {message}"
    if log_tail and "Last log lines" not in message:  # the servers' own errors already carry their log
        message += "\n" + log_tail
    return UserError(message, exit_code=code, details=details)


@contextmanager
def _phase(console: Console, title: str, timings: dict[str, float], *, spinner: bool = True,
           log_tail=None) -> Iterator[dict]:
    """Time one phase; a spinner while it runs, then one line: ok/failed, detail, elapsed seconds.

    Phases that draw their own progress bars (build, sync) run without the spinner: rich allows one live
    display at a time. An error leaves as a UserError naming the phase, with `log_tail()` (the log of the
    server the phase talks to) when the error does not carry one. A phase that ran but did not pass sets
    `note["failed"]`.
    """
    note: dict[str, Any] = {"detail": "", "failed": False}
    start = time.monotonic()
    mark = "[red]failed[/]"
    try:
        if spinner and console.is_terminal:
            with console.status(f"{title} ..."):
                yield note
        else:
            console.print(f"  ... {title}", highlight=False)
            yield note
        mark = "[red]failed[/]" if note["failed"] else "[green]ok[/]"
    except KeyboardInterrupt:
        mark = "[yellow]interrupted[/]"
        raise
    except Exception as exc:
        raise _phase_error(title, exc, log_tail() if log_tail else None) from (None if isinstance(exc, GateError) else exc)
    finally:
        elapsed = time.monotonic() - start
        timings[title] = elapsed
        detail = f": {note['detail']}" if note["detail"] else ""
        console.print(f"  {mark} {title}{detail} [dim]({elapsed:.1f} s)[/]", highlight=False)


def _ensure_built(repo_dir: Path, console: Console, state_dir: Path):
    """Build the artifacts only when missing or stale (build_models decides), then validate, unless these very
    bytes validated before (see `_validate_once`).

    Returns (RepositoryInfo, number of models rebuilt, whether the validation was skipped).
    """
    from hybridserve.models.build import build_models

    results = build_models(repo_dir, force=False, progress=console.is_terminal)
    info, skipped = _validate_once(repo_dir, state_dir)
    if not info.names:
        raise UserError(f"{repo_dir} holds no models; expected <model>/config.pbtxt directories.")
    return info, sum(1 for r in results if r.built), skipped


def _validate_once(repo_dir: Path, state_dir: Path):
    """The models module's validation (it loads and runs every artifact: torch's import alone takes seconds),
    skipped when the state dir's record says this content passed before: an earlier `local up`, `hybridserve
    sync` or `hybridserve models validate` with the same state dir (hybridserve/sync/validated.py; the digest
    covers every file's bytes and the validator's own source). Returns (RepositoryInfo, skipped)."""
    from hybridserve.models.repository import describe_repository, ensure_valid
    from hybridserve.sync.scan import scan_repository
    from hybridserve.sync.validated import content_digest, is_recorded, record, record_path, tree_fingerprint

    records = record_path(state_dir)
    before = tree_fingerprint(repo_dir)
    try:
        # The hash cache the sync uses next: its scan of the same files then reads nothing again.
        digest = content_digest(repo_dir, scan_repository(repo_dir, hash_cache=state_dir / HASH_CACHE_NAME))
    except (UserError, OSError):
        digest = None  # something the sync refuses or cannot read: the validation names it
    if digest is not None and is_recorded(records, digest):
        return describe_repository(repo_dir), True
    info = ensure_valid(repo_dir)
    if digest is not None and tree_fingerprint(repo_dir) == before:  # what was hashed is what validated
        record(records, digest)
    return info, False


def _sync(repo_dir: Path, endpoint, bucket: str, prefix: str, *, show_progress: bool, hash_cache: Path):
    from hybridserve.sync import SyncTarget, sync_repository

    target = SyncTarget(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint.url,
        region=endpoint.region,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        sse="AES256",  # SSE-S3 under the store's KEK; SSE-KMS would need an external KMS
    )
    # The hash cache lets a second run skip re-hashing unchanged files.
    # Validated by _ensure_built moments ago: not again (it loads and runs every artifact).
    return sync_repository(repo_dir, target, show_progress=show_progress, hash_cache=hash_cache, validated=True)


def run_plane(options: PlaneOptions, console: Console | None = None) -> PlaneResult:
    """One `local up`. Raises UserError on any setup failure (after stopping what it started)."""
    from hybridserve.local.objectstore import WEED_TERM_WAIT_S, SeaweedFS, ensure_bucket
    from hybridserve.local.triton import TritonServer

    console = console or make_console()
    state_dir = Path(options.state_dir).resolve()
    repo_dir = Path(options.repo_dir).resolve()
    options = replace(options, state_dir=state_dir, repo_dir=repo_dir)
    check_options(options)  # every flag checked before a server starts
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = state_dir / "logs"
    _refuse_if_running(state_dir)
    server_logs = _Logs({"weed": logs / "weed.log", "tritonserver": logs / "tritonserver.log"})
    weed_tail, triton_tail = (lambda: server_logs.tail("weed")), (lambda: server_logs.tail("tritonserver"))

    timings: dict[str, float] = {}
    t0 = time.monotonic()
    store = SeaweedFS(
        state_dir / "objectstore",
        kek_path=state_dir / "objectstore.kek",
        identity_path=state_dir / "objectstore.s3.json",
        log_path=logs / "weed.log",
    )
    triton = None
    record: dict[str, Any] = {
        "format": 1,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "up_pid": os.getpid(),
        "kept": False,
        "state_dir": str(state_dir),
        "processes": [],
        "logs": {"weed": str(logs / "weed.log"), "tritonserver": str(logs / "tritonserver.log")},
    }
    keep_running = False
    try:
        with _phase(console, "object store", timings, log_tail=weed_tail) as note:
            store.start()
            ep = store.endpoint
            record["processes"].append({"name": "weed server", "pid": store.pid, "pgid": store.pid, "match": "weed",
                                        "term_wait": WEED_TERM_WAIT_S})
            record["s3"] = {"url": ep.url, "region": ep.region, "access_key": ep.access_key,
                            "identity_file": str(store.identity_path)}
            _write_record(state_dir, record)
            note["detail"] = f"SeaweedFS at {ep.url}, data in {store.data_dir}"

        with _phase(console, "bucket", timings, log_tail=weed_tail) as note:
            summary = ensure_bucket(ep, options.bucket, sse="AES256")
            record["s3"].update(bucket=options.bucket, prefix=options.prefix)
            _write_record(state_dir, record)
            note["detail"] = (
                f"{'created' if summary.created else 'found'} {options.bucket}: versioning {summary.versioning}, "
                f"default encryption {summary.encryption} (SSE-S3), public access block: {summary.public_access_block}"
            )

        with _phase(console, "build + validate models", timings, spinner=False) as note:
            info, rebuilt, skipped = _ensure_built(repo_dir, console, state_dir)
            from hybridserve.models.variants import base_models

            models = info.names if options.variants else base_models(repo_dir, info.names)
            valid = "validated before, unchanged" if skipped else "valid"
            note["detail"] = f"{', '.join(models)} ({f'{rebuilt} built' if rebuilt else 'already built'}, {valid})"

        with _phase(console, "sync", timings, spinner=False, log_tail=weed_tail) as note:
            report = _sync(
                repo_dir, ep, options.bucket, options.prefix,
                show_progress=console.is_terminal, hash_cache=state_dir / HASH_CACHE_NAME,
            )
            uploaded, skipped = len(report.uploaded), len(report.skipped)
            if uploaded:
                note["detail"] = f"uploaded {uploaded} objects ({report.bytes_uploaded / 1e6:.1f} MB), {skipped} unchanged"
            else:
                note["detail"] = f"models already in the store: nothing to upload ({skipped} objects unchanged)"

        uri = ep.triton_uri(options.bucket, options.prefix)
        with _phase(console, "tritonserver", timings, log_tail=triton_tail) as note:
            triton = TritonServer(
                uri,
                models,
                log_path=logs / "tritonserver.log",
                env=_credentials_env(ep, state_dir),
                work_dir=state_dir / "triton",
                startup_timeout=options.startup_timeout,
            )
            triton.start()
            tpid = triton.pid
            record["processes"].append({"name": "tritonserver", "pid": tpid, "pgid": tpid, "match": "triton", "term_wait": 15})
            record["triton"] = {
                "http": triton.http_url,
                "grpc": triton.grpc_url,
                "metrics": triton.metrics_url,
                "model_repository": uri,
            }
            _write_record(state_dir, record)
            note["detail"] = f"{len(models)} models ready, loaded from {uri}"

        result = PlaneResult(
            endpoints=endpoints_of(record),
            uploaded=uploaded,
            skipped=skipped,
            bytes_uploaded=report.bytes_uploaded,
        )
        result.timings = timings
        if options.smoke:
            _run_smoke(console, triton, options, models, result, timings, triton_tail)
        keep_running = options.keep
        timings["total"] = time.monotonic() - t0
        if keep_running:
            record["kept"] = True
            _write_record(state_dir, record)
            for proc in (store.process, triton.process):
                if proc is not None:
                    proc.detach()
            result.kept = True
        return result
    finally:
        if not keep_running:
            # Triton first (it reads from the store), then the store; both bounded, SIGKILL at the end.
            # A second Ctrl-C waits until this is done: cut short, it left weed running and plane.json behind.
            with signals_deferred() as held:
                t_stop = time.monotonic()
                console.print("  ... stopping the servers", highlight=False)
                if triton is not None:
                    triton.stop()
                store.stop()
                record_path(state_dir).unlink(missing_ok=True)
                console.print(f"  [green]ok[/] all servers stopped [dim]({time.monotonic() - t_stop:.1f} s)[/]", highlight=False)
                if held:
                    console.print("  (an interrupt during the stop was held until the servers were stopped)", highlight=False)


_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_options(options: PlaneOptions) -> None:
    """UserError naming each `local up` flag that cannot work; nothing is started or written before this passes."""
    from hybridserve.models.repository import display_path, validate_repository
    from hybridserve.sync.engine import SyncTarget, check_target
    from smoke_tests.options import PROFILES

    check_state_dir(options.state_dir)
    bad = []
    if not _BUCKET_NAME.fullmatch(options.bucket) or ".." in options.bucket:
        # The plane creates this bucket, so it gets the S3 naming rules rather than whatever the store tolerates.
        bad.append(f"--bucket {options.bucket!r}: 3-63 characters: lowercase letters, digits, '.' and '-', "
                   "starting and ending with a letter or digit (e.g. hybridserve-models)")
    try:
        check_target(SyncTarget(bucket="placeholder", prefix=options.prefix, endpoint_url="http://127.0.0.1:8333", sse="AES256"))
    except UserError as exc:
        bad.extend(d.replace("prefix (--prefix)", "--prefix") for d in exc.details)
    if options.smoke and options.smoke_profile not in PROFILES:
        bad.append(f"--smoke-profile {options.smoke_profile!r}: expected one of {', '.join(PROFILES)}")
    if options.smoke_window is not None and not options.smoke_window > 0:  # also NaN
        bad.append(f"--smoke-window {options.smoke_window:g}: the measurement window must be above 0 seconds (e.g. 1)")
    try:
        _slos(options)
    except GateError as exc:
        bad.append(exc.message)
    if bad:
        raise UserError("cannot start the local plane:", exit_code=2, details=bad)
    repo_dir = Path(options.repo_dir)
    if not repo_dir.is_dir():
        what = "is a file, not a directory" if repo_dir.exists() else "no such directory"
        raise UserError(f"--repo {repo_dir}: {what}; expected a Triton model repository (model_repo/).")
    # The layout and configs now; the built artifacts are checked (and built) once the store runs.
    problems = validate_repository(repo_dir, require_artifacts=False)
    if problems:
        raise UserError(
            f"--repo {display_path(repo_dir)}: the model repository has {len(problems)} problem(s):",
            exit_code=2,
            details=[str(p) for p in problems],
        )


def _slos(options: PlaneOptions):
    from smoke_tests.options import parse_slo_flags

    return parse_slo_flags(options.min_throughput, options.max_p99_ms, options.max_error_rate)


def _smoke_profile(options: PlaneOptions):
    from smoke_tests.options import PROFILES

    profile = PROFILES[options.smoke_profile]
    return profile if options.smoke_window is None else profile.with_window(options.smoke_window)


def _run_smoke(console, triton, options: PlaneOptions, models, result: PlaneResult, timings, log_tail) -> None:
    from smoke_tests import run_smoke

    with _phase(console, "smoke test", timings, spinner=False, log_tail=log_tail) as note:
        report_path = Path(options.state_dir) / "smoke-report.json"
        report = run_smoke(
            console=console,
            show_progress=console.is_terminal,
            grpc_url=triton.grpc_url,
            metrics_url=triton.metrics_url,  # lets the gate use Triton's host-CPU figure as a saturation signal
            repo_dir=options.repo_dir,
            models=models,
            profile=_smoke_profile(options),
            wait_ready_s=30,
            json_path=report_path,
            slos=_slos(options),
        )
        result.passed = bool(report.passed)
        result.smoke_rendering = report
        result.smoke_report_path = report_path
        result.models = [
            ModelCheck(
                name=m.name,
                ready=m.ready,
                correct=m.correct,
                throughput=m.throughput,
                capacity=m.capacity.throughput if m.capacity else None,
                capacity_concurrency=m.capacity.concurrency if m.capacity else None,
                capacity_found=bool(m.capacity and m.capacity.found),
                detail="; ".join(v.message for v in m.violations) or ("PASS" if m.passed else "FAIL"),
            )
            for m in report.models
        ]
        result.smoke_ran = True
        note["detail"] = "passed" if result.passed else "FAILED"
        if not result.passed:
            note["failed"] = True
            problems = [f"{m.name}: {m.detail}" for m in result.models if m.detail != "PASS"]
            if report.error is not None:
                problems.insert(0, report.error.message)
            result.failure = (
                "local up failed in phase 'smoke test': the smoke gate did not pass "
                f"(report: {report_path}):\n" + "\n".join(f"  - {p}" for p in problems) + "\n" + log_tail()
            )


def _refuse_if_running(state_dir: Path) -> None:
    record = read_record(state_dir)
    if record is None:
        return
    alive = recorded_alive(record)
    if alive:
        names = ", ".join(f"{n} (pids {' '.join(map(str, p))})" for n, p in alive.items())
        raise UserError(
            f"a local plane is already running from {state_dir}: {names}. "
            f"Stop it with `hybridserve local down --state-dir {state_dir}`, or use another --state-dir.",
            exit_code=2,
        )
    record_path(state_dir).unlink(missing_ok=True)  # stale: its processes are gone


def endpoints_of(record: dict[str, Any]) -> dict[str, str]:
    s3 = record.get("s3", {})
    tr = record.get("triton", {})
    out = {}
    if tr:
        out.update(
            {
                "Triton HTTP": f"http://{tr['http']}",
                "Triton gRPC": tr["grpc"],
                "Triton metrics": f"http://{tr['metrics']}/metrics",
                "model repository": tr["model_repository"],
            }
        )
    if s3:
        out["S3 endpoint"] = s3["url"]
        if "bucket" in s3:
            out["bucket"] = f"s3://{s3['bucket']}/{s3.get('prefix', '')}"
        out["S3 access key"] = f"{s3['access_key']} (secret key in {s3['identity_file']})"
    return out


def plane_status(state_dir: Path) -> dict[str, Any] | None:
    """None when no plane is recorded; else its processes (name, pid, running), probes and overall health."""
    import urllib.request

    from hybridserve.local.process import port_open

    record = read_record(state_dir)
    if record is None:
        return None
    processes = [(p["name"], p["pid"], bool(group_members(p["pgid"], p["match"]))) for p in record.get("processes", [])]
    probes: dict[str, bool] = {}
    if "s3" in record:
        probes[f"S3 {record['s3']['url']}"] = port_open(int(record["s3"]["url"].rsplit(":", 1)[1]))
    if "triton" in record:
        try:
            with urllib.request.urlopen(f"http://{record['triton']['http']}/v2/health/ready", timeout=5) as r:
                probes["Triton ready"] = r.status == 200
        except OSError:
            probes["Triton ready"] = False
    healthy = bool(processes) and all(p[2] for p in processes) and all(probes.values())
    return {"record": record, "processes": processes, "probes": probes, "healthy": healthy}


# --------------------------------------------------------------------------------------------- rendering


def results_table(result: PlaneResult) -> Table:
    table = Table(title="local serving plane: results", title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("ready")
    table.add_column("correct")
    table.add_column("peak inf/s", justify="right")
    table.add_column("capacity inf/s", justify="right")
    table.add_column("at c", justify="right")  # the concurrency where the capacity is reached
    table.add_column("detail", overflow="fold")
    for m in result.models:
        table.add_row(
            m.name,
            "[green]yes[/]" if m.ready else "[red]no[/]",
            "-" if m.correct is None else ("[green]yes[/]" if m.correct else "[red]no[/]"),
            "-" if m.throughput is None else f"{m.throughput:,.0f}",
            "-" if m.capacity is None else f"{'' if m.capacity_found else '>= '}{m.capacity:,.0f}",
            "-" if m.capacity_concurrency is None else str(m.capacity_concurrency),
            m.detail,
        )
    if any(m.capacity is not None and not m.capacity_found for m in result.models):
        table.caption = ">= : throughput still grew at the last concurrency measured (a lower bound)"
    return table


def endpoints_table(endpoints: dict[str, str]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for k, v in endpoints.items():
        table.add_row(k, v)
    return table


def _credentials_env(ep, state_dir: Path) -> dict[str, str]:
    """tritonserver reads the store's key from a 0600 credential file, as on the clusters (not from its environment)."""
    from hybridserve.tritonargs import CREDENTIALS_FILE_ENV, s3_credentials_file

    path = state_dir / "triton" / "s3-credentials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(s3_credentials_file(ep.access_key, ep.secret_key, ep.region))
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return {CREDENTIALS_FILE_ENV: str(path)}
