"""User mistakes on every command: a non-zero exit, a message naming the flag / file / key and what is valid,
never a traceback. One test per case found by breaking the CLI on purpose.

Most run `hybridserve.cli.main` in-process (fast); a few run the installed entry points, since a traceback
there is what a user would see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridserve.cli import main

HYBRIDSERVE = str(Path(sys.executable).parent / "hybridserve")


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    # `local up` in-process installs its SIGTERM/SIGHUP handlers and unraisable hook: not for the test runner.
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    hook = sys.unraisablehook
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    sys.unraisablehook = hook


def run(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stdout + stderr with whitespace collapsed: rich wraps long lines)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    text = " ".join((out + err).split())
    assert "Traceback" not in text
    return code, text


def run_exe(argv: list[str], *, timeout: float = 60, env: dict | None = None) -> tuple[int, str]:
    """The installed command, as a user runs it."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    return proc.returncode, " ".join(text.split())


# --------------------------------------------------------------------------------------------- usage errors


def test_no_arguments_prints_the_help_without_a_traceback():
    code, out = run_exe([HYBRIDSERVE])
    assert code == 2 and "Usage: hybridserve" in out and "validate" in out


def test_unknown_command_names_it_and_points_to_help():
    code, out = run_exe([HYBRIDSERVE, "deploy"])
    assert code == 2 and "No such command 'deploy'" in out and "hybridserve --help" in out


def test_missing_required_option_names_it(capsys):
    code, out = run(["sync"], capsys)
    assert code == 2 and "Missing option '--bucket'" in out


def test_invalid_choice_names_the_flag_and_the_valid_values(capsys):
    code, out = run(["sync", "--bucket", "models", "--sse", "aes"], capsys)
    assert code == 2 and "--sse" in out and "'aws:kms', 'AES256', 'none'" in out


def test_unknown_option_suggests_the_right_one(capsys):
    code, out = run(["smoke", "--models", "x"], capsys)
    assert code == 2 and "No such option: --models" in out and "--model" in out


def test_option_without_its_value(capsys):
    code, out = run(["plan", "--stack"], capsys)
    assert code == 2 and "'--stack' requires an argument" in out


def test_python_m_smoke_tests_usage_error_has_no_traceback():
    code, out = run_exe([sys.executable, "-m", "smoke_tests", "--bogus"])
    assert code == 2 and "No such option: --bogus" in out


def test_python_m_smoke_tests_keeps_brackets_in_messages():
    # rich read "[@CONCURRENCY]" in the message as markup and dropped it
    code, out = run_exe([sys.executable, "-m", "smoke_tests", "--model", "m", "--no-correctness", "--min-throughput", "m=1@"])
    assert code == 2 and "[MODEL=]N[@CONCURRENCY]" in out and "--min-throughput 'm=1@'" in out


# --------------------------------------------------------------------------------------------- models


def test_models_repo_that_is_a_file_is_called_a_file(capsys, tmp_path):
    path = tmp_path / "model_repo.tar"
    path.write_bytes(b"not a directory")
    for command in ("validate", "build"):
        code, out = run(["models", command, "--repo", str(path)], capsys)
        assert code == 2 and f"{path}: is a file, not a directory" in out and "does not exist" not in out
        assert "<model>/config.pbtxt" in out


def _model_dir(root: Path, config: bytes) -> Path:
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "config.pbtxt").write_bytes(config)
    return root


def test_models_binary_config_names_the_file_and_its_format(capsys, tmp_path):
    repo = _model_dir(tmp_path / "repo", b"\x80\x02\x8a\nl\xfc\x9c\x46\xf9 \x6a\xa8\x50\x19")
    code, out = run(["models", "validate", "--repo", str(repo)], capsys)
    assert code == 2 and f"{repo / 'm' / 'config.pbtxt'}: is not UTF-8 text (byte 0x80 at offset 0)" in out
    assert "protobuf text format" in out and "codec" not in out


def test_models_empty_config_names_the_missing_name_plainly(capsys, tmp_path):
    repo = _model_dir(tmp_path / "repo", b"")
    code, out = run(["models", "validate", "--repo", str(repo)], capsys)
    assert code == 2 and 'config.pbtxt: name: missing; set name: "m"' in out and "missing does not match" not in out


def test_models_version_directory_with_a_leading_zero_is_not_version_1(capsys, tmp_path):
    # "01" used to count as a second version 1 (Triton skips it); "0", "-1" and non-ASCII digits are no versions either
    repo = _model_dir(tmp_path / "repo", b'name: "m" backend: "python"')
    for name in ("01", "0", "-1", "\u0661"):
        (repo / "m" / name).mkdir()
    code, out = run(["models", "validate", "--repo", str(repo)], capsys)
    assert code == 2
    assert '"01" has a leading zero, so Triton skips it; rename it to 1' in out
    for name in ("0", "-1", "\u0661"):
        assert f'"{name}" is not a positive integer' in out

    from hybridserve.models.repository import describe_repository
    from hybridserve.sync.scan import version_of

    assert describe_repository(repo).model("m").versions == (1,)
    assert [version_of(n) for n in ("1", "10", "01", "0", "\u0661")] == [1, 10, None, None, None]


# --------------------------------------------------------------------------------------------- sync


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """No credentials anywhere (no AWS_*, no ~/.aws, no instance metadata); the sync's hash cache in tmp."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HYBRIDSERVE_STATE_DIR", str(tmp_path / "state"))
    return monkeypatch


@pytest.mark.parametrize(
    "url, problem",
    [
        ("http://127.0.0.1:99999", "the port must be a number from 1 to 65535"),  # was exit 27, botocore's wording
        ("http://127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("http://", "has no host"),  # was a ValueError traceback
        ("http://:9000", "has no host"),
        ("127.0.0.1:9000", "must start with http:// or https://"),
        ("ftp://127.0.0.1:21", "must start with http:// or https://"),
        ("http://127.0.0.1:8333?bucket=b", "must be just scheme://host[:port], without ?query"),
    ],
)
def test_sync_bad_endpoint_url_is_refused_before_any_request(capsys, aws_env, url, problem):
    code, out = run(["sync", "--bucket", "models", "--sse", "AES256", "--endpoint-url", url, "--repo", "/nonexistent"], capsys)
    assert code == 2 and f"--endpoint-url) {url!r}: {problem}" in out and "e.g. http://127.0.0.1:8333" in out


def test_sync_endpoint_url_with_a_password_is_refused_and_not_echoed(capsys, aws_env):
    code, out = run(["sync", "--bucket", "models", "--sse", "AES256", "--endpoint-url", "http://ak:s3cr3t@127.0.0.1:1"], capsys)
    assert code == 2 and "--endpoint-url" in out and "must not hold credentials" in out and "s3cr3t" not in out


@pytest.mark.parametrize("prefix", ["../models", "a//b", "./m", "s3://bucket/models"])
def test_sync_bad_prefix_is_refused(capsys, aws_env, prefix):
    code, out = run(["sync", "--bucket", "models", "--sse", "AES256", "--endpoint-url", "http://127.0.0.1:1", "--prefix", prefix], capsys)
    assert code == 2 and f"prefix (--prefix) {prefix!r}" in out and ("e.g. models" in out or "e.g. teams/vision/models" in out)


def test_sync_bad_region_names_the_flag(capsys, aws_env):
    code, out = run(["sync", "--bucket", "models", "--sse", "AES256", "--region", "eu west 1"], capsys)
    assert code == 2 and "region (--region) 'eu west 1'" in out and "us-east-1" in out


def test_sync_kms_key_with_sse_s3_names_both_flags(capsys, aws_env):
    code, out = run(["sync", "--bucket", "models", "--sse", "AES256", "--kms-key-id", "alias/x"], capsys)
    assert code == 2 and "--kms-key-id" in out and "'aws:kms'" in out and "'AES256'" in out


def test_sync_unknown_aws_profile_is_a_credentials_error_naming_it(capsys, aws_env, built_model_repo):
    # was exit 27 "object store ...: checking bucket failed: The config profile (nope) could not be found"
    aws_env.setenv("AWS_PROFILE", "nope")
    code, out = run(["sync", "--bucket", "models", "--sse", "AES256", "--endpoint-url", "http://127.0.0.1:1",
                     "--repo", str(built_model_repo)], capsys)
    assert code == 23 and "AWS_PROFILE='nope'" in out and "~/.aws/config" in out and "object store" not in out


def test_sync_to_something_that_is_not_s3_says_so(capsys, aws_env, built_model_repo):
    # A web server on the port (a Triton HTTP port, SeaweedFS's master): its bare 404 read as "bucket does not exist"
    import http.server
    import threading

    aws_env.setenv("AWS_ACCESS_KEY_ID", "AK")
    aws_env.setenv("AWS_SECRET_ACCESS_KEY", "SK")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    server.RequestHandlerClass.log_message = lambda *a: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, out = run(["sync", "--bucket", "models", "--sse", "AES256", "--endpoint-url", url, "--repo", str(built_model_repo)], capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 21 and f"{url} answered HTTP 404 without an S3 error code" in out and "--endpoint-url" in out
    assert "does not exist" not in out


@pytest.mark.servers
def test_sync_without_any_credentials_against_a_real_store(capsys, aws_env, moto_endpoint, unique_bucket, built_model_repo):
    moto_endpoint.client("s3").create_bucket(Bucket=unique_bucket)
    code, out = run(["sync", "--bucket", unique_bucket, "--sse", "AES256", "--endpoint-url", moto_endpoint.url,
                     "--repo", str(built_model_repo)], capsys)
    assert code == 23 and "no usable credentials" in out and "AWS_ACCESS_KEY_ID" in out and "AWS_PROFILE" in out
    assert moto_endpoint.client("s3").list_objects_v2(Bucket=unique_bucket).get("KeyCount") == 0


# --------------------------------------------------------------------------------------------- local


def test_local_state_dir_that_is_a_file_is_refused_by_up_status_and_down(capsys, tmp_path):
    state = tmp_path / "state"
    state.write_text("oops")
    for args in (["up", "--no-smoke"], ["status"], ["down"]):  # were FileExistsError / NotADirectoryError tracebacks
        code, out = run(["local", *args, "--state-dir", str(state)], capsys)
        assert code == 2 and f"--state-dir {state}: is a file, not a directory" in out, args


def test_local_up_checks_every_flag_before_starting_a_server(capsys, tmp_path):
    # --smoke-profile was checked only after the store, the sync and tritonserver had run (~30 s)
    state = tmp_path / "state"
    code, out = run(["local", "up", "--state-dir", str(state), "--bucket", "Models_Bucket", "--prefix", "../m",
                     "--smoke-profile", "fast"], capsys)
    assert code == 2 and "cannot start the local plane" in out
    assert "--bucket 'Models_Bucket': 3-63 characters" in out
    assert "--prefix '../m'" in out
    assert "--smoke-profile 'fast': expected one of default, quick" in out
    assert not state.exists()  # nothing created, nothing started


@pytest.mark.parametrize("kind", ["empty", "file"])
def test_local_up_refuses_a_bad_repository_before_starting_a_server(capsys, tmp_path, kind):
    repo = tmp_path / "repo"
    repo.mkdir() if kind == "empty" else repo.write_text("x")
    state = tmp_path / "state"
    code, out = run(["local", "up", "--state-dir", str(state), "--repo", str(repo)], capsys)
    assert code == 2 and f"--repo {repo}" in out
    assert ("no model directories" in out) if kind == "empty" else ("is a file, not a directory" in out)
    assert not state.exists()


@pytest.mark.parametrize(
    "content", ["[1, 2]", '{"processes": [{"name": "weed server"}]}', '{"processes": 5}', '{"processes": [{"name": "x", "pid": true, "pgid": 1, "match": "w"}]}']
)
def test_local_status_and_down_on_a_record_that_is_not_ours(capsys, tmp_path, content):
    (tmp_path / "plane.json").write_text(content)  # were AttributeError / KeyError tracebacks
    for command in ("status", "down"):
        code, out = run(["local", command, "--state-dir", str(tmp_path)], capsys)
        assert code == 2 and f"{tmp_path / 'plane.json'} is not a local plane record" in out and '"processes"' in out
    assert (tmp_path / "plane.json").exists()  # kept: it may name processes someone has to stop by hand


def test_local_status_on_a_record_that_is_a_directory(capsys, tmp_path):
    (tmp_path / "plane.json").mkdir()
    code, out = run(["local", "status", "--state-dir", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path / 'plane.json'} is a directory" in out


def test_local_down_on_a_stale_record_says_nothing_was_running(capsys, tmp_path):
    import json

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is now (almost surely) free: a record left by a crashed `up`
    record = {"processes": [{"name": "weed server", "pid": dead.pid, "pgid": dead.pid, "match": "weed"}]}
    (tmp_path / "plane.json").write_text(json.dumps(record))
    code, out = run(["local", "status", "--state-dir", str(tmp_path)], capsys)
    assert code == 1 and "gone" in out and "local down" in out
    code, out = run(["local", "down", "--state-dir", str(tmp_path)], capsys)
    assert code == 0 and "not running" in out and "Nothing was running; removed the stale record" in out
    assert "Local plane stopped" not in out and not (tmp_path / "plane.json").exists()
    code, out = run(["local", "down", "--state-dir", str(tmp_path)], capsys)
    assert code == 0 and "nothing to stop" in out


def test_signals_deferred_holds_ctrl_c_until_the_cleanup_is_done():
    import signal

    from hybridserve.local.process import signals_deferred

    done = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            with signals_deferred():  # nested: still held
                os.kill(os.getpid(), signal.SIGINT)
            done.append("cleanup finished")
    assert done == ["cleanup finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.servers
def test_local_up_double_ctrl_c_still_stops_everything(tmp_path, built_model_repo):
    # The impatient second Ctrl-C landed in the store's bounded stop: weed kept running, plane.json stayed,
    # and `up` still printed that the servers were stopped.
    import signal
    import time

    from hybridserve.local.plane import group_members, read_record, record_path

    state = tmp_path / "state"
    proc = subprocess.Popen(
        [HYBRIDSERVE, "local", "up", "--no-smoke", "--state-dir", str(state), "--repo", str(built_model_repo)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"},
    )
    record = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            record = read_record(state) if record_path(state).exists() else None
            if record and record.get("processes"):
                break
            time.sleep(0.1)
        assert proc.poll() is None and record, proc.stdout.read() if proc.stdout else ""
        proc.send_signal(signal.SIGINT)
        # The second Ctrl-C once the stop has begun (its first line), i.e. inside the store's 3 s SIGTERM wait.
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "stopping the servers" in line:
                break
        assert seen and "stopping the servers" in seen[-1], "".join(seen)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        out = "".join(seen) + rest
        assert proc.returncode == 130, out
        assert "Traceback" not in out and "all servers stopped" in out
        assert "an interrupt during the stop was held until the servers were stopped" in out  # it landed in the stop
        weed = record["processes"][0]
        assert not group_members(weed["pgid"], weed["match"]), out
        assert not record_path(state).exists(), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in (record or {}).get("processes", []):
            if group_members(p["pgid"], p["match"]):  # only our own servers, never a recycled pid
                os.killpg(p["pgid"], signal.SIGKILL)


# --------------------------------------------------------------------------------------------- smoke


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_smoke_model_repo_that_is_not_a_directory(capsys, tmp_path, kind):
    path = tmp_path / "model_repo"
    if kind == "file":
        path.write_text("x")
    code, out = run(["smoke", "--url", "127.0.0.1:1", "--model-repo", str(path)], capsys)  # were tracebacks
    assert code == 2 and f"--model-repo {path}: " in out
    assert ("no such directory" in out) if kind == "missing" else ("is a file, not a directory" in out)


@pytest.mark.parametrize("url", ["127.0.0.1:99999", "http://127.0.0.1:0"])
def test_smoke_url_port_out_of_range(capsys, url):
    # 99999 was accepted and gRPC dialled 99999 mod 65536 instead: "cannot reach" (exit 3) on a port never named
    code, out = run(["smoke", "--url", url, "--model", "m", "--no-correctness"], capsys)
    assert code == 2 and f"--url {url!r}: the port must be from 1 to 65535" in out


def test_smoke_metrics_url_port_out_of_range(capsys):
    code, out = run(["smoke", "--url", "127.0.0.1:1", "--metrics-url", "127.0.0.1:70000", "--model", "m", "--no-correctness"], capsys)
    assert code == 2 and "--metrics-url '127.0.0.1:70000'" in out


@pytest.mark.parametrize(
    "flag, make, expected",
    [
        ("--json", lambda t: t / "afile" / "r.json", "is a file, so the directory for it cannot be created"),
        ("--junit", lambda t: t, "is a directory; give a file name"),
        ("--csv", lambda t: t, "is a directory; give a file name"),
        ("--out-dir", lambda t: t / "afile", "is a file, not a directory"),
    ],
)
def test_smoke_unwritable_output_is_refused_before_the_run(capsys, tmp_path, flag, make, expected):
    # were tracebacks, and only after the whole run (a sweep takes minutes)
    (tmp_path / "afile").write_text("x")
    path = make(tmp_path)
    code, out = run(["smoke", "--url", "127.0.0.1:1", "--model", "m", "--no-correctness", flag, str(path)], capsys)
    assert code == 2 and f"{flag} {path}: " in out and expected in out and "cannot reach" not in out


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--window", "0"], "--window 0: the measurement window must be above 0 seconds"),
        (["--stability-threshold", "5"], "--stability-threshold 5: a fraction between 0 and 1"),
        (["--stability-windows", "0"], "--stability-windows 0: must be at least 1"),
        (["--max-windows", "2"], "--max-windows 2 is below the 3 windows a stable result needs"),
        (["--max-concurrency", "0"], "--max-concurrency 0: must be at least 1"),
        (["--concurrency", "0,4"], "--concurrency 0,4: every level must be at least 1"),
        (["--concurrency", ","], "--concurrency ',': expected a comma-separated list of integers"),  # was ignored
        (["--stability-latency", "p50"], "--stability-latency 'p50': expected avg or p99"),
        (["--call-timeout", "0"], "--call-timeout 0.0: must be above 0 seconds"),
    ],
)
def test_smoke_measurement_flags_are_named_in_their_errors(capsys, args, expected):
    # the messages said "window length", "stability threshold", "concurrency levels", "call timeout"
    code, out = run(["smoke", "--url", "127.0.0.1:1", "--model", "m", "--no-correctness", *args], capsys)
    assert code == 2 and expected in out


def test_smoke_unknown_stack_lists_the_stacks(capsys):
    code, out = run(["smoke", "--stack", "vision-staging"], capsys)
    assert code == 2 and "stack 'vision-staging' not found" in out and "vision-dev" in out


def test_smoke_slo_flag_naming_an_unknown_model(capsys):
    code, out = run(["smoke", "--url", "127.0.0.1:1", "--model", "text_encoder", "--no-correctness",
                     "--min-throughput", "txt_encoder=10"], capsys)
    assert code == 2 and "'txt_encoder'" in out and "text_encoder" in out


def test_smoke_help_shows_the_slo_syntax_whole(capsys, monkeypatch):
    # rich read "[@C]" in the help as a markup tag and dropped it; "%%" was shown doubled
    monkeypatch.setenv("COLUMNS", "250")
    code, out = run(["smoke", "--help"], capsys)
    assert code == 0
    assert "[MODEL=]N[@C]: at least N inferences/s" in out and "[MODEL=]N[@C]: p99 latency" in out
    assert "(0.01 = 1 %)" in out and "%%" not in out


def test_a_cancel_that_lands_in_a_finalizer_is_not_lost():
    # Seen in test_sigterm_during_up_stops_everything under load: SIGTERM's KeyboardInterrupt was raised inside
    # a weakref finalizer during the sync, Python printed "Exception ignored ... Traceback" and dropped it,
    # and `local up` ran on for 80 s to a smoke pass and exit 0.
    import gc
    import signal
    import time
    import weakref

    from hybridserve.local.process import install_signal_handlers

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    saved_hook = sys.unraisablehook
    # Earlier tests' garbage first: the gc.collect() below must run this test's finalizer, not (also) another
    # library's, which may swallow the interrupt with a bare except (seen after test_local_plane + test_sync).
    gc.collect()
    try:
        install_signal_handlers()

        class Resource:
            pass

        def finalizer():
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10_000))  # the handler runs here, inside the finalizer

        r = Resource()
        weakref.finalize(r, finalizer)
        with pytest.raises(KeyboardInterrupt):
            del r
            gc.collect()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        sys.unraisablehook = saved_hook


# --------------------------------------------------------------------------------------------- validate / plan


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    import shutil

    from hybridserve.paths import repo_root

    shutil.copy(repo_root() / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(repo_root() / "stacks", tmp_path / "stacks")
    return tmp_path / "stacks"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text (byte 0x89 at offset 0)"),  # was a UnicodeDecodeError traceback
        (b"- a\n- b\n", "must be a mapping with a `config:` mapping"),
        (b"config:\n\thybridserve:team: x\n", "is not valid YAML (line 2, column 1)"),
        (b"", "hybridserve:team: is required but not set"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_stack_file_that_is_not_a_stack(capsys, stacks, command, content, expected):
    path = stacks / "Pulumi.broken-dev.yaml"
    path.write_bytes(content)
    code, out = run([command, "--stack", "broken-dev", "--stacks-dir", str(stacks)], capsys)
    assert code == 2 and f"{path}: {expected}" in out
    # a broken sibling does not stop the others
    code, out = run(["validate", "--stack", "vision-dev", "--stacks-dir", str(stacks)], capsys)
    assert code == 0 and "1 stack valid" in out


@pytest.mark.parametrize("kind", ["missing", "file"])
@pytest.mark.parametrize("args", [["validate"], ["validate", "--stack", "vision-dev"], ["plan", "--stack", "vision-dev"],
                                  ["smoke", "--stack", "vision-dev"]])
def test_stacks_dir_that_is_not_a_directory_is_named(capsys, tmp_path, kind, args):
    # said "no stack files in X" or "stack 'vision-dev' not found in X; available stacks: (none)"
    path = tmp_path / "stacks"
    if kind == "file":
        path.write_text("x")
    code, out = run([*args, "--stacks-dir", str(path)], capsys)
    assert code == 2 and f"--stacks-dir {path}: " in out and "Pulumi.<team>-<env>.yaml" in out
    assert ("does not exist" in out) if kind == "missing" else ("is a file, not a directory" in out)


@pytest.mark.parametrize("given", ["Vision-Dev", "Pulumi.vision-dev.yaml", "stacks/Pulumi.vision-dev.yaml"])
def test_stack_given_as_a_file_name_suggests_the_stack_name(capsys, stacks, given):
    code, out = run(["validate", "--stack", given, "--stacks-dir", str(stacks)], capsys)
    assert code == 2 and f"stack {given!r} not found" in out and "did you mean --stack vision-dev?" in out


def test_plan_with_stack_and_all_says_not_both(capsys, stacks):
    code, out = run(["plan", "--stack", "vision-dev", "--all", "--stacks-dir", str(stacks)], capsys)
    assert code == 2 and "give either --stack NAME or --all, not both" in out


@pytest.mark.parametrize("kind", ["directory", "parent-is-a-file"])
def test_plan_json_that_cannot_be_written_is_refused_before_planning(capsys, stacks, tmp_path, kind):
    # the plan ran (seconds, a screen of output) and then failed with "cannot write: File exists"
    (tmp_path / "afile").write_text("x")
    target = tmp_path if kind == "directory" else tmp_path / "afile" / "plan.json"
    code, out = run(["plan", "--stack", "vision-dev", "--stacks-dir", str(stacks), "--json", str(target)], capsys)
    assert code == 2 and f"--json {target}: " in out
    assert ("is a directory" in out) if kind == "directory" else ("afile is a file" in out)
    assert "Resources per provider" not in out  # nothing planned


# --------------------------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    "command, expected",
    [
        (["models", "build"], "Default: model_repo/ of the checkout"),  # "[default: ...]" was eaten as rich markup
        (["models", "validate"], "Default: model_repo/ of the checkout"),
        (["local", "up"], "Default: $HYBRIDSERVE_STATE_DIR, else .state/ of the checkout"),  # said "<repo>/.state"
        (["local", "up"], "3-63 lowercase letters, digits"),
        (["sync"], "http(s)://HOST[:PORT]"),
        (["sync"], "no '.' or '..'"),
    ],
)
def test_help_states_defaults_and_valid_values(capsys, monkeypatch, command, expected):
    monkeypatch.setenv("COLUMNS", "400")
    code, out = run([*command, "--help"], capsys)
    assert code == 0 and expected in out
