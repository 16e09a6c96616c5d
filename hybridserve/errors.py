"""User-facing errors: a message that names the key or file and what would be valid.

The CLI prints them without a traceback and exits with `exit_code`.
"""

from __future__ import annotations

from smoke_tests.errors import GateError


class UserError(GateError):
    """A mistake the user can fix (bad config, bad repository, bad flag, unreachable endpoint).

    A subclass of the smoke gate's `GateError` (same `message`, `exit_code`, `details`, `str()`): the gate
    runs without the kit, so the base lives there. The smoke gate raises plain `GateError`s, which
    `except UserError` does not catch; catch `GateError` where both can arrive (`clirun.run_app` does).
    """
