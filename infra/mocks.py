"""Mock outputs for the offline plan: realistic, deterministic values per resource type and per invoke.

Table-driven: add an entry next to the others when a component uses a new type.

    @resource("aws:ec2/vpc:Vpc", id_prefix="vpc-")
    def _vpc(m: MockContext, args: MockResourceArgs) -> dict:
        return {"arn": m.arn("ec2", f"vpc/{m.id}"), "defaultSecurityGroupId": m.aws_id("sg-")}

    @call("aws:index/getAvailabilityZones:getAvailabilityZones")
    def _zones(m: MockContext, args: MockCallArgs) -> dict:
        return {"names": [...]}

A resource's state is its inputs, then `defaults` (AWS: arn, tags_all), then the entry's outputs;
output keys are wire names (camelCase), as in the provider schema. Types without an entry get
their inputs back and a generated id, so an unlisted type never breaks the plan.
Every value derives from the stack and the resource name (no randomness), so plans are stable.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pulumi
from pulumi.runtime.mocks import MockCallArgs, MockResourceArgs

MOCK_ACCOUNT_ID = "123456789012"
# Documentation address ranges (RFC 5737): never real endpoints.
_AWS_PUBLIC = ipaddress.IPv4Network("203.0.113.0/24")
_OPENSTACK_PUBLIC = ipaddress.IPv4Network("198.51.100.0/24")


class MockContext:
    """Per-resource helpers: deterministic ids, ARNs, addresses, all derived from the stack and the name."""

    def __init__(self, region: str, stack: str, type_: str = "", name: str = "", inputs: dict | None = None):
        self.region = region
        self.stack = stack
        self.type = type_
        self.name = name
        self.inputs = inputs or {}
        self.id = ""

    def digest(self, *salt: str, length: int = 17) -> str:
        text = "|".join((self.stack, self.type, self.name, *salt))
        return hashlib.sha256(text.encode()).hexdigest()[:length]

    def aws_id(self, prefix: str, *salt: str) -> str:
        return f"{prefix}0{self.digest(*salt, length=16)}"

    def uuid(self, *salt: str) -> str:
        h = self.digest(*salt, length=32)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{MOCK_ACCOUNT_ID}:{resource}"

    def ip(self, space: ipaddress.IPv4Network, *salt: str) -> str:
        offset = int(self.digest(*salt, length=8), 16) % (space.num_addresses - 2) + 1
        return str(space.network_address + offset)

    def aws_public_ip(self, *salt: str) -> str:
        return self.ip(_AWS_PUBLIC, *salt)

    def openstack_public_ip(self, *salt: str) -> str:
        return self.ip(_OPENSTACK_PUBLIC, *salt)

    def kubeconfig(self, server: str, cluster: str) -> str:
        ca = base64.b64encode(f"mock-ca-{cluster}".encode()).decode()
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": ca}}],
                "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
                "current-context": cluster,
                "users": [{"name": cluster, "user": {"token": f"mock-token-{self.digest('token')}"}}],
            }
        )


ResourceRule = Callable[[MockContext, MockResourceArgs], dict]
CallRule = Callable[[MockContext, MockCallArgs], dict]

RESOURCES: dict[str, tuple[str, ResourceRule | None]] = {}
CALLS: dict[str, CallRule] = {}


def resource(type_token: str, *, id_prefix: str = "") -> Callable[[ResourceRule], ResourceRule]:
    """Register mock outputs for a resource type. `id_prefix` shapes the physical id (e.g. "vpc-")."""

    def register(fn: ResourceRule) -> ResourceRule:
        RESOURCES[type_token] = (id_prefix, fn)
        return fn

    return register


def call(token: str) -> Callable[[CallRule], CallRule]:
    """Register a mock result for a provider function (invoke)."""

    def register(fn: CallRule) -> CallRule:
        CALLS[token] = fn
        return fn

    return register


class PlanMocks(pulumi.runtime.Mocks):
    def __init__(self, region: str, stack: str):
        self.region = region
        self.stack = stack
        self.unmocked_calls: list[str] = []

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict]:
        m = MockContext(self.region, self.stack, args.typ, args.name, args.inputs)
        prefix, rule = RESOURCES.get(args.typ, ("", None))
        if args.typ.startswith("openstack:"):
            m.id = m.uuid()
        elif prefix:
            m.id = m.aws_id(prefix)
        else:
            m.id = args.resource_id or f"{args.name}-{m.digest(length=8)}"
        state = dict(args.inputs)
        if args.typ.startswith("aws:"):
            service = args.typ.split(":")[1].split("/")[0]
            state.setdefault("arn", m.arn(service, f"{args.name}/{m.id}"))
            if "tags" in args.inputs:
                state.setdefault("tagsAll", args.inputs["tags"])
        if rule is not None:
            state.update(rule(m, args))
        return m.id, state

    def call(self, args: MockCallArgs) -> dict:
        rule = CALLS.get(args.token)
        if rule is None:
            self.unmocked_calls.append(args.token)
            return {}
        m = MockContext(self.region, self.stack, args.token, json.dumps(args.args, sort_keys=True, default=str))
        return rule(m, args)


# ======================================================================================
# Resource outputs. Keep entries grouped by provider and sorted by type token.
# ======================================================================================

# --- AWS: networking -------------------------------------------------------------------


@resource("aws:ec2/vpc:Vpc", id_prefix="vpc-")
def _vpc(m: MockContext, args: MockResourceArgs) -> dict:
    return {
        "arn": m.arn("ec2", f"vpc/{m.id}"),
        "defaultSecurityGroupId": m.aws_id("sg-", "default"),
        "defaultRouteTableId": m.aws_id("rtb-", "default"),
        "mainRouteTableId": m.aws_id("rtb-", "main"),
        "ownerId": MOCK_ACCOUNT_ID,
    }


@resource("aws:ec2/subnet:Subnet", id_prefix="subnet-")
def _subnet(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"subnet/{m.id}"), "availabilityZoneId": f"use1-az{int(m.digest(length=2), 16) % 6 + 1}"}


@resource("aws:ec2/internetGateway:InternetGateway", id_prefix="igw-")
def _igw(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"internet-gateway/{m.id}"), "ownerId": MOCK_ACCOUNT_ID}


@resource("aws:ec2/eip:Eip", id_prefix="eipalloc-")
def _eip(m: MockContext, args: MockResourceArgs) -> dict:
    return {"allocationId": m.id, "publicIp": m.aws_public_ip(), "domain": "vpc"}


@resource("aws:ec2/natGateway:NatGateway", id_prefix="nat-")
def _nat(m: MockContext, args: MockResourceArgs) -> dict:
    return {"publicIp": m.aws_public_ip(), "privateIp": "10.0.0.10", "networkInterfaceId": m.aws_id("eni-")}


@resource("aws:ec2/routeTable:RouteTable", id_prefix="rtb-")
def _rtb(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"route-table/{m.id}"), "ownerId": MOCK_ACCOUNT_ID}


@resource("aws:ec2/securityGroup:SecurityGroup", id_prefix="sg-")
def _sg(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"security-group/{m.id}"), "ownerId": MOCK_ACCOUNT_ID}


# --- AWS: VPN -----------------------------------------------------------------------------


@resource("aws:ec2/vpnGateway:VpnGateway", id_prefix="vgw-")
def _vgw(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"vpn-gateway/{m.id}"), "amazonSideAsn": str(args.inputs.get("amazonSideAsn", "64512"))}


@resource("aws:ec2/customerGateway:CustomerGateway", id_prefix="cgw-")
def _cgw(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"customer-gateway/{m.id}")}


@resource("aws:ec2/vpnConnection:VpnConnection", id_prefix="vpn-")
def _vpn_connection(m: MockContext, args: MockResourceArgs) -> dict:
    out: dict[str, Any] = {"arn": m.arn("ec2", f"vpn-connection/{m.id}"), "customerGatewayConfiguration": "<vpn_connection>mock</vpn_connection>"}
    if args.inputs.get("transitGatewayId"):
        out["transitGatewayAttachmentId"] = m.aws_id("tgw-attach-", "vpn")
    # Right after creation AWS reports both tunnels DOWN until the peer negotiates.
    out["vgwTelemetries"] = [
        {"outsideIpAddress": m.aws_public_ip(f"tunnel{n}"), "status": "DOWN", "statusMessage": "", "acceptedRouteCount": 0} for n in (1, 2)
    ]
    for n in (1, 2):
        inside = args.inputs.get(f"tunnel{n}InsideCidr") or f"169.254.{10 + n}.0/30"
        hosts = list(ipaddress.IPv4Network(inside).hosts())
        out.update(
            {
                f"tunnel{n}Address": m.aws_public_ip(f"tunnel{n}"),
                f"tunnel{n}InsideCidr": inside,
                f"tunnel{n}CgwInsideAddress": str(hosts[1]),
                f"tunnel{n}VgwInsideAddress": str(hosts[0]),
                # AWS generates the keys when none is given; the SDK marks them secret.
                f"tunnel{n}PresharedKey": args.inputs.get(f"tunnel{n}PresharedKey") or f"mockpsk{m.digest(f'psk{n}', length=24)}",
                f"tunnel{n}BgpAsn": "64512",
            }
        )
    return out


# --- AWS: EKS, IAM, KMS, S3 ----------------------------------------------------------------


@resource("aws:eks/cluster:Cluster")
def _eks_cluster(m: MockContext, args: MockResourceArgs) -> dict:
    host = f"{m.digest(length=32).upper()}.gr7.{m.region}.eks.amazonaws.com"
    return {
        "arn": m.arn("eks", f"cluster/{args.inputs.get('name', args.name)}"),
        "endpoint": f"https://{host}",
        "certificateAuthority": {"data": base64.b64encode(f"mock-ca-{args.name}".encode()).decode()},
        "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{m.region}.amazonaws.com/id/{m.digest('oidc', length=32).upper()}"}]}],
        "platformVersion": "eks.10",
        "status": "ACTIVE",
        "version": args.inputs.get("version", "1.31"),
        "clusterId": m.uuid("cluster-id"),
        # EKS creates the cluster security group; managed node groups' launch templates attach it.
        "vpcConfig": {**(args.inputs.get("vpcConfig") or {}), "clusterSecurityGroupId": m.aws_id("sg-", "cluster"), "vpcId": m.aws_id("vpc-", "cluster")},
    }


@resource("aws:eks/nodeGroup:NodeGroup")
def _eks_node_group(m: MockContext, args: MockResourceArgs) -> dict:
    return {
        "arn": m.arn("eks", f"nodegroup/{args.inputs.get('clusterName', 'cluster')}/{args.name}/{m.uuid()}"),
        "status": "ACTIVE",
        "resources": [{"autoscalingGroups": [{"name": f"eks-{args.name}-{m.uuid()}"}], "remoteAccessSecurityGroupId": ""}],
    }


@resource("aws:eks/addon:Addon")
def _eks_addon(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("eks", f"addon/{args.inputs.get('clusterName', 'cluster')}/{args.inputs.get('addonName', args.name)}/{m.uuid()}"), "addonVersion": "v1.0.0-eksbuild.1"}


@resource("aws:iam/role:Role")
def _iam_role(m: MockContext, args: MockResourceArgs) -> dict:
    name = args.inputs.get("name", f"{args.name}-{m.digest(length=7)}")
    m.id = name  # a role's id is its name
    return {"arn": m.arn("iam", f"role/{name}", region=False), "name": name, "uniqueId": f"AROA{m.digest(length=17).upper()}"}


@resource("aws:iam/policy:Policy")
def _iam_policy(m: MockContext, args: MockResourceArgs) -> dict:
    name = args.inputs.get("name", f"{args.name}-{m.digest(length=7)}")
    return {"arn": m.arn("iam", f"policy/{name}", region=False), "name": name, "policyId": f"ANPA{m.digest(length=17).upper()}"}


@resource("aws:iam/openIdConnectProvider:OpenIdConnectProvider")
def _oidc(m: MockContext, args: MockResourceArgs) -> dict:
    url = str(args.inputs.get("url", "https://oidc.example")).removeprefix("https://")
    return {"arn": m.arn("iam", f"oidc-provider/{url}", region=False)}


@resource("aws:kms/key:Key")
def _kms_key(m: MockContext, args: MockResourceArgs) -> dict:
    m.id = m.uuid()
    return {"arn": m.arn("kms", f"key/{m.id}"), "keyId": m.id}


@resource("aws:kms/alias:Alias")
def _kms_alias(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("kms", str(args.inputs.get("name", f"alias/{args.name}")))}


def _bucket(m: MockContext, args: MockResourceArgs) -> dict:
    name = args.inputs.get("bucket") or f"{args.name}-{m.digest(length=8)}"
    m.id = name
    return {
        "arn": f"arn:aws:s3:::{name}",
        "bucket": name,
        "bucketDomainName": f"{name}.s3.amazonaws.com",
        "bucketRegionalDomainName": f"{name}.s3.{m.region}.amazonaws.com",
        "hostedZoneId": "Z3AQBSTGFYJSTF",
        "region": m.region,
    }


resource("aws:s3/bucket:Bucket")(_bucket)
resource("aws:s3/bucketV2:BucketV2")(_bucket)


# --- OpenStack ----------------------------------------------------------------------------


@resource("openstack:networking/network:Network")
def _os_network(m: MockContext, args: MockResourceArgs) -> dict:
    return {"mtu": args.inputs.get("mtu", 1450), "adminStateUp": True, "tenantId": m.uuid("tenant").replace("-", "")}


@resource("openstack:networking/subnet:Subnet")
def _os_subnet(m: MockContext, args: MockResourceArgs) -> dict:
    cidr = args.inputs.get("cidr", "10.64.0.0/22")
    hosts = ipaddress.IPv4Network(cidr)
    return {"gatewayIp": str(hosts.network_address + 1), "allocationPools": [{"start": str(hosts.network_address + 2), "end": str(hosts.broadcast_address - 1)}]}


@resource("openstack:networking/router:Router")
def _os_router(m: MockContext, args: MockResourceArgs) -> dict:
    return {"externalFixedIps": [{"ipAddress": m.openstack_public_ip("router"), "subnetId": m.uuid("ext-subnet")}]}


@resource("openstack:networking/floatingIp:FloatingIp")
def _os_fip(m: MockContext, args: MockResourceArgs) -> dict:
    return {"address": m.openstack_public_ip()}


@resource("openstack:vpnaas/service:Service")
def _os_vpn_service(m: MockContext, args: MockResourceArgs) -> dict:
    return {"externalV4Ip": m.openstack_public_ip("vpn"), "status": "ACTIVE"}


@resource("openstack:vpnaas/siteConnection:SiteConnection")
def _os_site_connection(m: MockContext, args: MockResourceArgs) -> dict:
    return {"status": "ACTIVE"}


@resource("openstack:containerinfra/clusterTemplate:ClusterTemplate")
def _os_cluster_template(m: MockContext, args: MockResourceArgs) -> dict:
    return {"coe": args.inputs.get("coe", "kubernetes")}


@resource("openstack:containerinfra/cluster:Cluster")
def _os_magnum_cluster(m: MockContext, args: MockResourceArgs) -> dict:
    server = f"https://{m.openstack_public_ip('api')}:6443"
    return {
        "apiAddress": server,
        "coeVersion": "v1.30.7",
        "masterAddresses": ["10.64.0.10"],
        "nodeAddresses": ["10.64.0.20"],
        "stackId": m.uuid("heat"),
        # Returned in clear here; the SDK marks it secret (additional_secret_outputs).
        "kubeconfig": {
            "raw_config": m.kubeconfig(server, args.name),
            "host": server,
            "cluster_ca_certificate": f"mock-ca-{args.name}",
            "client_certificate": f"mock-cert-{args.name}",
            "client_key": f"mock-key-{m.digest('key')}",
        },
    }


@resource("openstack:containerinfra/nodeGroup:NodeGroup")
def _os_node_group(m: MockContext, args: MockResourceArgs) -> dict:
    return {"role": args.inputs.get("role", "worker")}


# --- network and VPN (issue 6) -------------------------------------------------------------


# aws:cloudwatch/logGroup:LogGroup: see the clusters and storage block.


@resource("aws:ec2/flowLog:FlowLog", id_prefix="fl-")
def _flow_log(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"vpc-flow-log/{m.id}")}


@resource("aws:ec2/vpcEndpoint:VpcEndpoint", id_prefix="vpce-")
def _vpc_endpoint(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"vpc-endpoint/{m.id}"), "prefixListId": m.aws_id("pl-"), "state": "available", "ownerId": MOCK_ACCOUNT_ID}


@resource("aws:ec2/routeTableAssociation:RouteTableAssociation", id_prefix="rtbassoc-")
def _rtb_association(m: MockContext, args: MockResourceArgs) -> dict:
    return {}


@resource("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", id_prefix="sg-")
def _default_sg(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"security-group/{m.id}"), "name": "default", "ownerId": MOCK_ACCOUNT_ID}


@resource("aws:ec2transitgateway/transitGateway:TransitGateway", id_prefix="tgw-")
def _transit_gateway(m: MockContext, args: MockResourceArgs) -> dict:
    table = m.aws_id("tgw-rtb-")
    return {"arn": m.arn("ec2", f"transit-gateway/{m.id}"), "associationDefaultRouteTableId": table, "propagationDefaultRouteTableId": table, "ownerId": MOCK_ACCOUNT_ID}


@resource("aws:ec2transitgateway/vpcAttachment:VpcAttachment", id_prefix="tgw-attach-")
def _tgw_vpc_attachment(m: MockContext, args: MockResourceArgs) -> dict:
    return {"vpcOwnerId": MOCK_ACCOUNT_ID}


@call("openstack:networking/getSubnet:getSubnet")
def _os_get_subnet(m: MockContext, args: MockCallArgs) -> dict:
    cidr = args.args.get("cidr", "10.64.8.0/24")
    net = ipaddress.IPv4Network(cidr)
    return {"id": m.uuid(cidr), "cidr": cidr, "name": f"subnet-{net.network_address}", "networkId": m.uuid(cidr, "network"), "gatewayIp": str(net.network_address + 1), "ipVersion": 4, "enableDhcp": True}


# --- Kubernetes ---------------------------------------------------------------------------


@resource("kubernetes:core/v1:Service")
def _k8s_service(m: MockContext, args: MockResourceArgs) -> dict:
    spec = args.inputs.get("spec") or {}
    status: dict[str, Any] = {}
    if spec.get("type") == "LoadBalancer":
        status = {"loadBalancer": {"ingress": [{"hostname": f"internal-{m.digest(length=20)}.{m.region}.elb.amazonaws.com"}]}}
    return {"status": status}


# --- random -------------------------------------------------------------------------------


@resource("random:index/randomPassword:RandomPassword")
def _random_password(m: MockContext, args: MockResourceArgs) -> dict:
    length = int(args.inputs.get("length", 32))
    value = (m.digest("password", length=64) * 2)[:length]
    return {"result": value, "bcryptHash": f"$2a$10${m.digest('bcrypt', length=53)}"}


@resource("random:index/randomId:RandomId")
def _random_id(m: MockContext, args: MockResourceArgs) -> dict:
    n = int(args.inputs.get("byteLength", 4))
    h = m.digest("id", length=2 * n)
    return {"hex": h, "dec": str(int(h, 16)), "b64Url": base64.urlsafe_b64encode(bytes.fromhex(h)).decode().rstrip("=")}


# --- clusters and storage (issue 7) ------------------------------------------------------


@resource("aws:ec2/launchTemplate:LaunchTemplate", id_prefix="lt-")
def _launch_template(m: MockContext, args: MockResourceArgs) -> dict:
    return {"arn": m.arn("ec2", f"launch-template/{m.id}"), "latestVersion": 1, "defaultVersion": 1}


@resource("aws:cloudwatch/logGroup:LogGroup")
def _log_group(m: MockContext, args: MockResourceArgs) -> dict:
    name = str(args.inputs.get("name", args.name))
    m.id = name
    return {"arn": m.arn("logs", f"log-group:{name}")}


@resource("aws:s3/bucketPolicy:BucketPolicy")
def _bucket_policy(m: MockContext, args: MockResourceArgs) -> dict:
    m.id = str(args.inputs.get("bucket", args.name))
    return {}


@resource("openstack:objectstorage/container:Container")
def _swift_container(m: MockContext, args: MockResourceArgs) -> dict:
    m.id = str(args.inputs.get("name", args.name))
    return {"name": m.id, "storagePolicy": args.inputs.get("storagePolicy", "Policy-0")}


@resource("openstack:identity/ec2CredentialV3:Ec2CredentialV3")
def _ec2_credential(m: MockContext, args: MockResourceArgs) -> dict:
    # Returned in clear here; the SDK marks `secret` secret (additional_secret_outputs), the component `access` too.
    return {
        "access": m.digest("access", length=32),
        "secret": f"mockec2secret{m.digest('secret', length=32)}",
        "userId": args.inputs.get("userId") or m.uuid("user").replace("-", ""),
        "projectId": args.inputs.get("projectId") or m.uuid("project").replace("-", ""),
        "trustId": "",
    }


@resource("openstack:identity/user:User")
def _os_user(m: MockContext, args: MockResourceArgs) -> dict:
    m.id = m.uuid("user", args.name).replace("-", "")
    return {"domainId": "default"}


@resource("kubernetes:helm.sh/v3:Release")
def _helm_release(m: MockContext, args: MockResourceArgs) -> dict:
    name = args.inputs.get("name") or args.name
    return {
        "name": name,
        "status": {
            "name": name,
            "namespace": args.inputs.get("namespace", "default"),
            "chart": args.inputs.get("chart", ""),
            "version": args.inputs.get("version", ""),
            "revision": 1,
            "status": "deployed",
        },
    }


@call("openstack:identity/getEndpoint:getEndpoint")
def _os_get_endpoint(m: MockContext, args: MockCallArgs) -> dict:
    service = args.args.get("serviceType", "object-store")
    project = m.uuid("project").replace("-", "")
    url = f"https://{service}.{m.stack}.cloud.example:8080/v1/AUTH_{project}" if service == "object-store" else f"https://{service}.{m.stack}.cloud.example:443"
    return {"id": m.uuid(service), "url": url, "serviceType": service, "interface": args.args.get("interface", "public"), "serviceName": "swift"}


# ======================================================================================
# Invokes (provider functions)
# ======================================================================================


@call("aws:index/getAvailabilityZones:getAvailabilityZones")
def _azs(m: MockContext, args: MockCallArgs) -> dict:
    names = [f"{m.region}{c}" for c in "abcdef"]
    return {"names": names, "zoneIds": [f"{m.region[:2]}{m.region.split('-')[1][:1]}1-az{i + 1}" for i in range(6)], "id": m.region}


@call("aws:index/getCallerIdentity:getCallerIdentity")
def _caller(m: MockContext, args: MockCallArgs) -> dict:
    return {"accountId": MOCK_ACCOUNT_ID, "arn": f"arn:aws:iam::{MOCK_ACCOUNT_ID}:user/mock", "userId": "AIDAMOCK", "id": MOCK_ACCOUNT_ID}


@call("aws:index/getRegion:getRegion")
def _region(m: MockContext, args: MockCallArgs) -> dict:
    return {"name": m.region, "region": m.region, "id": m.region, "endpoint": f"ec2.{m.region}.amazonaws.com"}


@call("aws:index/getPartition:getPartition")
def _partition(m: MockContext, args: MockCallArgs) -> dict:
    return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}


@call("aws:iam/getPolicyDocument:getPolicyDocument")
def _policy_document(m: MockContext, args: MockCallArgs) -> dict:
    statements = args.args.get("statements") or []
    return {"json": json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True), "id": m.digest(length=10)}


@call("aws:eks/getClusterAuth:getClusterAuth")
def _cluster_auth(m: MockContext, args: MockCallArgs) -> dict:
    return {"token": f"k8s-aws-v1.mock{m.digest(length=24)}", "name": args.args.get("name", ""), "id": args.args.get("name", "")}


@call("aws:ssm/getParameter:getParameter")
def _ssm(m: MockContext, args: MockCallArgs) -> dict:
    return {"value": m.aws_id("ami-"), "type": "String", "name": args.args.get("name", ""), "id": args.args.get("name", "")}


@call("openstack:networking/getNetwork:getNetwork")
def _os_get_network(m: MockContext, args: MockCallArgs) -> dict:
    name = args.args.get("name", "public")
    return {"id": m.uuid(name), "name": name, "external": True, "mtu": 1500}


@call("openstack:compute/getFlavor:getFlavor")
def _os_get_flavor(m: MockContext, args: MockCallArgs) -> dict:
    name = args.args.get("name", "m1.large")
    return {"id": m.uuid(name), "name": name, "flavorId": m.uuid(name)}


@call("openstack:images/getImageV2:getImageV2")
def _os_get_image(m: MockContext, args: MockCallArgs) -> dict:
    name = args.args.get("name", "image")
    return {"id": m.uuid(name), "name": name}


@call("openstack:identity/getRole:getRole")
def _os_get_role(m: MockContext, args: MockCallArgs) -> dict:
    name = args.args.get("name", "member")
    return {"id": m.uuid("role", name).replace("-", ""), "name": name, "domainId": "", "region": ""}


@call("openstack:identity/getAuthScope:getAuthScope")
def _os_auth_scope(m: MockContext, args: MockCallArgs) -> dict:
    return {"projectId": m.uuid("project").replace("-", ""), "projectName": m.stack, "userId": m.uuid("user").replace("-", ""), "id": m.stack}
