"""`python -m smoke_tests`: the smoke gate on its own (CI steps, in-cluster jobs), same flags as `hybridserve smoke`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import typer
    from rich.console import Console

    from hybridserve.errors import UserError
    from smoke_tests.cli import smoke_command

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(name="smoke")(smoke_command)
    err = Console(stderr=True)
    try:
        code = app(args=argv, prog_name="python -m smoke_tests", standalone_mode=False)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
