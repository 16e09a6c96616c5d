"""User-facing errors: a message that names the key or file and what would be valid.

The CLI prints them without a traceback and exits with `exit_code`.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad config, bad repository, bad flag, unreachable endpoint)."""

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {d}" for d in self.details)
