"""The edge sites' VPN links in the program (issue 15): one link per spoke with the hubs' profile, keys secret,
routes on the AWS side, a site connection on the Neutron side, and a typed handle per edge site.

On the recorded plan of the example with edge sites (search-dev: store-berlin linked to both hubs,
store-lyon to OpenStack only) and edited copies; references followed with the mock engine's ids.
"""

from __future__ import annotations

import copy
import json

import pytest
from test_network import EDGE_LINKS, EXAMPLES, PlanView, section, variant

from hybridserve.stackconfig.schema.sites import EdgeSite
from hybridserve.stackconfig.vpncheck import plan_problems
from infra.plan import SECRET_MARKER, plan_stack_file

CGW = "aws:ec2/customerGateway:CustomerGateway"
CONNECTION = "aws:ec2/vpnConnection:VpnConnection"
SITE = "openstack:vpnaas/siteConnection:SiteConnection"
ROUTE = "aws:ec2/route:Route"


@pytest.fixture(scope="module")
def edge_plan(example_plans) -> PlanView:
    return PlanView(copy.deepcopy(example_plans["search-dev"]))  # planned once per test run (conftest)


def test_an_aws_link_is_a_customer_gateway_and_a_connection_on_the_hubs_gateway(edge_plan):
    v = edge_plan
    berlin = v.cfg.site("store-berlin")
    cgw, = v.all(CGW, edge=True)  # store-lyon has no AWS link
    assert cgw.inputs["ipAddress"] == berlin.vpn_gateway_ip and cgw.inputs["type"] == "ipsec.1"
    conn, = v.all(CONNECTION, edge=True)
    hub = v.one(CONNECTION)
    c = conn.inputs
    assert c["customerGatewayId"] == v.id(cgw) and c["vpnGatewayId"] == hub.inputs["vpnGatewayId"] and c["staticRoutesOnly"] is True
    for n in (1, 2):
        assert c[f"tunnel{n}InsideCidr"] == berlin.links[0].tunnel_inside_cidrs[n - 1]
        assert c[f"tunnel{n}PresharedKey"] == SECRET_MARKER
        assert c[f"tunnel{n}LogOptions"] == hub.inputs[f"tunnel{n}LogOptions"]  # the hubs' encrypted tunnel log group
        # the same profile as the hubs' link, parameter for parameter
        for key in ("IkeVersions", "Phase1EncryptionAlgorithms", "Phase1IntegrityAlgorithms", "Phase1DhGroupNumbers", "Phase2DhGroupNumbers",
                    "Phase2EncryptionAlgorithms", "Phase1LifetimeSeconds", "Phase2LifetimeSeconds", "DpdTimeoutAction", "StartupAction"):
            assert c[f"tunnel{n}{key}"] == hub.inputs[f"tunnel{n}{key}"], key
    assert plan_problems(v.plan.resources) == []


def test_the_edge_networks_are_routed_into_the_link_and_from_every_private_route_table(edge_plan):
    v = edge_plan
    conn, = v.all(CONNECTION, edge=True)
    routes = v.all("aws:ec2/vpnConnectionRoute:VpnConnectionRoute", edge=True)
    assert [(r.inputs["destinationCidrBlock"], r.inputs["vpnConnectionId"]) for r in routes] == [("192.168.50.0/24", v.id(conn))]
    vgw = v.one("aws:ec2/vpnGateway:VpnGateway")
    private_tables = {v.id(t) for t in v.all("aws:ec2/routeTable:RouteTable") if "private" in t.name}
    edge_routes = v.all(ROUTE, edge=True)
    assert {(r.inputs["routeTableId"], r.inputs["destinationCidrBlock"], r.inputs["gatewayId"]) for r in edge_routes} == {
        (t, "192.168.50.0/24", v.id(vgw)) for t in private_tables
    }
    # store-lyon is linked to OpenStack only: AWS has no route to it
    assert not [r for r in v.plan.resources if r.inputs.get("destinationCidrBlock") == "192.168.60.0/24"]


def test_an_openstack_link_is_one_site_connection_on_the_hubs_service(edge_plan):
    v = edge_plan
    hub_sites = v.all(SITE)
    service = v.one("openstack:vpnaas/service:Service")
    by_name = {s.inputs["description"]: s.inputs for s in v.all(SITE, edge=True)}
    assert set(by_name) == {"hybridserve: edge site store-berlin", "hybridserve: edge site store-lyon"}
    for name, s in (("store-berlin", by_name["hybridserve: edge site store-berlin"]), ("store-lyon", by_name["hybridserve: edge site store-lyon"])):
        site = v.cfg.site(name)
        assert s["peerAddress"] == s["peerId"] == site.vpn_gateway_ip
        assert s["vpnserviceId"] == v.id(service)
        for key in ("ikepolicyId", "ipsecpolicyId", "localEpGroupId", "dpds", "mtu"):
            assert s[key] == hub_sites[0].inputs[key], key
        assert s["psk"] == SECRET_MARKER and s["adminStateUp"] is True
        assert v.ref(s["peerEpGroupId"]).inputs["endpoints"] == list(site.cidrs)


@pytest.mark.parametrize("routing", ["transit", "propagation"])
def test_edge_routes_follow_the_hubs_gateway_and_routing(tmp_path, routing):
    def edit(c):
        section(c, "vpn").update(gateway="transit") if routing == "transit" else section(c, "vpn").update(routing="propagation")

    v = PlanView(plan_stack_file(variant(tmp_path, "search-dev", edit)))
    conn, = v.all(CONNECTION, edge=True)
    if routing == "transit":
        tgw = v.one("aws:ec2transitgateway/transitGateway:TransitGateway")
        assert conn.inputs["transitGatewayId"] == v.id(tgw) and "vpnGatewayId" not in conn.inputs
        tgw_routes = v.all("aws:ec2transitgateway/route:Route", edge=True)
        assert [r.inputs["destinationCidrBlock"] for r in tgw_routes] == ["192.168.50.0/24"]
        assert {r.inputs["transitGatewayId"] for r in v.all(ROUTE, edge=True)} == {v.id(tgw)}
    else:
        # the hubs' propagation puts every connection's static routes into the private route tables
        assert v.all(ROUTE, edge=True) == [] and len(v.all("aws:ec2/vpnConnectionRoute:VpnConnectionRoute", edge=True)) == 1
    assert plan_problems(v.plan.resources) == []


def test_the_program_returns_a_typed_handle_per_edge_site(monkeypatch):
    import infra.program

    built = []
    real_build = infra.program.build
    monkeypatch.setattr(infra.program, "build", lambda ctx: built.append(real_build(ctx)) or built[-1])
    plan = plan_stack_file(EXAMPLES / "Pulumi.search-dev.yaml")
    handles = built[0].edge_sites
    assert [(h.name, h.index) for h in handles] == [("store-berlin", 2), ("store-lyon", 3)]
    assert all(isinstance(h.config, EdgeSite) and h.profile == plan.config.vpn for h in handles)
    berlin, lyon = handles
    assert berlin.aws is not None and berlin.aws.inside_cidrs == ["169.254.40.0/30", "169.254.40.4/30"] and berlin.openstack is not None
    assert lyon.aws is None and lyon.openstack is not None and lyon.openstack.peer_cidrs == ["10.120.0.0/22"]
    assert len(berlin.links) == 2 and len(lyon.links) == 1
    outputs = json.loads(json.dumps(plan.outputs))
    assert outputs["edgePresharedKeys"] == SECRET_MARKER
    assert outputs["edgeSites"]["store-lyon"]["aws"] is None and outputs["edgeSites"]["store-berlin"]["vpnGatewayIp"] == "203.0.113.10"
    # what to set on the site's own gateway: the AWS tunnel ends and the Neutron peer, keys by their output path only
    setup = outputs["edgeSites"]["store-berlin"]["gatewaySetup"]
    tunnels = outputs["edgeSites"]["store-berlin"]["aws"]["tunnelAddresses"]
    assert f"tunnel 1: peer {tunnels[0]}, inside 169.254.40.0/30" in setup and f"tunnel 2: peer {tunnels[1]}, inside 169.254.40.4/30" in setup
    assert f"OpenStack link: peer {outputs['edgeSites']['store-berlin']['openstack']['peerAddress']}, remote networks 10.120.0.0/22" in setup
    assert "key edgePresharedKeys.store-berlin.aws.tunnel1" in setup and "AWS link" not in outputs["edgeSites"]["store-lyon"]["gatewaySetup"]


def test_edge_sites_add_to_the_plan_and_leave_the_hubs_resources_as_they_were(edge_plan, tmp_path):
    without = PlanView(plan_stack_file(variant(tmp_path, "search-dev", lambda c: c.pop("hybridserve:sites"))))
    before = {r.urn: r.as_json() for r in without.plan.resources}
    after = {r.urn: r.as_json() for r in edge_plan.plan.resources}
    assert set(before) <= set(after)
    changed = sorted(after[u]["name"] for u in before if after[u] != before[u])
    # Only the AWS peer group changes: it admits the networks of edge sites linked to AWS on the serving ports;
    # and the stack key ("key"), whose policy lets the AWS-linked edge sites' readers decrypt through S3.
    assert changed == ["aws-network-peer", "key"]
    links = {u for u in set(after) - set(before) if EDGE_LINKS in u}
    added = {after[u]["type"] for u in links}
    assert added == {
        "hybridserve:vpn:EdgeSiteLinks", "pulumi:providers:random", "random:index/randomPassword:RandomPassword",
        "aws:ec2/customerGateway:CustomerGateway", "aws:ec2/vpnConnection:VpnConnection", "aws:ec2/vpnConnectionRoute:VpnConnectionRoute",
        "aws:ec2/route:Route", "openstack:vpnaas/endpointGroup:EndpointGroup", "openstack:vpnaas/siteConnection:SiteConnection",
    }
    # The rest is the edge hosts' wiring (tests/test_edge_wiring.py): per site a publication, hosts, and on AWS a reader.
    rest = sorted(after[u]["name"] for u in set(after) - set(before) - links if "EdgeHosts" not in u)  # not the hosts and their commands
    assert rest == ["edge-store-berlin-reader", "edge-store-berlin-reader-key",
                    "edge-store-berlin-reader-policy", "models-edge-store-berlin", "models-edge-store-berlin-gpu",  # its GPU host's rendering
                    "models-edge-store-lyon"]
