"""How `pulumi up` reaches the edge hosts (review of issue 15): from where its runner is, over a VPN link that
carries that network (or through the site's jump host); who the host firewall admits for SSH; and the hosts'
SSH host keys, pinned in the connections.

Schema checks through the loader (names the key), the CLI (exit 2, no traceback), EdgeHosts under the mock
engine (the connection as pulumi-command receives it) and the firewall rules the runtime loads (render).
"""

from __future__ import annotations

import copy

import pulumi
import pytest
from cliutil import run_cli
from pulumi.runtime.sync_await import _sync_await
from test_edge_component import plan, site_args
from test_network import variant
from test_sites import edge, problems, stack

from hybridserve.edge import render
from hybridserve.edge.config import EdgeConfig, HubSource
from hybridserve.stackconfig import build_stack_config
from hybridserve.stackconfig.loader import stack_warnings
from hybridserve.stackconfig.schema.sites import ssh_sources
from hybridserve.stackconfig.schema.stack import format_loc
from infra.components.edge import EdgeHostArgs, EdgeHosts, EdgeProxyArgs

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpfduzVCX0adQlLVRNclVAZAxF4/6hE/T7ASvctswRO"
RSA_BLOB_OF_ED25519 = "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGpfduzVCX0adQlLVRNclVAZAxF4/6hE/T7ASvctswRO"
PRIVATE = {"via": "private_network", "runner_cidrs": ["10.20.0.0/16"]}  # a runner in the AWS VPC (as search-dev)


def runner_in_aws(values: dict) -> dict:
    values["hybridserve:aws"]["eks"] = {**values["hybridserve:aws"].get("eks", {}), "deploy_access": copy.deepcopy(PRIVATE)}
    values["hybridserve:openstack"]["magnum"] = {**values["hybridserve:openstack"].get("magnum", {}), "deploy_access": copy.deepcopy(PRIVATE)}
    return values


def openstack_only(**over) -> dict:
    return edge(links=[{"to": "openstack"}], **{"deployer_cidrs": [], **over})


# --- A: reachable from the runner ------------------------------------------------------------------------


def test_a_site_linked_only_to_the_hub_the_runner_is_not_in_is_refused_naming_its_links():
    found = problems(runner_in_aws(stack(openstack_only())))
    key = format_loc(("sites", 2, "links"))
    hit = [p for p in found if p.startswith(f"config: {key}: 10.20.0.0/16 (`pulumi up` runs there: hybridserve:aws.eks.deploy_access.runner_cidrs[0])")]
    assert hit, found
    assert "linked to openstack only" in hit[0] and "add the link {to: aws, tunnel_inside_cidrs: [...]}" in hit[0]
    assert format_loc(("sites", 2, "ssh_proxy")) in hit[0] and format_loc(("sites", 2, "deployer_cidrs")) in hit[0]


def test_the_runners_hub_among_the_links_or_a_jump_host_in_a_linked_hub_is_reachable():
    build_stack_config(runner_in_aws(stack(edge(deployer_cidrs=[]))))  # linked to both hubs
    build_stack_config(runner_in_aws(stack(openstack_only(ssh_proxy={"address": "10.120.0.10", "user": "jump", "host_key": KEY}))))


def test_a_jump_host_outside_the_linked_hubs_is_refused():
    found = problems(runner_in_aws(stack(openstack_only(ssh_proxy={"address": "10.20.0.10", "user": "jump"}))))
    assert any(p.startswith(f"config: {format_loc(('sites', 2, 'ssh_proxy', 'address'))}: 10.20.0.10 is not in the networks of a hub this site is linked to")
               for p in found), found


def test_with_public_deploy_paths_only_the_site_says_where_the_runner_is():
    # stack() gives both clusters a public deploy path: its egress CIDRs say nothing of where the runner sits.
    found = problems(stack(edge(deployer_cidrs=[])))
    assert any(p.startswith(f"config: {format_loc(('sites', 2, 'deployer_cidrs'))}: is not set and no cluster has a private deploy path")
               for p in found), found
    build_stack_config(stack(edge(deployer_cidrs=["192.168.50.5/32"])))  # a runner in the site's own LAN
    found = problems(stack(openstack_only(deployer_cidrs=["10.20.1.0/24"])))
    assert any(p.startswith(f"config: {format_loc(('sites', 2, 'deployer_cidrs', 0))}: 10.20.1.0/24 is in the aws hub's networks") for p in found), found


def test_admin_cidrs_are_private_and_ssh_sources_add_the_runner_and_the_admins():
    found = problems(runner_in_aws(stack(edge(admin_cidrs=["198.51.100.0/24"]))))
    assert any(p.startswith(f"config: {format_loc(('sites', 2, 'admin_cidrs', 0))}: 198.51.100.0/24 is not private") for p in found), found
    cfg = build_stack_config(runner_in_aws(stack(edge(admin_cidrs=["192.168.50.0/24"], deployer_cidrs=[]))))
    assert ssh_sources(cfg, cfg.site("plant-a")) == ["10.20.0.0/16", "192.168.50.0/24"]
    cfg = build_stack_config(runner_in_aws(stack(openstack_only(ssh_proxy={"address": "10.120.0.10", "user": "jump"}))))
    assert ssh_sources(cfg, cfg.site("plant-a")) == ["10.120.0.10/32"]  # the hosts see the jump host's address


def test_the_firewall_admits_ssh_from_the_ssh_sources_and_nothing_more_from_them():
    config = EdgeConfig(site="plant-a", host="h1", models=("m",), hub=HubSource(bucket="b"), inference_cidrs=("192.168.50.0/24",),
                        hub_cidrs=("10.120.0.0/22",), ssh_cidrs=("10.20.0.0/16", "192.168.60.0/24"))
    rules = render.nftables_rules(config)
    assert "set ssh_v4 { type ipv4_addr; flags interval; elements = { 10.20.0.0/16, 192.168.60.0/24 } }" in rules
    assert "    tcp dport 22 ip saddr @ssh_v4 accept" in rules  # SSH only: metrics stay the hub's
    assert rules.index("@ssh_v4 accept") < rules.index("tcp dport { 22, 8002 } drop")
    assert config.problems() == []
    assert EdgeConfig.from_json(config.to_json(), source="config.json").ssh_cidrs == config.ssh_cidrs
    # A config written before ssh_cidrs existed still reads (and admits SSH from the hub only).
    old = config.to_json().replace('"ssh_cidrs": [\n    "10.20.0.0/16",\n    "192.168.60.0/24"\n  ],\n', "")
    assert "ssh_cidrs" not in old and EdgeConfig.from_json(old, source="config.json").ssh_cidrs == ()


def test_validate_names_the_unreachable_site_and_exits_2(tmp_path, capsys):
    def edit(c):
        c["hybridserve:sites"][3].pop("ssh_proxy")  # store-lyon as it was: OpenStack only, runner in the AWS VPC
    path = variant(tmp_path, "search-dev", edit)
    code, _, err = run_cli(["validate", "--stack", "search-dev", "--stacks-dir", str(path.parent)], capsys)
    assert code == 2, err
    assert f"Pulumi.search-dev.yaml: {format_loc(('sites', 3, 'links'))}: 10.20.0.0/16" in err and "'store-lyon' is linked to openstack only" in err, err


# --- B: host keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "words"), [
    ("AAAAC3NzaC1lZDI1NTE5AAAAIGpfduzVCX0adQlLVRNclVAZAxF4", "expected the host's public key line"),
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "'ssh-dss' is not an SSH host key type"),
    ("ssh-ed25519 not!base64", "is not base64"),
    (RSA_BLOB_OF_ED25519, "is not a ssh-rsa public key"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "is not a ssh-ed25519 public key"),  # the type alone, no key
], ids=["no-type", "dsa", "not-base64", "type-mismatch", "truncated"])
def test_a_malformed_host_key_is_refused_naming_it(value, words):
    values = runner_in_aws(stack(edge()))
    values["hybridserve:sites"][2]["hosts"][0]["host_key"] = value
    found = problems(values)
    assert any(p.startswith(f"config: {format_loc(('sites', 2, 'hosts', 0, 'host_key'))}: ") and words in p for p in found), found


def test_a_host_key_line_keeps_type_and_key_only():
    values = runner_in_aws(stack(edge()))
    values["hybridserve:sites"][2]["hosts"][0]["host_key"] = f"  {KEY} root@edge-1\n"
    assert build_stack_config(values).site("plant-a").hosts[0].host_key == KEY


def test_without_a_host_key_dev_warns_and_prod_refuses_naming_the_key():
    key = format_loc(("sites", 2, "hosts", 0, "host_key"))
    dev = build_stack_config(runner_in_aws(stack(edge())))
    warned = [w for w in stack_warnings(dev) if w.startswith(f"config: {key}: is not set")]
    assert warned and "ssh-keyscan -t ed25519 192.168.50.10" in warned[0], stack_warnings(dev)
    prod = runner_in_aws(stack(edge()))
    prod["hybridserve:environment"] = "prod"
    found = problems(prod)
    assert any(p.startswith(f"config: {key}: is required in prod environments") for p in found), found
    prod["hybridserve:sites"][2]["hosts"][0]["host_key"] = KEY
    assert not [p for p in _problems_or_none(prod) if "host_key" in p]


def _problems_or_none(values: dict) -> list[str]:
    from hybridserve.stackconfig import StackConfigError

    try:
        build_stack_config(values)
    except StackConfigError as exc:
        return exc.problems
    return []


def test_the_host_key_and_the_jump_host_reach_pulumi_commands_connection(tmp_path):
    def make(seen):
        site = EdgeHosts("plant-a", site_args(
            tmp_path, hosts=[EdgeHostArgs("edge-1", "10.30.0.11", host_key=KEY), EdgeHostArgs("edge-2", "10.30.0.12")],
            proxy=EdgeProxyArgs("10.0.0.10", "jump", host_key=KEY), ssh_cidrs=["10.0.0.10/32"]))
        seen["connections"] = [_sync_await(pulumi.Output.from_input(h.runtime.connection).future()) for h in site.host_resources]
        seen["copy"] = _sync_await(pulumi.Output.from_input(site.host_resources[0].bundle.connection).future())
        seen["stdin"] = _sync_await(site.host_resources[0].runtime.stdin.future())

    _, seen = plan(make)
    first, second = seen["connections"]
    assert first["host_key"] == KEY and seen["copy"]["host_key"] == KEY
    assert "host_key" not in second or second["host_key"] is None  # not pinned: validate warned (or refused in prod)
    assert first["proxy"]["host"] == "10.0.0.10" and first["proxy"]["user"] == "jump" and first["proxy"]["host_key"] == KEY
    assert first["proxy"]["private_key"] == first["private_key"]  # the site's deploy key on the jump host too
    assert EdgeConfig.from_json(seen["stdin"], source="stdin").ssh_cidrs == ("10.0.0.10/32",)



# --- C: what an OpenStack-linked site's key reads -------------------------------------------------------------


def test_a_site_reading_from_swift_is_warned_that_its_key_reads_the_whole_container():
    cfg = build_stack_config(runner_in_aws(stack(openstack_only(ssh_proxy={"address": "10.120.0.10", "user": "jump", "host_key": KEY}))))
    warned = [w for w in stack_warnings(cfg) if w.startswith(f"config: {format_loc(('sites', 2, 'links'))}: site 'plant-a' reads from Swift")]
    assert warned and "reads the whole container" in warned[0] and "link it to the aws hub" in warned[0], stack_warnings(cfg)
    both = build_stack_config(runner_in_aws(stack(edge(deployer_cidrs=[]))))  # linked to AWS: its own IAM reader, its prefix only
    assert not [w for w in stack_warnings(both) if "reads from Swift" in w]


# --- C: GPU hosts read a GPU rendering ---------------------------------------------------------------------------


def test_the_edge_gpu_rendering_has_gpu_instance_groups_and_keeps_the_python_backend():
    from pathlib import Path

    from hybridserve.errors import UserError
    from hybridserve.publish.digest import repository_digest
    from hybridserve.publish.render import Target, render_config

    repo = Path("model_repo")
    edge_gpu = Target("edge-gpu", gpu=True, keep_backend=True)
    text = render_config((repo / "text_encoder/config.pbtxt").read_bytes(), "text_encoder/config.pbtxt", edge_gpu).decode()
    assert "kind: KIND_GPU" in text and 'backend: "python"' in text and "pytorch" not in text.split("parameters")[0]
    cluster = render_config((repo / "text_encoder/config.pbtxt").read_bytes(), "text_encoder/config.pbtxt", Target("aws", gpu=True)).decode()
    assert 'backend: "pytorch"' in cluster  # the clusters' libtorch, which the edge runtime does not have
    int8 = render_config((repo / "text_encoder_int8/config.pbtxt").read_bytes(), "text_encoder_int8/config.pbtxt", edge_gpu).decode()
    assert "KIND_GPU" not in int8 and "kind: KIND_CPU" in int8  # a CPU-only variant keeps its CPU instances
    versions = {repository_digest(repo, t).version for t in (edge_gpu, Target("aws", gpu=True), Target("edge", gpu=False))}
    assert len(versions) == 3  # three renderings, three version names
    with pytest.raises(UserError):
        Target("edge", gpu=False, keep_backend=True)


def test_each_host_reads_its_own_rendering(tmp_path):
    def make(seen):
        site = EdgeHosts("plant-a", site_args(
            tmp_path, hosts=[EdgeHostArgs("edge-1", "10.30.0.11", gpu=True, hub_prefix="models/edge-plant-a/gpu/v" + "f" * 16),
                             EdgeHostArgs("edge-2", "10.30.0.12")]))
        seen["configs"] = [_sync_await(h.runtime.stdin.future()) for h in site.host_resources]

    _, seen = plan(make)
    gpu, cpu = (EdgeConfig.from_json(text, source="stdin") for text in seen["configs"])
    assert gpu.hub.prefix == "models/edge-plant-a/gpu/v" + "f" * 16 and gpu.gpu is True
    assert cpu.hub.prefix == "models" and cpu.gpu is False  # the site's hub prefix (site_args)
