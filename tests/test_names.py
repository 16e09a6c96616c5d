"""Names a cloud derives from the team and environment stay within its limits, with the longest names allowed.

Team and environment are up to 32 characters each, so every physical name built from them is checked on
a stack that uses both at full length (the mock engine would accept any length; the APIs do not). The same
stack carries the longest cost center and the most and longest tags validate allows, and its plan is held to
every API limit tests/test_stack_variants.py checks (tag counts and lengths, labels, rules, descriptions).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from hybridserve.paths import repo_root
from hybridserve.stackconfig.schema.stack import MAX_USER_TAGS
from infra.plan import plan_stack_file

TEAM = "t" * 31 + "a"  # 32: the longest team (schema Label)
ENV = "e" * 31 + "b"

# (resource type, input, limit, pattern or None) from the provider APIs' documented limits.
LIMITS = [
    ("aws:iam/role:Role", "name", 64, r"^[\w+=,.@-]+$"),
    ("aws:eks/cluster:Cluster", "name", 100, r"^[0-9A-Za-z][A-Za-z0-9\-_]*$"),
    ("aws:eks/nodeGroup:NodeGroup", "nodeGroupName", 63, r"^[0-9A-Za-z][A-Za-z0-9\-_]*$"),
    ("aws:ec2/launchTemplate:LaunchTemplate", "name", 128, r"^[a-zA-Z0-9().\-/_]+$"),
    ("aws:ec2/securityGroup:SecurityGroup", "name", 255, None),
    ("aws:kms/alias:Alias", "name", 256, r"^alias/[a-zA-Z0-9/_-]+$"),
    ("aws:cloudwatch/logGroup:LogGroup", "name", 512, r"^[\.\-_/#A-Za-z0-9]+$"),
    ("aws:s3/bucket:Bucket", "bucket", 63, r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"),
    ("openstack:containerinfra/cluster:Cluster", "name", 255, None),
    ("openstack:containerinfra/clusterTemplate:ClusterTemplate", "name", 255, None),
]


def longest_tags() -> dict[str, str]:
    """As many user tags as validate allows, at the longest each API takes (AWS key 128 / value 256, Neutron's
    255 characters for the "key=value" tag), in the characters every AWS service accepts."""
    tags = {f"k{i:02d}-" + "x" * 124: "v" * (255 - 128 - 1) for i in range(MAX_USER_TAGS - 2)}
    tags["a"] = "Long value with spaces _ . : / = + - @ " + "v" * (253 - 39)
    tags["owner"] = "team@example.com"
    return tags


def test_every_derived_name_fits_its_api_with_the_longest_team_and_environment(tmp_path: Path):
    from test_stack_variants import api_limit_problems

    stacks = tmp_path / "stacks"
    shutil.copytree(repo_root() / "stacks", stacks)
    doc = yaml.safe_load((stacks / "Pulumi.vision-dev.yaml").read_text())
    doc["config"]["hybridserve:team"], doc["config"]["hybridserve:environment"] = TEAM, ENV
    doc["config"]["hybridserve:cost_center"] = "CC-" + "9" * 61  # 64: the longest cost center
    doc["config"]["hybridserve:tags"] = longest_tags()
    # a derived bucket name would be too long: validate says "set it explicitly" (test_stackconfig_schema)
    doc["config"]["hybridserve:storage"]["access_logs"] = {"bucket": "acme-long-names-access-logs"}
    path = stacks / f"Pulumi.{TEAM}-{ENV}.yaml"
    path.write_text(yaml.safe_dump(doc))
    plan = plan_stack_file(path)
    assert len(plan.config.tags) == MAX_USER_TAGS and len(plan.config.cost_center) == 64
    assert api_limit_problems(plan) == []
    checked = 0
    for type_, key, limit, pattern in LIMITS:
        found = [r for r in plan.resources if r.type == type_]
        assert found, type_
        for r in found:
            name = r.inputs[key]
            assert len(name) <= limit, f"{type_} {r.name}: {name!r} is {len(name)} characters, the API allows {limit}"
            assert pattern is None or re.match(pattern, name), (type_, name)
            checked += 1
    assert checked > 20
    # long names were shortened (with a hash), not cut into collisions
    roles = [r.inputs["name"] for r in plan.resources if r.type == "aws:iam/role:Role"]
    assert len(set(roles)) == len(roles) and any(len(n) == 64 for n in roles)
    # Kubernetes names in the serving namespace are the kit's own, independent of the stack's
    k8s_names = [
        (r.type, r.inputs["metadata"]["name"])
        for r in plan.resources
        if r.type.startswith("kubernetes:") and isinstance(r.inputs.get("metadata"), dict) and isinstance(r.inputs["metadata"].get("name"), str)
    ]
    assert len(k8s_names) > 20  # the check below read the objects' names (it would pass on none)
    assert [(t, n) for t, n in k8s_names if len(n) > 63] == []
