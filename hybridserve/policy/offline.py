"""The pack's policies on an offline plan (`hybridserve plan`): the same rules, no Pulumi CLI needed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hybridserve.errors import UserError
from hybridserve.policy import rules


def config_file(stack: str, root: Path | None = None) -> Path:
    """Where a stack's policy config lives: what `--policy-pack-config` gets for that stack."""
    from hybridserve.paths import repo_root

    return (root or repo_root()) / "policy" / "config" / f"{stack}.json"


def load_config(stack: str, root: Path | None = None) -> dict[str, Any]:
    """The stack's policy config ({} when it has none); a UserError naming the file when it is wrong."""
    path = config_file(stack, root)
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: is not valid JSON ({exc})", exit_code=2) from None
    problems = rules.config_problems(doc, str(path))
    if problems:
        raise UserError("policy config is invalid", exit_code=2, details=problems)
    return doc


def check_plan(plan_json: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> list[rules.Violation]:
    """Violations of the plan's resources; secrets in the plan are masked, so a plain one is certain."""
    return rules.evaluate(rules.resources_from_plan(plan_json["resources"]), config, masked_secrets=True)
