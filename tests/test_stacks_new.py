"""`hybridserve stacks new`: the stack it writes validates, plans under the mock engine, and collides with nothing."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import pytest
import yaml

from hybridserve.paths import repo_root
from hybridserve.stackconfig import load_stack_file, stack_files
from hybridserve.stackconfig.crossstack import cross_stack_problems
from hybridserve.stackconfig.schema.common import net
from tests.cliutil import run_cli


@pytest.fixture
def stacks(example_checkout: Path) -> Path:
    """A checkout with the example stacks; `stacks new` writes next to them."""
    return example_checkout / "stacks"


def _all(stacks: Path) -> dict:
    return {str(p): load_stack_file(p) for p in stack_files(stacks).values()}


@cache
def _plan(text: str, name: str, tmp: str):
    from infra.plan import plan_stack_file

    path = Path(tmp) / "stacks" / f"Pulumi.{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    shutil.copy(repo_root() / "Pulumi.yaml", Path(tmp))
    return plan_stack_file(path)


@pytest.mark.parametrize(("env", "ha"), [("dev", False), ("prod", True)])
def test_new_stack_validates_plans_and_collides_with_nothing(stacks, capsys, tmp_path, env, ha):
    code, out, err = run_cli(["stacks", "new", "--team", "recs", "--env", env, "--cost-center", "CC-7"], capsys)
    assert code == 0, err
    name = f"recs-{env}"
    path = stacks / f"Pulumi.{name}.yaml"
    assert f"wrote stacks/Pulumi.{name}.yaml" in out
    # The steps a team runs next.
    assert f"pulumi stack init {name}" in out
    assert f"pulumi config set --secret --stack {name} hybridserve:vpn_psk" in out
    assert f"pulumi config set --secret --stack {name} hybridserve:openstack_password" in out
    assert "&id" not in path.read_text()  # plain YAML, no anchors

    code, out, err = run_cli(["validate"], capsys)  # every stack: schema and the cross-stack checks
    assert code == 0, err
    assert f"✓ {name}" in out

    configs = _all(stacks)
    new = configs[str(path)]
    assert cross_stack_problems(configs) == []
    # No routed network overlaps another stack's in the peering group; buckets and tunnels are new.
    others = [c for p, c in configs.items() if p != str(path)]
    for _, cidr in new.vpn_reachable_networks():
        for other in others:
            for _, theirs in other.vpn_reachable_networks():
                assert not net(cidr).overlaps(net(theirs)), (cidr, theirs)
    assert not set(new.bucket_names().values()) & {n for o in others for n in o.bucket_names().values()}
    assert not set(new.vpn.tunnel_inside_cidrs) & {c for o in others for c in o.vpn.tunnel_inside_cidrs}
    assert new.storage.model_bucket == f"acme-recs-{env}-triton-models"  # the organisation prefix of the others

    # Environment defaults, after the example stacks.
    eks, magnum = new.aws.eks, new.openstack.magnum
    if ha:
        assert new.aws.vpc.zone_count() == 3 and new.aws.vpc.nat_gateways == "per_az" and magnum.master_count == 3
        assert all(p.min_size >= 2 for p in eks.gpu_pools) and new.serving.replicas.min >= 2
        assert new.storage.retention.object_lock_days == 30
    else:
        assert new.aws.vpc.zone_count() == 2 and new.aws.vpc.nat_gateways == "single" and magnum.master_count == 1
        assert all(p.min_size == 0 for p in eks.gpu_pools) and new.serving.replicas.min == 1

    plan = _plan(path.read_text(), name, str(tmp_path / "plan"))
    assert plan.outputs["team"] == "recs" and plan.outputs["environment"] == env
    assert any(r.type == "pulumi-python:dynamic/hybridserve:ModelPublication" for r in plan.resources)


def test_stacks_added_one_after_another_stay_distinct(stacks, capsys):
    for team, env in (("recs", "dev"), ("recs", "staging"), ("recs", "prod"), ("ads", "dev")):
        code, _, err = run_cli(["stacks", "new", "--team", team, "--env", env, "--cost-center", "CC-7"], capsys)
        assert code == 0, err
    assert cross_stack_problems(_all(stacks)) == []
    code, _, err = run_cli(["validate"], capsys)
    assert code == 0, err


def test_public_runner_cidrs_and_a_separate_peering_group(stacks, capsys):
    code, _, err = run_cli(["stacks", "new", "--team", "ads", "--env", "dev", "--cost-center", "CC-9",
                            "--runner-cidr", "203.0.113.0/24", "--peering-group", "ads"], capsys)
    assert code == 0, err
    new = load_stack_file(stacks / "Pulumi.ads-dev.yaml")
    assert new.vpn.peering_group == "ads"
    assert new.aws.eks.deploy_access.via == "public_endpoint" and new.aws.eks.public_access_cidrs == ["203.0.113.0/24"]
    assert cross_stack_problems(_all(stacks)) == []


def test_cost_center_defaults_to_the_teams_other_stack(stacks, capsys):
    code, _, err = run_cli(["stacks", "new", "--team", "vision", "--env", "staging"], capsys)
    assert code == 0, err
    doc = yaml.safe_load((stacks / "Pulumi.vision-staging.yaml").read_text())
    assert doc["config"]["hybridserve:cost_center"] == "CC-4100"


@pytest.mark.parametrize(("args", "message"), [
    (["--team", "vision", "--env", "dev"], "stack vision-dev exists already (stacks/Pulumi.vision-dev.yaml)"),
    (["--team", "Recs", "--env", "dev", "--cost-center", "C"], "--team 'Recs' is not a valid name"),
    (["--team", "recs", "--env", "dev_1", "--cost-center", "C"], "--env 'dev_1' is not a valid name"),
    (["--team", "recs", "--env", "dev"], "--cost-center is required: team 'recs' has no other stack"),
    (["--team", "recs", "--env", "dev", "--cost-center", "C", "--runner-cidr", "10.0.0.1/24"], "--runner-cidr '10.0.0.1/24' is not a CIDR"),
])
def test_bad_requests_write_nothing(stacks, capsys, args, message):
    before = sorted(p.name for p in stacks.iterdir())
    original = (stacks / "Pulumi.vision-dev.yaml").read_text()
    code, _, err = run_cli(["stacks", "new", *args], capsys)
    assert code == 2
    assert message in err
    assert sorted(p.name for p in stacks.iterdir()) == before
    assert (stacks / "Pulumi.vision-dev.yaml").read_text() == original


def test_an_invalid_existing_stack_is_named_and_nothing_is_written(stacks, capsys):
    (stacks / "Pulumi.broken-dev.yaml").write_text("config:\n  hybridserve:team: broken\n  hybridserve:environment: dev\n  hybridserve:aws: {vpc: {cidr: nope}}\n")
    code, _, err = run_cli(["stacks", "new", "--team", "recs", "--env", "dev", "--cost-center", "CC-7"], capsys)
    assert code == 2
    assert "stacks/Pulumi.broken-dev.yaml does not validate" in err and "hybridserve:aws.vpc.cidr" in err
    assert not (stacks / "Pulumi.recs-dev.yaml").exists()
