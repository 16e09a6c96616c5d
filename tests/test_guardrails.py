"""Guardrails judged by what a set of values means, not how it is spelt.

- "Open to the Internet" is the union of every rule that opens an admin port (per protocol and port)
  or reaches a public API endpoint: 0.0.0.0/1 + 128.0.0.0/1 is 0.0.0.0/0; more than a /16's worth of
  public addresses is refused too (common.MAX_PUBLIC_ADDRESSES).
- A stack's own networks are private address space (RFC 1918, or RFC 6598 100.64.0.0/10); the sources
  of a public endpoint are public addresses.
- S3 bucket names are global: every S3 bucket a stack creates, derived or explicit, is unique within
  the stack and across stacks, and obeys the S3 naming rules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hybridserve.paths import repo_root
from hybridserve.stackconfig import StackConfigError, build_stack_config
from hybridserve.stackconfig.crossstack import cross_stack_problems
from hybridserve.stackconfig.schema.common import MAX_PUBLIC_ADDRESSES, collect_issues, internet_exposure
from hybridserve.stackconfig.schema.storage import check_bucket_name
from infra.plan import plan_stack_file
from stackutil import reachable

from cliutil import run_cli

REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}
EXAMPLES = repo_root() / "stacks"
PUBLIC_RUNNER = {"via": "public_endpoint", "runner_cidrs": ["198.51.100.0/24"]}


def build(extra: dict):
    return build_stack_config(reachable({**REQUIRED, **extra}))


def problems_of(extra: dict) -> list[str]:
    with pytest.raises(StackConfigError) as info:
        build(extra)
    assert info.value.exit_code == 2
    return info.value.problems


def ingress(*rules: dict) -> dict:
    return {"hybridserve:openstack": {"network": {"ingress": list(rules)}}}


def admin_port_problems(extra: dict) -> list[str]:
    """The admin-port findings alone: a non-empty openstack.network.ingress is refused as a whole besides (issue 11:
    Magnum owns the nodes' security groups), but its rules are still judged."""
    problems = problems_of(extra)
    assert any("hybridserve:openstack.network.ingress: Magnum creates and attaches" in p for p in problems), problems
    return [p for p in problems if "would open" in p]


# --- the threshold itself ---------------------------------------------------------------------------


def test_the_union_is_judged_not_the_spelling():
    assert internet_exposure(["0.0.0.0/0"]) == "the whole internet"
    assert internet_exposure(["0.0.0.0/1", "128.0.0.0/1"]) == "the whole internet"
    # every public /8 listed one by one is the whole internet as well
    assert internet_exposure([f"{i}.0.0.0/8" for i in range(256)]) == "the whole internet"
    # a /16 passes; two /16s do not; private space never counts
    assert internet_exposure(["17.0.0.0/16"]) is None
    assert internet_exposure(["17.0.0.0/16", "17.0.0.0/17", "17.0.0.7/32"]) is None  # overlaps are counted once
    assert internet_exposure(["16.0.0.0/16", "18.0.0.0/16"]).startswith("131,072 public addresses (0.0035% of the public IPv4 internet")
    assert internet_exposure(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "203.0.113.0/24"]) is None
    assert MAX_PUBLIC_ADDRESSES == 2**16
    # IPv6 is judged on its own bound (a /48), never added to the IPv4 count
    assert internet_exposure(["2001:db8:1234::/48", "203.0.113.0/24"]) is None
    assert internet_exposure(["2001:db8::/47"]).startswith("2,417,851,639,229,258,349,412,352 public addresses")


# --- admin ports on the OpenStack nodes ------------------------------------------------------------


@pytest.mark.parametrize("port, what", [(22, "SSH"), (3389, "RDP"), (6443, "the Kubernetes API"), (10250, "the kubelet API")])
def test_two_halves_open_an_admin_port_to_the_internet(port, what):
    problems = problems_of(ingress({"cidr": "0.0.0.0/1", "port": port}, {"cidr": "128.0.0.0/1", "port": port}))
    assert any(
        p.startswith(f"config: hybridserve:openstack.network.ingress[0].cidr: 0.0.0.0/1 together with ingress[1] (128.0.0.0/1) would open {what} (tcp port {port}) to the whole internet")
        for p in problems
    ), problems


def test_the_message_names_only_the_rules_that_add_to_the_opening():
    problems = problems_of(ingress({"cidr": "203.0.113.7/32", "port": 22}, {"cidr": "0.0.0.0/0", "port": 22}))
    assert any(p.startswith("config: hybridserve:openstack.network.ingress[1].cidr: 0.0.0.0/0 would open SSH (tcp port 22) to the whole internet;") for p in problems), problems


def test_rules_are_judged_per_port_across_ranges():
    # a range 20-25 from one half and port 22 from the other: SSH from everywhere, and only SSH
    problems = problems_of(ingress({"cidr": "0.0.0.0/1", "port": 20, "port_max": 25}, {"cidr": "128.0.0.0/1", "port": 22}))
    admin = [p for p in problems if "would open" in p]
    assert len(admin) == 1 and "SSH (tcp port 22) to the whole internet" in admin[0], problems
    # the same halves on a non-admin port are an explicit opening the schema accepts
    assert admin_port_problems(ingress({"cidr": "0.0.0.0/1", "port": 443}, {"cidr": "128.0.0.0/1", "port": 443})) == []


def test_a_large_share_of_the_internet_is_refused_but_a_narrow_set_is_not():
    problems = problems_of(ingress({"cidr": "16.0.0.0/4", "port": 22}))
    assert any("ingress[0].cidr: 16.0.0.0/4 would open SSH (tcp port 22) to 268,435,456 public addresses (7.3% of the public IPv4 internet" in p for p in problems), problems
    problems = problems_of(ingress({"cidr": "16.0.0.0/16", "port": 22}, {"cidr": "18.0.0.0/16", "port": 20, "port_max": 30}))
    assert any("SSH (tcp port 22) to 131,072 public addresses" in p for p in problems), problems
    for rules in ([{"cidr": "17.0.0.0/16", "port": 22}], [{"cidr": "10.0.0.0/8", "port": 22}, {"cidr": "203.0.113.7/32", "port": 22}]):
        assert admin_port_problems(ingress(*rules)) == []


def test_protocols_are_judged_apart_and_icmp_has_no_admin_port():
    # tcp from one half and udp from the other open neither protocol to the whole internet, but each to half of it
    problems = problems_of(ingress({"cidr": "0.0.0.0/1", "protocol": "tcp", "port": 3389}, {"cidr": "128.0.0.0/1", "protocol": "udp", "port": 3389}))
    assert any("ingress[0].cidr: 0.0.0.0/1 would open RDP (tcp port 3389) to" in p for p in problems), problems
    assert any("ingress[1].cidr: 128.0.0.0/1 would open RDP (udp port 3389) to" in p for p in problems), problems
    assert admin_port_problems(ingress({"cidr": "0.0.0.0/0", "protocol": "icmp"})) == []


# --- who reaches a public Kubernetes API endpoint -------------------------------------------------


def test_eks_public_access_cidrs_in_halves_are_the_whole_internet():
    problems = problems_of({"hybridserve:aws": {"eks": {"public_access_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]}}})
    assert any(
        p.startswith("config: hybridserve:aws.eks.public_access_cidrs[0]: 0.0.0.0/1 together with hybridserve:aws.eks.public_access_cidrs[1] (128.0.0.0/1)")
        and "opens the Kubernetes API to the whole internet" in p and "allow_public_api_from_anywhere" in p
        for p in problems
    ), problems
    # the explicit opt-in still accepts it, however spelt
    cfg = build({"hybridserve:aws": {"eks": {"public_access_cidrs": ["0.0.0.0/1", "128.0.0.0/1"], "allow_public_api_from_anywhere": True}}})
    assert collect_issues(cfg) == [] and cfg.aws.eks.public_cidrs[:2] == ["0.0.0.0/1", "128.0.0.0/1"]


def test_operators_and_public_runners_are_judged_together():
    # half from public_access_cidrs, the other half from the public deploy path's runners
    eks = {"public_access_cidrs": ["0.0.0.0/1"], "deploy_access": {"via": "public_endpoint", "runner_cidrs": ["128.0.0.0/1"]}}
    problems = problems_of({"hybridserve:aws": {"eks": eks}})
    assert any(
        "hybridserve:aws.eks.public_access_cidrs[0]: 0.0.0.0/1 together with hybridserve:aws.eks.deploy_access.runner_cidrs[0] (128.0.0.0/1) "
        "opens the Kubernetes API to the whole internet" in p
        for p in problems
    ), problems


def test_magnum_public_runners_in_halves_are_the_whole_internet():
    magnum = {"deploy_access": {"via": "public_endpoint", "runner_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]}}
    problems = problems_of({"hybridserve:openstack": {"magnum": magnum}})
    assert any(
        "hybridserve:openstack.magnum.deploy_access.runner_cidrs[0]: 0.0.0.0/1 together with hybridserve:openstack.magnum.deploy_access.runner_cidrs[1] "
        "(128.0.0.0/1) opens the Kubernetes API to the whole internet" in p
        for p in problems
    ), problems
    assert not any("allow_public_api_from_anywhere" in p for p in problems)  # no opt-in exists for Magnum


@pytest.mark.parametrize(
    "cidr, expected",
    [
        ("10.1.0.0/16", "hybridserve:aws.eks.public_access_cidrs[0]: 10.1.0.0/16 is private address space, which never reaches a public endpoint"),
        ("100.64.0.0/16", "hybridserve:aws.eks.public_access_cidrs[0]: 100.64.0.0/16 is private address space"),
        ("192.0.0.0/16", "hybridserve:aws.eks.public_access_cidrs[0]: 192.0.0.0/16 mixes public and private or reserved address space"),
    ],
)
def test_eks_public_access_cidrs_must_be_public(cidr, expected):
    problems = problems_of({"hybridserve:aws": {"eks": {"public_access_cidrs": [cidr]}}})
    assert any(expected in p for p in problems), problems


def test_ipv6_spellings_of_everyone_are_refused_at_the_field():
    # No field takes IPv6 (the Cidr type is IPv4 only), so ::/0 and ::/1 + 8000::/1 never reach a rule.
    problems = problems_of({"hybridserve:aws": {"eks": {"public_access_cidrs": ["::/1", "8000::/1"]}}})
    assert any("hybridserve:aws.eks.public_access_cidrs[0]: '::/1' is not a valid IPv4 CIDR" in p for p in problems), problems
    assert any("hybridserve:aws.eks.public_access_cidrs[1]: '8000::/1' is not a valid IPv4 CIDR" in p for p in problems), problems
    problems = problems_of(ingress({"cidr": "::/0", "port": 22}))
    assert any("hybridserve:openstack.network.ingress[0].cidr: '::/0' is not a valid IPv4 CIDR" in p for p in problems), problems


# --- the stack's own networks are private ----------------------------------------------------------


@pytest.mark.parametrize(
    "extra, key, cidr",
    [
        ({"hybridserve:aws": {"vpc": {"cidr": "8.8.0.0/16"}}}, "hybridserve:aws.vpc.cidr", "8.8.0.0/16"),
        ({"hybridserve:aws": {"eks": {"pod_cidr": "100.0.0.0/16"}}}, "hybridserve:aws.eks.pod_cidr", "100.0.0.0/16"),
        ({"hybridserve:openstack": {"network": {"cidr": "203.0.113.0/24"}}}, "hybridserve:openstack.network.cidr", "203.0.113.0/24"),
        ({"hybridserve:openstack": {"magnum": {"pod_cidr": "128.0.0.0/16"}}}, "hybridserve:openstack.magnum.pod_cidr", "128.0.0.0/16"),
        ({"hybridserve:openstack": {"magnum": {"service_cidr": "11.0.0.0/16"}}}, "hybridserve:openstack.magnum.service_cidr", "11.0.0.0/16"),
        ({"hybridserve:vpn": {"gateway": "transit", "extra_aws_cidrs": ["128.0.0.0/1"]}}, "hybridserve:vpn.extra_aws_cidrs[0]", "128.0.0.0/1"),
        ({"hybridserve:vpn": {"extra_openstack_cidrs": ["192.0.2.0/24"]}}, "hybridserve:vpn.extra_openstack_cidrs[0]", "192.0.2.0/24"),
    ],
)
def test_networks_of_the_stack_must_be_private(extra, key, cidr):
    problems = problems_of(extra)
    assert any(f"{key}: {cidr} is not private address space" in p and "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918)" in p for p in problems), problems


def test_shared_address_space_is_allowed_for_pods_and_networks():
    # RFC 6598 100.64.0.0/10: EKS documents it for custom pod networking (a secondary VPC range); any
    # network of the stack may use it (the EKS pod CIDR itself is refused until custom networking is wired).
    cfg = build({"hybridserve:openstack": {"network": {"cidr": "100.65.0.0/22"}, "magnum": {"pod_cidr": "100.64.0.0/16"}}})
    assert collect_issues(cfg) == []


# --- S3 bucket names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "ab", "a" * 64, "Models", "my_bucket", "-models", "models-", "my..bucket", "my-.bucket", "my.-bucket", "192.168.5.4",
        "xn--models", "sthree-models", "sthree-configurator-x", "amzn-s3-demo-models",
        "models-s3alias", "models--ol-s3", "models.mrap", "models--x-s3", "models--table-s3",
        "models-111122223333-us-west-2-an",
    ],
)
def test_s3_naming_rules(name):
    with pytest.raises(ValueError):
        check_bucket_name(name)
    problems = problems_of({"hybridserve:storage": {"access_logs": {"bucket": name}}})
    assert any(p.startswith("config: hybridserve:storage.access_logs.bucket: ") for p in problems), problems


@pytest.mark.parametrize("name", ["abc", "a" * 63, "acme.models-2", "models-an", "1models9"])
def test_valid_s3_names_pass(name):
    assert check_bucket_name(name) == name


def test_a_derived_name_that_breaks_the_rules_names_the_key():
    # the longest team and environment make <project>-<team>-<env>-access-logs 89 characters
    long = {"hybridserve:team": "t" * 32, "hybridserve:environment": "e" * 32, "hybridserve:storage": {"model_bucket": "acme-models"}}
    problems = problems_of(long)
    assert any(p.startswith("config: hybridserve:storage.access_logs.bucket: the derived name 'hybridserve-" ) and "set it explicitly" in p for p in problems), problems
    assert any(p.startswith("config: hybridserve:storage.swift_container: the derived name") for p in problems), problems


@pytest.mark.parametrize(
    "storage, key, name",
    [
        # the access-log bucket named like the model bucket
        ({"model_bucket": "acme-models", "access_logs": {"bucket": "acme-models"}}, "access_logs.bucket", "acme-models"),
        # an explicit model bucket named like the derived access-log bucket
        ({"model_bucket": "hybridserve-acme-dev-access-logs"}, "access_logs.bucket", "hybridserve-acme-dev-access-logs"),
    ],
)
def test_two_buckets_of_one_name_in_a_stack_are_refused(storage, key, name):
    problems = problems_of({"hybridserve:storage": storage})
    assert any(
        p.startswith(f"config: hybridserve:storage.{key}: '{name}' is also the name of hybridserve:storage.model_bucket; the plan would create two S3 buckets")
        for p in problems
    ), problems


def test_the_swift_container_may_share_the_model_buckets_name():
    # Swift lives in the OpenStack cloud's namespace: the defaults derive the same name for both
    cfg = build({})
    names = cfg.bucket_names()
    assert names[("storage", "model_bucket")] == names[("storage", "swift_container")] == "hybridserve-acme-dev-models"
    assert collect_issues(cfg) == []


def _stack(team: str, env: str, storage: dict, region: str = "eu-central-1"):
    values = {
        **REQUIRED, "hybridserve:team": team, "hybridserve:environment": env, "hybridserve:storage": storage, "aws:region": region,
        "hybridserve:vpn": {"peering_group": team},  # default networks, never routed to each other: only the names meet
    }
    return build_stack_config(reachable(values), source=f"stacks/Pulumi.{team}-{env}.yaml")


@pytest.mark.parametrize(
    "other_storage, key",
    [
        ({"access_logs": {"bucket": "shared-models"}}, "access_logs.bucket"),  # B's log bucket = A's model bucket
        ({"model_bucket": "hybridserve-alpha-dev-access-logs"}, "model_bucket"),  # B's model bucket = A's derived log bucket
    ],
)
def test_s3_names_are_global_across_stacks_for_every_bucket(other_storage, key):
    a = _stack("alpha", "dev", {"model_bucket": "shared-models"})
    b = _stack("beta", "dev", {"swift_container": "beta-dev-models", **other_storage})
    problems = cross_stack_problems({"stacks/Pulumi.alpha-dev.yaml": a, "stacks/Pulumi.beta-dev.yaml": b})
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"stacks/Pulumi.beta-dev.yaml: hybridserve:storage.{key}: ")
    assert "is already used by stacks/Pulumi.alpha-dev.yaml" in problems[0] and "S3 bucket names are global (in AWS partition aws)" in problems[0]


def test_s3_names_are_global_per_partition():
    a = _stack("alpha", "dev", {"model_bucket": "shared-models"})
    b = _stack("beta", "dev", {"model_bucket": "shared-models"}, region="us-gov-west-1")  # another partition (aws-us-gov)
    assert cross_stack_problems({"a.yaml": a, "b.yaml": b}) == []
    c = _stack("gamma", "dev", {"model_bucket": "shared-models"}, region="us-east-1")
    assert any("S3 bucket names are global (in AWS partition aws)" in p for p in cross_stack_problems({"a.yaml": a, "c.yaml": c}))


def test_the_program_creates_exactly_the_s3_buckets_the_checks_judge(tmp_path: Path):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    doc = yaml.safe_load((EXAMPLES / "Pulumi.vision-dev.yaml").read_text())
    path = stacks / "Pulumi.vision-dev.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    plan = plan_stack_file(path)
    planned = sorted(r.inputs["bucket"] for r in plan.resources if r.type == "aws:s3/bucket:Bucket")
    names = plan.config.bucket_names()
    judged = sorted(names[k] for k in (("storage", "model_bucket"), ("storage", "access_logs", "bucket")))
    assert planned == judged == sorted(["acme-vision-dev-triton-models", "hybridserve-vision-dev-access-logs"])


# --- through the CLI -------------------------------------------------------------------------------------


@pytest.fixture
def checkout(example_checkout: Path) -> Path:
    return example_checkout / "stacks"


def _edit(stacks: Path, name: str, change) -> None:
    path = stacks / f"Pulumi.{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc["config"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_validate_refuses_the_eks_api_opened_in_halves(checkout: Path, capsys):
    _edit(checkout, "search-prod", lambda c: c["hybridserve:aws"]["eks"].update(public_access_cidrs=["0.0.0.0/1", "128.0.0.0/1"]))
    code, out, err = run_cli(["validate"], capsys)
    assert code == 2
    assert (
        "stacks/Pulumi.search-prod.yaml: hybridserve:aws.eks.public_access_cidrs[0]: 0.0.0.0/1 together with "
        "hybridserve:aws.eks.public_access_cidrs[1] (128.0.0.0/1)" in err
    ), err
    assert "opens the Kubernetes API to the whole internet" in err and "Traceback" not in out + err


def test_validate_refuses_ssh_opened_in_halves(checkout: Path, capsys):
    rules = [{"cidr": "0.0.0.0/1", "port": 20, "port_max": 25}, {"cidr": "128.0.0.0/1", "port": 22}]
    _edit(checkout, "vision-dev", lambda c: c["hybridserve:openstack"]["network"].update(ingress=rules))
    code, _, err = run_cli(["validate", "--stack", "vision-dev"], capsys)
    assert code == 2
    assert "stacks/Pulumi.vision-dev.yaml: hybridserve:openstack.network.ingress[0].cidr: 0.0.0.0/1 together with ingress[1] (128.0.0.0/1) would open SSH (tcp port 22) to the whole internet" in err, err


def test_validate_refuses_a_public_vpc(checkout: Path, capsys):
    _edit(checkout, "search-dev", lambda c: c["hybridserve:aws"]["vpc"].update(cidr="8.8.0.0/16"))
    code, _, err = run_cli(["validate", "--stack", "search-dev"], capsys)
    assert code == 2 and "stacks/Pulumi.search-dev.yaml: hybridserve:aws.vpc.cidr: 8.8.0.0/16 is not private address space" in err, err


def test_validate_refuses_an_access_log_bucket_named_like_the_model_bucket(checkout: Path, capsys):
    _edit(checkout, "vision-dev", lambda c: c["hybridserve:storage"].update(access_logs={"bucket": "acme-vision-dev-triton-models"}))
    code, _, err = run_cli(["validate"], capsys)
    assert code == 2
    assert (
        "stacks/Pulumi.vision-dev.yaml: hybridserve:storage.access_logs.bucket: 'acme-vision-dev-triton-models' is also the name of "
        "hybridserve:storage.model_bucket" in err
    ), err


def test_validate_refuses_another_stacks_log_bucket_name(checkout: Path, capsys):
    # vision-prod's model bucket takes vision-dev's derived access-log bucket name
    _edit(checkout, "vision-prod", lambda c: c["hybridserve:storage"].update(model_bucket="hybridserve-vision-dev-access-logs"))
    code, _, err = run_cli(["validate"], capsys)
    assert code == 2
    assert "hybridserve:storage.model_bucket: 'hybridserve-vision-dev-access-logs' is already used by stacks/Pulumi.vision-dev.yaml (hybridserve:storage.access_logs.bucket)" in err, err


def test_the_examples_still_validate(capsys):
    code, out, err = run_cli(["validate", "--stacks-dir", str(EXAMPLES)], capsys)
    assert code == 0, err
    assert "4 stacks valid" in out


def test_runner_cidrs_stay_within_a_security_groups_rule_quota():
    """Each private runner CIDR is an inbound rule of the EKS API security group: AWS allows 60."""
    runners = [f"10.11.{i}.0/24" for i in range(61)]
    problems = problems_of({"hybridserve:aws": {"eks": {"deploy_access": {"via": "private_network", "runner_cidrs": runners}}}})
    assert any("hybridserve:aws.eks.deploy_access.runner_cidrs" in p and "60" in p for p in problems), problems
    cfg = build({"hybridserve:aws": {"vpc": {"cidr": "10.11.0.0/16"}, "eks": {"deploy_access": {"via": "private_network", "runner_cidrs": runners[:60]}}}})
    assert len(cfg.aws.eks.deploy_access.runner_cidrs) == 60
