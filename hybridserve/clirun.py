"""Running a typer app so that user mistakes end in a short error and an exit code, never a traceback.

Used by `hybridserve` (`python -m smoke_tests` is argparse and handles its own errors the same way).
typer 0.29 vendors click as `typer._click`: its usage
errors are `typer.TyperException`s, not `click.ClickException`s, so catching the latter missed every one
(an unknown option or command, a missing --bucket, a bad --sse choice all printed tracebacks).
"""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from smoke_tests.errors import GateError


def print_user_error(console: Console, exc: GateError) -> None:
    # escape: messages quote user input and syntax such as "[@CONCURRENCY]" that rich would read as markup;
    # soft_wrap: keep paths and URNs whole, so the message can be copied and grepped.
    console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)


def run_app(app: typer.Typer, argv: list[str] | None, *, err: Console, prog_name: str | None = None) -> int:
    """Run `app` on `argv` (None: sys.argv) and return the exit code; only programming errors propagate."""
    try:
        # Without standalone mode click hands back the code of typer.Exit(n) instead of exiting.
        kwargs: dict[str, Any] = {"prog_name": prog_name} if prog_name else {}
        rv = app(args=argv, standalone_mode=False, **kwargs)
    except GateError as exc:  # the kit's UserError and the smoke gate's own errors
        print_user_error(err, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130
    except typer.Exit as exc:  # raised by commands that decide their own exit code
        return exc.exit_code
    except typer.Abort:  # EOF on a prompt, or click's own abort
        err.print("[yellow]aborted[/]")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option/command, missing or invalid value
        if type(exc).__name__ == "NoArgsIsHelpError":
            return exc.exit_code  # the help was already printed; click's code for it is 2
        show = getattr(exc, "show", None)
        if show is not None:
            show()  # "Usage: ...", "Try '... --help' for help.", "Error: ..." on stderr, as click prints it
        else:
            err.print(f"error: {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    return rv if isinstance(rv, int) else 0
