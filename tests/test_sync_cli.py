"""The lean `hybridserve sync` entry (hybridserve/sync/command.py) agrees with the typer command it stands in for.

`hybridserve.cli.main` parses `sync ...` itself, without typer; whatever it does not parse goes to the typer
command, so help and usage errors are typer's as before. These tests need no store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridserve.sync.command import OPTIONS, parse_sync_args
from hybridserve.sync.errors import EXIT_BAD_ARGUMENT
from tests.cliutil import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _typer_sync():
    import typer.main

    from hybridserve.cli import app

    return typer.main.get_command(app).commands["sync"]


def test_the_lean_parser_knows_exactly_the_typer_commands_options():
    command = _typer_sync()
    typer_side = {
        p.name: (tuple(p.opts), tuple(p.secondary_opts), bool(getattr(p, "is_flag", False)), p.required)
        for p in command.params
        if p.name != "help"
    }
    lean_side = {
        name: (opts, (kind[1],) if isinstance(kind, tuple) else (), kind != "value", name == "bucket")
        for name, (opts, kind, _) in OPTIONS.items()
    }
    assert lean_side == typer_side


@pytest.mark.parametrize(
    "argv",
    [
        ["--bucket", "b"],
        ["--bucket=b", "--prefix", "teams/vision/models", "--sse", "AES256", "--no-progress", "--timings"],
        ["--bucket", "b", "--sse", "aws:kms", "--kms-key-id", "alias/k", "--region", "eu-west-1", "--role-arn",
         "arn:aws:iam::123456789012:role/w", "--repo", "some/repo", "--endpoint-url", "http://127.0.0.1:1"],
        ["--dry-run", "--prune", "--replace", "--verify", "--bucket", "b", "--progress", "--no-progress", "--progress"],
        ["--bucket", "a", "--bucket", "b", "--sse", "none", "--prefix", ""],  # the last one wins, as in click
    ],
)
def test_the_lean_parser_gives_what_typer_gives(argv):
    typer_params = _typer_sync().make_context("sync", list(argv)).params
    typer_params["sse"] = typer_params["sse"].value
    assert parse_sync_args(argv) == typer_params


@pytest.mark.parametrize(
    "argv",
    [
        [],  # --bucket missing
        ["--help"],
        ["--bucket", "b", "--sse", "aes256"],  # not one of the choices
        ["--bucket", "b", "--bogus"],
        ["--bucket", "b", "extra"],
        ["--bucket"],
        ["--bucket", "b", "--prefix", "--dry-run"],
        ["--bucket", "b", "--dry-run=yes"],
    ],
)
def test_what_the_lean_parser_does_not_take_is_left_to_typer(argv):
    assert parse_sync_args(argv) is None


def test_a_usage_error_is_typers_message_exit_2_without_traceback(capsys):
    code, _, err = run_cli(["sync", "--bucket", "b", "--sse", "aes256"], capsys)
    assert code == 2
    assert "Invalid value for '--sse'" in err and "'aws:kms', 'AES256', 'none'" in err
    code, _, err = run_cli(["sync", "--sse", "AES256"], capsys)
    assert code == 2 and "Missing option '--bucket'" in err


def test_a_bad_value_through_the_lean_entry_names_the_flag_exit_2_without_traceback(capsys, tmp_path):
    code, _, err = run_cli(["sync", "--bucket", "Bad_Bucket", "--sse", "AES256", "--repo", str(tmp_path)], capsys)
    assert code == EXIT_BAD_ARGUMENT
    assert "bucket (--bucket) 'Bad_Bucket'" in err


def test_the_installed_command_runs_sync_without_importing_the_rest_of_the_cli(tmp_path):
    """The point of the lean entry: `hybridserve sync` imports neither typer nor the other commands' modules.
    A bad flag value exits 2 with the message and no traceback, as through typer."""
    probe = (
        "import sys\n"
        "from hybridserve.cli import main\n"
        "try:\n"
        "    main(['sync', '--bucket', 'b-' * 30, '--sse', 'AES256', '--no-progress', '--endpoint-url', 'http://127.0.0.1:1'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        "print('loaded', sorted(m for m in ('typer', 'hybridserve.models', 'hybridserve.stackconfig.cli', 'yaml', 'pulumi') if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYBRIDSERVE_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert "exit 2" in out.stdout
    assert "bucket (--bucket)" in " ".join(out.stderr.split())
    assert "loaded []" in out.stdout


def _rich_text(renderable, width: int = 160) -> str:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False).print(renderable)
    return buffer.getvalue()


def _report(**fields):
    from hybridserve.sync.engine import SyncReport

    fields = {"target": "s3://bucket/teams/vision/models/", "encryption": "SSE-S3 (AES256)", **fields}
    return SyncReport(**fields)


@pytest.mark.parametrize("dry_run", [False, True])
def test_an_unchanged_reports_plain_text_is_what_rich_prints(dry_run):
    """An unchanged sync prints its report without importing rich (command._print): the very text rich prints."""
    report = _report(skipped=[f"k{i}" for i in range(12)], published={"b": [1, 2], "a": [3], "c": []}, dry_run=dry_run, seconds=0.04)
    lines = report.plain_lines()
    assert lines is not None and lines[0].startswith("s3://bucket/teams/vision/models/: ")
    assert "".join(line + "\n" for line in lines) == _rich_text(report)


@pytest.mark.parametrize(
    "fields",
    [
        {"notes": ["the bucket has no default encryption"]},
        {"conflicts": ["m/1 changed"]},
        {"bytes_uploaded": 5, "uploaded": ["k"]},
    ],
)
def test_a_report_with_anything_styled_or_uploaded_is_left_to_rich(fields):
    from hybridserve.sync.engine import Change

    assert _report(**fields).plain_lines() is None
    assert _report(changes=[Change("add", "k", 1, "")]).plain_lines() is None


def test_lines_rich_would_wrap_or_mark_up_are_printed_by_rich(capsys, monkeypatch):
    from hybridserve.sync.command import _print

    monkeypatch.delenv("COLUMNS", raising=False)
    for lines in (["x" * 200], ["timing: [bold]x[/]"], ["caf\u00e9"]):
        _print(sys.stdout, lines, lambda console: console.print("by rich", highlight=False))
        assert capsys.readouterr().out == "by rich\n"
    _print(sys.stdout, ["plain", "y" * 150], lambda console: pytest.fail("rich was not needed"))
    assert capsys.readouterr().out == "plain\n" + "y" * 150 + "\n"


def test_the_cli_process_exits_with_the_syncs_code_and_its_whole_message(tmp_path):
    """`python -m hybridserve sync` ends through command.exit_now (no interpreter teardown): the exit code and
    every line written before it still arrive."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HYBRIDSERVE_STATE_DIR=str(tmp_path / "state"))
    argv = [sys.executable, "-m", "hybridserve", "sync", "--bucket", "b-" * 30, "--sse", "AES256", "--no-progress",
            "--endpoint-url", "http://127.0.0.1:1"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == EXIT_BAD_ARGUMENT
    assert "Traceback" not in out.stdout + out.stderr and "bucket (--bucket)" in " ".join(out.stderr.split())


def test_exit_now_waits_for_a_working_thread_as_an_ordinary_exit_does(tmp_path):
    code = (
        "import threading, time, sys\n"
        "from hybridserve.sync.command import exit_now\n"
        "def work():\n"
        "    time.sleep(0.5)\n"
        "    print('thread finished', flush=True)\n"
        "threading.Thread(target=work).start()\n"
        "import atexit\n"
        "atexit.register(lambda: print('atexit ran', flush=True))\n"
        "print('before exit', end='')\n"
        "exit_now(3)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr
    assert out.stdout == "before exitthread finished\natexit ran\n"


def test_exit_now_runs_the_atexit_handlers_and_flushes_without_tearing_down(tmp_path):
    code = (
        "import atexit, sys\n"
        "from hybridserve.sync.command import exit_now\n"
        "atexit.register(lambda: print('atexit ran', end=''))\n"
        "class Teardown:\n"
        "    def __del__(self):\n"
        "        sys.stderr.write('torn down')\n"
        "keep = Teardown()\n"
        "sys.stderr.write('unflushed')\n"
        "exit_now(0)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "atexit ran" and out.stderr == "unflushed"


def test_the_validation_record_is_keyed_by_every_module_holding_the_validators_rules(tmp_path, monkeypatch):
    """A kit upgrade that changes what is ignored or which backends are accepted must not trust older records."""
    from hybridserve.sync import validated

    assert {"hybridserve.sync.scan", "hybridserve.publish.render"} <= set(validated.VALIDATOR_MODULES)
    rules = tmp_path / "kit_rules_probe.py"
    rules.write_text("IGNORED = ('.git',)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(validated, "VALIDATOR_MODULES", (*validated.VALIDATOR_MODULES, "kit_rules_probe"))
    before = validated.validator_identity()
    assert validated.validator_identity() == before  # stable for the same sources
    rules.write_text("IGNORED = ('.git', '.cache')\n")
    assert validated.validator_identity() != before
