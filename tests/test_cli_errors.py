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
