"""The site-to-site VPN (issue 6): both ends configured alike, secrets kept, the check that says why not.

On the recorded plan (infra.plan) of every example stack and of edited copies; references are
followed with the ids the mock engine handed out (test_network.PlanView).
"""

from __future__ import annotations

import ipaddress
import json
import shutil

import pytest
import yaml
from cliutil import run_cli
from test_network import EXAMPLES, NAMES, REQUIRED, PlanView, section, variant

from hybridserve.stackconfig import StackConfigError, build_stack_config
from hybridserve.stackconfig.schema import vpn as vpn_schema
from hybridserve.stackconfig.schema.common import collect_issues
from hybridserve.stackconfig.schema.vpn import VpnConfig, esp_overhead
from hybridserve.stackconfig.vpncheck import plan_problems, profile_issues
from infra.mocks import MockContext
from infra.plan import SECRET_MARKER, plan_stack_file
from stackutil import reachable

CONNECTION = "aws:ec2/vpnConnection:VpnConnection"
SITE = "openstack:vpnaas/siteConnection:SiteConnection"
IKE = "openstack:vpnaas/ikePolicy:IkePolicy"
IPSEC = "openstack:vpnaas/ipSecPolicy:IpSecPolicy"


_VIEWS: dict[str, PlanView] = {}


@pytest.fixture(scope="module", autouse=True)
def _example_views(example_plans):
    """Views of the session's plans of the unchanged example stacks (tests/conftest.py): planned once per run."""
    _VIEWS.update({name: PlanView(plan) for name, plan in example_plans.items()})
    yield
    _VIEWS.clear()


def example(name: str) -> PlanView:
    """Read-only (copy.deepcopy its plan to change it): the view of example stack `name`'s session plan."""
    return _VIEWS[name]


def sites(v: PlanView) -> list:
    return sorted(v.all(SITE), key=lambda s: s.name)


# --- both ends alike --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_two_tunnels_each_with_a_secret_psk_on_both_ends(name):
    v = example(name)
    conn = v.one(CONNECTION).inputs
    assert conn["type"] == "ipsec.1" and conn["staticRoutesOnly"] is True
    for n in (1, 2):
        assert conn[f"tunnel{n}PresharedKey"] == SECRET_MARKER
        assert conn[f"tunnel{n}InsideCidr"] == v.cfg.vpn.tunnel_inside_cidrs[n - 1]
        log = conn[f"tunnel{n}LogOptions"]["cloudwatchLogOptions"]
        groups = {v.state[g.urn]["arn"]: g for g in v.all("aws:cloudwatch/logGroup:LogGroup")}
        assert log["logEnabled"] is True and groups[log["logGroupArn"]].inputs["kmsKeyId"]
        assert conn[f"tunnel{n}StartupAction"] == "start" and conn[f"tunnel{n}DpdTimeoutAction"] == "restart"
    assert [s.inputs["psk"] for s in sites(v)] == [SECRET_MARKER, SECRET_MARKER]
    assert all(s.inputs["dpds"] == [{"action": "restart", "interval": 10, "timeout": 30}] for s in sites(v))
    assert all(s.inputs["mtu"] == v.cfg.vpn.effective_tunnel_mtu() for s in sites(v))


@pytest.mark.parametrize("name", NAMES)
def test_both_ends_get_identical_ike_and_ipsec_parameters(name):
    v = example(name)
    conn = v.one(CONNECTION).inputs
    ike, ipsec = v.one(IKE).inputs, v.one(IPSEC).inputs
    aws_enc = {"aes-256": "AES256", "aes-256-gcm-16": "AES256-GCM-16"}
    aws_int = {"sha256": "SHA2-256", "sha384": "SHA2-384", "sha512": "SHA2-512"}
    p = v.cfg.vpn
    for n in (1, 2):
        t = f"tunnel{n}"
        assert conn[f"{t}IkeVersions"] == ["ikev2"] and ike["ikeVersion"] == "v2"
        assert conn[f"{t}Phase1EncryptionAlgorithms"] == [aws_enc[p.ike.encryption]] and ike["encryptionAlgorithm"] == p.ike.encryption
        assert conn[f"{t}Phase1IntegrityAlgorithms"] == [aws_int[p.ike.integrity]] and ike["authAlgorithm"] == p.ike.integrity
        assert conn[f"{t}Phase1DhGroupNumbers"] == [p.ike.dh_group] and ike["pfs"] == f"group{p.ike.dh_group}"
        assert conn[f"{t}Phase1LifetimeSeconds"] == p.ike.lifetime_seconds and ike["lifetimes"] == [{"units": "seconds", "value": p.ike.lifetime_seconds}]
        assert conn[f"{t}Phase2EncryptionAlgorithms"] == [aws_enc[p.ipsec.encryption]] and ipsec["encryptionAlgorithm"] == p.ipsec.encryption
        assert conn[f"{t}Phase2IntegrityAlgorithms"] == [aws_int[p.ipsec.integrity]] and ipsec["authAlgorithm"] == p.ipsec.integrity
        assert conn[f"{t}Phase2DhGroupNumbers"] == [p.ipsec.pfs_group] and ipsec["pfs"] == f"group{p.ipsec.pfs_group}"
        assert conn[f"{t}Phase2LifetimeSeconds"] == p.ipsec.lifetime_seconds and ipsec["lifetimes"] == [{"units": "seconds", "value": p.ipsec.lifetime_seconds}]
        assert conn[f"{t}DpdTimeoutSeconds"] == 30
    assert ipsec["transformProtocol"] == "esp" and ipsec["encapsulationMode"] == "tunnel"
    assert all(s.inputs["ikepolicyId"] == v.id(v.one(IKE)) and s.inputs["ipsecpolicyId"] == v.id(v.one(IPSEC)) for s in sites(v))
    assert plan_problems(v.plan.resources) == []


def test_prod_uses_gcm_and_the_defaults_are_strong():
    prod = example("vision-prod").one(CONNECTION).inputs
    assert prod["tunnel1Phase1EncryptionAlgorithms"] == ["AES256-GCM-16"] and prod["tunnel1Phase2DhGroupNumbers"] == [20]
    dev = example("vision-dev").one(CONNECTION).inputs
    assert dev["tunnel1Phase1EncryptionAlgorithms"] == ["AES256"] and dev["tunnel1Phase1DhGroupNumbers"] == [14]
    assert list(profile_issues(VpnConfig())) == []


# --- the order of creation, through Outputs ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_addresses_flow_through_outputs_between_the_clouds(name):
    v = example(name)
    service, cgw, conn = v.one("openstack:vpnaas/service:Service"), v.one("aws:ec2/customerGateway:CustomerGateway"), v.one(CONNECTION)
    # the VPN service runs on the stack's router, and its address (an output) is the customer gateway's
    assert service.inputs["routerId"] == v.id(v.one("openstack:networking/router:Router"))
    assert cgw.inputs["ipAddress"] == v.state[service.urn]["externalV4Ip"]
    assert ipaddress.IPv4Address(cgw.inputs["ipAddress"]) in ipaddress.IPv4Network("198.51.100.0/24")
    assert cgw.inputs["bgpAsn"] == str(v.cfg.vpn.customer_asn) and cgw.inputs["type"] == "ipsec.1"
    assert conn.inputs["customerGatewayId"] == v.id(cgw)
    assert conn.inputs["vpnGatewayId"] == v.id(v.one("aws:ec2/vpnGateway:VpnGateway"))
    # each site connection's peer is one AWS tunnel's outside address (outputs of the connection)
    tunnel_addresses = [v.state[conn.urn][f"tunnel{n}Address"] for n in (1, 2)]
    assert [s.inputs["peerAddress"] for s in sites(v)] == tunnel_addresses
    assert [s.inputs["peerId"] for s in sites(v)] == tunnel_addresses
    assert len(set(tunnel_addresses)) == 2
    # stack outputs
    out = v.plan.outputs
    assert out["vpnTunnelAddresses"] == tunnel_addresses
    assert out["vpnCustomerGatewayAddress"] == cgw.inputs["ipAddress"]
    assert [t["awsOutsideAddress"] for t in out["vpnStatus"]["tunnels"]] == tunnel_addresses
    assert out["vpnStatus"]["awsVpnConnectionId"] == v.id(conn)
    verify = out["vpnVerify"]
    assert f"--vpn-connection-ids {v.id(conn)}" in verify and "vpn ipsec site connection list" in verify
    assert f"--os-cloud {v.cfg.openstack.cloud}" in verify and f"ping -c 3 -M do -s {v.cfg.vpn.effective_tunnel_mtu() - 28}" in verify


@pytest.mark.parametrize("name", NAMES)
def test_endpoint_groups_local_subnets_and_peer_cidrs(name):
    v = example(name)
    groups = {g.inputs["type"]: g for g in v.all("openstack:vpnaas/endpointGroup:EndpointGroup")}
    assert groups["subnet"].inputs["endpoints"] == [v.id(v.one("openstack:networking/subnet:Subnet"))]
    assert groups["cidr"].inputs["endpoints"] == [v.cfg.aws.vpc.cidr]
    for s in sites(v):
        assert s.inputs["localEpGroupId"] == v.id(groups["subnet"]) and s.inputs["peerEpGroupId"] == v.id(groups["cidr"])
        assert s.inputs["vpnserviceId"] == v.id(v.one("openstack:vpnaas/service:Service"))


@pytest.mark.parametrize("name", NAMES)
def test_redundancy_is_active_standby_one_site_connection_up(name):
    """Both site connections share the service and the selectors, which Neutron VPNaaS (policy-based) installs for
    one peer at a time, and AWS sends on a random tunnel when both are up: exactly one is up, the configured one."""
    v = example(name)
    active = v.cfg.vpn.active_tunnel
    assert active == 1  # the default
    connections = sites(v)
    assert len({(s.inputs["vpnserviceId"], s.inputs["localEpGroupId"], s.inputs["peerEpGroupId"]) for s in connections}) == 1
    assert [s.inputs["adminStateUp"] for s in connections] == [True, False]
    assert [s.inputs["description"] for s in connections] == [
        "hybridserve: AWS tunnel 1 (active; vpn.active_tunnel)", "hybridserve: AWS tunnel 2 (standby; vpn.active_tunnel)",
    ]
    # both AWS tunnels stay fully configured, so the standby is ready the moment its site connection is enabled
    conn = v.one(CONNECTION).inputs
    assert all(conn[f"tunnel{n}PresharedKey"] == SECRET_MARKER and conn[f"tunnel{n}InsideCidr"] for n in (1, 2))
    status, verify = v.plan.outputs["vpnStatus"], v.plan.outputs["vpnVerify"]
    assert status["redundancy"].startswith("Redundancy: active/standby. Tunnel 1 is active; tunnel 2 is configured")
    assert [t["role"] for t in status["tunnels"]] == ["active", "standby (admin-down; AWS shows it DOWN)"]
    prefix = v.cfg.prefix
    assert f"vpn ipsec site connection set --disable {prefix}-aws-tunnel1" in verify and f"--enable {prefix}-aws-tunnel2" in verify
    assert "set vpn.active_tunnel: 2" in verify


def test_failing_over_to_tunnel_2_flips_which_site_connection_is_up(tmp_path):
    v = PlanView(plan_stack_file(variant(tmp_path, "vision-dev", lambda c: section(c, "vpn").update(active_tunnel=2))))
    assert [s.inputs["adminStateUp"] for s in sites(v)] == [False, True]
    assert [t["role"].split()[0] for t in v.plan.outputs["vpnStatus"]["tunnels"]] == ["standby", "active"]
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:vpn": {"active_tunnel": 3}}))
    assert any(p.startswith("config: hybridserve:vpn.active_tunnel:") for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("name", NAMES)
def test_every_private_route_table_routes_the_openstack_networks_to_the_vpn(name):
    v = example(name)
    vgw = v.id(v.one("aws:ec2/vpnGateway:VpnGateway"))
    peer = v.cfg.openstack.network.cidr
    for s in v.subnets("private"):
        routes = v.routes(v.route_table_of(s))
        assert [(r.inputs["destinationCidrBlock"], r.inputs["gatewayId"]) for r in routes if r.inputs.get("gatewayId") == vgw] == [(peer, vgw)]
    public = v.route_table_of(v.subnets("public")[0])
    assert not any(r.inputs.get("gatewayId") == vgw for r in v.routes(public))
    static = v.all("aws:ec2/vpnConnectionRoute:VpnConnectionRoute")
    assert [(r.inputs["destinationCidrBlock"], r.inputs["vpnConnectionId"]) for r in static] == [(peer, v.id(v.one(CONNECTION)))]


def test_route_propagation_instead_of_static_routes(tmp_path):
    v = PlanView(plan_stack_file(variant(tmp_path, "vision-dev", lambda c: section(c, "vpn").update(routing="propagation"))))
    vgw = v.id(v.one("aws:ec2/vpnGateway:VpnGateway"))
    propagations = v.all("aws:ec2/vpnGatewayRoutePropagation:VpnGatewayRoutePropagation")
    assert sorted(p.inputs["routeTableId"] for p in propagations) == sorted(v.id(v.route_table_of(s)) for s in v.subnets("private"))
    assert all(p.inputs["vpnGatewayId"] == vgw for p in propagations)
    assert not any(r.inputs.get("gatewayId") == vgw for r in v.all("aws:ec2/route:Route"))
    assert len(v.all("aws:ec2/vpnConnectionRoute:VpnConnectionRoute")) == 1  # what the gateway propagates


def test_transit_gateway_with_extra_peer_cidrs(tmp_path):
    def edit(c):
        section(c, "vpn").update(gateway="transit", extra_aws_cidrs=["10.30.0.0/16"], extra_openstack_cidrs=["10.112.0.0/24"])

    v = PlanView(plan_stack_file(variant(tmp_path, "vision-dev", edit)))
    assert v.all("aws:ec2/vpnGateway:VpnGateway") == []
    tgw = v.one("aws:ec2transitgateway/transitGateway:TransitGateway")
    attachment = v.one("aws:ec2transitgateway/vpcAttachment:VpcAttachment")
    conn = v.one(CONNECTION)
    assert conn.inputs["transitGatewayId"] == v.id(tgw) and "vpnGatewayId" not in conn.inputs
    assert sorted(attachment.inputs["subnetIds"]) == sorted(v.id(s) for s in v.subnets("private"))
    openstack_site = ["10.110.0.0/22", "10.112.0.0/24"]
    tgw_routes = v.all("aws:ec2transitgateway/route:Route")
    assert sorted(r.inputs["destinationCidrBlock"] for r in tgw_routes) == openstack_site
    assert {r.inputs["transitGatewayAttachmentId"] for r in tgw_routes} == {v.state[conn.urn]["transitGatewayAttachmentId"]}
    assert {r.inputs["transitGatewayRouteTableId"] for r in tgw_routes} == {v.state[tgw.urn]["associationDefaultRouteTableId"]}
    for s in v.subnets("private"):
        to_tgw = sorted(r.inputs["destinationCidrBlock"] for r in v.routes(v.route_table_of(s)) if r.inputs.get("transitGatewayId") == v.id(tgw))
        assert to_tgw == openstack_site
    # the extra OpenStack subnet is looked up by CIDR, attached to the router and carried by the VPN
    groups = {g.inputs["type"]: g for g in v.all("openstack:vpnaas/endpointGroup:EndpointGroup")}
    attached = next(i for i in v.all("openstack:networking/routerInterface:RouterInterface") if i.name == "openstack-network-router-extra-0")
    extra = attached.inputs["subnetId"]
    assert attached.inputs["routerId"] == v.id(v.one("openstack:networking/router:Router"))
    assert extra not in v.by_id  # an existing subnet (looked up), not one the stack creates
    assert groups["subnet"].inputs["endpoints"] == [v.id(v.one("openstack:networking/subnet:Subnet")), extra]
    assert groups["cidr"].inputs["endpoints"] == ["10.10.0.0/16", "10.30.0.0/16"]
    # nothing unmocked or unexpected; the one known warning is the default Triton release's unstated PyTorch version
    assert [w for w in v.plan.warnings if not w.startswith("serving.triton_version")] == []
    assert plan_problems(v.plan.resources) == []


# --- secrets ------------------------------------------------------------------------------------------


def _generated_psks(stack: str, region: str, names: list[str] | None = None) -> list[str]:
    """The keys the mock random provider generates for the two tunnels, or the named passwords (infra/mocks.py)."""
    keys = []
    for name in names or [f"vpn-psk-tunnel{n}" for n in (1, 2)]:
        m = MockContext(region, stack, "random:index/randomPassword:RandomPassword", name)
        keys.append("k" + (m.digest("password", length=64) * 2)[:63])
    return keys


@pytest.mark.parametrize("name", NAMES)
def test_no_psk_in_plain_text_anywhere_in_the_plan(name, tmp_path, capsys):
    out_file = tmp_path / "plan.json"
    code, out, err = run_cli(["plan", "--stack", name, "--stacks-dir", str(EXAMPLES), "--json", str(out_file)], capsys)
    assert code == 0, err
    text = out_file.read_text()
    doc = json.loads(text)
    region = example(name).cfg.aws.region
    passwords = [r for r in doc["resources"] if r["type"] == "random:index/randomPassword:RandomPassword"]
    for key in _generated_psks(name, region, [r["name"] for r in passwords]):
        assert key not in text and key[1:] not in text and key[1:20] not in text and key[1:20] not in out
    assert doc["outputs"]["vpnPresharedKeys"] == SECRET_MARKER
    assert doc["outputs"].get("edgePresharedKeys", SECRET_MARKER) == SECRET_MARKER
    # the hubs' link: one key per tunnel; each edge link: one per AWS tunnel, one for its Neutron site connection
    edge = {f"edge-{site.name}-{key}" for _, site in example(name).cfg.edge_sites() for link in site.links
            for key in (["aws-psk-tunnel1", "aws-psk-tunnel2"] if link.to == "aws" else ["openstack-psk"])}
    assert sorted(r["name"] for r in passwords) == sorted({"vpn-psk-tunnel1", "vpn-psk-tunnel2", *edge})
    for r in passwords:
        # AWS rules: letters, digits, '.', '_' (a letter is put first, so never '0')
        assert r["inputs"]["overrideSpecial"] == "._" and r["inputs"]["length"] == 63 and r["inputs"]["special"] is True


def test_the_generated_keys_meet_the_aws_rules():
    import re

    for key in _generated_psks("vision-dev", "eu-central-1"):
        assert re.fullmatch(r"[A-Za-z0-9._]{8,64}", key) and not key.startswith("0")


def test_a_configured_psk_replaces_the_generated_ones_and_stays_secret(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    shutil.copytree(EXAMPLES, stacks)
    path = stacks / "Pulumi.search-dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["hybridserve:vpn_psk"] = {"secure": "v1:c2VjcmV0:cHNrLWNpcGhlcnRleHQ="}
    path.write_text(yaml.safe_dump(doc))
    out_file = tmp_path / "plan.json"
    code, _, err = run_cli(["plan", "--stack", "search-dev", "--stacks-dir", str(stacks), "--json", str(out_file)], capsys)
    assert code == 0, err  # the plan fails if the placeholder for the secret reaches any input in clear
    doc = json.loads(out_file.read_text())
    # The configured key replaces the hubs' keys only: the edge sites' links keep their generated ones.
    hub = [r for r in doc["resources"] if "hybridserve:vpn:EdgeSiteLinks" not in r["urn"]]
    assert not [r for r in hub if r["type"].startswith("random:")]
    assert {r["name"] for r in doc["resources"] if r["type"] == "random:index/randomPassword:RandomPassword"} == {
        "edge-store-berlin-aws-psk-tunnel1", "edge-store-berlin-aws-psk-tunnel2", "edge-store-berlin-openstack-psk", "edge-store-lyon-openstack-psk"}
    conn = next(r for r in hub if r["type"] == CONNECTION)["inputs"]
    assert conn["tunnel1PresharedKey"] == conn["tunnel2PresharedKey"] == SECRET_MARKER
    site_connections = [r for r in hub if r["type"] == SITE]
    assert len(site_connections) == 2 and all(r["inputs"]["psk"] == SECRET_MARKER for r in site_connections)  # not vacuous
    assert "offline-secret-" not in out_file.read_text() and "cHNrLWNpcGhlcnRleHQ" not in out_file.read_text()


def test_rotating_one_tunnels_key_changes_only_its_keeper(tmp_path):
    v = PlanView(plan_stack_file(variant(tmp_path, "vision-dev", lambda c: section(c, "vpn").update(psk_rotation=[1, 0]))))
    keepers = {r.name: r.inputs["keepers"] for r in v.all("random:index/randomPassword:RandomPassword")}
    assert keepers == {"vpn-psk-tunnel1": {"rotation": "1"}, "vpn-psk-tunnel2": {"rotation": "0"}}
    before = {r.name: r.inputs["keepers"] for r in example("vision-dev").all("random:index/randomPassword:RandomPassword")}
    assert before["vpn-psk-tunnel1"] != keepers["vpn-psk-tunnel1"] and before["vpn-psk-tunnel2"] == keepers["vpn-psk-tunnel2"]


# --- the check: weak, one-sided, mismatched, overlapping ------------------------------------------------


WEAK = [
    ({"ike": {"version": "ikev1"}}, "hybridserve:vpn.ike.version: 'ikev1' is not allowed: IKEv1 is weak"),
    ({"ike": {"integrity": "sha1"}}, "hybridserve:vpn.ike.integrity: 'sha1' is not allowed: SHA-1 is weak"),
    ({"ipsec": {"integrity": "sha1"}}, "hybridserve:vpn.ipsec.integrity: 'sha1' is not allowed: SHA-1 is weak"),
    ({"ike": {"dh_group": 2}}, "hybridserve:vpn.ike.dh_group: 2 is not allowed: group 2 is weak"),
    ({"ipsec": {"pfs_group": 5}}, "hybridserve:vpn.ipsec.pfs_group: 5 is not allowed: group 5 is weak"),
    ({"ike": {"dh_group": 22}}, "hybridserve:vpn.ike.dh_group: 22 is not allowed: group 22 is weak: RFC 5114"),
    ({"ipsec": {"pfs_group": None}}, "hybridserve:vpn.ipsec.pfs_group: null is not allowed: no perfect forward secrecy"),
    ({"ipsec": {"encryption": "aes-128-gcm-16"}}, "hybridserve:vpn.ipsec.encryption: 'aes-128-gcm-16' is not allowed"),
    ({"dpd_action": "hold"}, "hybridserve:vpn.dpd_action: 'hold' cannot be configured on AWS, so the two ends would disagree"),
    ({"ipsec": {"lifetime_seconds": 3600}, "ike": {"lifetime_seconds": 1800}}, "hybridserve:vpn.ipsec.lifetime_seconds: 3600 is longer than ike.lifetime_seconds (1800)"),
    ({"dpd_interval_seconds": 30}, "hybridserve:vpn.dpd_interval_seconds: 30 is not shorter than dpd_timeout_seconds (30)"),
    ({"tunnel_mtu": 1440}, "hybridserve:vpn.tunnel_mtu: 1440 does not fit a 1500-byte path after ESP with aes-256/sha256; at most 1415"),
    ({"extra_aws_cidrs": ["10.30.0.0/16"]}, "hybridserve:vpn.extra_aws_cidrs: ['10.30.0.0/16'] needs gateway: transit"),
    ({"gateway": "transit", "routing": "propagation"}, "hybridserve:vpn.routing: 'propagation' works only with gateway: vgw"),
]


@pytest.mark.parametrize(("vpn", "expected"), WEAK, ids=[e.split(": ")[0].removeprefix("hybridserve:vpn.") for _, e in WEAK])
def test_a_weak_or_one_sided_profile_is_rejected_with_its_key(vpn, expected):
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:vpn": vpn}), source="stacks/Pulumi.acme-dev.yaml")
    assert any(p.startswith(f"stacks/Pulumi.acme-dev.yaml: {expected}") for p in info.value.problems), info.value.problems


def test_a_weak_profile_is_not_planned(tmp_path, capsys):
    path = variant(tmp_path, "vision-dev", lambda c: section(c, "vpn", "ike").update(version="ikev1", integrity="sha1"))
    out_file = tmp_path / "plan.json"
    code, _, err = run_cli(["plan", "--stack", "vision-dev", "--stacks-dir", str(path.parent), "--json", str(out_file)], capsys)
    assert code == 2
    assert "hybridserve:vpn.ike.version: 'ikev1' is not allowed" in err and "hybridserve:vpn.ike.integrity: 'sha1' is not allowed" in err
    assert not out_file.exists()
    code, _, err = run_cli(["validate", "--stack", "vision-dev", "--stacks-dir", str(path.parent)], capsys)
    assert code == 2 and "hybridserve:vpn.ike.version" in err


OVERLAPS = [
    (lambda c: section(c, "openstack", "magnum").update(pod_cidr="169.254.20.0/24"),
     "hybridserve:openstack.magnum.pod_cidr: 169.254.20.0/24 overlaps hybridserve:vpn.tunnel_inside_cidrs[0] (169.254.20.0/30)"),
    (lambda c: section(c, "openstack", "network").update(cidr="10.10.8.0/22"),
     "hybridserve:openstack.network.cidr: 10.10.8.0/22 overlaps hybridserve:aws.vpc.cidr (10.10.0.0/16)"),
    (lambda c: section(c, "aws", "eks").update(service_cidr="10.110.0.0/16"),
     "overlaps hybridserve:openstack.network.cidr (10.110.0.0/22)"),
    (lambda c: section(c, "vpn").update(tunnel_inside_cidrs=["169.254.20.0/30", "169.254.20.0/30"]),
     "hybridserve:vpn.tunnel_inside_cidrs[1]: 169.254.20.0/30 overlaps tunnel_inside_cidrs[0]"),
    (lambda c: section(c, "vpn").update(extra_openstack_cidrs=["10.10.4.0/24"]),
     "hybridserve:vpn.extra_openstack_cidrs[0]: 10.10.4.0/24 overlaps hybridserve:aws.vpc.cidr (10.10.0.0/16)"),
]


@pytest.mark.parametrize(("edit", "expected"), OVERLAPS, ids=["pod-vs-tunnel", "sites", "service-vs-site", "tunnels", "extra-vs-vpc"])
def test_overlapping_networks_are_rejected_with_the_key_and_nothing_is_planned(edit, expected, tmp_path, capsys):
    path = variant(tmp_path, "vision-dev", edit)
    out_file = tmp_path / "plan.json"
    code, _, err = run_cli(["plan", "--stack", "vision-dev", "--stacks-dir", str(path.parent), "--json", str(out_file)], capsys)
    assert code == 2, err
    assert expected in err
    assert not out_file.exists()


def test_the_plan_check_names_the_key_when_the_ends_disagree():
    """What each end was given, compared on the plan: a drifted policy is reported, not planned silently."""
    import copy

    plan = copy.deepcopy(example("vision-prod").plan)
    for r in plan.resources:
        if r.type == IKE:
            r.inputs["encryptionAlgorithm"] = "aes-128-gcm-16"
        if r.type == CONNECTION:
            r.inputs["tunnel2IkeVersions"] = ["ikev1", "ikev2"]
            r.inputs["tunnel1PresharedKey"] = "plaintext-key-in-an-input"
            del r.inputs["tunnel2LogOptions"]
        if r.type == SITE and r.name == "vpn-tunnel2":
            r.inputs["dpds"] = [{"action": "hold", "interval": 10, "timeout": 30}]
            r.inputs["peerAddress"] = next(s for s in plan.resources if s.type == SITE and s.name == "vpn-tunnel1").inputs["peerAddress"]
    problems = plan_problems(plan.resources)
    text = "\n".join(problems)
    assert "hybridserve:vpn.ike.encryption: the ends disagree on the phase 1 encryption: AWS tunnel 1" in text
    assert "has 'aes-256-gcm-16', OpenStack (urn:pulumi:vision-prod::hybridserve::hybridserve:vpn:SiteToSiteVpn$openstack:vpnaas/siteConnection:SiteConnection::vpn-tunnel1) has 'aes-128-gcm-16'" in text
    assert "hybridserve:vpn.ike.encryption: the IKE policy" in text and "is below the kit's minimum of AES-256" in text
    assert "hybridserve:vpn.ike.version: AWS tunnel 2" in text and "more than one value is offered" in text
    assert "hybridserve:vpn.dpd_action: the ends disagree on the DPD action: AWS tunnel 1" in text and "has 'hold'" in text
    assert "tunnel1PresharedKey is not a secret" in text
    assert "tunnel 2 logging is off" in text
    assert "the two site connections must point at the two different AWS tunnel addresses" in text
    # the plan JSON's resource list works as well
    assert plan_problems(example("vision-prod").plan.as_json()["resources"]) == []


def test_the_plan_check_looks_at_the_kits_vpn_only():
    """A VPN connection outside the kit's VPN component (another tool's, a test's) is not judged."""
    import copy

    plan = copy.deepcopy(example("vision-dev").plan)
    outside = [r for r in plan.resources if r.type == CONNECTION][0]
    outside.urn = outside.urn.replace("hybridserve:vpn:SiteToSiteVpn$", "hybridserve:test:Other$")
    outside.inputs = {"type": "ipsec.1"}
    problems = plan_problems(plan.resources)
    assert problems == ["the VPN needs 1 AWS VPN connection, 1 IKE policy, 1 IPsec policy and 2 site connections (one per tunnel); the plan has 0, 1, 1 and 2"]


def test_a_translation_that_drifts_is_caught_before_anything_is_planned(monkeypatch):
    """If the name tables ever stopped round-tripping, the config check would say which key."""
    monkeypatch.setitem(vpn_schema.OPENSTACK_NAMES, "aes-256", "aes-192")
    problems = [f"{i.loc}: {i.message}" for i in collect_issues(VpnConfig())]
    assert any(p.startswith("('ike', 'encryption'): the two ends would be given different phase 1 encryptions: AWS tunnel 1 'aes-256', Neutron 'aes-192 (unknown)'") for p in problems), problems
    assert any(p.startswith("('ipsec', 'encryption'):") for p in problems)


# --- MTU ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encryption", "integrity", "mtu"),
    [("aes-256-gcm-16", "sha256", 1435), ("aes-256", "sha256", 1415), ("aes-256", "sha384", 1407), ("aes-256", "sha512", 1399)],
)
def test_tunnel_mtu_follows_the_profile(encryption, integrity, mtu):
    """Worst case ESP tunnel mode with NAT-T on a 1500-byte path; CBC + SHA-512 gives AWS's conservative 1399."""
    cfg = VpnConfig(ipsec={"encryption": encryption, "integrity": integrity})
    assert cfg.effective_tunnel_mtu() == mtu == 1500 - esp_overhead(encryption, integrity)
    assert VpnConfig(tunnel_mtu=1300).effective_tunnel_mtu() == 1300
