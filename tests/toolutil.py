"""Find a tool that runs in its own environment (checkov in .venv-tools, the policy pack's policy/venv).

`make test` names it in an environment variable and the test fails when that names nothing runnable.
Without the variable the tests look in the checkout, then on PATH; when it is nowhere they skip loudly,
except on CI (CI set), where they fail: a scan that did not run must not pass.
"""

from __future__ import annotations

import os
import shutil
import warnings

import pytest

from hybridserve.paths import repo_root


def tool(env_var: str, in_checkout: str, *, on_path: str | None = None, build_hint: str) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"{env_var}={explicit} is not an executable ({build_hint})")
        return explicit
    found = repo_root() / in_checkout
    if os.access(found, os.X_OK):
        return str(found)
    if on_path and shutil.which(on_path):
        return shutil.which(on_path)
    message = f"{env_var.removeprefix('HYBRIDSERVE_')} NOT RUN: not found ({build_hint})"
    if os.environ.get("CI"):
        pytest.fail(message)
    warnings.warn(message)
    pytest.skip(message)
