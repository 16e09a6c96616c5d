"""The hybrid network (issue 6), checked on the recorded plan the way a cloud would check it.

`PlanView` reads a plan (infra.plan) and resolves references between resources with the ids the
mock engine handed out (infra.mocks is deterministic), so a route's `natGatewayId` leads to the
NAT gateway resource, its `subnetId` to the subnet, and so on. tests/test_vpn.py reuses it.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime.mocks import MockResourceArgs

from hybridserve.paths import repo_root
from hybridserve.stackconfig import StackConfigError, build_stack_config, stack_files
from infra.mocks import PlanMocks
from infra.plan import Plan, PlannedResource, plan_stack_file
from stackutil import reachable

EXAMPLES = repo_root() / "stacks"
NAMES = sorted(stack_files(EXAMPLES))
ADMIN_PORTS = (22, 3389, 6443)
EDGE_LINKS = "hybridserve:vpn:EdgeSiteLinks"  # the edge sites' VPN links (infra/components/edge_links.py)
REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}


class PlanView:
    """A plan's resources with the ids the mock engine gave them, so references can be followed."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.cfg = plan.config
        mocks = PlanMocks(plan.config.aws.region, plan.stack)
        self.id_of: dict[str, str] = {}
        self.by_id: dict[str, PlannedResource] = {}
        self.state: dict[str, dict[str, Any]] = {}
        for r in plan.resources:
            if r.custom and not r.type.startswith("pulumi:providers:"):
                rid, state = mocks.new_resource(MockResourceArgs(r.type, r.name, copy.deepcopy(r.inputs), custom=True))
                self.id_of[r.urn] = rid
                self.by_id[rid] = r
                self.state[r.urn] = state

    def all(self, type_: str, *, edge: bool = False) -> list[PlannedResource]:
        """Resources of `type_`: the hubs' (default), or those of the edge sites' VPN links (edge=True)."""
        return [r for r in self.plan.resources if r.type == type_ and (EDGE_LINKS in r.urn) == edge]

    def one(self, type_: str) -> PlannedResource:
        found = self.all(type_)
        assert len(found) == 1, f"{type_}: {[r.name for r in found]}"
        return found[0]

    def ref(self, resource_id: str) -> PlannedResource:
        return self.by_id[resource_id]

    def id(self, r: PlannedResource) -> str:
        return self.id_of[r.urn]

    def text(self) -> str:
        return json.dumps(self.plan.as_json())

    # --- the network, read back -----------------------------------------------------------------

    def subnets(self, tier: str) -> list[PlannedResource]:
        return [s for s in self.all("aws:ec2/subnet:Subnet") if s.inputs["tags"].get("hybridserve.io/tier") == tier]

    def route_table_of(self, subnet: PlannedResource) -> PlannedResource:
        assoc = [a for a in self.all("aws:ec2/routeTableAssociation:RouteTableAssociation") if a.inputs["subnetId"] == self.id(subnet)]
        assert len(assoc) == 1, f"{subnet.name} has {len(assoc)} route table associations"
        return self.ref(assoc[0].inputs["routeTableId"])

    def routes(self, table: PlannedResource) -> list[PlannedResource]:
        return [r for r in self.all("aws:ec2/route:Route") if r.inputs["routeTableId"] == self.id(table)]


@functools.lru_cache(maxsize=None)
def example(name: str) -> PlanView:
    return PlanView(plan_stack_file(EXAMPLES / f"Pulumi.{name}.yaml"))


def variant(tmp_path: Path, base: str, edit: Callable[[dict], None]) -> Path:
    """A copy of example stack `base` (same name) with its config edited, in its own stacks dir."""
    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    doc = yaml.safe_load((EXAMPLES / f"Pulumi.{base}.yaml").read_text())
    edit(doc["config"])
    path = stacks / f"Pulumi.{base}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def section(config: dict, key: str, *path: str) -> dict:
    node = config.setdefault(f"hybridserve:{key}", {})
    for p in path:
        node = node.setdefault(p, {})
    return node


# --- AWS network ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_vpc_from_the_stack_cidr_with_dns(name):
    v = example(name)
    vpc = v.one("aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == v.cfg.aws.vpc.cidr
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True
    # the default security group is emptied
    default_sg = v.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default_sg.inputs["vpcId"] == v.id(vpc) and default_sg.inputs["ingress"] == [] and default_sg.inputs["egress"] == []


@pytest.mark.parametrize("name", NAMES)
def test_subnets_inside_the_vpc_disjoint_one_public_and_one_private_per_zone(name):
    v = example(name)
    vpc_id, vpc_net = v.id(v.one("aws:ec2/vpc:Vpc")), ipaddress.IPv4Network(v.cfg.aws.vpc.cidr)
    subnets = v.all("aws:ec2/subnet:Subnet")
    nets = [ipaddress.IPv4Network(s.inputs["cidrBlock"]) for s in subnets]
    assert all(s.inputs["vpcId"] == vpc_id for s in subnets)
    assert all(n.subnet_of(vpc_net) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[:i])
    zones = v.cfg.aws.vpc.zones(v.cfg.aws.region)
    assert len(zones) >= (3 if v.cfg.environment == "prod" else 2)
    for tier in ("public", "private"):
        assert sorted(s.inputs["availabilityZone"] for s in v.subnets(tier)) == sorted(zones)
    # sized from config
    assert {ipaddress.IPv4Network(s.inputs["cidrBlock"]).prefixlen for s in v.subnets("private")} == {v.cfg.aws.vpc.private_subnet_prefix}
    assert {ipaddress.IPv4Network(s.inputs["cidrBlock"]).prefixlen for s in v.subnets("public")} == {v.cfg.aws.vpc.public_subnet_prefix}
    assert not any(s.inputs["mapPublicIpOnLaunch"] for s in subnets)


@pytest.mark.parametrize("name", NAMES)
def test_subnet_tags_for_the_eks_and_load_balancer_controllers(name):
    v = example(name)
    cluster_tag = f"kubernetes.io/cluster/{v.cfg.prefix}-eks"
    for s in v.subnets("public"):
        assert s.inputs["tags"]["kubernetes.io/role/elb"] == "1" and s.inputs["tags"][cluster_tag] == "shared"
        assert "kubernetes.io/role/internal-elb" not in s.inputs["tags"]
    for s in v.subnets("private"):
        assert s.inputs["tags"]["kubernetes.io/role/internal-elb"] == "1" and s.inputs["tags"][cluster_tag] == "shared"
        assert "kubernetes.io/role/elb" not in s.inputs["tags"]
    # the common tags reach every AWS resource through the provider's default tags
    provider = v.one("pulumi:providers:aws")
    assert json.loads(provider.inputs["defaultTags"])["tags"] == v.cfg.common_tags()
    aws_resources = [r for r in v.plan.resources if r.type.startswith("aws:")]
    assert {r.provider for r in aws_resources} == {provider.urn}


@pytest.mark.parametrize("name", NAMES)
def test_public_tier_routes_to_the_internet_gateway_private_tier_to_nat(name):
    v = example(name)
    igw = v.one("aws:ec2/internetGateway:InternetGateway")
    public_tables = {v.route_table_of(s).urn for s in v.subnets("public")}
    assert len(public_tables) == 1
    public = v.route_table_of(v.subnets("public")[0])
    assert [(r.inputs["destinationCidrBlock"], r.inputs.get("gatewayId")) for r in v.routes(public)] == [("0.0.0.0/0", v.id(igw))]
    for s in v.subnets("private"):
        defaults = [r for r in v.routes(v.route_table_of(s)) if r.inputs["destinationCidrBlock"] == "0.0.0.0/0"]
        assert len(defaults) == 1 and "natGatewayId" in defaults[0].inputs and "gatewayId" not in defaults[0].inputs
        nat = v.ref(defaults[0].inputs["natGatewayId"])
        assert nat.type == "aws:ec2/natGateway:NatGateway"
        assert v.ref(nat.inputs["subnetId"]).inputs["tags"]["hybridserve.io/tier"] == "public"


@pytest.mark.parametrize("name", NAMES)
def test_nat_gateways_one_per_zone_in_ha_stacks_one_shared_otherwise(name):
    v = example(name)
    nats = v.all("aws:ec2/natGateway:NatGateway")
    private = v.subnets("private")
    if v.cfg.aws.vpc.nat_gateways == "per_az":
        assert len(nats) == len(private) >= 3
        for s in private:
            route = next(r for r in v.routes(v.route_table_of(s)) if r.inputs["destinationCidrBlock"] == "0.0.0.0/0")
            nat_zone = v.ref(v.ref(route.inputs["natGatewayId"]).inputs["subnetId"]).inputs["availabilityZone"]
            assert nat_zone == s.inputs["availabilityZone"], "a private subnet must use the NAT gateway of its own zone"
    else:
        assert len(nats) == 1
        targets = {next(r for r in v.routes(v.route_table_of(s)) if r.inputs["destinationCidrBlock"] == "0.0.0.0/0").inputs["natGatewayId"] for s in private}
        assert targets == {v.id(nats[0])}
    eips = {v.id(e) for e in v.all("aws:ec2/eip:Eip")}
    assert {n.inputs["allocationId"] for n in nats} <= eips and len(eips) == len(nats)


@pytest.mark.parametrize("name", NAMES)
def test_s3_gateway_endpoint_on_every_private_route_table(name):
    v = example(name)
    endpoint = v.one("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert endpoint.inputs["serviceName"] == f"com.amazonaws.{v.cfg.aws.region}.s3"
    assert sorted(endpoint.inputs["routeTableIds"]) == sorted(v.id(v.route_table_of(s)) for s in v.subnets("private"))


@pytest.mark.parametrize("name", NAMES)
def test_flow_logs_on_to_an_encrypted_retained_log_group(name):
    v = example(name)
    flow = v.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["vpcId"] == v.id(v.one("aws:ec2/vpc:Vpc")) and flow.inputs["trafficType"] == "ALL"
    groups = {v.state[g.urn]["arn"]: g for g in v.all("aws:cloudwatch/logGroup:LogGroup")}
    group = groups[flow.inputs["logDestination"]]
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    assert group.inputs["retentionInDays"] == 365
    keys = {v.state[k.urn]["arn"]: k for k in v.all("aws:kms/key:Key")}
    key = keys[group.inputs["kmsKeyId"]]
    assert key.inputs["enableKeyRotation"] is True
    statements = json.loads(key.inputs["policy"])["Statement"]
    logs = next(s for s in statements if s["Principal"].get("Service", "").startswith("logs."))
    network_groups, eks_group = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert network_groups.endswith(f":log-group:/{v.cfg.prefix}/*") and eks_group.endswith(f":log-group:/aws/eks/{v.cfg.prefix}-eks/cluster")
    # the role the flow-log service assumes may write to that group only
    roles = {v.state[r.urn]["arn"]: r for r in v.all("aws:iam/role:Role")}
    role = roles[flow.inputs["iamRoleArn"]]
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"} and "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    policy = next(p for p in v.all("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == v.id(role))
    write, list_groups = json.loads(policy.inputs["policy"])["Statement"]
    assert write["Resource"] == [group_arn := v.state[group.urn]["arn"], f"{group_arn}:*"]
    assert sorted(write["Action"]) == ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"]
    # IAM authorizes logs:DescribeLogGroups only on "*" (it takes no log-group ARN): alone in its statement
    assert (list_groups["Action"], list_groups["Resource"]) == ("logs:DescribeLogGroups", "*")


def test_flow_logs_can_be_turned_off(tmp_path):
    path = variant(tmp_path, "search-dev", lambda c: section(c, "aws", "vpc").update(flow_logs={"enabled": False}))
    v = PlanView(plan_stack_file(path))
    assert v.all("aws:ec2/flowLog:FlowLog") == []
    assert v.plan.outputs["network"]["aws"]["flowLogGroup"] is None


# --- OpenStack network ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_openstack_network_subnet_router_on_the_external_network(name):
    v = example(name)
    os_cfg = v.cfg.openstack
    network = v.one("openstack:networking/network:Network")
    subnet = v.one("openstack:networking/subnet:Subnet")
    router = v.one("openstack:networking/router:Router")
    assert subnet.inputs["networkId"] == v.id(network)
    assert subnet.inputs["cidr"] == os_cfg.network.cidr and subnet.inputs["dnsNameservers"] == list(os_cfg.network.dns_nameservers)
    assert subnet.inputs["ipVersion"] == 4 and subnet.inputs["enableDhcp"] is True
    # the external network was looked up by the configured name (mock id derives from it)
    from infra.mocks import MockContext

    lookup = MockContext(v.cfg.aws.region, v.plan.stack, "openstack:networking/getNetwork:getNetwork", json.dumps({"external": True, "name": os_cfg.external_network}, sort_keys=True))
    assert router.inputs["externalNetworkId"] == lookup.uuid(os_cfg.external_network)
    interface = v.one("openstack:networking/routerInterface:RouterInterface")
    assert interface.inputs["routerId"] == v.id(router) and interface.inputs["subnetId"] == v.id(subnet)
    for r in (network, subnet, router):
        assert "managed-by=pulumi" in r.inputs["tags"] and f"team={v.cfg.team}" in r.inputs["tags"]


def _rules(v: PlanView) -> list[dict[str, Any]]:
    """Every ingress rule of every security group in the plan, both clouds: cidr, protocol, port range."""
    rules = []
    for sg in v.all("aws:ec2/securityGroup:SecurityGroup"):
        for rule in sg.inputs.get("ingress", []):
            for cidr in rule.get("cidrBlocks", []):
                rules.append({"sg": sg.name, "cidr": cidr, "protocol": rule["protocol"], "ports": (rule["fromPort"], rule["toPort"])})
    for rule in v.all("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        if rule.inputs.get("cidrIpv4"):
            rules.append({"sg": rule.name, "cidr": rule.inputs["cidrIpv4"], "protocol": rule.inputs["ipProtocol"], "ports": (rule.inputs.get("fromPort", -1), rule.inputs.get("toPort", -1))})
    for rule in v.all("aws:ec2/securityGroupRule:SecurityGroupRule"):
        if rule.inputs["type"] == "ingress":
            for cidr in rule.inputs.get("cidrBlocks", []):
                rules.append({"sg": rule.name, "cidr": cidr, "protocol": rule.inputs["protocol"], "ports": (rule.inputs["fromPort"], rule.inputs["toPort"])})
    for rule in v.all("openstack:networking/secGroupRule:SecGroupRule"):
        if rule.inputs["direction"] == "ingress":
            ports = (rule.inputs.get("portRangeMin", 0), rule.inputs.get("portRangeMax", 0))
            rules.append({"sg": rule.name, "cidr": rule.inputs.get("remoteIpPrefix", "0.0.0.0/0"), "protocol": rule.inputs.get("protocol", "any"), "ports": ports})
    return rules


def _opens(rule: dict[str, Any], port: int) -> bool:
    if rule["protocol"] in ("icmp", "1"):
        return False
    low, high = rule["ports"]
    everything = rule["protocol"] in ("any", "-1", "all") or (low in (0, -1) and high in (0, -1))
    return everything or low <= port <= high


@pytest.mark.parametrize("name", NAMES)
def test_no_security_group_opens_an_admin_port_to_the_internet(name):
    v = example(name)
    read = {
        "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "aws:ec2/securityGroupRule:SecurityGroupRule",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "openstack:networking/secGroup:SecGroup", "openstack:networking/secGroupRule:SecGroupRule",
    }
    assert {r.type for r in v.plan.resources if "ecurityGroup" in r.type or "secGroup" in r.type} <= read, "a rule type this test does not read"
    rules = _rules(v)
    assert rules
    world = [r for r in rules if ipaddress.IPv4Network(r["cidr"]).prefixlen == 0]
    for rule in world:
        assert not any(_opens(rule, p) for p in ADMIN_PORTS), rule


@pytest.mark.parametrize("name", NAMES)
def test_the_peer_site_reaches_only_the_serving_ports_and_no_decoy_group_is_planned(name):
    v = example(name)
    cfg = v.cfg
    serving = sorted({cfg.serving.http_port, cfg.serving.grpc_port, cfg.serving.metrics_port})
    # Magnum attaches its own node security groups and takes no other: a group of ours would be attached to
    # nothing (issue 11). The OpenStack side's restriction is Triton's NetworkPolicy (test_triton_service).
    assert v.all("openstack:networking/secGroup:SecGroup") == [] and v.all("openstack:networking/secGroupRule:SecGroupRule") == []
    assert "securityGroupId" not in v.plan.outputs["network"]["openstack"]
    # the AWS side's peer group admits the OpenStack network, and the networks of edge sites linked to AWS (their
    # clients fail over to its Triton), on the serving ports only
    peer = next(sg for sg in v.all("aws:ec2/securityGroup:SecurityGroup") if sg.name == "aws-network-peer")
    tcp = [r for r in peer.inputs["ingress"] if r["protocol"] == "tcp"]
    edge_to_aws = {c for _, site in cfg.edge_sites() if any(link.to == "aws" for link in site.links) for c in site.cidrs}
    assert {c for r in peer.inputs["ingress"] for c in r["cidrBlocks"]} == {cfg.openstack.network.cidr, *edge_to_aws}
    for cidr in {cfg.openstack.network.cidr, *edge_to_aws}:
        assert sorted(p for r in tcp if cidr in r["cidrBlocks"] for p in range(r["fromPort"], r["toPort"] + 1)) == serving


def test_an_opening_of_the_openstack_nodes_is_refused_as_nothing_could_carry_it(tmp_path, capsys):
    from cliutil import run_cli

    bastion = {"cidr": "203.0.113.7/32", "protocol": "tcp", "port": 22, "description": "bastion"}
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:openstack": {"network": {"ingress": [bastion]}}}))
    assert any(p.startswith("config: hybridserve:openstack.network.ingress: Magnum creates and attaches the nodes' security groups") for p in info.value.problems), info.value.problems
    path = variant(tmp_path, "vision-dev", lambda c: section(c, "openstack", "network").update(ingress=[bastion]))
    with pytest.raises(StackConfigError):
        plan_stack_file(path)
    code, _, err = run_cli(["validate", "--stack", "vision-dev", "--stacks-dir", str(path.parent)], capsys)
    assert code == 2 and "Pulumi.vision-dev.yaml" in err and "hybridserve:openstack.network.ingress: Magnum creates and attaches" in err

    # the rule's own checks still name their keys
    for port, port_max in ((22, None), (6000, 7000), (3389, None)):
        rule = {"cidr": "0.0.0.0/0", "port": port, **({"port_max": port_max} if port_max else {})}
        with pytest.raises(StackConfigError) as info:
            build_stack_config(reachable({**REQUIRED, "hybridserve:openstack": {"network": {"ingress": [rule]}}}))
        assert any(p.startswith("config: hybridserve:openstack.network.ingress[0].cidr: 0.0.0.0/0 would open") for p in info.value.problems), info.value.problems
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:openstack": {"network": {"ingress": [{"cidr": "10.0.0.0/8"}]}}}))
    assert any("config: hybridserve:openstack.network.ingress[0].port: tcp needs a port" in p for p in info.value.problems)


# --- config rules of the network ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aws", "expected"),
    [
        ({"vpc": {"az_count": 1}}, "hybridserve:aws.vpc.az_count: 1 is out of range; must be greater than or equal to 2"),
        ({"vpc": {"availability_zones": ["us-east-1a"]}}, "hybridserve:aws.vpc.availability_zones: ['us-east-1a'] lists one zone; list at least 2"),
        ({"vpc": {"flow_logs": {"retention_days": 7}}}, "hybridserve:aws.vpc.flow_logs.retention_days: 7 is not valid"),
    ],
)
def test_network_config_errors_name_the_key(aws, expected):
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:aws": aws}))
    assert any(p.startswith(f"config: {expected}") for p in info.value.problems), info.value.problems


def test_a_production_stack_needs_three_zones(tmp_path, capsys):
    from hybridserve.cli import main

    path = variant(tmp_path, "search-prod", lambda c: section(c, "aws", "vpc").update(az_count=2, nat_gateways="per_az"))
    out_file = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as info:
        main(["plan", "--stack", "search-prod", "--stacks-dir", str(path.parent), "--json", str(out_file)])
    err = " ".join(capsys.readouterr().err.split())
    assert info.value.code == 2
    assert "hybridserve:aws.vpc.az_count: prod spans 2 availability zones; production stacks need at least 3" in err
    assert not out_file.exists()  # nothing planned
