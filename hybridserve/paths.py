"""Where things live: the repository root, the model repository, the local plane's state.

`repo_root` and `output_path_problem` are defined in `smoke_tests.paths` (the smoke gate runs without the
kit and needs both) and re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

from smoke_tests.paths import output_path_problem, repo_root

__all__ = ["model_repo_dir", "output_path_problem", "repo_root", "stacks_dir", "state_dir"]


def model_repo_dir() -> Path:
    return repo_root() / "model_repo"


def stacks_dir() -> Path:
    return repo_root() / "stacks"


def state_dir() -> Path:
    """Persistent local-plane state (object store data, key-encryption key, logs). Never committed."""
    env = os.environ.get("HYBRIDSERVE_STATE_DIR")
    return Path(env).resolve() if env else repo_root() / ".state"
