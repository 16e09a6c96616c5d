"""The site-to-site IPsec VPN between the OpenStack network and the AWS VPC (`hybridserve:vpn`).

One profile, defined once here with neutral names and rendered for both ends: `aws_tunnel_options`
(AWS VPN tunnel options) and `openstack_ike_policy` / `openstack_ipsec_policy` /
`openstack_dpd` (Neutron VPNaaS). `AWS_NAMES` / `OPENSTACK_NAMES` are the only translation, so
the two ends cannot drift; `hybridserve.stackconfig.vpncheck` translates both renderings back
and compares them, and rejects weak choices (IKEv1, SHA-1, AES-128, DH groups below 14 or from
RFC 5114, no PFS) with the key path. There is no `allow_weak` escape hatch: both ends are
managed by this kit and both support the strong set, so there is no legacy peer to accommodate.

Pre-shared keys are not part of this model: by default the program generates one per tunnel
(pulumi-random, secret); `psk_rotation` are their keepers (bump one to rotate that tunnel's key).
The optional secret `hybridserve:vpn_psk` (`pulumi config set --secret hybridserve:vpn_psk ...`)
replaces both generated keys.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from hybridserve.stackconfig.schema.common import Cidr, ConfigModel, Issue, net

Encryption = Literal["aes-128", "aes-256", "aes-128-gcm-16", "aes-256-gcm-16"]
Integrity = Literal["sha1", "sha256", "sha384", "sha512"]
# Groups accepted by the schema (so a weak one is rejected with an explanation, not a type error).
DhGroup = Literal[2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]

AWS_NAMES: dict[str, str] = {
    "aes-128": "AES128",
    "aes-256": "AES256",
    "aes-128-gcm-16": "AES128-GCM-16",
    "aes-256-gcm-16": "AES256-GCM-16",
    "sha1": "SHA1",
    "sha256": "SHA2-256",
    "sha384": "SHA2-384",
    "sha512": "SHA2-512",
    "ikev1": "ikev1",
    "ikev2": "ikev2",
}
OPENSTACK_NAMES: dict[str, str] = {
    "aes-128": "aes-128",
    "aes-256": "aes-256",
    "aes-128-gcm-16": "aes-128-gcm-16",
    "aes-256-gcm-16": "aes-256-gcm-16",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "ikev1": "v1",
    "ikev2": "v2",
}
# Diffie-Hellman groups each end offers (AWS: tunnel option docs; Neutron: group2, group5, group14..31).
AWS_PHASE1_DH_GROUPS = frozenset({2, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24})
AWS_PHASE2_DH_GROUPS = frozenset({2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24})
OPENSTACK_DH_GROUPS = frozenset({2, 5, *range(14, 32)})
# Dead-peer-detection actions: AWS knows clear | none | restart; Neutron clear | hold | restart | ...
AWS_DPD_ACTIONS = frozenset({"clear", "restart"})
OPENSTACK_DPD_ACTIONS = frozenset({"clear", "hold", "restart"})

# The kit's floor. Why each is weak, for the messages.
WEAK_DH_GROUPS: dict[int, str] = {
    2: "MODP-1024 (RFC 8247: SHOULD NOT)",
    5: "MODP-1536 (RFC 8247: SHOULD NOT)",
    22: "RFC 5114 MODP-1024 with a 160-bit subgroup (RFC 8247: SHOULD NOT)",
    23: "RFC 5114 MODP-2048 with a 224-bit subgroup (RFC 8247: SHOULD NOT)",
    24: "RFC 5114 MODP-2048 with a 256-bit subgroup (RFC 8247: SHOULD NOT)",
}
STRONG_DH_HINT = "use 14 (MODP-2048), 19/20 (ECP-256/384) or stronger"

# AWS reserves these /30s inside 169.254.0.0/16 for its own use.
AWS_RESERVED_INSIDE_CIDRS = (
    "169.254.0.0/30",
    "169.254.1.0/30",
    "169.254.2.0/30",
    "169.254.3.0/30",
    "169.254.4.0/30",
    "169.254.5.0/30",
    "169.254.169.252/30",
)
LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
# AWS Site-to-Site VPN carries at most 1446-byte packets inside a tunnel.
AWS_MAX_TUNNEL_MTU = 1446
UNDERLAY_MTU = 1500  # the Internet path between the two VPN endpoints


class IkeProfile(ConfigModel):
    """Phase 1 (IKE SA). With a GCM cipher, `integrity` is the PRF."""

    version: Literal["ikev1", "ikev2"] = "ikev2"
    encryption: Encryption = "aes-256"
    integrity: Integrity = "sha256"
    dh_group: DhGroup = 14
    lifetime_seconds: int = Field(default=28800, ge=900, le=28800)  # AWS limits


class IpsecProfile(ConfigModel):
    """Phase 2 (IPsec SA); `pfs_group` is the Diffie-Hellman group for perfect forward secrecy (null: no PFS)."""

    encryption: Encryption = "aes-256"
    integrity: Integrity = "sha256"
    pfs_group: DhGroup | None = 14
    lifetime_seconds: int = Field(default=3600, ge=900, le=3600)  # AWS limits


class VpnConfig(ConfigModel):
    ike: IkeProfile = IkeProfile()
    ipsec: IpsecProfile = IpsecProfile()
    # AWS VPN connections always have two tunnels; each needs its own /30 inside 169.254.0.0/16.
    tunnel_inside_cidrs: list[Cidr] = Field(default_factory=lambda: ["169.254.10.0/30", "169.254.10.4/30"])
    # ASNs are required by AWS even with static routing (Neutron VPNaaS has no BGP).
    amazon_side_asn: int = Field(default=64512, ge=64512, le=65534)
    customer_asn: int = Field(default=65000, ge=64512, le=65534)
    dpd_timeout_seconds: int = Field(default=30, ge=30, le=3600)
    # Neutron sends a DPD probe this often; AWS probes every 10 s on its own.
    dpd_interval_seconds: int = Field(default=10, ge=1, le=3600)
    dpd_action: Literal["restart", "clear", "hold"] = "restart"
    # Stacks in one peering group can route to each other (shared OpenStack cloud, shared
    # transit): their routed networks must not overlap. The default puts every stack in one
    # group, the safe assumption.
    peering_group: str = Field(default="default", min_length=1, max_length=64)

    # "vgw": a virtual private gateway attached to the VPC; "transit": a transit gateway (for
    # stacks that will reach more VPCs than their own; required for extra_aws_cidrs).
    gateway: Literal["vgw", "transit"] = "vgw"
    # How private route tables learn the OpenStack networks (vgw only): "static" routes to the
    # gateway, or "propagation" of the VPN connection's static routes by the gateway.
    routing: Literal["static", "propagation"] = "static"
    # "start": AWS initiates IKE, so the tunnels come up without waiting for traffic.
    startup_action: Literal["start", "add"] = "start"
    # Tunnel MTU; null: derived from the profile (the largest packet that fits after ESP).
    tunnel_mtu: int | None = Field(default=None, ge=576, le=AWS_MAX_TUNNEL_MTU)
    # Redundancy (issue 11): active/standby, as Neutron VPNaaS supports. Its site connections are policy-based
    # and both AWS tunnels carry the same selectors (these subnets <-> the AWS networks), which Linux IPsec can
    # install for one peer at a time (libreswan refuses the second: "route already in use", libreswan#504). AWS,
    # for a static VPN with both tunnels up, sends on one tunnel it picks at random and expects the customer
    # gateway to accept asymmetric routing (AWS knowledge center "vpn-configure-tunnel-preference"): with both
    # site connections up, traffic from AWS could arrive on the tunnel whose policy is not installed. So one
    # site connection is up (this tunnel), the other is configured but admin-down: AWS shows it DOWN and sends
    # everything over the active one. Failover: set the other tunnel here and `pulumi up` (vpnVerify shows the
    # immediate CLI switch).
    active_tunnel: Literal[1, 2] = 1
    # Keepers of the generated per-tunnel pre-shared keys: change one to rotate that tunnel's key.
    psk_rotation: list[int] = Field(default_factory=lambda: [0, 0], min_length=2, max_length=2)
    # More networks across the tunnels (besides the VPC, the EKS pod CIDR and the OpenStack
    # network). OpenStack side: CIDRs of existing subnets of the project that the kit attaches to
    # the stack's router. AWS side: networks behind the transit gateway (gateway: transit).
    # Private address space only, like every network of a stack (network.address_space_issues): a
    # public range here would route that part of the Internet into the tunnel.
    extra_openstack_cidrs: list[Cidr] = Field(default_factory=list, max_length=10)
    extra_aws_cidrs: list[Cidr] = Field(default_factory=list, max_length=10)

    def tunnel_mtu_for_profile(self) -> int:
        """The largest inner packet that fits a 1500-byte path after ESP tunnel mode (NAT-T included), capped at AWS's 1446."""
        return min(AWS_MAX_TUNNEL_MTU, UNDERLAY_MTU - esp_overhead(self.ipsec.encryption, self.ipsec.integrity))

    def effective_tunnel_mtu(self) -> int:
        return self.tunnel_mtu or self.tunnel_mtu_for_profile()

    def issues(self) -> Iterator[Issue]:
        if len(self.tunnel_inside_cidrs) != 2:
            yield Issue(
                ("tunnel_inside_cidrs",),
                f"{self.tunnel_inside_cidrs} has {len(self.tunnel_inside_cidrs)} entries; an AWS VPN connection has exactly 2 tunnels, give two /30s",
            )
        yield from inside_cidr_issues(self.tunnel_inside_cidrs)
        if self.amazon_side_asn == self.customer_asn:
            yield Issue(("customer_asn",), f"{self.customer_asn} equals amazon_side_asn; the two ends need different ASNs")
        # The profile: weak choices, what one end cannot express, both renderings compared.
        from hybridserve.stackconfig.vpncheck import profile_issues

        yield from profile_issues(self)


def inside_cidr_issues(cidrs: list[str]) -> Iterator[Issue]:
    """The tunnels' inside /30s of one AWS VPN connection (the hubs' link or an edge site's link to AWS)."""
    for i, cidr in enumerate(cidrs):
        n = net(cidr)
        if n.prefixlen != 30 or not n.subnet_of(LINK_LOCAL):
            yield Issue(("tunnel_inside_cidrs", i), f"{cidr} is not valid; each tunnel needs a /30 inside 169.254.0.0/16, e.g. 169.254.10.0/30")
        elif cidr in AWS_RESERVED_INSIDE_CIDRS:
            yield Issue(("tunnel_inside_cidrs", i), f"{cidr} is reserved by AWS ({', '.join(AWS_RESERVED_INSIDE_CIDRS)}); pick another /30")
    for i in range(len(cidrs)):
        for j in range(i):
            if net(cidrs[i]).overlaps(net(cidrs[j])):
                yield Issue(("tunnel_inside_cidrs", i), f"{cidrs[i]} overlaps tunnel_inside_cidrs[{j}] ({cidrs[j]}); the two tunnels need distinct /30s")


# --- rendering the one profile for both ends ---------------------------------------------------------


def esp_overhead(encryption: str, integrity: str) -> int:
    """Worst-case bytes ESP tunnel mode adds to a packet: outer IPv4, NAT-T UDP, ESP header, IV, padding, trailer, ICV."""
    gcm = "gcm" in encryption
    iv, pad = (8, 3) if gcm else (16, 15)
    icv = 16 if gcm else {"sha1": 12, "sha256": 16, "sha384": 24, "sha512": 32}[integrity]
    return 20 + 8 + 8 + iv + pad + 2 + icv


def aws_tunnel_options(vpn: VpnConfig, tunnel: int, inside_cidrs: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """Options of AWS tunnel `tunnel` (1 or 2), as `aws.ec2.VpnConnection` keyword arguments.

    Values the AWS end cannot express are left out (the check reports them). The pre-shared key
    and the log options are added by the component.
    """
    t = f"tunnel{tunnel}_"
    inside = vpn.tunnel_inside_cidrs if inside_cidrs is None else list(inside_cidrs)  # an edge link's own /30s
    opts: dict[str, Any] = {
        f"{t}ike_versions": [AWS_NAMES[vpn.ike.version]],
        f"{t}phase1_encryption_algorithms": [AWS_NAMES[vpn.ike.encryption]],
        f"{t}phase1_integrity_algorithms": [AWS_NAMES[vpn.ike.integrity]],
        f"{t}phase1_lifetime_seconds": vpn.ike.lifetime_seconds,
        f"{t}phase2_encryption_algorithms": [AWS_NAMES[vpn.ipsec.encryption]],
        f"{t}phase2_integrity_algorithms": [AWS_NAMES[vpn.ipsec.integrity]],
        f"{t}phase2_lifetime_seconds": vpn.ipsec.lifetime_seconds,
        f"{t}dpd_timeout_seconds": vpn.dpd_timeout_seconds,
        f"{t}startup_action": vpn.startup_action,
        f"{t}inside_cidr": inside[tunnel - 1] if len(inside) >= tunnel else None,
    }
    if vpn.ike.dh_group in AWS_PHASE1_DH_GROUPS:
        opts[f"{t}phase1_dh_group_numbers"] = [vpn.ike.dh_group]
    if vpn.ipsec.pfs_group in AWS_PHASE2_DH_GROUPS:
        opts[f"{t}phase2_dh_group_numbers"] = [vpn.ipsec.pfs_group]
    if vpn.dpd_action in AWS_DPD_ACTIONS:
        opts[f"{t}dpd_timeout_action"] = vpn.dpd_action
    return opts


def _lifetime(seconds: int) -> list[dict[str, Any]]:
    return [{"units": "seconds", "value": seconds}]


def openstack_ike_policy(vpn: VpnConfig) -> dict[str, Any]:
    """`openstack.vpnaas.IkePolicy` keyword arguments. Neutron calls the IKE DH group `pfs`."""
    opts: dict[str, Any] = {
        "ike_version": OPENSTACK_NAMES[vpn.ike.version],
        "encryption_algorithm": OPENSTACK_NAMES[vpn.ike.encryption],
        "auth_algorithm": OPENSTACK_NAMES[vpn.ike.integrity],
        "phase1_negotiation_mode": "main",
        "lifetimes": _lifetime(vpn.ike.lifetime_seconds),
    }
    if vpn.ike.dh_group in OPENSTACK_DH_GROUPS:
        opts["pfs"] = f"group{vpn.ike.dh_group}"
    return opts


def openstack_ipsec_policy(vpn: VpnConfig) -> dict[str, Any]:
    """`openstack.vpnaas.IpSecPolicy` keyword arguments."""
    opts: dict[str, Any] = {
        "transform_protocol": "esp",
        "encapsulation_mode": "tunnel",
        "encryption_algorithm": OPENSTACK_NAMES[vpn.ipsec.encryption],
        "auth_algorithm": OPENSTACK_NAMES[vpn.ipsec.integrity],
        "lifetimes": _lifetime(vpn.ipsec.lifetime_seconds),
    }
    if vpn.ipsec.pfs_group in OPENSTACK_DH_GROUPS:
        opts["pfs"] = f"group{vpn.ipsec.pfs_group}"
    return opts


def openstack_dpd(vpn: VpnConfig) -> dict[str, Any]:
    """The `dpds` entry of an `openstack.vpnaas.SiteConnection`."""
    return {"action": vpn.dpd_action, "interval": vpn.dpd_interval_seconds, "timeout": vpn.dpd_timeout_seconds}
