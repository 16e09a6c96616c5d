"""Versions that expire: EKS minors judged against their support windows on a date (issue 11, versions).

The catalogue (hybridserve/stackconfig/catalog.py EKS_VERSIONS) holds each minor's dates with their
sources; a stack in standard support passes, extended support passes with a warning (and the surcharge
in the plan's cost and EXTENDED support on the cluster), past its end or unknown is refused, naming
the key. The suite pins HYBRIDSERVE_TODAY (tests/conftest.py); these tests move it.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from hybridserve.stackconfig import StackConfigError, build_stack_config
from hybridserve.stackconfig.catalog import CLUSTER_AUTOSCALER_IMAGE_TAGS, DEFAULT_EKS_VERSION, EKS_VERSIONS, HELM_CHARTS, eks_support
from hybridserve.stackconfig.cost import estimate
from hybridserve.stackconfig.loader import stack_warnings
from hybridserve.paths import repo_root
from hybridserve.stackconfig import stack_files
from stackutil import reachable

REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}


def config(version: str | None = None):
    eks = {"version": version} if version else {}
    return build_stack_config(reachable({**REQUIRED, "hybridserve:aws": {"eks": eks}}))


def test_support_windows_follow_the_calendar():
    v = EKS_VERSIONS["1.33"]
    assert eks_support("1.33", v.released) == "standard" and eks_support("1.33", v.standard_end) == "standard"
    assert eks_support("1.33", date(2026, 7, 30)) == "extended" and eks_support("1.33", v.extended_end) == "extended"
    assert eks_support("1.33", date(2027, 7, 30)) == "ended"
    assert eks_support("1.36", date(2026, 1, 1)) == "unreleased" and eks_support("1.99") == "unknown"
    # every minor's autoscaler image is of the same minor (the autoscaler requires it)
    for minor, version in EKS_VERSIONS.items():
        assert version.autoscaler_tag.startswith(f"v{minor}.") and CLUSTER_AUTOSCALER_IMAGE_TAGS[minor] == version.autoscaler_tag


def test_the_default_and_the_examples_are_in_standard_support_today():
    assert eks_support(DEFAULT_EKS_VERSION) == "standard"
    assert config().aws.eks.version == DEFAULT_EKS_VERSION and stack_warnings(config()) == []
    examples = stack_files(repo_root() / "stacks")
    assert len(examples) == 4
    for name, path in examples.items():
        from hybridserve.stackconfig import load_stack_file

        cfg = load_stack_file(path)
        assert eks_support(cfg.aws.eks.version) == "standard", name


@pytest.mark.parametrize("version", ["1.31", "1.30"])
def test_a_version_past_extended_support_is_refused(version):
    with pytest.raises(StackConfigError) as info:
        config(version)
    [problem] = [p for p in info.value.problems if "aws.eks.version" in p]
    assert f"hybridserve:aws.eks.version: '{version}' reached the end of EKS extended support on {EKS_VERSIONS[version].extended_end}" in problem
    assert "use one in standard support as of 2026-12-01: 1.34, 1.35, 1.36" in problem


def test_an_unknown_version_is_refused_with_the_known_ones():
    with pytest.raises(StackConfigError) as info:
        config("1.99")
    assert any("'1.99' is not an EKS version the kit knows" in p for p in info.value.problems)


def test_extended_support_warns_costs_more_and_is_created_as_extended(monkeypatch):
    cfg = config("1.33")  # extended since 2026-07-29
    [warning] = stack_warnings(cfg, "stacks/Pulumi.acme-dev.yaml")
    assert warning.startswith("stacks/Pulumi.acme-dev.yaml: hybridserve:aws.eks.version: '1.33' is in EKS extended support since 2026-07-29")
    assert "USD 0.60/h instead of 0.10" in warning
    [control] = [line for line in estimate(cfg).lines if line.item.startswith("EKS control plane")]
    assert control.item == "EKS control plane (extended support)" and control.usd_per_hour == 0.60
    assert [line for line in estimate(config()).lines if line.item == "EKS control plane"][0].usd_per_hour == 0.10


def test_the_end_of_standard_support_is_announced(monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_TODAY", "2027-02-15")
    [warning] = stack_warnings(config("1.35"))
    assert "'1.35' leaves EKS standard support in 40 days (2027-03-27); plan the upgrade to 1.36" in warning
    monkeypatch.setenv("HYBRIDSERVE_TODAY", "someday")
    with pytest.raises(Exception) as info:
        config("1.35")
    assert "HYBRIDSERVE_TODAY='someday' is not an ISO date" in str(info.value)


def test_the_plan_creates_extended_versions_with_extended_support(tmp_path):
    import shutil

    import yaml

    from infra.plan import plan_stack_file

    stacks = tmp_path / "stacks"
    shutil.copytree(repo_root() / "stacks", stacks)
    path = stacks / "Pulumi.vision-dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["hybridserve:aws"]["eks"]["version"] = "1.33"
    path.write_text(yaml.safe_dump(doc))
    plan = plan_stack_file(path)
    [cluster] = [r for r in plan.resources if r.type == "aws:eks/cluster:Cluster"]
    assert cluster.inputs["version"] == "1.33" and cluster.inputs["upgradePolicy"] == {"supportType": "EXTENDED"}
    assert any("'1.33' is in EKS extended support" in w for w in plan.warnings)
    [autoscaler] = [r for r in plan.resources if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs["name"] == "cluster-autoscaler"]
    assert autoscaler.inputs["values"]["image"]["tag"] == "v1.33.6" and autoscaler.inputs["version"] == HELM_CHARTS["cluster-autoscaler"].version
    standard = plan_stack_file(repo_root() / "stacks" / "Pulumi.vision-dev.yaml")
    [cluster] = [r for r in standard.resources if r.type == "aws:eks/cluster:Cluster"]
    assert cluster.inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    assert json.dumps(standard.warnings).count("EKS extended support") == 0
