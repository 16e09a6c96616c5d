"""`python -m smoke_tests`: the smoke gate on its own (CI steps, in-cluster Jobs from the Triton SDK image).

Same flags and exit codes as `hybridserve smoke`, without `--stack` (the kit's stack loader); pass the
stack's gate spec with `--slos` instead. `python -m smoke_tests --help` lists everything.
"""

from __future__ import annotations

import sys

from smoke_tests.cli import main

if __name__ == "__main__":
    sys.exit(main())
