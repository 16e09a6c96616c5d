"""Run the `hybridserve` CLI in-process, as the tests of several modules do."""

from __future__ import annotations

import pytest

from hybridserve.cli import main


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr with whitespace collapsed). A user mistake never ends in a traceback."""
    with pytest.raises(SystemExit) as info:
        main(args)
        raise SystemExit(0)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return info.value.code or 0, out, " ".join(err.split())
