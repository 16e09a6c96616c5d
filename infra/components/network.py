"""The hybrid network (issue 6): the AWS VPC and the OpenStack network, built from the stack config.

`build` returns the typed `NetworkParts` the VPN and the clusters take (infra/program.py), and exports `network`
(ids and addresses an operator looks up). The VPN component (infra/components/vpn.py) links the
two sites; docs/network.md has the picture and the runbook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from hybridserve.stackconfig.schema.stack import StackConfig, format_loc
from hybridserve.stackconfig.vpncheck import stack_issues
from infra.components.aws_network import AwsNetwork, AwsNetworkArgs
from infra.components.openstack_network import OpenStackNetwork, OpenStackNetworkArgs
from infra.context import StackContext


def aws_site_cidrs(cfg: StackConfig) -> list[str]:
    """Networks of the AWS site routed across the VPN: the VPC, the EKS pod CIDR (custom networking), extras behind a transit gateway."""
    cidrs = [cfg.aws.vpc.cidr]
    if cfg.aws.eks.pod_cidr:
        cidrs.append(cfg.aws.eks.pod_cidr)
    return [*cidrs, *cfg.vpn.extra_aws_cidrs]


def openstack_site_cidrs(cfg: StackConfig) -> list[str]:
    """Networks of the OpenStack site routed across the VPN: the tenant network and extra subnets on the router."""
    return [cfg.openstack.network.cidr, *cfg.vpn.extra_openstack_cidrs]


def edge_cidrs_via(cfg: StackConfig, kind: str) -> list[str]:
    """Networks of the edge sites (spokes) linked to the hub of `kind`: their clients fail over to that hub's Triton."""
    hub = cfg.hub(kind)
    return [c for _, site in cfg.spokes() if hub is not None and any(link.to == hub.name for link in site.links) for c in site.cidrs]


def serving_ports(cfg: StackConfig) -> list[int]:
    """TCP ports the peer site may reach on the cluster nodes: Triton's HTTP, gRPC and metrics."""
    s = cfg.serving
    return [s.http_port, s.grpc_port, s.metrics_port]


def eks_cluster_name(ctx: StackContext) -> str:
    """The EKS cluster name the subnets are tagged for (kubernetes.io/cluster/<name>); the cluster component must use it."""
    return ctx.name("eks")


@dataclass
class NetworkParts:
    """What later components take from the network (returned by `build`)."""

    aws: AwsNetwork
    openstack: OpenStackNetwork
    eks_cluster_name: str
    availability_zones: list[str]
    vpc_id: pulumi.Output[str]
    vpc_cidr: str
    public_subnet_ids: list[pulumi.Output[str]]
    private_subnet_ids: list[pulumi.Output[str]]
    private_route_table_ids: list[pulumi.Output[str]]
    aws_peer_security_group_id: pulumi.Output[str]  # attach to EKS nodes: Triton + ICMP from the OpenStack site
    logs_kms_key_arn: pulumi.Output[str]  # the network's log key (flow logs, VPN tunnel logs)
    log_group_prefix: str  # "/<prefix>" (/hybridserve-<team>-<env>): log groups the key may encrypt
    openstack_network_id: pulumi.Output[str]
    openstack_subnet_id: pulumi.Output[str]
    openstack_extra_subnet_ids: list[pulumi.Output[str]]
    openstack_router_id: pulumi.Output[str]
    openstack_external_network_id: pulumi.Output[str]
    aws_site_cidrs: list[str]
    openstack_site_cidrs: list[str]


def build(ctx: StackContext) -> NetworkParts:
    cfg = ctx.config
    # Checks that need the whole stack (production zones, extra peer CIDRs). `validate` reports
    # them once hooked into StackConfig.issues; here they also stop `pulumi up` before anything is created.
    problems = [f"{format_loc(i.loc)}: {i.message}" for i in stack_issues(cfg)]
    if problems:
        raise pulumi.RunError("the network configuration is not acceptable:\n  " + "\n  ".join(problems))

    vpc = cfg.aws.vpc
    aws_cidrs, openstack_cidrs, ports = aws_site_cidrs(cfg), openstack_site_cidrs(cfg), serving_ports(cfg)
    cluster_name = eks_cluster_name(ctx)
    aws_net = AwsNetwork(
        "aws-network",
        AwsNetworkArgs(
            name_prefix=cfg.prefix,
            region=cfg.aws.region,
            cidr=vpc.cidr,
            subnets=vpc.subnet_plan(cfg.aws.region),
            nat_gateways=vpc.nat_gateways,
            flow_logs=vpc.flow_logs,
            s3_endpoint=vpc.s3_endpoint,
            eks_cluster_name=cluster_name,
            peer_cidrs=[*openstack_cidrs, *edge_cidrs_via(cfg, "aws")],
            peer_tcp_ports=ports,
        ),
        opts=ctx.component_opts(),
    )
    os_cfg = cfg.openstack
    os_net = OpenStackNetwork(
        "openstack-network",
        OpenStackNetworkArgs(
            name_prefix=cfg.prefix,
            cidr=os_cfg.network.cidr,
            dns_nameservers=list(os_cfg.network.dns_nameservers),
            mtu=os_cfg.network.mtu,
            external_network=os_cfg.external_network,
            tags=ctx.openstack_tags,
            extra_subnet_cidrs=list(cfg.vpn.extra_openstack_cidrs),
        ),
        opts=ctx.component_opts(),
    )
    parts = NetworkParts(
        aws=aws_net,
        openstack=os_net,
        eks_cluster_name=cluster_name,
        availability_zones=vpc.zones(cfg.aws.region),
        vpc_id=aws_net.vpc_id,
        vpc_cidr=vpc.cidr,
        public_subnet_ids=aws_net.public_subnet_ids,
        private_subnet_ids=aws_net.private_subnet_ids,
        private_route_table_ids=aws_net.private_route_table_ids,
        aws_peer_security_group_id=aws_net.peer_security_group.id,
        logs_kms_key_arn=aws_net.logs_kms_key.arn,
        log_group_prefix=aws_net.log_group_prefix,
        openstack_network_id=os_net.network_id,
        openstack_subnet_id=os_net.subnet_id,
        openstack_extra_subnet_ids=os_net.extra_subnet_ids,
        openstack_router_id=os_net.router_id,
        openstack_external_network_id=os_net.external_network_id,
        aws_site_cidrs=aws_cidrs,
        openstack_site_cidrs=openstack_cidrs,
    )
    summary: dict[str, Any] = {
        "aws": {
            "vpcId": aws_net.vpc_id,
            "cidr": vpc.cidr,
            "availabilityZones": parts.availability_zones,
            "publicSubnetIds": aws_net.public_subnet_ids,
            "privateSubnetIds": aws_net.private_subnet_ids,
            "natPublicIps": [n.public_ip for n in aws_net.nat_gateways],
            "flowLogGroup": aws_net.flow_log_group.name if aws_net.flow_log is not None else None,
        },
        "openstack": {
            "networkId": os_net.network_id,
            "subnetId": os_net.subnet_id,
            "cidr": os_cfg.network.cidr,
            "routerId": os_net.router_id,
            "routerExternalIp": os_net.router_external_ip,
        },
    }
    ctx.outputs.extra["network"] = summary
    return parts
