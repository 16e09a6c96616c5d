"""OpenStack side of the hybrid network: tenant network, subnet, router, the nodes' security group.

The router's external gateway sits on the configured external network; the VPN service runs on
this router, so its gateway address is the customer gateway address AWS sees. The security group
for the cluster nodes allows only: everything from the site's own subnet (node to node, load
balancer to node), Triton's ports and ICMP from the AWS site's networks (through the tunnel), and
whatever the stack lists explicitly in `openstack.network.ingress`. Egress keeps Neutron's default
(allow), so nodes reach image registries through the router.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_openstack as openstack

from hybridserve.stackconfig.schema.network import IngressRule
from infra.components import type_token
from infra.components.aws_network import port_ranges


@dataclass
class OpenStackNetworkArgs:
    name_prefix: str
    cidr: str
    dns_nameservers: list[str]
    mtu: int | None
    external_network: str
    tags: list[str]
    # Networks of the AWS site, and the TCP ports they may reach here (Triton's)
    peer_cidrs: list[str] = field(default_factory=list)
    peer_tcp_ports: list[int] = field(default_factory=list)
    ingress: list[IngressRule] = field(default_factory=list)
    # Existing subnets of the project (by CIDR) to attach to the router, so the VPN carries them too
    extra_subnet_cidrs: list[str] = field(default_factory=list)


class OpenStackNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: OpenStackNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("network", "OpenStackNetwork"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        p = args.name_prefix

        external = openstack.networking.get_network_output(name=args.external_network, external=True, opts=invoke)
        self.external_network_id = external.id
        self.network = openstack.networking.Network(
            f"{name}-net",
            name=f"{p}-net",
            admin_state_up=True,
            port_security_enabled=True,
            mtu=args.mtu,
            tags=args.tags,
            opts=child,
        )
        self.subnet = openstack.networking.Subnet(
            f"{name}-subnet",
            name=f"{p}-subnet",
            network_id=self.network.id,
            cidr=args.cidr,
            ip_version=4,
            enable_dhcp=True,
            dns_nameservers=args.dns_nameservers,
            tags=args.tags,
            opts=child,
        )
        self.router = openstack.networking.Router(
            f"{name}-router",
            name=f"{p}-router",
            admin_state_up=True,
            external_network_id=external.id,
            tags=args.tags,
            opts=child,
        )
        openstack.networking.RouterInterface(f"{name}-router-subnet", router_id=self.router.id, subnet_id=self.subnet.id, opts=child)

        self.extra_subnet_ids: list[pulumi.Output[str]] = []
        for i, cidr in enumerate(args.extra_subnet_cidrs):
            found = openstack.networking.get_subnet_output(cidr=cidr, ip_version=4, opts=invoke)
            openstack.networking.RouterInterface(f"{name}-router-extra-{i}", router_id=self.router.id, subnet_id=found.id, opts=child)
            self.extra_subnet_ids.append(found.id)

        self.security_group = openstack.networking.SecGroup(
            f"{name}-nodes",
            name=f"{p}-nodes",
            description="Cluster nodes: the site itself, Triton from the AWS site, explicit openings; nothing else",
            tags=args.tags,
            opts=child,
        )
        sg = self.security_group.id

        def rule(rule_name: str, description: str, cidr: str, protocol: str | None = None, ports: tuple[int, int] | None = None) -> None:
            openstack.networking.SecGroupRule(
                f"{name}-{rule_name}",
                security_group_id=sg,
                direction="ingress",
                ethertype="IPv4",
                protocol=protocol,
                port_range_min=ports[0] if ports else None,
                port_range_max=ports[1] if ports else None,
                remote_ip_prefix=cidr,
                description=description,
                opts=child,
            )

        rule("site", f"intra-site: the site's own subnet {args.cidr}", args.cidr)
        for i, cidr in enumerate(args.peer_cidrs):
            for low, high in port_ranges(args.peer_tcp_ports):
                rule(f"peer-{i}-tcp-{low}", f"AWS site {cidr}: serving", cidr, "tcp", (low, high))
            rule(f"peer-{i}-icmp", f"AWS site {cidr}: ICMP (ping, path-MTU discovery)", cidr, "icmp")
        for i, r in enumerate(args.ingress):
            rule(f"ingress-{i}", r.description or f"explicit opening (hybridserve:openstack.network.ingress[{i}])", r.cidr, r.protocol, r.port_range())

        self.network_id = self.network.id
        self.subnet_id = self.subnet.id
        self.router_id = self.router.id
        self.security_group_id = self.security_group.id
        self.router_external_ip = self.router.external_fixed_ips.apply(lambda ips: ips[0].ip_address if ips else None)
        self.register_outputs(
            {
                "networkId": self.network_id,
                "subnetId": self.subnet_id,
                "routerId": self.router_id,
                "securityGroupId": self.security_group_id,
                "routerExternalIp": self.router_external_ip,
            }
        )
