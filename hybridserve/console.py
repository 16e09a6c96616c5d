"""Rich consoles for every command: readable tables also when output is piped (make, CI logs)."""

from __future__ import annotations

import os

from rich.console import Console

# rich falls back to 80 columns when it cannot see a terminal, which folds the smoke and plan tables
# into unreadable cells in CI logs; a log has no width limit worth respecting.
PIPED_WIDTH = 160


def make_console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    # COLUMNS may only widen a piped console: pytest-xdist workers (make test) run with COLUMNS=80, which
    # folded the plan's cost table and failed test_cluster's price check.
    columns = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, width=max(PIPED_WIDTH, int(columns) if columns.isdigit() else 0))
