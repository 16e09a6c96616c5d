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
    code, out = run(["sync", "--bucket", "b", "--sse", "aes"], capsys)
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
    code, out = run(["sync", "--bucket", "b", "--sse", "AES256", "--endpoint-url", url, "--repo", "/nonexistent"], capsys)
    assert code == 2 and f"--endpoint-url) {url!r}: {problem}" in out and "e.g. http://127.0.0.1:8333" in out


def test_sync_endpoint_url_with_a_password_is_refused_and_not_echoed(capsys, aws_env):
    code, out = run(["sync", "--bucket", "b", "--sse", "AES256", "--endpoint-url", "http://ak:s3cr3t@127.0.0.1:1"], capsys)
    assert code == 2 and "--endpoint-url" in out and "must not hold credentials" in out and "s3cr3t" not in out


@pytest.mark.parametrize("prefix", ["../models", "a//b", "./m", "s3://bucket/models"])
def test_sync_bad_prefix_is_refused(capsys, aws_env, prefix):
    code, out = run(["sync", "--bucket", "b", "--sse", "AES256", "--endpoint-url", "http://127.0.0.1:1", "--prefix", prefix], capsys)
    assert code == 2 and f"prefix (--prefix) {prefix!r}" in out and ("e.g. models" in out or "e.g. teams/vision/models" in out)


def test_sync_bad_region_names_the_flag(capsys, aws_env):
    code, out = run(["sync", "--bucket", "b", "--sse", "AES256", "--region", "eu west 1"], capsys)
    assert code == 2 and "region (--region) 'eu west 1'" in out and "us-east-1" in out


def test_sync_kms_key_with_sse_s3_names_both_flags(capsys, aws_env):
    code, out = run(["sync", "--bucket", "b", "--sse", "AES256", "--kms-key-id", "alias/x"], capsys)
    assert code == 2 and "--kms-key-id" in out and "'aws:kms'" in out and "'AES256'" in out


def test_sync_unknown_aws_profile_is_a_credentials_error_naming_it(capsys, aws_env, built_model_repo):
    # was exit 27 "object store ...: checking bucket failed: The config profile (nope) could not be found"
    aws_env.setenv("AWS_PROFILE", "nope")
    code, out = run(["sync", "--bucket", "b", "--sse", "AES256", "--endpoint-url", "http://127.0.0.1:1",
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
        code, out = run(["sync", "--bucket", "b", "--sse", "AES256", "--endpoint-url", url, "--repo", str(built_model_repo)], capsys)
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
