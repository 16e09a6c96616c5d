"""The site-to-site IPsec VPN between the OpenStack network and the AWS VPC (`hybridserve:vpn`).

Algorithms are named once here, neutrally; `AWS_NAMES` / `OPENSTACK_NAMES` translate them for the
two ends (AWS VPN tunnel options and Neutron VPNaaS policies) so both ends always agree.
The pre-shared key is not part of this model: it is the optional secret `hybridserve:vpn_psk`
(`pulumi config set --secret hybridserve:vpn_psk ...`); without it the program generates one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from hybridserve.stackconfig.schema.common import Cidr, ConfigModel, Issue, net

Encryption = Literal["aes-128", "aes-256", "aes-128-gcm-16", "aes-256-gcm-16"]
Integrity = Literal["sha1", "sha256", "sha384", "sha512"]
# Both AWS and Neutron VPNaaS accept these Diffie-Hellman groups.
DhGroup = Literal[14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24]

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


class IkeProfile(ConfigModel):
    """Phase 1 (IKE SA)."""

    version: Literal["ikev1", "ikev2"] = "ikev2"
    encryption: Encryption = "aes-256"
    integrity: Integrity = "sha256"
    dh_group: DhGroup = 14
    lifetime_seconds: int = Field(default=28800, ge=900, le=28800)  # AWS limits


class IpsecProfile(ConfigModel):
    """Phase 2 (IPsec SA); `pfs_group` is the Diffie-Hellman group for perfect forward secrecy."""

    encryption: Encryption = "aes-256"
    integrity: Integrity = "sha256"
    pfs_group: DhGroup = 14
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
    dpd_action: Literal["restart", "clear", "hold"] = "restart"
    # Stacks in one peering group can route to each other (shared OpenStack cloud, shared
    # transit): their routed networks must not overlap. The default puts every stack in one
    # group, the safe assumption.
    peering_group: str = Field(default="default", min_length=1, max_length=64)

    def issues(self) -> Iterator[Issue]:
        if len(self.tunnel_inside_cidrs) != 2:
            yield Issue(
                ("tunnel_inside_cidrs",),
                f"{self.tunnel_inside_cidrs} has {len(self.tunnel_inside_cidrs)} entries; an AWS VPN connection has exactly 2 tunnels, give two /30s",
            )
        for i, cidr in enumerate(self.tunnel_inside_cidrs):
            n = net(cidr)
            if n.prefixlen != 30 or not n.subnet_of(LINK_LOCAL):
                yield Issue(("tunnel_inside_cidrs", i), f"{cidr} is not valid; each tunnel needs a /30 inside 169.254.0.0/16, e.g. 169.254.10.0/30")
            elif cidr in AWS_RESERVED_INSIDE_CIDRS:
                yield Issue(("tunnel_inside_cidrs", i), f"{cidr} is reserved by AWS ({', '.join(AWS_RESERVED_INSIDE_CIDRS)}); pick another /30")
        for i in range(len(self.tunnel_inside_cidrs)):
            for j in range(i):
                if net(self.tunnel_inside_cidrs[i]).overlaps(net(self.tunnel_inside_cidrs[j])):
                    yield Issue(
                        ("tunnel_inside_cidrs", i),
                        f"{self.tunnel_inside_cidrs[i]} overlaps tunnel_inside_cidrs[{j}] ({self.tunnel_inside_cidrs[j]}); the two tunnels need distinct /30s",
                    )
        if self.amazon_side_asn == self.customer_asn:
            yield Issue(("customer_asn",), f"{self.customer_asn} equals amazon_side_asn; the two ends need different ASNs")
