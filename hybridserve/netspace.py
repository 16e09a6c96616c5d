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

# How much of the public Internet a set of rules may admit before it counts as "open to the
# Internet": a /16's worth (65,536 addresses). A bastion, an office or a runner pool's NAT egress
# needs a few addresses; a /16 is already a whole organisation's block, so a set beyond it is not
# "our runners / our operators" but a slice of the Internet.
MAX_PUBLIC_ADDRESSES = 2**16


def parse(cidr: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(str(cidr).strip(), strict=False)
    except ValueError:
        return None


def public_addresses(cidrs: Iterable[str | IPNetwork]) -> int:
    """How many public addresses the union of `cidrs` admits, IPv4 and IPv6 together (overlaps counted
    once; what is not a CIDR is ignored: the schema refuses it, and the pack judges only what it can)."""
    nets = [n if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else parse(n) for n in cidrs]
    total = 0
    for version, hidden_space in ((4, NOT_PUBLIC_V4), (6, NOT_PUBLIC_V6)):
        for block in ipaddress.collapse_addresses(n for n in nets if n is not None and n.version == version):
            # The hidden ranges are disjoint CIDR blocks, and two blocks overlap only by containment.
            hidden = sum(min(block.num_addresses, p.num_addresses) for p in hidden_space if block.overlaps(p))
            total += block.num_addresses - hidden
    return total


def internet_exposure(cidrs: Iterable[str | IPNetwork]) -> str | None:
    """None when the union of `cidrs` stays within MAX_PUBLIC_ADDRESSES; else how much of the Internet
    it opens to, for a message ("the whole internet", "131,072 public addresses (0.0035% of ...)")."""
    count = public_addresses(cidrs)
    if count >= PUBLIC_ADDRESSES:
        return "the whole internet"
    if count > MAX_PUBLIC_ADDRESSES:
        share = f"{100 * count / PUBLIC_ADDRESSES:.2g}%"
        return f"{count:,} public addresses ({share} of the public IPv4 internet; at most {MAX_PUBLIC_ADDRESSES:,}, a /16, are accepted)"
    return None
