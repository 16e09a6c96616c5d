"""`python -m smoke_tests`: the smoke gate on its own (CI steps, in-cluster jobs), same flags as `hybridserve smoke`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import typer
    from hybridserve.console import make_console

    from hybridserve.clirun import run_app
    from smoke_tests.cli import smoke_command

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(name="smoke")(smoke_command)
    return run_app(app, argv, err=make_console(stderr=True), prog_name="python -m smoke_tests")


if __name__ == "__main__":
    sys.exit(main())
