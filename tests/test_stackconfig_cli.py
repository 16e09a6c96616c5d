"""`hybridserve validate` / `plan` on broken stacks: key path, non-zero exit, no traceback, nothing planned."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from hybridserve.paths import repo_root

from cliutil import run_cli

EXAMPLES = repo_root() / "stacks"


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    """A copy of the example stacks (and Pulumi.yaml) to break."""
    shutil.copy(repo_root() / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copytree(EXAMPLES, tmp_path / "stacks")
    return tmp_path / "stacks"


def edit(stacks: Path, name: str, change: Callable[[dict], None]) -> None:
    path = stacks / f"Pulumi.{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc["config"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _set(*keys, value):
    def change(config: dict) -> None:
        node = config
        for k in keys[:-1]:
            node = node.setdefault(k, {}) if isinstance(k, str) else node[k]
        node[keys[-1]] = value

    return change


def _copy_as(new: str, change: Callable[[dict], None] | None = None):
    """A second stack made from vision-dev (renamed), for the checks across stacks."""

    def make(stacks: Path) -> None:
        doc = yaml.safe_load((stacks / "Pulumi.vision-dev.yaml").read_text())
        team, env = new.split("-")
        doc["config"]["hybridserve:team"], doc["config"]["hybridserve:environment"] = team, env
        doc["config"]["hybridserve:storage"] = {"model_bucket": f"acme-{new}-models", "swift_container": f"{new}-models"}
        doc["config"]["hybridserve:aws"]["vpc"]["cidr"] = "10.99.0.0/16"
        doc["config"]["hybridserve:openstack"]["network"]["cidr"] = "10.199.0.0/22"
        # its CI runner sits in its own VPC (deploy_access must stay routed)
        for section, cluster in (("hybridserve:aws", "eks"), ("hybridserve:openstack", "magnum")):
            doc["config"][section][cluster]["deploy_access"]["runner_cidrs"] = ["10.99.8.0/24"]
        if change:
            change(doc["config"])
        (stacks / f"Pulumi.{new}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    return make


BROKEN = {
    # name: (stack to plan, how to break the stacks dir, key path the message must name)
    "overlapping-cidrs": ("vision-dev", lambda s: edit(s, "vision-dev", _set("hybridserve:openstack", "network", "cidr", value="10.10.4.0/22")),
                          "stacks/Pulumi.vision-dev.yaml: hybridserve:openstack.network.cidr: 10.10.4.0/22 overlaps hybridserve:aws.vpc.cidr (10.10.0.0/16)"),
    "min-greater-than-max": ("vision-dev", lambda s: edit(s, "vision-dev", _set("hybridserve:aws", "eks", "gpu_pools", 0, "min_size", value=5)),
                             "stacks/Pulumi.vision-dev.yaml: hybridserve:aws.eks.gpu_pools[0].min_size: 5 is greater than max_size (2); min ≤ desired ≤ max"),
    "unknown-instance-type": ("vision-dev", lambda s: edit(s, "vision-dev", _set("hybridserve:aws", "eks", "gpu_pools", 0, "instance_types", value=["g9.mega"])),
                              "stacks/Pulumi.vision-dev.yaml: hybridserve:aws.eks.gpu_pools[0].instance_types[0]: 'g9.mega' is not a known GPU instance type; known: g4dn.12xlarge"),
    "unknown-flavor": ("search-prod", lambda s: edit(s, "search-prod", _set("hybridserve:openstack", "magnum", "gpu_pools", 0, "flavor", value="gpu.h100.huge")),
                       "stacks/Pulumi.search-prod.yaml: hybridserve:openstack.magnum.gpu_pools[0].flavor: 'gpu.h100.huge' is not a known GPU flavor"),
    "missing-required-key": ("vision-prod", lambda s: edit(s, "vision-prod", lambda c: c.pop("hybridserve:team")),
                             "stacks/Pulumi.vision-prod.yaml: hybridserve:team: is required but not set; set it: pulumi config set hybridserve:team <value>"),
    "malformed-cidr": ("search-dev", lambda s: edit(s, "search-dev", _set("hybridserve:aws", "vpc", "cidr", value="10.20.0.0/33")),
                       "stacks/Pulumi.search-dev.yaml: hybridserve:aws.vpc.cidr: '10.20.0.0/33' is not a valid IPv4 CIDR"),
    "bad-slo": ("search-dev", lambda s: edit(s, "search-dev", _set("hybridserve:serving", "slo", "min_throughput", value=-5)),
                "stacks/Pulumi.search-dev.yaml: hybridserve:serving.slo.min_throughput: -5 is out of range; must be greater than 0"),
    "plaintext-secret": ("search-dev", lambda s: edit(s, "search-dev", _set("hybridserve:vpn_psk", value="hunter2")),
                         "stacks/Pulumi.search-dev.yaml: hybridserve:vpn_psk: is stored in plain text"),
    "bucket-used-by-two-stacks": ("vision-dev", _copy_as("vision-test", _set("hybridserve:storage", "model_bucket", value="acme-vision-dev-triton-models")),
                                  "stacks/Pulumi.vision-test.yaml: hybridserve:storage.model_bucket: 'acme-vision-dev-triton-models' is already used by stacks/Pulumi.vision-dev.yaml (hybridserve:storage.model_bucket)"),
    "vpn-networks-overlap-across-stacks": ("vision-dev", _copy_as("vision-test", _set("hybridserve:openstack", "network", "cidr", value="10.110.2.0/23")),
                                           "stacks/Pulumi.vision-test.yaml: hybridserve:openstack.network.cidr: 10.110.2.0/23 overlaps hybridserve:openstack.network.cidr (10.110.0.0/22) of stacks/Pulumi.vision-dev.yaml"),
    "stack-name-mismatch": ("vision-dev", lambda s: edit(s, "vision-dev", _set("hybridserve:environment", value="prod")),
                            "stacks/Pulumi.vision-dev.yaml: hybridserve:team: team 'vision' and environment 'prod' make stack 'vision-prod', but this is stack 'vision-dev'"),
    "gate-window-beyond-its-deadline": ("search-dev", lambda s: edit(s, "search-dev", _set("hybridserve:serving", "gate", value={"window_seconds": 60, "timeout_seconds": 120})),
                                        "stacks/Pulumi.search-dev.yaml: hybridserve:serving.gate.window_seconds: 60: even the shortest gate run that can pass takes 180 s, more than timeout_seconds (120 s)"),
    "not-yaml": ("vision-dev", lambda s: (s / "Pulumi.vision-dev.yaml").write_text("config:\n  hybridserve:team: [unclosed\n"),
                 "stacks/Pulumi.vision-dev.yaml: is not valid YAML (line 3, column 1)"),
}


@pytest.fixture
def in_checkout(stacks: Path, monkeypatch):
    """Run as a user would, from the checkout root, so messages show stacks/Pulumi.<stack>.yaml."""
    monkeypatch.chdir(stacks.parent)
    monkeypatch.setenv("HYBRIDSERVE_ROOT", str(stacks.parent))
    return stacks


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config_fails_validate_and_plan_with_the_key_path(case, in_checkout: Path, capsys):
    stack, breakit, expected = BROKEN[case]
    breakit(in_checkout)

    code, out, err = run_cli(["validate"], capsys)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and "pydantic" not in err.lower()

    code, out, err = run_cli(["validate", "--stack", stack], capsys)
    assert code == 2 and expected in err

    plan_json = in_checkout.parent / "plan.json"
    code, out, err = run_cli(["plan", "--stack", stack, "--json", str(plan_json)], capsys)
    assert code == 2 and expected in err and "Traceback" not in err
    assert out == "" and not plan_json.exists()  # nothing planned

    code, out, err = run_cli(["plan", "--all", "--json", str(plan_json)], capsys)
    assert code == 2 and expected in err
    assert out == "" and not plan_json.exists()


def test_all_problems_of_a_stack_are_listed_at_once(in_checkout: Path, capsys):
    edit(in_checkout, "vision-dev", _set("hybridserve:aws", "eks", "gpu_pools", 0, "min_size", value=5))
    edit(in_checkout, "vision-dev", _set("hybridserve:storage", "model_bucket", value="Not_A_Bucket"))
    edit(in_checkout, "search-dev", _set("hybridserve:vpn", "tunnel_inside_cidrs", value=["169.254.1.0/30", "169.254.30.4/30"]))
    code, _, err = run_cli(["validate"], capsys)
    assert code == 2
    assert "4 problems" in err
    assert "hybridserve:aws.eks.gpu_pools[0].min_size: 5 is greater than max_size (2)" in err
    assert "hybridserve:aws.eks.gpu_pools[0].desired_size: 1 is less than min_size (5)" in err
    assert "hybridserve:storage.model_bucket: 'Not_A_Bucket'" in err
    assert "hybridserve:vpn.tunnel_inside_cidrs[0]: 169.254.1.0/30 is reserved by AWS" in err


def test_a_broken_stack_does_not_block_validating_another(in_checkout: Path, capsys):
    edit(in_checkout, "search-dev", _set("hybridserve:aws", "vpc", "cidr", value="nonsense"))
    code, out, _ = run_cli(["validate", "--stack", "vision-dev"], capsys)
    assert code == 0 and "vision-dev" in out


def test_a_gate_window_whose_worst_case_may_not_fit_is_a_warning_not_a_failure(in_checkout: Path, monkeypatch, capsys):
    # No repository to read (vision-dev has no edge site to need one): the schema's figure, one model for them all.
    monkeypatch.setenv("HYBRIDSERVE_MODEL_REPO", str(in_checkout.parent / "no-model-repo"))
    edit(in_checkout, "vision-dev", _set("hybridserve:serving", "gate", value={"window_seconds": 46, "timeout_seconds": 1500}))
    code, out, _ = run_cli(["validate", "--stack", "vision-dev"], capsys)
    text = " ".join(out.split())
    assert code == 0 and ("warning: stacks/Pulumi.vision-dev.yaml: hybridserve:serving.gate.window_seconds: 46: the gate's worst case "
                          "may not fit timeout_seconds (1500 s)") in text, text
    # 600 s readiness wait; one quick search with 46 s windows: at most 4 levels of 5 windows (920 s).
    assert "up to 600 s readiness wait" in text and "give window_seconds at most 45 or timeout_seconds at least 1520" in text


def test_the_gate_time_counts_the_repositorys_models_when_the_stack_lists_none(in_checkout: Path, capsys):
    # search-dev lists no models: its gates measure the repository's two base models (not the int8 variant).
    # 30 s windows: one model's worst case fits (900 s readiness wait + 600 s), two do not (2100 s).
    edit(in_checkout, "search-dev", _set("hybridserve:serving", "gate", value={"window_seconds": 30}))
    code, out, _ = run_cli(["validate", "--stack", "search-dev"], capsys)
    text = " ".join(out.split())
    assert code == 0 and ("warning: stacks/Pulumi.search-dev.yaml: hybridserve:serving.gate.window_seconds: 30: the gate's worst case "
                          "may not fit timeout_seconds (1800 s): up to 900 s readiness wait (slo.wait_ready_seconds) and 1200 s measuring "
                          "2 model(s) (serving.models is empty: the repository's image_classifier, text_encoder)") in text, text
    assert text.count("serving.gate.window_seconds") == 1  # not also the schema's one-model figure
    # 60 s windows and a 300 s deadline: one model's shortest run fits (180 s), two do not (360 s): an error.
    edit(in_checkout, "search-dev", _set("hybridserve:serving", "gate", value={"window_seconds": 60, "timeout_seconds": 300}))
    code, _, err = run_cli(["plan", "--stack", "search-dev"], capsys)
    assert code == 2 and ("stacks/Pulumi.search-dev.yaml: hybridserve:serving.gate.window_seconds: 60: even the shortest gate run "
                          "that can pass takes 360 s, more than timeout_seconds (300 s)") in err, err
    assert "give window_seconds at most 50 or timeout_seconds at least 360" in err


def test_validate_all_examples(capsys):
    code, out, err = run_cli(["validate", "--stacks-dir", str(EXAMPLES)], capsys)
    assert code == 0, err
    assert re.search(r"4 stacks valid", out)
    for name in ("vision-dev", "vision-prod", "search-dev", "search-prod"):
        assert f"✓ {name}" in out


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_unknown_stack_lists_the_available_ones(command, capsys):
    code, out, err = run_cli([command, "--stack", "vision-staging", "--stacks-dir", str(EXAMPLES)], capsys)
    assert code == 2 and out == ""
    assert "stack 'vision-staging' not found" in err
    assert "available stacks: search-dev, search-prod, vision-dev, vision-prod" in err


def test_plan_needs_a_stack_or_all(capsys):
    code, out, err = run_cli(["plan", "--stacks-dir", str(EXAMPLES)], capsys)
    assert code == 2 and "give --stack NAME or --all" in err


def test_real_entry_point_prints_no_traceback(in_checkout: Path):
    """The installed `hybridserve` command, in its own process, as a user runs it."""
    edit(in_checkout, "vision-dev", _set("hybridserve:aws", "eks", "gpu_pools", 0, "min_size", value=5))
    env = {**os.environ, "HYBRIDSERVE_ROOT": str(in_checkout.parent), "COLUMNS": "400"}
    exe = Path(sys.executable).with_name("hybridserve")
    proc = subprocess.run([str(exe), "plan", "--stack", "vision-dev"], capture_output=True, text=True, env=env, cwd=in_checkout.parent)
    assert proc.returncode == 2
    assert "hybridserve:aws.eks.gpu_pools[0].min_size: 5 is greater than max_size (2)" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr and proc.stdout == ""
