"""Site-to-site IPsec VPN (issue 6): AWS VPN connection (two tunnels) <-> Neutron VPNaaS (two site connections),
active/standby: the site connection of `vpn.active_tunnel` up, the other admin-down (schema/vpn.py says why).

Order, all through Outputs (no address is copied by hand):

    Neutron VPN service on the router --external_v4_ip--> AWS customer gateway
    AWS VPN connection --tunnel1_address / tunnel2_address--> Neutron site connection 1 / 2

One profile (`hybridserve:vpn`) rendered for both ends by the schema's render functions
(`aws_tunnel_options`, `openstack_ike_policy`, `openstack_ipsec_policy`, `openstack_dpd`), so the
two ends cannot drift; `hybridserve.stackconfig.vpncheck` rejects weak or one-sided profiles
before anything is planned and compares what each end was given in the plan.

Pre-shared keys: one per tunnel, generated (pulumi-random: 64 characters of letters, digits,
'.' and '_', never starting with '0', as AWS requires), secret end to end, used by both ends and
exported only as the secret output `vpnPresharedKeys`. `hybridserve:vpn.psk_rotation[i]` is the
keeper of tunnel i+1's key; the optional secret `hybridserve:vpn_psk` replaces both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_openstack as openstack
import pulumi_random as random

from hybridserve.stackconfig.schema.vpn import VpnConfig, aws_tunnel_options, openstack_dpd, openstack_ike_policy, openstack_ipsec_policy
from infra import config as config_module
from infra.components import type_token
from infra.components.aws_network import zone_suffix
from infra.components.network import NetworkParts
from infra.context import StackContext

IKE_LABELS = {"ikev1": "IKEv1", "ikev2": "IKEv2"}
PSK_ALPHABET_SPECIAL = "._"  # AWS: letters, digits, '.', '_'; 8-64 characters; not starting with '0'


@dataclass
class VpnArgs:
    profile: VpnConfig
    name_prefix: str
    region: str
    vpc_id: pulumi.Input[str]
    availability_zones: list[str]
    private_subnet_ids: list[pulumi.Input[str]]
    private_route_table_ids: list[pulumi.Input[str]]
    router_id: pulumi.Input[str]
    local_subnet_ids: list[pulumi.Input[str]]  # the OpenStack subnets behind the router carried by the VPN
    aws_cidrs: list[str]  # networks of the AWS site (the OpenStack side's peer CIDRs)
    openstack_cidrs: list[str]  # networks of the OpenStack site (routed to the VPN in AWS)
    logs_kms_key_arn: pulumi.Input[str]
    log_group_name: str
    log_retention_days: int
    openstack_cloud: str = "openstack"
    openstack_region: str | None = None
    psk_override: pulumi.Output[str] | None = None  # the secret hybridserve:vpn_psk, if set
    network: pulumi.Resource | None = None  # site connections wait for it (subnets on the router)


def profile_summary(v: VpnConfig) -> str:
    ike, ipsec = v.ike, v.ipsec
    return (
        f"{IKE_LABELS[ike.version]} {ike.encryption}/{ike.integrity}/group{ike.dh_group} {ike.lifetime_seconds}s; "
        f"ESP {ipsec.encryption}/{ipsec.integrity} PFS group{ipsec.pfs_group} {ipsec.lifetime_seconds}s; "
        f"DPD {v.dpd_action} after {v.dpd_timeout_seconds}s; tunnel MTU {v.effective_tunnel_mtu()}"
    )


def _telemetry(ts: Any) -> list[dict[str, Any]]:
    out = []
    for t in ts or []:
        get = (lambda k, t=t: t.get(k)) if isinstance(t, dict) else (lambda k, t=t: getattr(t, k, None))
        out.append({"outsideAddress": get("outside_ip_address") or get("outsideIpAddress"), "status": get("status"), "message": get("status_message") or get("statusMessage") or ""})
    return out


class SiteToSiteVpn(pulumi.ComponentResource):
    def __init__(self, name: str, args: VpnArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("vpn", "SiteToSiteVpn"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        v, p = args.profile, args.name_prefix
        after_network = pulumi.ResourceOptions(parent=self, depends_on=[args.network] if args.network is not None else [])

        # --- pre-shared keys, one per tunnel ------------------------------------------------------
        if args.psk_override is not None:
            self.psks = [pulumi.Output.secret(args.psk_override), pulumi.Output.secret(args.psk_override)]
        else:
            rnd = random.Provider(f"{name}-random", opts=child)
            self.psks = []
            for n in (1, 2):
                key = random.RandomPassword(
                    f"{name}-psk-tunnel{n}",
                    length=63,
                    special=True,
                    override_special=PSK_ALPHABET_SPECIAL,
                    min_lower=4,
                    min_upper=4,
                    min_numeric=4,
                    keepers={"rotation": str(v.psk_rotation[n - 1])},
                    opts=pulumi.ResourceOptions(parent=self, provider=rnd),
                )
                # A letter first: AWS refuses keys that start with '0'.
                self.psks.append(pulumi.Output.secret(key.result.apply(lambda r: "k" + r)))

        # --- OpenStack: policies and the VPN service on the router ---------------------------------
        self.ike_policy = openstack.vpnaas.IkePolicy(f"{name}-ike", name=f"{p}-ike", description="hybridserve: IKE (phase 1) to AWS", **openstack_ike_policy(v), opts=child)
        self.ipsec_policy = openstack.vpnaas.IpSecPolicy(f"{name}-ipsec", name=f"{p}-ipsec", description="hybridserve: IPsec (phase 2) to AWS", **openstack_ipsec_policy(v), opts=child)
        self.service = openstack.vpnaas.Service(
            f"{name}-service", name=f"{p}-vpn", router_id=args.router_id, admin_state_up=True, description="hybridserve: site-to-site VPN to AWS", opts=after_network
        )
        self.local_endpoints = openstack.vpnaas.EndpointGroup(f"{name}-local", name=f"{p}-local", type="subnet", endpoints=args.local_subnet_ids, opts=child)
        self.peer_endpoints = openstack.vpnaas.EndpointGroup(f"{name}-peer", name=f"{p}-aws", type="cidr", endpoints=args.aws_cidrs, opts=child)

        # --- AWS: gateway, customer gateway (= the VPN service's address), connection --------------
        self.tunnel_log_group = aws.cloudwatch.LogGroup(
            f"{name}-tunnel-logs", name=args.log_group_name, retention_in_days=args.log_retention_days, kms_key_id=args.logs_kms_key_arn, opts=child
        )
        gateway_args: dict[str, Any]
        self.vpn_gateway = self.transit_gateway = self.tgw_attachment = None
        if v.gateway == "transit":
            self.transit_gateway = aws.ec2transitgateway.TransitGateway(
                f"{name}-tgw",
                description=f"{p}: VPC and VPN to OpenStack",
                amazon_side_asn=v.amazon_side_asn,
                vpn_ecmp_support="enable",
                dns_support="enable",
                default_route_table_association="enable",
                default_route_table_propagation="enable",
                tags={"Name": f"{p}-tgw"},
                opts=child,
            )
            self.tgw_attachment = aws.ec2transitgateway.VpcAttachment(
                f"{name}-tgw-vpc", transit_gateway_id=self.transit_gateway.id, vpc_id=args.vpc_id, subnet_ids=args.private_subnet_ids, tags={"Name": f"{p}-vpc"}, opts=child
            )
            gateway_args = {"transit_gateway_id": self.transit_gateway.id}
        else:
            self.vpn_gateway = aws.ec2.VpnGateway(f"{name}-vgw", vpc_id=args.vpc_id, amazon_side_asn=str(v.amazon_side_asn), tags={"Name": f"{p}-vgw"}, opts=child)
            gateway_args = {"vpn_gateway_id": self.vpn_gateway.id}
        self.customer_gateway = aws.ec2.CustomerGateway(
            f"{name}-cgw",
            type="ipsec.1",
            bgp_asn=str(v.customer_asn),
            ip_address=self.service.external_v4_ip,
            device_name=f"{p} Neutron VPNaaS",
            tags={"Name": f"{p}-openstack"},
            opts=child,
        )
        tunnels: dict[str, Any] = {}
        for n in (1, 2):
            tunnels.update(aws_tunnel_options(v, n))
            tunnels[f"tunnel{n}_preshared_key"] = self.psks[n - 1]
            tunnels[f"tunnel{n}_log_options"] = {
                "cloudwatch_log_options": {"log_enabled": True, "log_group_arn": self.tunnel_log_group.arn, "log_output_format": "json"}
            }
        self.connection = aws.ec2.VpnConnection(
            f"{name}-connection",
            type="ipsec.1",
            customer_gateway_id=self.customer_gateway.id,
            static_routes_only=True,  # Neutron VPNaaS has no BGP
            tags={"Name": f"{p}-openstack"},
            **gateway_args,
            **tunnels,
            opts=child,
        )

        # --- AWS routes: every private route table sends the OpenStack networks to the VPN ---------
        zones = [zone_suffix(z) for z in args.availability_zones]
        if self.transit_gateway is not None:
            for i, cidr in enumerate(args.openstack_cidrs):
                aws.ec2transitgateway.Route(
                    f"{name}-tgw-openstack-{i}",
                    destination_cidr_block=cidr,
                    transit_gateway_attachment_id=self.connection.transit_gateway_attachment_id,
                    transit_gateway_route_table_id=self.transit_gateway.association_default_route_table_id,
                    opts=child,
                )
            for z, rtb in zip(zones, args.private_route_table_ids):
                for i, cidr in enumerate(args.openstack_cidrs):
                    aws.ec2.Route(
                        f"{name}-private-{z}-openstack-{i}",
                        route_table_id=rtb,
                        destination_cidr_block=cidr,
                        transit_gateway_id=self.transit_gateway.id,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[self.tgw_attachment]),
                    )
        else:
            assert self.vpn_gateway is not None
            for i, cidr in enumerate(args.openstack_cidrs):
                # Static routing: the VGW sends these networks into the connection's tunnels.
                aws.ec2.VpnConnectionRoute(f"{name}-openstack-{i}", vpn_connection_id=self.connection.id, destination_cidr_block=cidr, opts=child)
            for z, rtb in zip(zones, args.private_route_table_ids):
                if v.routing == "propagation":
                    aws.ec2.VpnGatewayRoutePropagation(f"{name}-private-{z}", route_table_id=rtb, vpn_gateway_id=self.vpn_gateway.id, opts=child)
                    continue
                for i, cidr in enumerate(args.openstack_cidrs):
                    aws.ec2.Route(f"{name}-private-{z}-openstack-{i}", route_table_id=rtb, destination_cidr_block=cidr, gateway_id=self.vpn_gateway.id, opts=child)

        # --- OpenStack: one site connection per AWS tunnel, active/standby ---------------------------
        # Both share the service and the endpoint groups (the same selectors): only one can carry traffic, so
        # only `vpn.active_tunnel`'s is up; the standby is configured, admin-down (schema/vpn.py says why).
        addresses = [self.connection.tunnel1_address, self.connection.tunnel2_address]
        self.site_connections = []
        for n in (1, 2):
            role = "active" if n == v.active_tunnel else "standby"
            self.site_connections.append(
                openstack.vpnaas.SiteConnection(
                    f"{name}-tunnel{n}",
                    name=f"{p}-aws-tunnel{n}",
                    description=f"hybridserve: AWS tunnel {n} ({role}; vpn.active_tunnel)",
                    vpnservice_id=self.service.id,
                    ikepolicy_id=self.ike_policy.id,
                    ipsecpolicy_id=self.ipsec_policy.id,
                    local_ep_group_id=self.local_endpoints.id,
                    peer_ep_group_id=self.peer_endpoints.id,
                    peer_address=addresses[n - 1],
                    peer_id=addresses[n - 1],
                    psk=pulumi.Output.secret(self.psks[n - 1]),
                    dpds=[openstack_dpd(v)],
                    mtu=v.effective_tunnel_mtu(),
                    initiator="bi-directional",
                    admin_state_up=role == "active",
                    opts=after_network,
                )
            )

        # --- outputs ------------------------------------------------------------------------------
        self.tunnel_addresses = pulumi.Output.all(*addresses)
        self.customer_gateway_address = self.service.external_v4_ip
        self.status = pulumi.Output.all(
            self.connection.id, self.customer_gateway.id, self.service.id, self.service.status, self.connection.vgw_telemetries, *addresses, *(s.id for s in self.site_connections)
        ).apply(lambda a: self._status(v, *a))
        self.verify = pulumi.Output.all(self.connection.id, self.service.id, self.service.external_v4_ip, *addresses).apply(
            lambda a: verify_text(args, *a)
        )
        self.preshared_keys = pulumi.Output.secret({"tunnel1": self.psks[0], "tunnel2": self.psks[1]})
        self.register_outputs(
            {
                "tunnelAddresses": self.tunnel_addresses,
                "customerGatewayAddress": self.customer_gateway_address,
                "status": self.status,
                "presharedKeys": self.preshared_keys,
            }
        )

    @staticmethod
    def _status(v: VpnConfig, conn_id, cgw_id, service_id, service_status, telemetry, addr1, addr2, site1, site2) -> dict[str, Any]:
        aws_status = {t["outsideAddress"]: t for t in _telemetry(telemetry)}
        tunnels = []
        for n, (addr, site) in enumerate(((addr1, site1), (addr2, site2)), start=1):
            t = aws_status.get(addr, {})
            tunnels.append(
                {
                    "tunnel": n,
                    "awsOutsideAddress": addr,
                    "insideCidr": v.tunnel_inside_cidrs[n - 1],
                    "awsStatus": t.get("status") or "unknown",
                    "openstackSiteConnectionId": site,
                    "role": "active" if n == v.active_tunnel else "standby (admin-down; AWS shows it DOWN)",
                }
            )
        return {
            "note": "as of the last `pulumi up`/`pulumi refresh`; vpnVerify shows how to check live",
            "redundancy": redundancy_text(v),
            "awsVpnConnectionId": conn_id,
            "customerGatewayId": cgw_id,
            "openstackVpnServiceId": service_id,
            "openstackVpnServiceStatus": service_status,
            "profile": profile_summary(v),
            "tunnels": tunnels,
        }


def verify_text(args: VpnArgs, conn_id: str, service_id: str, cgw_address: str, addr1: str, addr2: str) -> str:
    v = args.profile
    os_flags = f"--os-cloud {args.openstack_cloud}" + (f" --os-region-name {args.openstack_region}" if args.openstack_region else "")
    probe = v.effective_tunnel_mtu() - 28  # ICMP echo payload that fills the tunnel MTU (IPv4 20 + ICMP 8)
    standby = 3 - v.active_tunnel
    return "\n".join(
        [
            f"VPN {args.name_prefix}: AWS {conn_id} (tunnels {addr1}, {addr2}) <-> OpenStack VPN service {service_id} ({cgw_address})",
            f"Profile: {profile_summary(v)}",
            "",
            f"1. AWS: tunnel {v.active_tunnel} UP (a few minutes after `pulumi up`), the standby DOWN:",
            f"   aws ec2 describe-vpn-connections --region {args.region} --vpn-connection-ids {conn_id} \\",
            "     --query 'VpnConnections[0].VgwTelemetry[].[OutsideIpAddress,Status,StatusMessage]' --output table",
            f"   aws logs tail {args.log_group_name} --region {args.region} --since 30m   # IKE/IPsec negotiation",
            f"2. OpenStack: the service and site connection {args.name_prefix}-aws-tunnel{v.active_tunnel} ACTIVE (the standby DOWN), peers = the AWS tunnel addresses:",
            f"   openstack {os_flags} vpn service show {service_id} -c status -c external_v4_ip",
            f"   openstack {os_flags} vpn ipsec site connection list --long -c Name -c 'Peer Address' -c Status",
            "3. Through the tunnel, no fragmentation (from a node or pod on each side):",
            f"   AWS -> OpenStack:  ping -c 3 -M do -s {probe} <a node address in {', '.join(args.openstack_cidrs)}>",
            f"   OpenStack -> AWS:  ping -c 3 -M do -s {probe} <a node address in {', '.join(args.aws_cidrs)}>",
            f"4. {redundancy_text(v)}",
            f"   AWS shows tunnel {standby} DOWN by design. Fail over now (then set vpn.active_tunnel: {standby} so `pulumi up` keeps it):",
            f"   openstack {os_flags} vpn ipsec site connection set --disable {args.name_prefix}-aws-tunnel{v.active_tunnel}",
            f"   openstack {os_flags} vpn ipsec site connection set --enable {args.name_prefix}-aws-tunnel{standby}",
        ]
    )


def redundancy_text(v: VpnConfig) -> str:
    standby = 3 - v.active_tunnel
    return (
        f"Redundancy: active/standby. Tunnel {v.active_tunnel} is active; tunnel {standby} is configured on both ends, its "
        "OpenStack site connection admin-down (Neutron VPNaaS installs one policy for the same selectors, and AWS would "
        "send on either tunnel if both were up)"
    )


def build(ctx: StackContext, net: NetworkParts) -> SiteToSiteVpn:
    cfg = ctx.config
    args = VpnArgs(
        profile=cfg.vpn,
        name_prefix=cfg.prefix,
        region=cfg.aws.region,
        vpc_id=net.vpc_id,
        availability_zones=net.availability_zones,
        private_subnet_ids=net.private_subnet_ids,
        private_route_table_ids=net.private_route_table_ids,
        router_id=net.openstack_router_id,
        local_subnet_ids=[net.openstack_subnet_id, *net.openstack_extra_subnet_ids],
        aws_cidrs=net.aws_site_cidrs,
        openstack_cidrs=net.openstack_site_cidrs,
        logs_kms_key_arn=net.logs_kms_key_arn,
        log_group_name=f"{net.log_group_prefix}/vpn-tunnels",
        log_retention_days=cfg.aws.vpc.flow_logs.retention_days,
        openstack_cloud=cfg.openstack.cloud,
        openstack_region=cfg.openstack.region,
        psk_override=config_module.secret("vpn_psk"),
        network=net.openstack,
    )
    vpn = SiteToSiteVpn("vpn", args, opts=ctx.component_opts())
    ctx.outputs.extra["vpnTunnelAddresses"] = vpn.tunnel_addresses
    ctx.outputs.extra["vpnCustomerGatewayAddress"] = vpn.customer_gateway_address
    ctx.outputs.extra["vpnStatus"] = vpn.status
    ctx.outputs.extra["vpnVerify"] = vpn.verify
    ctx.outputs.extra["vpnPresharedKeys"] = vpn.preshared_keys
    return vpn
