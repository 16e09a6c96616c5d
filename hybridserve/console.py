"""Rich consoles for every command: readable tables also when output is piped (make, CI logs)."""

from __future__ import annotations

import os

from rich.console import Console

# rich falls back to 80 columns when it cannot see a terminal, which folds the smoke and plan tables
# into unreadable cells in CI logs; a log has no width limit worth respecting.
PIPED_WIDTH = 160


def make_console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, width=PIPED_WIDTH)
