"""VPN links of the edge sites (issue 15): each edge site is a spoke linked to one or both hubs, with the one
profile of `hybridserve:vpn` (the same rendering functions as the hubs' link, infra/components/vpn.py).

Per edge site and link:

    to the AWS hub:        customer gateway (the site's vpn_gateway_ip) + VPN connection (two tunnels, the link's
                           inside /30s, tunnel logs in the hubs' log group) on the hubs' gateway (VGW or transit),
                           static routes for the site's networks, and the private route tables' routes to them
    to the OpenStack hub:  a peer endpoint group (the site's networks) and one IPsec site connection on the hubs'
                           VPN service, with the hubs' IKE/IPsec policies and local endpoint group

Pre-shared keys are generated per link (pulumi-random, secret end to end; `links[i].psk_rotation` are their
keepers); `hybridserve:vpn_psk` replaces only the hubs' keys. The edge hosts are not provisioned here: each edge
site is returned as an `EdgeSiteHandle` (its config and its links' outputs) for the EdgeHosts component. The
output `edgeSites.<site>.gatewaySetup` says what to configure on the site's own IPsec gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_openstack as openstack
import pulumi_random as random

from hybridserve.stackconfig.schema.sites import EdgeSite
from hybridserve.stackconfig.schema.vpn import VpnConfig, aws_tunnel_options, openstack_dpd
from infra.components import type_token
from infra.components.aws_network import zone_suffix
from infra.components.network import NetworkParts
from infra.components.vpn import PSK_ALPHABET_SPECIAL, SiteToSiteVpn, profile_summary
from infra.context import StackContext


@dataclass
class AwsLinkOutputs:
    """An edge site's link to the AWS hub."""

    connection_id: pulumi.Output[str]
    customer_gateway_id: pulumi.Output[str]
    tunnel_addresses: pulumi.Output[list]  # the AWS ends the site's gateway dials
    inside_cidrs: list[str]
    preshared_keys: pulumi.Output[dict]  # secret: {"tunnel1": ..., "tunnel2": ...}
    peer_cidrs: list[str]  # the AWS hub's networks the site routes into the link


@dataclass
class OpenStackLinkOutputs:
    """An edge site's link to the OpenStack hub."""

    site_connection_id: pulumi.Output[str]
    peer_address: pulumi.Output[str]  # the Neutron VPN service's address the site's gateway dials
    preshared_key: pulumi.Output[str]  # secret
    peer_cidrs: list[str]  # the OpenStack hub's networks the site routes into the link


@dataclass
class EdgeSiteHandle:
    """What the EdgeHosts component (and anything else per edge site) takes: the site's config and its VPN links."""

    config: EdgeSite
    index: int  # position in hybridserve:sites (for messages: hybridserve:sites[index])
    profile: VpnConfig  # the IKE/IPsec profile the site's gateway must use
    aws: AwsLinkOutputs | None = None
    openstack: OpenStackLinkOutputs | None = None
    links: list[pulumi.Resource] = field(default_factory=list)  # what the hosts wait for (reached over these)

    @property
    def name(self) -> str:
        return self.config.name


@dataclass
class EdgeLinksArgs:
    site: EdgeSite
    index: int
    profile: VpnConfig
    name_prefix: str
    hub: SiteToSiteVpn
    availability_zones: list[str]
    private_route_table_ids: list[pulumi.Input[str]]
    aws_hub: str | None  # hub names the site links to (None: no link)
    openstack_hub: str | None
    aws_inside_cidrs: list[str]
    aws_psk_rotation: list[int]
    openstack_psk_rotation: list[int]
    aws_cidrs: list[str]
    openstack_cidrs: list[str]


def _psk(name: str, rotation: int, provider: random.Provider, parent: pulumi.Resource) -> pulumi.Output[str]:
    key = random.RandomPassword(
        name,
        length=63,
        special=True,
        override_special=PSK_ALPHABET_SPECIAL,
        min_lower=4,
        min_upper=4,
        min_numeric=4,
        keepers={"rotation": str(rotation)},
        opts=pulumi.ResourceOptions(parent=parent, provider=provider),
    )
    return pulumi.Output.secret(key.result.apply(lambda r: "k" + r))  # AWS refuses keys that start with '0'


class EdgeSiteLinks(pulumi.ComponentResource):
    """The VPN links of one edge site (under the VPN area, so vpncheck.plan_problems judges them too)."""

    def __init__(self, name: str, args: EdgeLinksArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("vpn", "EdgeSiteLinks"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        site, v, hub, p = args.site, args.profile, args.hub, f"{args.name_prefix}-{args.site.name}"
        rnd = random.Provider(f"{name}-random", opts=child)
        self.handle = EdgeSiteHandle(config=site, index=args.index, profile=v)

        if args.aws_hub is not None:
            psks = [_psk(f"{name}-aws-psk-tunnel{n}", args.aws_psk_rotation[n - 1], rnd, self) for n in (1, 2)]
            self.customer_gateway = aws.ec2.CustomerGateway(
                f"{name}-cgw",
                type="ipsec.1",
                bgp_asn=str(v.customer_asn),
                ip_address=site.vpn_gateway_ip,
                device_name=f"{p} edge gateway",
                tags={"Name": f"{p}-edge"},
                opts=child,
            )
            tunnels: dict[str, Any] = {}
            for n in (1, 2):
                tunnels.update(aws_tunnel_options(v, n, args.aws_inside_cidrs))
                tunnels[f"tunnel{n}_preshared_key"] = psks[n - 1]
                tunnels[f"tunnel{n}_log_options"] = {
                    "cloudwatch_log_options": {"log_enabled": True, "log_group_arn": hub.tunnel_log_group.arn, "log_output_format": "json"}
                }
            gateway_args = {"transit_gateway_id": hub.transit_gateway.id} if hub.transit_gateway is not None else {"vpn_gateway_id": hub.vpn_gateway.id}
            self.connection = aws.ec2.VpnConnection(
                f"{name}-connection",
                type="ipsec.1",
                customer_gateway_id=self.customer_gateway.id,
                static_routes_only=True,  # the hubs' link is static too; one routing model for every spoke
                tags={"Name": f"{p}-edge"},
                **gateway_args,
                **tunnels,
                opts=child,
            )
            self._aws_routes(name, args)
            addresses = [self.connection.tunnel1_address, self.connection.tunnel2_address]
            self.handle.aws = AwsLinkOutputs(
                connection_id=self.connection.id,
                customer_gateway_id=self.customer_gateway.id,
                tunnel_addresses=pulumi.Output.all(*addresses),
                inside_cidrs=list(args.aws_inside_cidrs),
                preshared_keys=pulumi.Output.secret({"tunnel1": psks[0], "tunnel2": psks[1]}),
                peer_cidrs=list(args.aws_cidrs),
            )
            self.handle.links.append(self.connection)

        if args.openstack_hub is not None:
            psk = _psk(f"{name}-openstack-psk", args.openstack_psk_rotation[0], rnd, self)
            self.peer_endpoints = openstack.vpnaas.EndpointGroup(f"{name}-peer", name=f"{p}-edge", type="cidr", endpoints=list(site.cidrs), opts=child)
            self.site_connection = openstack.vpnaas.SiteConnection(
                f"{name}-openstack",
                name=f"{p}-edge",
                description=f"hybridserve: edge site {site.name}",
                vpnservice_id=hub.service.id,
                ikepolicy_id=hub.ike_policy.id,
                ipsecpolicy_id=hub.ipsec_policy.id,
                local_ep_group_id=hub.local_endpoints.id,
                peer_ep_group_id=self.peer_endpoints.id,
                peer_address=site.vpn_gateway_ip,
                peer_id=site.vpn_gateway_ip,
                psk=pulumi.Output.secret(psk),
                dpds=[openstack_dpd(v)],
                mtu=v.effective_tunnel_mtu(),
                initiator="bi-directional",
                admin_state_up=True,  # its own selectors (the site's networks): no conflict with the hubs' tunnels
                opts=child,
            )
            self.handle.openstack = OpenStackLinkOutputs(
                site_connection_id=self.site_connection.id,
                peer_address=hub.service.external_v4_ip,
                preshared_key=pulumi.Output.secret(psk),
                peer_cidrs=list(args.openstack_cidrs),
            )
            self.handle.links.append(self.site_connection)

        self.setup = gateway_setup_text(args, self.handle)
        self.register_outputs({})

    def _aws_routes(self, name: str, args: EdgeLinksArgs) -> None:
        """The site's networks into its connection, and from every private route table to the hubs' gateway."""
        hub, v, child = args.hub, args.profile, pulumi.ResourceOptions(parent=self)
        zones = [zone_suffix(z) for z in args.availability_zones]
        cidrs = list(args.site.cidrs)
        if hub.transit_gateway is not None:
            for i, cidr in enumerate(cidrs):
                aws.ec2transitgateway.Route(
                    f"{name}-tgw-{i}",
                    destination_cidr_block=cidr,
                    transit_gateway_attachment_id=self.connection.transit_gateway_attachment_id,
                    transit_gateway_route_table_id=hub.transit_gateway.association_default_route_table_id,
                    opts=child,
                )
            for z, rtb in zip(zones, args.private_route_table_ids):
                for i, cidr in enumerate(cidrs):
                    aws.ec2.Route(
                        f"{name}-private-{z}-{i}", route_table_id=rtb, destination_cidr_block=cidr, transit_gateway_id=hub.transit_gateway.id,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[hub.tgw_attachment]),
                    )
            return
        for i, cidr in enumerate(cidrs):
            aws.ec2.VpnConnectionRoute(f"{name}-route-{i}", vpn_connection_id=self.connection.id, destination_cidr_block=cidr, opts=child)
        if v.routing == "propagation":
            return  # the hubs' propagation already puts every connection's static routes into the route tables
        for z, rtb in zip(zones, args.private_route_table_ids):
            for i, cidr in enumerate(cidrs):
                aws.ec2.Route(f"{name}-private-{z}-{i}", route_table_id=rtb, destination_cidr_block=cidr, gateway_id=hub.vpn_gateway.id, opts=child)


def gateway_setup_text(args: EdgeLinksArgs, handle: EdgeSiteHandle) -> pulumi.Output[str]:
    """What the operator configures on the site's own IPsec gateway, per link (keys: the secret output edgePresharedKeys)."""
    site, v = args.site, args.profile
    head = [f"Edge site {site.name}: gateway {site.vpn_gateway_ip}, local networks {', '.join(site.cidrs)}", f"Profile (both links): {profile_summary(v)}"]
    parts: list[Any] = []
    if handle.aws is not None:
        aws_link = handle.aws
        parts.append(aws_link.tunnel_addresses.apply(lambda addrs: "\n".join(
            [f"AWS link: two tunnels, remote networks {', '.join(aws_link.peer_cidrs)}, static routing"]
            + [f"  tunnel {n}: peer {addr}, inside {cidr} (AWS .1, this gateway .2), key edgePresharedKeys.{site.name}.aws.tunnel{n}"
               for n, (addr, cidr) in enumerate(zip(addrs, aws_link.inside_cidrs), start=1)])))
    if handle.openstack is not None:
        os_link = handle.openstack
        parts.append(os_link.peer_address.apply(lambda addr: (
            f"OpenStack link: peer {addr}, remote networks {', '.join(os_link.peer_cidrs)}, policy-based (one SA per network pair), "
            f"key edgePresharedKeys.{site.name}.openstack")))
    return pulumi.Output.all(*parts).apply(lambda texts: "\n".join([*head, *texts]))


def build(ctx: StackContext, net: NetworkParts, hub: SiteToSiteVpn) -> list[EdgeSiteHandle]:
    """One EdgeSiteLinks per edge site of the stack (none: the two-hub stacks plan as before)."""
    cfg = ctx.config
    hub_kinds = {s.name: s.kind for s in cfg.sites if s.kind in ("aws", "openstack")}
    handles = []
    setups: dict[str, pulumi.Output[str]] = {}
    for index, site in cfg.edge_sites():
        by_kind = {hub_kinds[link.to]: link for link in site.links if link.to in hub_kinds}
        to_aws, to_os = by_kind.get("aws"), by_kind.get("openstack")
        links = EdgeSiteLinks(
            f"edge-{site.name}",
            EdgeLinksArgs(
                site=site,
                index=index,
                profile=cfg.vpn,
                name_prefix=cfg.prefix,
                hub=hub,
                availability_zones=net.availability_zones,
                private_route_table_ids=net.private_route_table_ids,
                aws_hub=to_aws.to if to_aws else None,
                openstack_hub=to_os.to if to_os else None,
                aws_inside_cidrs=list(to_aws.tunnel_inside_cidrs) if to_aws else [],
                aws_psk_rotation=list(to_aws.psk_rotation) if to_aws else [0, 0],
                openstack_psk_rotation=list(to_os.psk_rotation) if to_os else [0, 0],
                aws_cidrs=net.aws_site_cidrs,
                openstack_cidrs=net.openstack_site_cidrs,
            ),
            opts=ctx.component_opts(),
        )
        handles.append(links.handle)
        setups[site.name] = links.setup
    if handles:
        ctx.outputs.extra["edgeSites"] = {
            h.name: {
                "cidrs": list(h.config.cidrs),
                "vpnGatewayIp": h.config.vpn_gateway_ip,
                "hosts": [{"name": host.name, "address": host.address, "accelerator": host.accelerator} for host in h.config.hosts],
                "aws": None if h.aws is None else {"vpnConnectionId": h.aws.connection_id, "tunnelAddresses": h.aws.tunnel_addresses, "insideCidrs": h.aws.inside_cidrs},
                "openstack": None if h.openstack is None else {"siteConnectionId": h.openstack.site_connection_id, "peerAddress": h.openstack.peer_address},
                "gatewaySetup": setups[h.name],
            }
            for h in handles
        }
        ctx.outputs.extra["edgePresharedKeys"] = pulumi.Output.secret({
            h.name: {"aws": h.aws.preshared_keys if h.aws else None, "openstack": h.openstack.preshared_key if h.openstack else None} for h in handles
        })
    return handles
