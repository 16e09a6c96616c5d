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
