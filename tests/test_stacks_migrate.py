"""`hybridserve stacks migrate` (issue 15): stack files rewritten into the sites-as-a-list shape plan exactly as
before, resource for resource; comments stay; nothing is written without --write."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from cliutil import run_cli
from test_network import EXAMPLES, NAMES

from hybridserve.stackconfig.loader import load_stack_file
from hybridserve.stackconfig.migrate import migrate_text
from infra.plan import plan_stack_file


def _copy_examples(tmp_path: Path) -> Path:
    stacks = tmp_path / "stacks"
    shutil.copytree(EXAMPLES, stacks)
    shutil.copy(EXAMPLES.parent / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    return stacks


def _plan_json(plan) -> str:
    doc = plan.as_json()
    doc.pop("source")
    # The publication records the model repository's path; both plans read the same repository.
    return json.dumps(doc, sort_keys=True, default=str)


@pytest.mark.parametrize("name", NAMES)
def test_a_migrated_stack_plans_exactly_as_the_old_one(name, tmp_path, example_plans):
    stacks = _copy_examples(tmp_path)
    path = stacks / f"Pulumi.{name}.yaml"
    migrated = migrate_text(path.read_text())
    assert migrated is not None
    config = yaml.safe_load(migrated)["config"]
    assert "hybridserve:aws" not in config and "hybridserve:openstack" not in config
    assert [(s["name"], s["kind"]) for s in config["hybridserve:sites"][:2]] == [("aws", "aws"), ("openstack", "openstack")]
    # The old shape's plan: the session's plan of the unchanged example (its source path is dropped above).
    before = _plan_json(example_plans[name])
    path.write_text(migrated)
    assert load_stack_file(path) == load_stack_file(EXAMPLES / f"Pulumi.{name}.yaml")
    assert _plan_json(plan_stack_file(path)) == before
    assert migrate_text(migrated) is None  # once migrated, there is nothing left to do


def test_comments_inside_the_moved_sections_stay():
    migrated = migrate_text((EXAMPLES / "Pulumi.vision-dev.yaml").read_text())
    assert migrated is not None
    assert "# `pulumi up` runs on a CI runner in the private cloud (10.110.3.0/24)" in migrated


def test_migrate_shows_the_change_and_writes_only_with_write(tmp_path, capsys):
    stacks = _copy_examples(tmp_path)
    path = stacks / "Pulumi.vision-dev.yaml"
    before = path.read_text()
    code, out, _ = run_cli(["stacks", "migrate", "--stack", "vision-dev", "--stacks-dir", str(stacks)], capsys)
    assert code == 0 and "+  hybridserve:sites:" in out and "-  hybridserve:aws:" in out and "nothing written" in out
    assert path.read_text() == before
    code, out, _ = run_cli(["stacks", "migrate", "--stack", "vision-dev", "--stacks-dir", str(stacks), "--write"], capsys)
    assert code == 0 and "vision-dev: rewrote" in out
    assert "hybridserve:sites" in yaml.safe_load(path.read_text())["config"]
    code, out, _ = run_cli(["stacks", "migrate", "--stack", "vision-dev", "--stacks-dir", str(stacks)], capsys)
    assert code == 0 and "vision-dev: already in the sites shape" in out
    code, _, err = run_cli(["validate", "--stacks-dir", str(stacks)], capsys)
    assert code == 0, err


def test_migrate_of_an_unknown_stack_names_the_flag(tmp_path, capsys):
    stacks = _copy_examples(tmp_path)
    code, _, err = run_cli(["stacks", "migrate", "--stack", "nope-dev", "--stacks-dir", str(stacks)], capsys)
    assert code == 2 and "--stack: 'nope-dev' has no stack file" in err
