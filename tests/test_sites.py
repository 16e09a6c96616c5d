"""Sites as a list (issue 15): the schema of `hybridserve:sites`, edge sites, the VPN as hub-and-spoke links.

Read through the loader (`build_stack_config`), so each check names the key as the stack file spells it.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml
from cliutil import run_cli

from hybridserve.stackconfig import StackConfigError, build_stack_config
from hybridserve.stackconfig.cost import estimate
from hybridserve.stackconfig.crossstack import cross_stack_problems
from hybridserve.stackconfig.loader import load_stack_file
from hybridserve.stackconfig.schema.sites import EdgeSite
from hybridserve.stackconfig.schema.stack import format_loc
from stackutil import reachable
from test_network import EXAMPLES, REQUIRED

HUBS = {
    **REQUIRED,
    "hybridserve:aws": {"vpc": {"cidr": "10.20.0.0/16"}},
    "hybridserve:openstack": {"network": {"cidr": "10.120.0.0/22"}},
    "hybridserve:vpn": {"tunnel_inside_cidrs": ["169.254.30.0/30", "169.254.30.4/30"]},
}


def edge(name: str = "plant-a", **over) -> dict:
    site = {
        "name": name,
        "kind": "edge",
        "cidrs": ["192.168.50.0/24"],
        "vpn_gateway_ip": "203.0.113.10",
        "links": [{"to": "aws", "tunnel_inside_cidrs": ["169.254.40.0/30", "169.254.40.4/30"]}, {"to": "openstack"}],
        "hosts": [{"name": "h1", "address": "192.168.50.10", "ssh_user": "ops", "accelerator": "nvidia-gpu", "gpu_model": "L4", "disk_gb": 400}],
        "inference_cidrs": ["192.168.50.0/24"],
        "runtime_version": "1.0.0",
        "models": {"text_encoder": {"variant": "text_encoder_int8", "max_accuracy_drop": 0.01, "slo": {"max_p99_ms": 50}}},
    }
    site.update(over)
    if "deployer_cidrs" not in over:  # the stacks here reach the clusters publicly: say where the runner is (its LAN)
        import ipaddress

        site["deployer_cidrs"] = [f"{ipaddress.ip_network(site['cidrs'][0])[5]}/32"]
    return site


def stack(*edges: dict, hubs: list | None = None, **extra) -> dict:
    values = copy.deepcopy(HUBS)
    values["hybridserve:sites"] = [*(hubs if hubs is not None else [{"name": "aws", "kind": "aws"}, {"name": "openstack", "kind": "openstack"}]), *edges]
    values.update(extra)
    return reachable(values)


def problems(values: dict) -> list[str]:
    with pytest.raises(StackConfigError) as info:
        build_stack_config(values)
    return info.value.problems


# --- the list and the old shape ------------------------------------------------------------------------


def test_a_stack_without_sites_has_the_two_hubs_and_their_one_link():
    cfg = build_stack_config(reachable(HUBS))
    assert [(s.name, s.kind) for s in cfg.sites] == [("aws", "aws"), ("openstack", "openstack")]
    assert [(link.a, link.b, link.loc, link.tunnel_inside_cidrs) for link in cfg.links()] == [
        ("openstack", "aws", ("vpn",), ("169.254.30.0/30", "169.254.30.4/30"))
    ]
    assert cfg.site_networks("aws") == ["10.20.0.0/16"] and cfg.site_networks("openstack") == ["10.120.0.0/22"]


def test_an_edge_site_is_a_typed_entry_linked_to_both_hubs():
    cfg = build_stack_config(stack(edge()))
    (index, site), = cfg.edge_sites()
    assert index == 2 and isinstance(site, EdgeSite)
    assert site.hosts[0].accelerator == "nvidia-gpu" and site.hosts[0].gpu_model == "L4"
    assert site.models["text_encoder"].variant == "text_encoder_int8" and site.models["text_encoder"].slo.concurrency == 1
    assert [(link.a, link.b, link.loc) for link in cfg.links()] == [
        ("openstack", "aws", ("vpn",)), ("plant-a", "aws", ("sites", 2, "links", 0)), ("plant-a", "openstack", ("sites", 2, "links", 1))
    ]
    # The edge site's networks are routed across the VPN: the stack-wide and cross-stack checks see them.
    assert (("sites", 2, "cidrs", 0), "192.168.50.0/24") in cfg.vpn_reachable_networks()
    assert cfg.site_networks("plant-a") == ["192.168.50.0/24"]


def test_hub_settings_inline_in_the_list_read_like_the_sections():
    inline = copy.deepcopy(HUBS)
    aws_settings, os_settings = inline.pop("hybridserve:aws"), inline.pop("hybridserve:openstack")
    inline["hybridserve:sites"] = [{"name": "aws", "kind": "aws", **aws_settings}, {"name": "openstack", "kind": "openstack", **os_settings}]
    assert build_stack_config(reachable_inline(inline)) == build_stack_config(reachable(HUBS))


def reachable_inline(values: dict) -> dict:
    """stackutil.reachable for hubs written inline in the list."""
    out = copy.deepcopy(values)
    for entry in out["hybridserve:sites"]:
        cluster = {"aws": "eks", "openstack": "magnum"}.get(entry.get("kind"))
        if cluster:
            entry.setdefault(cluster, {}).setdefault("deploy_access", {"via": "public_endpoint", "runner_cidrs": ["198.51.100.0/24"]})
    return out


def test_a_problem_in_inline_hub_settings_names_the_list_entry():
    values = reachable_inline({**REQUIRED, "hybridserve:sites": [{"name": "aws", "kind": "aws", "vpc": {"cidr": "10.20.0.0/12"}}, {"name": "openstack", "kind": "openstack"}]})
    found = problems(values)
    assert any(p.startswith("config: hybridserve:sites[0].vpc.cidr: '10.20.0.0/12' has host bits set") for p in found), found
    assert not any("hybridserve:aws." in p for p in found), found


def test_hub_settings_both_inline_and_in_the_section_are_refused():
    values = stack(hubs=[{"name": "aws", "kind": "aws", "vpc": {"cidr": "10.30.0.0/16"}}, {"name": "openstack", "kind": "openstack"}])
    assert any("the aws hub's settings are given twice" in p and "hybridserve:sites[0]" in p for p in problems(values))


# --- what an edge site must satisfy, each naming its key ------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda s: s["hybridserve:sites"][2]["hosts"][0].update(address="192.168.51.10"), "hybridserve:sites[2].hosts[0].address", "outside the site's networks"),
        (lambda s: s["hybridserve:sites"][2].update(cidrs=["10.20.128.0/24"], hosts=[]), "hybridserve:sites[2].cidrs[0]", "overlaps hybridserve:aws.vpc.cidr"),
        (lambda s: s["hybridserve:sites"][2].update(cidrs=["203.0.113.0/24"], hosts=[]), "hybridserve:sites[2].cidrs[0]", "not private address space"),
        (lambda s: s["hybridserve:sites"][2]["links"].__setitem__(1, {"to": "gcp"}), "hybridserve:sites[2].links[1].to", "'gcp' is not a site of this stack"),
        (lambda s: s["hybridserve:sites"][2].update(links=[]), "hybridserve:sites[2].links", "needs a VPN link to at least one hub"),
        (lambda s: s["hybridserve:sites"][2]["links"][0].update(tunnel_inside_cidrs=[]), "hybridserve:sites[2].links[0].tunnel_inside_cidrs", "exactly 2 tunnels"),
        (lambda s: s["hybridserve:sites"][2]["links"][0].update(tunnel_inside_cidrs=["169.254.30.0/30", "169.254.40.4/30"]),
         "hybridserve:sites[2].links[0].tunnel_inside_cidrs[0]", "overlaps hybridserve:vpn.tunnel_inside_cidrs[0]"),
        (lambda s: s["hybridserve:sites"][2]["links"][1].update(tunnel_inside_cidrs=["169.254.41.0/30"]), "hybridserve:sites[2].links[1].tunnel_inside_cidrs", "Neutron VPNaaS link has no tunnel inside"),
        (lambda s: s["hybridserve:sites"][2].update(vpn_gateway_ip="10.1.2.3"), "hybridserve:sites[2].vpn_gateway_ip", "not a public address"),
        (lambda s: s["hybridserve:sites"][2]["hosts"][0].update(accelerator="cpu"), "hybridserve:sites[2].hosts[0].gpu_model", "accelerator is cpu"),
        (lambda s: s["hybridserve:sites"][2]["models"]["text_encoder"].pop("max_accuracy_drop"), "hybridserve:sites[2].models.text_encoder.max_accuracy_drop", "compressed"),
        (lambda s: s["hybridserve:sites"][2].update(kind="fog"), "hybridserve:sites[2]", "kind 'fog' is not valid"),
        (lambda s: s["hybridserve:sites"][2].update(surprise=1), "hybridserve:sites[2].surprise", "valid keys here: kind, name, cidrs"),
        (lambda s: s["hybridserve:sites"][2].update(name="openstack"), "hybridserve:sites[2].name", "already the name of sites[1]"),
        (lambda s: s["hybridserve:sites"][2].update(name="storage"), "hybridserve:sites[2].name", "config section's name"),
        (lambda s: s["hybridserve:sites"][0].update(name="openstack"), "hybridserve:sites[0].name", "the name of the openstack hub's section"),
        (lambda s: s["hybridserve:sites"].pop(1), "hybridserve:sites", "no site of kind 'openstack'"),
        (lambda s: s["hybridserve:sites"].append({"name": "aws-2", "kind": "aws"}), "hybridserve:sites[3].kind", "a second 'aws' site"),
    ],
    ids=["host-outside", "overlap-hub", "public-cidr", "unknown-link", "no-link", "aws-link-tunnels", "tunnel-overlap", "openstack-link-tunnels",
         "private-gateway", "gpu-model-on-cpu", "accuracy-bound", "unknown-kind", "unknown-key", "duplicate-name", "reserved-name", "hub-named-as-other-hub", "missing-hub", "second-hub"],
)
def test_an_edge_site_problem_names_its_key(edit, key, words):
    values = stack(edge())
    edit(values)
    found = problems(values)
    assert any(p.startswith(f"config: {key}: ") and words in p for p in found), found


def test_two_edge_sites_overlapping_or_sharing_a_gateway_are_refused():
    values = stack(edge(), edge("plant-b", cidrs=["192.168.50.128/25"], hosts=[], links=[{"to": "openstack"}]))
    found = problems(values)
    assert any(p.startswith("config: hybridserve:sites[3].cidrs[0]: 192.168.50.128/25 overlaps hybridserve:sites[2].cidrs[0]") for p in found), found
    assert any(p.startswith("config: hybridserve:sites[3].vpn_gateway_ip: 203.0.113.10 is already sites[2]'s gateway") for p in found), found


def test_a_link_to_another_edge_site_is_refused():
    values = stack(edge(), edge("plant-b", cidrs=["192.168.60.0/24"], vpn_gateway_ip="203.0.113.20", hosts=[], links=[{"to": "plant-a"}]))
    assert any(p.startswith("config: hybridserve:sites[3].links[0].to: 'plant-a' is an edge site (links go from edge sites to hubs only)") for p in problems(values))


# --- across stacks, cost ----------------------------------------------------------------------------------


def test_edge_networks_count_across_stacks_of_a_peering_group():
    one = build_stack_config(stack(edge()))
    other_values = copy.deepcopy(HUBS)
    other_values.update({"hybridserve:environment": "staging", "hybridserve:aws": {"vpc": {"cidr": "10.21.0.0/16"}},
                         "hybridserve:openstack": {"network": {"cidr": "192.168.48.0/22"}},
                         "hybridserve:storage": {"model_bucket": "acme-other-models", "swift_container": "other-models"}})
    other = build_stack_config(reachable(other_values))
    found = cross_stack_problems({"a.yaml": one, "b.yaml": other})
    assert any(p.startswith("b.yaml: hybridserve:openstack.network.cidr: 192.168.48.0/22 overlaps hybridserve:sites[2].cidrs[0] (192.168.50.0/24) of a.yaml") for p in found), found


def test_cost_lists_edge_hosts_at_zero_and_the_edge_vpn_connection():
    cfg = build_stack_config(stack(edge()))
    base = estimate(build_stack_config(reachable(HUBS)))
    est = estimate(cfg)
    edge_lines = [line for line in est.lines if line.cloud == "edge:plant-a"]
    assert [(line.item, line.usd_per_hour) for line in edge_lines] == [
        ("host h1 (operator-owned)", 0.0),
        ("AWS VPN connection (edge link)", 0.05),
        ("data transfer out of AWS to the site: $0.09/GB, not estimated", 0.0),
    ]
    assert edge_lines[0].gpu == "1× L4"
    assert est.monthly_min == pytest.approx(base.monthly_min + 0.05 * 730)
    # An edge site linked only to OpenStack adds no AWS connection.
    only_os = estimate(build_stack_config(stack(edge(links=[{"to": "openstack"}]))))
    assert [line.item for line in only_os.lines if line.cloud == "edge:plant-a"] == ["host h1 (operator-owned)"]


# --- the example and the CLI ------------------------------------------------------------------------------


def test_the_example_with_edge_sites_declares_two_of_them():
    cfg = load_stack_file(EXAMPLES / "Pulumi.search-dev.yaml")
    names = [site.name for _, site in cfg.edge_sites()]
    assert len(names) == 2
    assert {link.b for link in cfg.links() if link.a in names} == {"aws", "openstack"}


def test_validate_names_the_edge_key_and_exits_2(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    shutil.copytree(EXAMPLES, stacks)
    shutil.copy(EXAMPLES.parent / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    path = stacks / "Pulumi.search-dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["hybridserve:sites"][2]["hosts"][0]["address"] = "192.168.99.10"
    path.write_text(json.dumps(doc))
    code, _, err = run_cli(["validate", "--stacks-dir", str(stacks)], capsys)
    assert code == 2
    assert f"Pulumi.search-dev.yaml: {format_loc(('sites', 2, 'hosts', 0, 'address'))}: 192.168.99.10 is outside the site's networks" in err


def test_two_stacks_linking_the_same_edge_gateway_to_aws_in_one_region_are_refused():
    one = build_stack_config(stack(edge()))
    other_values = stack(edge(cidrs=["192.168.70.0/24"], hosts=[]))
    other_values.update({"hybridserve:environment": "staging", "hybridserve:aws": {"vpc": {"cidr": "10.21.0.0/16"}},
                         "hybridserve:openstack": {"network": {"cidr": "10.121.0.0/22"}},
                         "hybridserve:storage": {"model_bucket": "acme-other-models", "swift_container": "other-models"}})
    other = build_stack_config(reachable(other_values))
    found = cross_stack_problems({"a.yaml": one, "b.yaml": other})
    assert any(p.startswith("b.yaml: hybridserve:sites[2].vpn_gateway_ip: 203.0.113.10 is also the gateway of an edge site of a.yaml") for p in found), found
    # another customer ASN makes it another customer gateway
    other_values["hybridserve:vpn"] = {**other_values["hybridserve:vpn"], "customer_asn": 65001}
    assert cross_stack_problems({"a.yaml": one, "b.yaml": build_stack_config(reachable(other_values))}) == []
