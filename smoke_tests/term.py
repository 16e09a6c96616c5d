"""Terminal output with rich when it is installed, plain text when not.

The gate runs in the kit (rich: coloured tables, a progress bar) and from NVIDIA's Triton SDK image, which
has no rich (plain-text tables, no progress bar). Code that prints takes either console: a rich `Console`
or a `PlainConsole`, and goes through `say` / `print_error` / `print_report` here.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

# rich falls back to 80 columns when it cannot see a terminal, which folds the smoke and plan tables
# into unreadable cells in CI logs; a log has no width limit worth respecting.
PIPED_WIDTH = 160


def have_rich() -> bool:
    try:
        import rich.console  # noqa: F401
    except ImportError:
        return False
    return True


def rich_console(*, stderr: bool = False):
    """A rich Console; piped (CI logs, make), at least PIPED_WIDTH columns wide. Needs rich."""
    from rich.console import Console

    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    # COLUMNS may only widen a piped console: pytest-xdist workers (make test) run with COLUMNS=80, which
    # folded the plan's cost table and failed test_cluster's price check.
    columns = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, width=max(PIPED_WIDTH, int(columns) if columns.isdigit() else 0))


class PlainConsole:
    """The part of rich's Console the gate uses, as plain text; for interpreters without rich."""

    def __init__(self, *, stderr: bool = False, file: TextIO | None = None):
        self._stderr = stderr
        self._file = file

    @property
    def file(self) -> TextIO:
        # Looked up at each write, like rich: pytest's capsys swaps sys.stdout after the console is made.
        if self._file is not None:
            return self._file
        return sys.stderr if self._stderr else sys.stdout

    @property
    def is_terminal(self) -> bool:
        try:
            return self.file.isatty()
        except (AttributeError, ValueError):
            return False

    def print(self, *objects: Any, **_: Any) -> None:
        # Only plain strings and objects with a plain __str__ arrive here (never rich markup).
        self.file.write(" ".join(str(o) for o in objects) + "\n")
        self.file.flush()


def make_console(*, stderr: bool = False):
    """A rich Console when rich is installed, else a PlainConsole."""
    return rich_console(stderr=stderr) if have_rich() else PlainConsole(stderr=stderr)


def is_rich(console: Any) -> bool:
    return console is not None and not isinstance(console, PlainConsole)


def say(console: Any, text: str, *, style: str | None = None) -> None:
    """One line of text on `console` (None: nowhere), styled when it is a rich console. `text` is plain."""
    if console is None:
        return
    if not is_rich(console):
        console.print(text)
        return
    from rich.markup import escape

    # escape: messages quote user input and syntax such as "[@CONCURRENCY]" that rich would read as markup;
    # soft_wrap: keep paths and URNs whole, so the message can be copied and grepped.
    body = f"[{style}]{escape(text)}[/]" if style else escape(text)
    console.print(body, markup=True, highlight=False, soft_wrap=True)


def print_error(console: Any, exc: BaseException) -> None:
    """`error: <message>` (and its details, one per line), no traceback."""
    if not is_rich(console):
        console.print(f"error: {exc}")
        return
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)


def print_report(console: Any, report: Any, *, include_violations: bool = True) -> None:
    """The report's tables: rich renderables on a rich console, plain-text tables otherwise."""
    if is_rich(console):
        console.print(report.render(include_violations=include_violations))
    else:
        console.print(report.to_text(include_violations=include_violations))
