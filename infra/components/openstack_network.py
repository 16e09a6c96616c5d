"""OpenStack side of the hybrid network: tenant network, subnet, router.

The router's external gateway sits on the configured external network; the VPN service runs on
this router, so its gateway address is the customer gateway address AWS sees.

No node security group here (issue 11): Magnum creates and attaches the nodes' security groups itself
and takes none from the user. Its Heat Kubernetes driver gives workers `secgroup_kube_minion` (ICMP,
SSH 22 and the NodePort range 30000-32767 from anywhere routed to the subnet, everything from the
cluster's masters, workers and pod network; magnum drivers/k8s_fedora_coreos_v1/templates/kubecluster.yaml
before its removal in openstack/magnum 31b84327, 2026-05-13), with no label that adds another group.
Neutron security groups only add openings (a port admits the union of its groups' rules), so a group of
ours could not narrow Magnum's even if it were attached; a group attached to nothing only looked like a
guardrail. What does act: nodes have no floating IPs (`template.floating_ip_enabled` false), so only
the tenant network and the AWS site through the VPN route to them; Triton's NetworkPolicy admits the
peer site on Triton's ports only (infra/components/triton.py); the API and Triton load balancers admit
listed CIDRs only (Octavia allowed_cidrs). `openstack.network.ingress` is refused for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_openstack as openstack

from infra.components import type_token


@dataclass
class OpenStackNetworkArgs:
    name_prefix: str
    cidr: str
    dns_nameservers: list[str]
    mtu: int | None
    external_network: str
    tags: list[str]
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

        self.network_id = self.network.id
        self.subnet_id = self.subnet.id
        self.router_id = self.router.id
        self.router_external_ip = self.router.external_fixed_ips.apply(lambda ips: ips[0].ip_address if ips else None)
        self.register_outputs(
            {
                "networkId": self.network_id,
                "subnetId": self.subnet_id,
                "routerId": self.router_id,
                "routerExternalIp": self.router_external_ip,
            }
        )
