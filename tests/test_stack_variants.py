"""Stack variants for what the README promises and the four example stacks never plan, and the limits the real
APIs enforce on what the plan produces (the mock engine accepts any name, tag, rule count or label).

Each variant is an example stack's config dict edited in the test (tests/test_network.py `variant`). The longest
names and the most tags allowed are tests/test_names.py's stack; it checks the same limits.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import pytest
from pulumi.runtime import rpc
from test_network import EXAMPLES, NAMES, PlanView, example, section, variant

import infra.plan
from hybridserve.stackconfig import StackConfigError, build_stack_config
from infra.plan import Plan, PlannedResource, plan_stack_file
from stackutil import reachable

# --- what the APIs enforce ----------------------------------------------------------------------------
# AWS tags (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html, "Tag naming limits and
# requirements", checked 2026-12-01): 50 user tags per resource, key 1-128 and value 0-256 characters, keys not
# starting with "aws:"; letters, digits, spaces and _ . : / = + - @ (EC2 allows more, IAM and others do not,
# and the provider's default tags reach every service).
AWS_MAX_TAGS, AWS_TAG_KEY, AWS_TAG_VALUE = 50, 128, 256
AWS_TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$")
# Neutron's tag extension (neutron/extensions/tagging.py MAX_TAG_LEN): a tag is a string of at most 255 characters.
NEUTRON_TAG = 255
# Amazon VPC quotas (https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html, checked 2026-12-01):
# 60 inbound and 60 outbound rules per security group by default; each CIDR of a rule counts as one rule.
SG_RULES = 60
# EC2 CreateSecurityGroup: GroupDescription and rule descriptions up to 255 characters, a-zA-Z0-9, spaces and
# ._-:/()#,@[]+=&;{}!$* (the API reference, checked 2026-12-01).
SG_DESCRIPTION = 255
SG_DESCRIPTION_CHARS = re.compile(r"^[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$")
# IAM CreateRole: Description up to 1000 characters; KMS CreateKey: Description up to 8192.
DESCRIPTION_LIMITS = {"aws:iam/role:Role": 1000, "aws:kms/key:Key": 8192}
# Kubernetes (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set):
# a label value is empty or up to 63 characters, alphanumeric at both ends, with - _ . between; a key's name
# part likewise, with an optional DNS-subdomain prefix up to 253 characters.
K8S_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
K8S_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
MARKERS = ("[unknown]", "[secret]")


def _aws_tag_sets(r: PlannedResource) -> list[tuple[str, dict[str, Any]]]:
    """Every tag map of an AWS resource's inputs: `tags` and a launch template's per-resource tag specifications."""
    found = []
    if isinstance(r.inputs.get("tags"), dict):
        found.append(("tags", r.inputs["tags"]))
    for i, spec in enumerate(r.inputs.get("tagSpecifications") or []):
        if isinstance(spec, dict) and isinstance(spec.get("tags"), dict):
            found.append((f"tagSpecifications[{i}].tags", spec["tags"]))
    return found


def _k8s_labels(r: PlannedResource) -> list[tuple[str, dict[str, Any]]]:
    """Label maps of a Kubernetes object (metadata and pod template) or an EKS node group."""
    out = []
    if r.type == "aws:eks/nodeGroup:NodeGroup" and isinstance(r.inputs.get("labels"), dict):
        out.append(("labels", r.inputs["labels"]))
    if r.type.startswith("kubernetes:") and isinstance(r.inputs.get("metadata"), dict):
        labels = r.inputs["metadata"].get("labels")
        if isinstance(labels, dict):
            out.append(("metadata.labels", labels))
        spec = r.inputs.get("spec")
        template = spec.get("template") if isinstance(spec, dict) else None
        if isinstance(template, dict) and isinstance(template.get("metadata"), dict) and isinstance(template["metadata"].get("labels"), dict):
            out.append(("spec.template.metadata.labels", template["metadata"]["labels"]))
    return out


def api_limit_problems(plan: Plan) -> list[str]:
    """What AWS, Neutron and Kubernetes would refuse in this plan (beyond names: tests/test_names.py)."""
    problems: list[str] = []
    default_tags: dict[str, dict[str, Any]] = {}
    for r in plan.resources:
        if r.type == "pulumi:providers:aws":
            default = r.inputs.get("defaultTags") or {}
            default = json.loads(default) if isinstance(default, str) else default  # provider inputs are JSON text
            default_tags[r.urn] = default.get("tags") or {}
    sg_rules: dict[str, dict[str, int]] = defaultdict(lambda: {"ingress": 0, "egress": 0})
    for r in plan.resources:
        where = f"{r.type} {r.name}"
        if r.custom and r.type.startswith("aws:"):
            for path, tags in _aws_tag_sets(r):
                merged = {**default_tags.get(r.provider or "", {}), **tags}
                if len(merged) > AWS_MAX_TAGS:
                    problems.append(f"{where}: {path} holds {len(merged)} tags with the default tags; AWS allows {AWS_MAX_TAGS}")
                for key, value in merged.items():
                    if not 1 <= len(key) <= AWS_TAG_KEY or key.lower().startswith("aws:") or not AWS_TAG_CHARS.match(key):
                        problems.append(f"{where}: tag key {key!r} is not a valid AWS tag key")
                    if not isinstance(value, str) or len(value) > AWS_TAG_VALUE or not AWS_TAG_CHARS.match(value):
                        if value not in MARKERS:
                            problems.append(f"{where}: tag {key}={value!r} is not a valid AWS tag value")
        if r.type.startswith("openstack:") and isinstance(r.inputs.get("tags"), list):
            problems += [f"{where}: tag {t!r} is {len(t)} characters; Neutron allows {NEUTRON_TAG}" for t in r.inputs["tags"] if len(t) > NEUTRON_TAG]
        if r.type == "aws:ec2/securityGroup:SecurityGroup":
            desc = r.inputs.get("description", "")
            if len(desc) > SG_DESCRIPTION or not SG_DESCRIPTION_CHARS.match(desc):
                problems.append(f"{where}: description {desc!r} is not a valid security group description")
            for direction in ("ingress", "egress"):
                for rule in [x for x in r.inputs.get(direction) or [] if isinstance(x, dict)]:
                    sg_rules[r.urn][direction] += max(1, len(rule.get("cidrBlocks") or []) + len(rule.get("securityGroups") or []) + len(rule.get("ipv6CidrBlocks") or []))
                    rdesc = rule.get("description", "")
                    if len(rdesc) > SG_DESCRIPTION or not SG_DESCRIPTION_CHARS.match(rdesc):
                        problems.append(f"{where}: {direction} rule description {rdesc!r} is not valid for EC2")
        if r.type == "aws:ec2/securityGroupRule:SecurityGroupRule":
            sg_rules[r.inputs["securityGroupId"]][r.inputs["type"]] += max(1, len(r.inputs.get("cidrBlocks") or []))
        if r.type in DESCRIPTION_LIMITS and len(r.inputs.get("description", "")) > DESCRIPTION_LIMITS[r.type]:
            problems.append(f"{where}: description is {len(r.inputs['description'])} characters; the API allows {DESCRIPTION_LIMITS[r.type]}")
        if r.type.startswith("openstack:networking/secGroup") and len(r.inputs.get("description", "")) > 255:
            problems.append(f"{where}: description longer than Neutron's 255 characters")
        for path, labels in _k8s_labels(r):
            for key, value in labels.items():
                prefix, _, name_part = key.rpartition("/")
                if len(prefix) > 253 or len(name_part) > 63 or not K8S_LABEL_NAME.match(name_part):
                    problems.append(f"{where}: {path} key {key!r} is not a valid Kubernetes label key")
                if not isinstance(value, str) or len(value) > 63 or not K8S_LABEL_VALUE.match(value):
                    if value not in MARKERS:
                        problems.append(f"{where}: {path} {key}={value!r} is not a valid Kubernetes label value (≤ 63 characters)")
        if r.type == "aws:eks/nodeGroup:NodeGroup":
            for taint in [t for t in r.inputs.get("taints") or [] if isinstance(t, dict)]:
                if len(taint.get("key", "")) > 63 or len(taint.get("value", "")) > 63:
                    problems.append(f"{where}: taint {taint} exceeds EKS's 63 characters for key or value")
    for sg, counts in sg_rules.items():
        for direction, n in counts.items():
            if n > SG_RULES:
                problems.append(f"security group {sg}: {n} {direction} rules; a VPC security group holds {SG_RULES}")
    return problems


def test_positive_control_the_limit_checks_flag_what_an_api_refuses():
    """api_limit_problems must see each kind of violation, or an empty result proves nothing."""
    provider = PlannedResource("urn:p", "pulumi:providers:aws", "aws", None, None, {"defaultTags": json.dumps({"tags": {f"d{i}": "v" for i in range(10)}})}, True)

    def aws(type_: str, inputs: dict) -> PlannedResource:
        return PlannedResource(f"urn:{type_}", type_, "x", None, "urn:p", inputs, True)

    bad = [
        provider,
        aws("aws:ec2/vpc:Vpc", {"tags": {f"t{i}": "v" for i in range(41)}}),  # 51 with the defaults
        aws("aws:s3/bucket:Bucket", {"tags": {"k" * 129: "v", "aws:x": "v", "owner": "a,b", "long": "v" * 257}}),
        PlannedResource("urn:o", "openstack:networking/network:Network", "x", None, "urn:q", {"tags": ["k=" + "v" * 254]}, True),
        aws("aws:ec2/securityGroup:SecurityGroup", {"description": "ünïcode", "ingress": [{"cidrBlocks": [f"10.0.{i}.0/24" for i in range(61)], "description": "d"}]}),
        aws("aws:iam/role:Role", {"description": "d" * 1001}),
        PlannedResource("urn:k", "kubernetes:core/v1:Service", "x", None, "urn:k8s", {"metadata": {"labels": {"team": "t" * 64, "-bad": "v"}}}, True),
        aws("aws:eks/nodeGroup:NodeGroup", {"labels": {"ok": "v_"}, "taints": [{"key": "k", "value": "v" * 64, "effect": "NO_SCHEDULE"}]}),
    ]
    plan = Plan("x", "x", None, bad, {}, None)  # type: ignore[arg-type]
    text = "\n".join(api_limit_problems(plan))
    for needle in ("holds 51 tags", f"{'k' * 129!r}", "'aws:x'", "owner='a,b'", "long=", "Neutron allows 255", "'ünïcode'",
                   "61 ingress rules", "the API allows 1000", "team=", "'-bad'", "ok='v_'", "taint"):
        assert needle in text, needle
    assert api_limit_problems(Plan("x", "x", None, [provider, aws("aws:ec2/vpc:Vpc", {"tags": {"Name": "x"}})], {}, None)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_the_example_stacks_stay_within_the_api_limits(name):
    plan = example(name).plan
    assert api_limit_problems(plan) == []
    # what the check read: the managed tags on every AWS provider, labels on the Kubernetes objects
    providers = [json.loads(r.inputs["defaultTags"])["tags"] for r in plan.resources if r.type == "pulumi:providers:aws"]
    assert providers and all(tags["team"] == plan.config.team and len(tags) >= 6 for tags in providers)
    assert sum(1 for r in plan.resources for _ in _k8s_labels(r)) > 20


# --- variants ----------------------------------------------------------------------------------------

POD_CIDR = "10.210.0.0/16"


def test_an_eks_pod_cidr_is_refused_until_custom_networking_is_wired(tmp_path):
    """A pod CIDR was routed across the VPN while pods kept VPC addresses (no secondary VPC range, pod
    subnets or ENIConfigs): refused, naming the key, rather than half done."""
    with pytest.raises(StackConfigError) as info:
        plan_stack_file(variant(tmp_path, "vision-dev", lambda c: section(c, "aws", "eks").update(pod_cidr=POD_CIDR)))
    assert f"hybridserve:aws.eks.pod_cidr: {POD_CIDR}: VPC CNI custom networking is not wired yet" in str(info.value)


def test_an_extra_openstack_cidr_on_the_virtual_private_gateway_path(tmp_path):
    """README, "Add a peer CIDR" with the default `vpn.gateway: vgw`: router interface, local endpoint group,
    a static route on the VPN connection, a route in every private route table, Triton's ports in the AWS peer group."""
    extras = [f"10.{112 + i}.0.0/24" for i in range(10)]  # the most the schema allows

    v = PlanView(plan_stack_file(variant(tmp_path, "vision-dev", lambda c: section(c, "vpn").update(extra_openstack_cidrs=extras))))
    assert v.cfg.vpn.gateway == "vgw"
    site = [v.cfg.openstack.network.cidr, *extras]
    vgw = v.id(v.one("aws:ec2/vpnGateway:VpnGateway"))
    conn = v.one("aws:ec2/vpnConnection:VpnConnection")
    assert sorted(r.inputs["destinationCidrBlock"] for r in v.all("aws:ec2/vpnConnectionRoute:VpnConnectionRoute")) == sorted(site)
    assert {r.inputs["vpnConnectionId"] for r in v.all("aws:ec2/vpnConnectionRoute:VpnConnectionRoute")} == {v.id(conn)}
    assert v.subnets("private")
    for s in v.subnets("private"):
        to_vgw = sorted(r.inputs["destinationCidrBlock"] for r in v.routes(v.route_table_of(s)) if r.inputs.get("gatewayId") == vgw)
        assert to_vgw == sorted(site), s.name
    interfaces = sorted(i.name for i in v.all("openstack:networking/routerInterface:RouterInterface") if "-extra-" in i.name)
    assert interfaces == sorted(f"openstack-network-router-extra-{i}" for i in range(len(extras)))
    groups = {g.inputs["type"]: g for g in v.all("openstack:vpnaas/endpointGroup:EndpointGroup")}
    assert len(groups["subnet"].inputs["endpoints"]) == 1 + len(extras)
    peer = next(sg for sg in v.all("aws:ec2/securityGroup:SecurityGroup") if sg.name == "aws-network-peer")
    assert {c for rule in peer.inputs["ingress"] for c in rule["cidrBlocks"]} == set(site)
    # eleven networks, each with Triton's ports and ICMP: still inside a security group's 60 inbound rules
    assert api_limit_problems(v.plan) == []
    from hybridserve.stackconfig.vpncheck import plan_problems

    assert plan_problems(v.plan.resources) == []


def test_ipv6_is_refused_with_the_key_and_what_is_valid():
    """The schema is IPv4 only (the VPN profile, the routes and the guardrails judge IPv4 networks): an IPv6
    rule or range must be refused by name at validate time, never planned."""
    base = reachable({"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"})
    cases = {
        ("openstack", "network", "ingress"): [{"cidr": "2001:db8::/32", "protocol": "tcp", "port": 443}],
        ("aws", "eks", "public_access_cidrs"): ["::/0"],
        ("vpn", "extra_openstack_cidrs"): ["fd00::/64"],
    }
    for path, value in cases.items():
        values = json.loads(json.dumps(base))
        node = values.setdefault(f"hybridserve:{path[0]}", {})
        for p in path[1:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = value
        with pytest.raises(StackConfigError) as info:
            build_stack_config(values)
        text = str(info.value)
        assert f"hybridserve:{'.'.join(path)}" in text and "IPv4" in text and "e.g. 10.10.0.0/16" in text, text


# --- positive controls for the secret-absence checks elsewhere -----------------------------------------


def _unmasked(real):
    """infra.plan._mask without the masking: secrets stay in clear (what a component dropping secretness leaks)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            sig = value.get(rpc._special_sig_key)
            if sig == rpc._special_secret_sig:
                return strip(value.get("value"))
            if sig == rpc._special_output_value_sig and value.get("secret"):
                return strip({k: v for k, v in value.items() if k != "secret"})
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return lambda value: real(strip(value))


def test_positive_control_the_secret_searches_find_the_secrets_when_they_are_in_clear(monkeypatch):
    """tests/test_vpn.py and tests/test_storage.py assert that generated secrets are absent from the plan JSON,
    by searching for the values they compute from the mock engine. The same searches, on a plan whose masking is
    switched off, must find them: else the values searched for are not the ones the plan carries."""
    from test_vpn import _generated_psks

    from infra.mocks import MockContext

    masked = json.dumps(example("vision-dev").plan.as_json())
    monkeypatch.setattr(infra.plan, "_mask", _unmasked(infra.plan._mask))
    monkeypatch.setattr(infra.plan, "_check", lambda plan, placeholders: None)  # it would refuse this plan (see below)
    plan = plan_stack_file(EXAMPLES / "Pulumi.vision-dev.yaml")
    clear = json.dumps(plan.as_json())
    region = plan.config.aws.region
    ec2 = MockContext(region, "vision-dev", "openstack:identity/ec2CredentialV3:Ec2CredentialV3", "s3-credentials")
    searches = [*_generated_psks("vision-dev", region), ec2.digest("secret", length=32), ec2.digest("access", length=32)]
    for secret in searches:
        assert secret in clear, secret  # present when secretness is dropped
        assert secret not in masked, secret  # absent from the real plan, as the other tests assert


def test_positive_control_a_configured_secret_in_clear_fails_the_plan(monkeypatch, tmp_path):
    """tests/test_vpn.py plans a stack with `vpn_psk` set and relies on the plan failing if its placeholder reaches
    an input in clear: with the masking switched off it does reach them, and the plan must refuse."""
    from hybridserve.errors import UserError

    path = variant(tmp_path, "search-dev", lambda c: c.update({"hybridserve:vpn_psk": {"secure": "v1:c2VjcmV0:cHNrLWNpcGhlcnRleHQ="}}))
    plan_stack_file(path)  # masked: fine
    monkeypatch.setattr(infra.plan, "_mask", _unmasked(infra.plan._mask))
    with pytest.raises(UserError) as info:
        plan_stack_file(path)
    assert "a secret config value reaches its inputs in plain text" in str(info.value)
    assert "tunnel1PresharedKey is not a secret" in str(info.value)  # the VPN check sees the generated keys too


# --- tags every API takes, refused at validate time beyond that -------------------------------------


@pytest.mark.parametrize(
    "tags, message",
    [
        ({f"t{i}": "v" for i in range(41)}, "41 tags; at most 40: AWS allows 50 per resource"),
        ({"k" * 128: "v" * 200}, "as the OpenStack tag 'key=value'; Neutron allows 255"),
        ({"owner": "a,b"}, "tag value 'a,b': use letters, digits, spaces and _ . : / = + - @ only"),
        ({"owner#1": "x"}, "tag key 'owner#1': use letters"),
    ],
)
def test_tags_an_api_would_refuse_are_refused_naming_the_key(tags, message):
    # all were accepted, then refused by IAM (a ',' in a value), Neutron (a 'key=value' over 255) or any AWS
    # resource with the subnets' own tags (over 50 in all)
    values = reachable({"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1", "hybridserve:tags": tags})
    with pytest.raises(StackConfigError) as info:
        build_stack_config(values)
    assert "hybridserve:tags" in str(info.value) and message in str(info.value), str(info.value)


def test_client_namespaces_and_networks_reach_inference_only_and_cluster_exposure_has_no_load_balancer(tmp_path):
    """README, serving: default-deny NetworkPolicies admit inference from the peer site, `client_namespaces` and
    `client_cidrs`; `serving.expose: cluster` leaves Triton without the internal load balancer."""

    def edit(c):
        section(c, "serving").update(client_namespaces=["search-api", "batch"], client_cidrs=["10.50.0.0/24"], expose="cluster")

    v = PlanView(plan_stack_file(variant(tmp_path, "vision-dev", edit)))
    policies = v.all("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    services = v.all("kubernetes:core/v1:Service")
    assert services and not [s for s in services if s.inputs["spec"].get("type") == "LoadBalancer"]
    for site in ("aws", "openstack"):
        [triton] = [p for p in policies if p.provider.endswith(f"::k8s-{site}") and any("ipBlock" in f for rule in p.inputs["spec"].get("ingress", []) for f in rule["from"])]
        ingress = triton.inputs["spec"]["ingress"]
        namespaces = [rule for rule in ingress if any("namespaceSelector" in f for f in rule["from"]) and {p["port"] for p in rule["ports"]} != {"metrics"}]
        assert len(namespaces) == 1
        assert [f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for f in namespaces[0]["from"]] == ["search-api", "batch"]
        assert {p["port"] for p in namespaces[0]["ports"]} == {"http", "grpc"}  # inference, not metrics
        [networks] = [rule for rule in ingress if any("ipBlock" in f for f in rule["from"])]
        cidrs = [f["ipBlock"]["cidr"] for f in networks["from"]]
        peer = v.cfg.openstack.network.cidr if site == "aws" else v.cfg.aws.vpc.cidr
        assert peer in cidrs and "10.50.0.0/24" in cidrs and not any(c.endswith("/0") for c in cidrs), cidrs
        assert {p["port"] for p in networks["ports"]} == {"http", "grpc"}
    assert api_limit_problems(v.plan) == []
