"""The offline plan: the real program under the mock engine, its JSON contract, and secrets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_openstack as openstack
import pulumi_random as random
import pytest
import yaml

import infra.components
import infra.program
from hybridserve.paths import repo_root
from hybridserve.stackconfig import stack_files
from infra.mocks import MockContext
from infra.plan import FORMAT, SECRET_MARKER, plan_stack_file

from cliutil import run_cli

EXAMPLES = repo_root() / "stacks"
NAMES = sorted(stack_files(EXAMPLES))
CONTRACT = {"urn", "type", "name", "parent", "provider", "inputs"}


@pytest.mark.parametrize("name", NAMES)
def test_every_example_plans(name, tmp_path: Path, capsys):
    out_file = tmp_path / "plan.json"
    code, out, err = run_cli(["plan", "--stack", name, "--stacks-dir", str(EXAMPLES), "--json", str(out_file)], capsys)
    assert code == 0, err
    # tree, counts, cost
    assert f"hybridserve-{name} pulumi:pulumi:Stack" in out
    assert "aws pulumi:providers:aws" in out and "openstack pulumi:providers:openstack" in out
    assert "Resources per provider" in out and "Estimated monthly compute cost" in out

    doc = json.loads(out_file.read_text())
    assert doc["format"] == FORMAT and doc["stack"] == name and doc["project"] == "hybridserve"
    assert doc["resources"] and all(set(r) == CONTRACT for r in doc["resources"])
    urns = {r["urn"] for r in doc["resources"]}
    roots = [r for r in doc["resources"] if r["parent"] is None]
    assert [r["type"] for r in roots] == ["pulumi:pulumi:Stack"]
    assert all(r["parent"] in urns for r in doc["resources"] if r["parent"] is not None)
    assert all(r["urn"].startswith(f"urn:pulumi:{name}::hybridserve::") for r in doc["resources"])
    assert doc["cost"]["monthly_max"] >= doc["cost"]["monthly_min"] > 0
    assert set(doc["outputs"]) >= {"tritonEndpoints", "bucketUris", "kubeconfigs", "team", "environment"}
    assert doc["outputs"]["kubeconfigs"] == SECRET_MARKER


def test_providers_carry_region_and_tags(example_plans):
    plan = example_plans["vision-prod"]
    by_type = {r.type: r for r in plan.resources}
    aws_provider = by_type["pulumi:providers:aws"]
    assert aws_provider.inputs["region"] == "eu-central-1"
    # provider inputs reach the engine JSON-encoded
    tags = json.loads(aws_provider.inputs["defaultTags"])["tags"]
    assert tags["team"] == "vision" and tags["environment"] == "prod" and tags["cost-center"] == "CC-4100"
    assert tags["managed-by"] == "pulumi" and tags["data-classification"] == "internal"
    assert by_type["pulumi:providers:openstack"].inputs["cloud"] == "vision-private"
    assert plan.counts_by_package()["aws"] >= 1 and plan.counts_by_package()["openstack"] >= 1


def test_plan_all_writes_every_stack(tmp_path: Path, capsys):
    out_file = tmp_path / "all.json"
    code, out, err = run_cli(["plan", "--all", "--stacks-dir", str(EXAMPLES), "--json", str(out_file)], capsys)
    assert code == 0, err
    doc = json.loads(out_file.read_text())
    assert [p["stack"] for p in doc["plans"]] == NAMES
    for name in NAMES:
        assert f"hybridserve-{name} pulumi:pulumi:Stack" in out


def test_runs_in_one_process_do_not_share_state(example_plans):
    """--all and tests run the program many times in one process: each run starts from a clean runtime."""
    first = example_plans["vision-dev"].as_json()  # the session's plan: made before this test's runs
    other = plan_stack_file(EXAMPLES / "Pulumi.search-prod.yaml").as_json()
    again = plan_stack_file(EXAMPLES / "Pulumi.vision-dev.yaml").as_json()
    assert first == again  # deterministic, nothing carried over
    assert not any("search" in r["urn"] for r in again["resources"])
    assert len(other["resources"]) == len({r["urn"] for r in other["resources"]})


# --- secrets -----------------------------------------------------------------------------------------------

PSK_CIPHERTEXT = "v1:Zm9vYmFyYmF6:cGxhaW4gdGV4dCBuZXZlcg=="


@pytest.fixture
def secret_stacks(tmp_path: Path) -> Path:
    """vision-dev with both optional secrets set, as `pulumi config set --secret` writes them."""
    stacks = tmp_path / "stacks"
    shutil.copytree(EXAMPLES, stacks)
    path = stacks / "Pulumi.vision-dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["hybridserve:openstack_password"] = {"secure": "v1:b3BlbnN0YWNr:cGFzc3dvcmQ="}
    doc["config"]["hybridserve:vpn_psk"] = {"secure": PSK_CIPHERTEXT}
    path.write_text(yaml.safe_dump(doc))
    return stacks


def _register_components(monkeypatch, **builders) -> None:
    """Run these builders instead of the program's components (infra.program.build), in order."""

    def build(ctx) -> None:
        for fn in builders.values():
            fn(ctx)

    monkeypatch.setattr(infra.program, "build", build)


class SecretDemo(pulumi.ComponentResource):
    """Secrets from three sources flowing into ordinary (non-secret) inputs of other resources."""

    def __init__(self, name: str, ctx, opts: pulumi.ResourceOptions):
        super().__init__(infra.components.type_token("test", "SecretDemo"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        rnd = random.Provider("random", opts=child)
        password = random.RandomPassword("psk", length=32, special=False, opts=pulumi.ResourceOptions(parent=self, provider=rnd))
        # a generated secret into a plain string input
        openstack.networking.Network("from-random", description=password.result, opts=child)
        # a secret from stack config into a plain string input
        openstack.networking.Network("from-config", description=infra.config.secret("vpn_psk"), opts=child)
        # a provider-generated secret output (AWS VPN tunnel keys) into a plain input
        vpn = aws.ec2.VpnConnection("vpn", customer_gateway_id="cgw-1", type="ipsec.1", vpn_gateway_id="vgw-1", opts=child)
        openstack.networking.Network("from-output", description=vpn.tunnel1_preshared_key, opts=child)
        # kubeconfigs: Magnum's is a secret output; the EKS one is assembled in clear and made secret by the context
        magnum = openstack.containerinfra.Cluster("magnum", cluster_template_id="t", opts=child)
        k8s_os = ctx.kubernetes_provider("openstack", magnum.kubeconfig["raw_config"], parent=self)
        eks = aws.eks.Cluster("eks", role_arn="arn:aws:iam::1:role/r", vpc_config={"subnet_ids": ["subnet-1"]}, opts=child)
        kubeconfig = pulumi.Output.all(eks.endpoint, eks.certificate_authority.data).apply(lambda a: json.dumps({"server": a[0], "ca": a[1], "token": "eks-token-in-clear"}))
        k8s_aws = ctx.kubernetes_provider("aws", kubeconfig, parent=self)
        for cluster, provider in (("aws", k8s_aws), ("openstack", k8s_os)):
            k8s.core.v1.Namespace(f"triton-{cluster}", metadata={"name": "triton"}, opts=pulumi.ResourceOptions(parent=self, provider=provider))
        ctx.outputs.extra["demoPassword"] = password.result
        self.register_outputs({})


def _secret_demo(ctx) -> None:
    SecretDemo("demo", ctx, ctx.component_opts())


import infra.config  # noqa: E402  (used by SecretDemo)


def test_plan_json_holds_no_plaintext_secret(secret_stacks: Path, tmp_path: Path, monkeypatch, capsys):
    _register_components(monkeypatch, build=_secret_demo)
    # The demo's bare resources (a VPN and a cluster on provider defaults) break the policy pack; this test
    # is about secrets, and the pack has its own tests (tests/test_policy.py).
    import hybridserve.policy.offline

    monkeypatch.setattr(hybridserve.policy.offline, "check_plan", lambda doc, config=None: [])
    out_file = tmp_path / "plan.json"
    code, out, err = run_cli(["plan", "--stack", "vision-dev", "--stacks-dir", str(secret_stacks), "--json", str(out_file)], capsys)
    assert code == 0, err
    text = out_file.read_text()
    doc = json.loads(text)
    res = {r["name"]: r for r in doc["resources"]}

    # the component plugged in instead of the program's, with the explicit providers handed down
    assert res["demo"]["type"] == "hybridserve:test:SecretDemo"
    assert res["from-random"]["provider"] == res["openstack"]["urn"] and res["vpn"]["provider"] == res["aws"]["urn"]
    assert res["psk"]["provider"] == res["random"]["urn"]

    assert res["openstack"]["inputs"]["password"] == SECRET_MARKER
    for name in ("from-random", "from-config", "from-output"):
        assert res[name]["inputs"]["description"] == SECRET_MARKER, name
    assert res["k8s-aws"]["inputs"]["kubeconfig"] == SECRET_MARKER
    assert res["k8s-openstack"]["inputs"]["kubeconfig"] == SECRET_MARKER
    assert res["triton-aws"]["provider"] == res["k8s-aws"]["urn"]
    assert doc["outputs"]["demoPassword"] == SECRET_MARKER and doc["outputs"]["kubeconfigs"] == SECRET_MARKER

    # and no secret value anywhere in the file, whatever its path
    generated = (MockContext("eu-central-1", "vision-dev", "random:index/randomPassword:RandomPassword", "psk").digest("password", length=64) * 2)[:32]
    vpn_psk = MockContext("eu-central-1", "vision-dev", "aws:ec2/vpnConnection:VpnConnection", "vpn").digest("psk1", length=24)
    for leaked in (generated, vpn_psk, "offline-secret-", "eks-token-in-clear", "mock-token-", "mock-key-", "v1:b3BlbnN0YWNr", PSK_CIPHERTEXT):
        assert leaked not in text, leaked
    assert generated not in out


def test_a_secret_read_in_clear_fails_the_plan(secret_stacks: Path, monkeypatch, capsys):
    def leaky(ctx) -> None:
        # wrong: a plain read of a secret key loses its secretness
        psk = pulumi.Config("hybridserve").get("vpn_psk")
        openstack.networking.Network("leak", description=psk, opts=pulumi.ResourceOptions(provider=ctx.providers.openstack))

    _register_components(monkeypatch, build=leaky)
    code, out, err = run_cli(["plan", "--stack", "vision-dev", "--stacks-dir", str(secret_stacks)], capsys)
    assert code == 3
    assert "openstack:networking/network:Network::leak: a secret config value reaches its inputs in plain text" in err
    assert "Traceback" not in err


def test_a_resource_on_the_default_provider_fails_the_plan(monkeypatch, capsys):
    def implicit(ctx) -> None:
        aws.s3.Bucket("untagged")

    _register_components(monkeypatch, build=implicit)
    code, _, err = run_cli(["plan", "--stack", "vision-dev", "--stacks-dir", str(EXAMPLES)], capsys)
    assert code == 3
    assert "aws:s3/bucket:Bucket::untagged: uses the default provider" in err


def test_mock_outputs_are_realistic_and_table_driven(monkeypatch):
    seen = {}

    def build(ctx) -> None:
        opts = ctx.component_opts()
        vpc = aws.ec2.Vpc("vpc", cidr_block=ctx.config.aws.vpc.cidr, opts=opts)
        vpn = aws.ec2.VpnConnection("vpn", customer_gateway_id="cgw-1", type="ipsec.1", vpn_gateway_id="vgw-1", tunnel1_inside_cidr="169.254.20.0/30", opts=opts)
        bucket = aws.s3.Bucket("models", bucket=ctx.config.storage.model_bucket, opts=opts)
        zones = aws.get_availability_zones_output(opts=pulumi.InvokeOutputOptions(provider=ctx.providers.aws))
        pulumi.Output.all(vpc.id, vpc.arn, vpn.tunnel1_address, vpn.tunnel1_cgw_inside_address, bucket.arn, zones.names).apply(lambda v: seen.update(values=v))

    _register_components(monkeypatch, build=build)
    plan = plan_stack_file(EXAMPLES / "Pulumi.vision-dev.yaml")
    vpc_id, vpc_arn, tunnel_ip, cgw_inside, bucket_arn, zones = seen["values"]
    assert vpc_id.startswith("vpc-0") and vpc_arn == f"arn:aws:ec2:eu-central-1:123456789012:vpc/{vpc_id}"
    assert tunnel_ip.startswith("203.0.113.") and cgw_inside == "169.254.20.2"
    assert bucket_arn == "arn:aws:s3:::acme-vision-dev-triton-models"
    assert zones[:2] == ["eu-central-1a", "eu-central-1b"]
    assert not plan.warnings
