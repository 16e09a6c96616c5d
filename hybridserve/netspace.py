"""How much of the public Internet a set of CIDRs admits: one definition for `validate` (the stack schema)
and the policy pack (hybridserve/policy/rules.py, which runs in pulumi-policy's own environment: this
module uses the standard library only).

A set is judged by what it covers, not how it is spelt: 0.0.0.0/1 + 128.0.0.0/1 is the whole Internet
like 0.0.0.0/0 is, and so are the 256 /8s listed one by one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ports that must never be open to the Internet: SSH, RDP, a Kubernetes API server (6443 on Magnum's
# masters), the kubelet. Security groups in front of EKS's API also guard 443 (the policy pack adds it).
ADMIN_PORTS: dict[int, str] = {22: "SSH", 3389: "RDP", 6443: "the Kubernetes API", 10250: "the kubelet API"}

# Address space that no host on the Internet sends from: the IANA IPv4 Special-Purpose Address
# Registry's ranges that are not globally reachable (RFC 6890; iana.org/assignments/iana-ipv4-special-registry,
# read 2026-12-01), multicast (224.0.0.0/4) and the reserved 240.0.0.0/4. The documentation ranges
# (RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) count as public on purpose: examples and
# tests use them to stand for a public egress address.
NOT_PUBLIC_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(c)
    for c in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
    )
)
# IPv6 (iana.org/assignments/iana-ipv6-special-registry): unspecified, loopback, IPv4-mapped, unique
# local, link-local and multicast. Disjoint blocks, like the IPv4 list.
NOT_PUBLIC_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(c) for c in ("::/128", "::1/128", "::ffff:0:0/96", "fc00::/7", "fe80::/10", "ff00::/8")
)
PUBLIC_ADDRESSES = 2**32 - sum(n.num_addresses for n in NOT_PUBLIC_V4)  # IPv4
# The global unicast IPv6 space (2000::/3, iana.org/assignments/ipv6-unicast-address-assignments).
PUBLIC_ADDRESSES_V6 = 2**125

# How much of the public Internet a set of rules may admit before it counts as "open to the
# Internet", per address family (IPv4 and IPv6 counts are never added: 2^16 IPv6 addresses are a
# sliver of one /64). IPv4: a /16's worth (65,536 addresses). A bastion, an office or a runner pool's
# NAT egress needs a few addresses; a /16 is already a whole organisation's block, so a set beyond it
# is not "our runners / our operators" but a slice of the Internet. IPv6: a /48's worth, the
# allocation of one site (RFC 6177 leaves /48 to /64 per site; a /48 is the widest of those).
MAX_PUBLIC_ADDRESSES = 2**16
MAX_PUBLIC_ADDRESSES_V6 = 2**80


def parse(cidr: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(str(cidr).strip(), strict=False)
    except ValueError:
        return None


def public_addresses(cidrs: Iterable[str | IPNetwork], version: int = 4) -> int:
    """How many public addresses of one family (4 or 6) the union of `cidrs` admits (overlaps counted
    once; other families and what is not a CIDR are ignored: the schema refuses it, and the pack judges
    only what it can)."""
    nets = [n if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else parse(n) for n in cidrs]
    hidden_space = NOT_PUBLIC_V4 if version == 4 else NOT_PUBLIC_V6
    total = 0
    for block in ipaddress.collapse_addresses(n for n in nets if n is not None and n.version == version):
        # The hidden ranges are disjoint CIDR blocks, and two blocks overlap only by containment.
        hidden = sum(min(block.num_addresses, p.num_addresses) for p in hidden_space if block.overlaps(p))
        total += block.num_addresses - hidden
    return total


def internet_exposure(cidrs: Iterable[str | IPNetwork]) -> str | None:
    """None when the union of `cidrs` stays within the bound of each address family; else how much of
    the Internet it opens to, for a message ("the whole internet", "131,072 public addresses (0.0035% of ...)")."""
    cidrs = list(cidrs)
    for version, whole, bound, what in (
        (4, PUBLIC_ADDRESSES, MAX_PUBLIC_ADDRESSES, "a /16"),
        (6, PUBLIC_ADDRESSES_V6, MAX_PUBLIC_ADDRESSES_V6, "an IPv6 /48"),
    ):
        count = public_addresses(cidrs, version)
        if count >= whole:
            return "the whole internet"
        if count > bound:
            share = f"{100 * count / whole:.2g}%"
            return f"{count:,} public addresses ({share} of the public IPv{version} internet; at most {bound:,}, {what}, are accepted)"
    return None
