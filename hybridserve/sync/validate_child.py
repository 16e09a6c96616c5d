"""`python -m hybridserve.sync.validate_child REPO`: the models module's validation in a process of its own.

The sync runs it alongside its scan and its reads of the store (engine._Validation): validation imports torch
and runs every artifact, which a thread would do holding the GIL the rest of the sync needs. Prints one JSON
line: {"ok": true}, or the UserError's message, details and exit code. Anything else is a traceback on stderr
and exit code 1.
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    from pathlib import Path

    from hybridserve.errors import UserError

    try:
        from hybridserve.models.repository import ensure_valid
    except ImportError:  # the models module is optional for the sync's own checks (scan_repository)
        print(json.dumps({"ok": True}))
        return 0

    try:
        ensure_valid(Path(argv[0]))
    except UserError as exc:
        print(json.dumps({"ok": False, "message": exc.message, "details": list(exc.details or []), "exit_code": exc.exit_code}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
