"""Paths the gate needs: the kit checkout's root (for the default model repository) and output-file checks.

Defined here rather than in `hybridserve.paths` (which re-exports both) because the gate runs without the
kit; one implementation for both.
"""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The kit's checkout: HYBRIDSERVE_ROOT, else the nearest parent of cwd with Pulumi.yaml, else the source tree."""
    env = os.environ.get("HYBRIDSERVE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").is_file() and (candidate / "model_repo").is_dir():
            return candidate
    return Path(__file__).resolve().parent.parent


def output_path_problem(path: Path) -> str | None:
    """Why a file cannot be written at `path` (missing parent directories are created), or None.

    Commands check their output files before the long work (a smoke sweep, a plan), not after it.
    """
    path = Path(path)
    if path.is_dir():
        return "is a directory; give a file name"
    if path.exists() and not os.access(path, os.W_OK):
        return "exists and is not writable"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # the nearest existing ancestor
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is a file, so the directory for it cannot be created"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"the directory {parent} is not writable"
    return None
