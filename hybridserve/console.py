"""Rich consoles for every command: readable tables also when output is piped (make, CI logs).

One policy for the kit and the smoke gate: defined in `smoke_tests.term` (the gate runs without the kit).
"""

from __future__ import annotations

from smoke_tests.term import PIPED_WIDTH
from smoke_tests.term import rich_console as make_console

__all__ = ["PIPED_WIDTH", "make_console"]
