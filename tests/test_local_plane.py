"""`hybridserve local up|down|status`, end to end: real weed, real tritonserver, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hybridserve.local.plane import group_members, read_record, record_path, stop_recorded

HYBRIDSERVE = str(Path(sys.executable).parent / "hybridserve")
MODELS = ("text_encoder", "image_classifier")
UP_TIMEOUT = 600  # generous: 2 shared cores; the target is well under 3 minutes


def _cli(*args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    return subprocess.run(
        [HYBRIDSERVE, "local", *args], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )


def _processes_mentioning(text: str) -> list[str]:
    """Live processes that name `text` in their command line, working directory or environment.

    The state dir is in weed's argv, tritonserver's working directory and its credential-file variable;
    Triton's Python backend stubs inherit the last two.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # gone
        # Each read on its own: a process whose cwd or environment cannot be read still counts by its argv.
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            cwd = ""
        try:
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            environ = ""
        if state != "Z" and (text in cmd or cwd.startswith(text) or text in environ):
            found.append(f"{entry.name}: {cmd[:200]}")
    return found


def _kill_leftovers(state_dir: Path) -> None:
    """Test cleanup whatever happened: stop what the record names, then anything still naming the state dir."""
    try:
        stop_recorded(state_dir)
    except Exception:
        pass
    for line in _processes_mentioning(str(state_dir)):
        pid = int(line.split(":", 1)[0])
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def state_dir(tmp_path):
    path = tmp_path / "state"
    yield path
    _kill_leftovers(path)


def _assert_model_rows(output: str, state_dir: Path) -> None:
    """The plane's result table: one row per model, ready and correct both "yes", a throughput figure, the
    capacity and its concurrency (as in the JSON report: figures asserted for presence, not speed)."""
    table = output[output.index("local serving plane: results") :]
    report = {m["name"]: m for m in json.loads((state_dir / "smoke-report.json").read_text())["models"]}
    for name in MODELS:
        rows = [line for line in table.splitlines() if line.strip("│┃ ").startswith(name)]
        assert rows, f"no result row for {name} in:\n{table}"
        cells = [c.strip() for c in rows[0].strip("│┃ ").split("│")]
        assert cells[:3] == [name, "yes", "yes"], rows[0]
        assert float(cells[3].replace(",", "")) > 0, rows[0]
        capacity = report[name]["capacity"]
        assert capacity["throughput_infer_per_s"] > 0 and capacity["concurrency"] >= 1, capacity
        assert float(cells[4].removeprefix(">= ").replace(",", "")) > 0 and cells[5] == str(capacity["concurrency"]), rows[0]
        assert cells[4].startswith(">= ") is (not capacity["found"]), rows[0]
        # The search went past the old ladder's end (1..8) unless it found the capacity below it.
        measured = [lv["concurrency"] for lv in report[name]["sweep"]]
        assert max(measured) > 8 or capacity["found"], measured


# --------------------------------------------------------------------------------------------- record handling


def _sleeper(match_word: str) -> subprocess.Popen:
    # A real process group to stop; the marker word stands in for "weed"/"triton" in its command line.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", match_word], start_new_session=True
    )
    # Until exec, /proc/PID/cmdline is still pytest's: wait (bounded) for the marker, or the record check races.
    deadline = time.monotonic() + 10
    while match_word not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace"):
        assert time.monotonic() < deadline, "the sleeper did not exec"
        time.sleep(0.01)
    return proc


def test_down_stops_recorded_groups_and_removes_the_record(tmp_path):
    procs = [_sleeper("fake-weed"), _sleeper("fake-triton")]
    try:
        record = {
            "processes": [
                {"name": "weed server", "pid": procs[0].pid, "pgid": procs[0].pid, "match": "fake-weed"},
                {"name": "tritonserver", "pid": procs[1].pid, "pgid": procs[1].pid, "match": "fake-triton"},
            ]
        }
        record_path(tmp_path).write_text(json.dumps(record))
        lines = stop_recorded(tmp_path, term_wait=5)
        # Normally "stopped"; on a machine thrashing under load an exit can outlast the wait, then SIGKILL.
        assert all(line.split(":")[1].strip() in ("stopped", "killed after SIGTERM timed out") for line in lines), lines
        assert len(lines) == 2
        for p in procs:
            assert p.wait(timeout=10) in (-signal.SIGTERM, -signal.SIGKILL)
        assert not record_path(tmp_path).exists()
        assert stop_recorded(tmp_path) == []  # nothing recorded: nothing to do
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_down_never_signals_a_process_that_does_not_match_the_record(tmp_path):
    # A recycled pid: the record says "weed" but the process there is something else.
    other = _sleeper("innocent-bystander")
    try:
        record_path(tmp_path).write_text(
            json.dumps({"processes": [{"name": "weed server", "pid": other.pid, "pgid": other.pid, "match": "weed"}]})
        )
        assert group_members(other.pid, "innocent-bystander") == [other.pid]
        lines = stop_recorded(tmp_path)
        assert lines == [f"weed server (pid {other.pid}): not running"]
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_status_without_a_plane_exits_1(tmp_path):
    done = _cli("status", "--state-dir", str(tmp_path), timeout=60)
    assert done.returncode == 1
    assert "No local plane running" in done.stdout


# --------------------------------------------------------------------------------------------- the real plane


# The plane's smoke test with 0.25 s windows (`local up --smoke-window`): the same gate and capacity search as the
# demo's quick profile, an eighth of its time; these tests check the phases and the result table, not the figures.
FAST_SMOKE = ("--smoke-window", "0.25")


@pytest.fixture(scope="module")
def served_once(built_model_repo, tmp_path_factory):
    """One full `local up` (store, sync, tritonserver, smoke test) and its state directory, whose store then
    holds the published models. Later runs in this module reuse that store; none of them changes it (a
    refused sync writes nothing, the others upload nothing) and each stops what it started, so they do not
    depend on each other's order.
    """
    state = tmp_path_factory.mktemp("served_once") / "state"
    try:
        yield state, _cli("up", *FAST_SMOKE, "--state-dir", str(state), "--repo", str(built_model_repo))
    finally:
        _kill_leftovers(state)


@pytest.mark.servers
def test_up_serves_the_models_and_stops_everything(served_once):
    state_dir, first = served_once
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    _assert_model_rows(first.stdout, state_dir)
    assert "uploaded" in first.stdout and "smoke test passed" in first.stdout, out
    assert "already built, valid)" in first.stdout, out  # a new state dir: the repository was validated
    # The base models: the repository's variant (text_encoder_int8) is not served without --variants.
    assert "2 models ready" in first.stdout and "text_encoder_int8" not in first.stdout.split("... tritonserver", 1)[1], out
    assert (state_dir / "smoke-report.json").is_file()
    assert "all servers stopped" in first.stdout
    assert _processes_mentioning(str(state_dir)) == []
    assert not record_path(state_dir).exists()
    # Encryption material stays private across runs.
    for name in ("objectstore.kek", "objectstore.s3.json"):
        assert oct((state_dir / name).stat().st_mode & 0o777) == "0o600"
    assert (state_dir / "logs" / "weed.log").is_file() and (state_dir / "logs" / "tritonserver.log").is_file()


@pytest.mark.servers
def test_a_second_up_syncs_nothing_then_keep_status_down_leave_nothing_running(served_once, built_model_repo):
    state_dir, first = served_once
    assert first.returncode == 0, first.stdout + first.stderr
    try:
        _second_up_kept_then_down(state_dir, built_model_repo)
    finally:
        _kill_leftovers(state_dir)  # whatever failed: the module's later runs need this state dir free


def _second_up_kept_then_down(state_dir: Path, built_model_repo: Path) -> None:
    # The smoke gate was shown by the first run; this one is about the store and the kept plane, so it skips the
    # measurement. --variants serves the compressed variants too: they were synced with the rest, so still nothing
    # to upload; the same bytes validated in the first run are not validated again.
    up = _cli("up", "--keep", "--no-smoke", "--variants", "--state-dir", str(state_dir), "--repo", str(built_model_repo))
    assert up.returncode == 0, up.stdout + up.stderr
    assert "models already in the store: nothing to upload" in up.stdout, up.stdout
    assert "found hybridserve-models" in up.stdout
    assert "already built, validated before, unchanged)" in up.stdout, up.stdout
    assert "3 models ready" in up.stdout and "text_encoder_int8" in up.stdout, up.stdout

    assert "The plane is running." in up.stdout and "hybridserve local down" in up.stdout
    record = read_record(state_dir)
    assert record and record["kept"] is True
    pids = [p["pid"] for p in record["processes"]]
    assert len(pids) == 2 and all(group_members(p["pgid"], p["match"]) for p in record["processes"])
    for key in ("Triton HTTP", "Triton gRPC", "Triton metrics", "S3 endpoint", "bucket"):
        assert key in up.stdout

    # Triton reads the store's key from a 0600 credential file, as on the clusters: none in its environment.
    [triton] = [p for p in record["processes"] if p["name"] == "tritonserver"]
    environ = dict(e.split("=", 1) for e in Path(f"/proc/{triton['pid']}/environ").read_bytes().decode().split("\0") if "=" in e)
    assert "AWS_SECRET_ACCESS_KEY" not in environ and "AWS_ACCESS_KEY_ID" not in environ
    credentials = Path(environ["TRITON_CLOUD_CREDENTIAL_PATH"])
    assert credentials.stat().st_mode & 0o777 == 0o600 and credentials.is_relative_to(state_dir)
    assert set(json.loads(credentials.read_text())["s3"][""]) == {"key_id", "secret_key", "region", "session_token", "profile"}

    status = _cli("status", "--state-dir", str(state_dir), timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "Triton ready" in status.stdout and "answers" in status.stdout

    again = _cli("up", "--state-dir", str(state_dir), "--repo", str(built_model_repo), timeout=120)
    assert again.returncode == 2
    assert "already running" in again.stderr and "local down" in again.stderr

    down = _cli("down", "--state-dir", str(state_dir), timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Local plane stopped." in down.stdout
    assert all(not group_members(p["pgid"], p["match"]) for p in record["processes"])
    assert _processes_mentioning(str(state_dir)) == []
    assert not record_path(state_dir).exists()
    assert _cli("status", "--state-dir", str(state_dir), timeout=60).returncode == 1


@pytest.mark.servers
def test_sigterm_during_up_stops_everything(state_dir, built_model_repo):
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen(
        [HYBRIDSERVE, "local", "up", "--state-dir", str(state_dir), "--repo", str(built_model_repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        # Wait until the store runs (the record names it), then cancel like CI does.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            record = read_record(state_dir) if record_path(state_dir).exists() else None
            if record and record.get("processes"):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stdout.read()
        weed = record["processes"][0]
        assert group_members(weed["pgid"], weed["match"])
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out
        assert not group_members(weed["pgid"], weed["match"])
        assert _processes_mentioning(str(state_dir)) == []
        assert not record_path(state_dir).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------- a failing phase


def _assert_failed_in(done: subprocess.CompletedProcess, phase: str, log: str, state_dir: Path, code: int) -> None:
    """The run names the phase, shows the log that explains it, exits non-zero and leaves nothing running."""
    out = done.stdout + done.stderr
    assert done.returncode == code, out
    assert f"local up failed in phase '{phase}'" in done.stderr, out
    assert f"Last log lines ({state_dir / 'logs' / log})" in done.stderr, out
    assert f"failed {phase}" in done.stdout, out  # the phase's own line
    assert "Traceback" not in out
    assert "all servers stopped" in done.stdout, out
    assert _processes_mentioning(str(state_dir)) == [], out
    assert not record_path(state_dir).exists()


def _repo_copy(built_model_repo: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(built_model_repo, repo)
    return repo


def test_positive_control_processes_mentioning_finds_a_process_in_the_state_dir(tmp_path):
    """The leftover check above would pass vacuously if it could not see a process by its cwd or environment."""
    (tmp_path / "state").mkdir()
    for kwargs in ({"cwd": tmp_path / "state"}, {"env": dict(os.environ, SOME_FILE=str(tmp_path / "state" / "x"))}):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], **kwargs)
        try:
            deadline = time.monotonic() + 10
            while not _processes_mentioning(str(tmp_path / "state")):
                assert time.monotonic() < deadline, kwargs
                time.sleep(0.01)
        finally:
            proc.kill()
            proc.wait()


@pytest.mark.servers
def test_a_failing_object_store_is_named_with_its_log(state_dir, built_model_repo):
    # A corrupt store directory: weed's filer store (a leveldb directory) is a file.
    filer_store = state_dir / "objectstore" / "master" / "filerldb2"
    filer_store.parent.mkdir(parents=True)
    filer_store.write_text("not a leveldb directory")
    done = _cli("up", "--no-smoke", "--state-dir", str(state_dir), "--repo", str(built_model_repo), timeout=240)
    _assert_failed_in(done, "object store", "weed.log", state_dir, 3)
    # weed's fatal line, not only the goroutine dump that follows it
    assert "failed to initialize store for leveldb2" in done.stderr, done.stderr


@pytest.mark.servers
def test_a_failing_sync_is_named_with_its_log(served_once, built_model_repo, tmp_path):
    state_dir, first = served_once  # its store holds the models as published from built_model_repo
    assert first.returncode == 0, first.stdout + first.stderr
    repo = _repo_copy(built_model_repo, tmp_path)
    # A published version changed in place: the sync refuses it (readers could load a mix of old and new files).
    with open(repo / "text_encoder" / "1" / "model.py", "a") as f:
        f.write("\n# edited after it was published\n")
    done = _cli("up", "--no-smoke", "--state-dir", str(state_dir), "--repo", str(repo))
    from hybridserve.sync.errors import EXIT_PUBLISHED_CHANGED

    _assert_failed_in(done, "sync", "weed.log", state_dir, EXIT_PUBLISHED_CHANGED)
    assert "already built, valid)" in done.stdout, done.stdout  # changed bytes: validated again, not taken as before
    assert "changed in place" in done.stderr and "text_encoder/1/model.py" in done.stderr, done.stderr
    assert "tritonserver" not in done.stdout.split("failed sync", 1)[1]  # no later phase ran


@pytest.mark.servers
def test_a_failing_tritonserver_is_named_with_its_log(state_dir, built_model_repo, tmp_path):
    repo = _repo_copy(built_model_repo, tmp_path)
    # image_classifier's model.py raises as the Python backend imports it (before it imports torch, so its stub
    # fails at once); text_encoder loads: one failing model fails the phase.
    model_py = repo / "image_classifier" / "1" / "model.py"
    text = model_py.read_text()
    model_py.write_text(text.replace("\nimport json\n", "\nraise RuntimeError('deliberately broken for the test')\nimport json\n", 1))
    assert model_py.read_text() != text
    done = _cli("up", "--no-smoke", "--state-dir", str(state_dir), "--repo", str(repo))
    _assert_failed_in(done, "tritonserver", "tritonserver.log", state_dir, 3)
    assert "image_classifier" in done.stderr and "deliberately broken for the test" in done.stderr, done.stderr


@pytest.mark.servers
def test_a_failing_smoke_test_is_named_with_its_log(served_once, built_model_repo):
    state_dir, first = served_once  # its store already holds the models: this run goes straight to the smoke test
    assert first.returncode == 0, first.stdout + first.stderr
    # An SLO no server meets: a p99 latency of a microsecond.
    done = _cli("up", *FAST_SMOKE, "--max-p99-ms", "0.001", "--state-dir", str(state_dir), "--repo", str(built_model_repo))
    _assert_failed_in(done, "smoke test", "tritonserver.log", state_dir, 1)
    assert "smoke test FAILED" in done.stdout
    for name in MODELS:
        assert f"  - {name}: " in done.stderr and "exceeds the maximum 0.001 ms" in done.stderr, done.stderr


def test_a_malformed_slo_flag_is_refused_before_anything_starts(state_dir, built_model_repo):
    done = _cli("up", "--max-p99-ms", "fast", "--state-dir", str(state_dir), "--repo", str(built_model_repo), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--max-p99-ms 'fast'" in done.stderr and "Traceback" not in done.stdout + done.stderr
    assert not state_dir.exists()


def test_a_non_positive_smoke_window_is_refused_before_anything_starts(state_dir, built_model_repo):
    done = _cli("up", "--smoke-window", "0", "--state-dir", str(state_dir), "--repo", str(built_model_repo), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--smoke-window 0: the measurement window must be above 0 seconds" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not state_dir.exists()
