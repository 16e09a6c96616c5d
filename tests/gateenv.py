"""An interpreter like NVIDIA's Triton SDK image, where in-cluster smoke gates run: numpy and tritonclient,
but not the kit, its CLI libraries, pydantic, PyYAML or matplotlib.

`blocked_env(dir)` writes a `sitecustomize.py` into `dir` that installs a `sys.meta_path` finder refusing
those packages, and returns an environment whose PYTHONPATH starts with `dir`: every Python started with
it, including the gate's load-generator processes (they inherit the environment), has them blocked.
Python only warns when a sitecustomize fails ("Error in sitecustomize"): callers check stderr for that
(`SITE_FAILED`), and test_smoke_standalone checks that the block holds.
"""

from __future__ import annotations

import os
from pathlib import Path

SITE_FAILED = "Error in sitecustomize"
BLOCKED = ("hybridserve", "pulumi", "infra", "typer", "rich", "pydantic", "yaml", "matplotlib")

SITECUSTOMIZE = f'''\
import importlib.abc
import sys

BLOCKED = {set(BLOCKED)!r}
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
if loaded:  # something imported them before this ran: the block would prove nothing
    raise SystemExit(f"gateenv: already imported before the block: {{loaded}}")


class _NotInTheSdkImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not in the Triton SDK image)", name=name)
        return None


sys.meta_path.insert(0, _NotInTheSdkImage())
'''


def blocked_env(directory: Path, **extra: str) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(directory)  # first on sys.path, so this sitecustomize is the one imported
    env["COLUMNS"] = "200"
    env.update(extra)
    return env
