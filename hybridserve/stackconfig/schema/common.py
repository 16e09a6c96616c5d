"""Shared building blocks of the stack configuration schema: the base model, CIDRs, names, tags, issues.

Two layers of checks, so errors can always name the exact key:
- field checks (types, formats, ranges) are pydantic validators and become pydantic errors;
- checks that compare several fields are written as `issues()` methods returning `Issue`s with
  a location relative to the model; `collect_issues` walks the tree and prefixes locations.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

Loc = tuple[str | int, ...]


class Issue(NamedTuple):
    """A problem found by a cross-field check: where (relative location) and what, incl. what would be valid."""

    loc: Loc
    message: str


class ConfigModel(BaseModel):
    """Base of every schema model: unknown keys are errors (typos must not pass silently); immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def issues(self) -> Iterator[Issue]:
        """Cross-field checks of this model only (children are walked by `collect_issues`)."""
        return iter(())

    def warnings(self) -> Iterator[Issue]:
        """What is valid but worth a word (a cost, a date coming up); never stops validate, plan or up."""
        return iter(())


def collect_issues(model: Any, loc: Loc = (), *, method: str = "issues") -> list[Issue]:
    """Every issue (or, method="warnings", every warning) of `model` and its sub-models, children first,
    with locations from the root."""
    found: list[Issue] = []
    if isinstance(model, ConfigModel):
        for name in type(model).model_fields:
            found.extend(collect_issues(getattr(model, name), (*loc, name), method=method))
        found.extend(Issue((*loc, *i.loc), i.message) for i in getattr(model, method)())
    elif isinstance(model, (list, tuple)):
        for index, item in enumerate(model):
            found.extend(collect_issues(item, (*loc, index), method=method))
    elif isinstance(model, dict):
        for key, item in model.items():
            found.extend(collect_issues(item, (*loc, key), method=method))
    return found


# --- CIDRs -------------------------------------------------------------------------------------


def _check_cidr(value: str) -> str:
    if not isinstance(value, str) or "/" not in value:
        raise ValueError(f"{value!r} is not an IPv4 CIDR; expected a.b.c.d/n, e.g. 10.10.0.0/16")
    try:
        net = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IPv4 CIDR; expected a.b.c.d/n with n in 0..32, e.g. 10.10.0.0/16") from None
    if str(net) != value.strip():
        raise ValueError(f"{value!r} has host bits set; the network is {net}")
    return str(net)


def _coerce_str(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


Cidr = Annotated[str, BeforeValidator(_coerce_str), AfterValidator(_check_cidr)]
"""An IPv4 network in canonical form (host bits zero), kept as a string so it feeds providers directly."""


def net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


def overlaps(a: str, b: str) -> bool:
    return net(a).overlaps(net(b))


# --- address space: private, public, "the Internet" -------------------------------------------------

# Where a stack's own networks may live: RFC 1918 private space, and RFC 6598 shared address space
# (100.64.0.0/10, "CGNAT"), which EKS documents for VPC CNI custom networking (a secondary VPC range
# for pods) and which is not routed on the Internet either. Nothing else: a public range inside a
# VPC or tenant network shadows that part of the Internet for every node, and across the VPN it
# would route strangers' addresses into the tunnel.
PRIVATE_RANGES: tuple[tuple[str, str], ...] = (
    ("10.0.0.0/8", "RFC 1918"),
    ("172.16.0.0/12", "RFC 1918"),
    ("192.168.0.0/16", "RFC 1918"),
    ("100.64.0.0/10", "RFC 6598 shared address space"),
)
PRIVATE_HINT = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 (RFC 1918) or 100.64.0.0/10 (RFC 6598)"

# Address space that no host on the Internet sends from: the IANA IPv4 Special-Purpose Address
# Registry's ranges that are not globally reachable (RFC 6890; iana.org/assignments/iana-ipv4-special-registry,
# read 2026-12-01), multicast (224.0.0.0/4) and the reserved 240.0.0.0/4. The documentation ranges
# (RFC 5737: 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) count as public on purpose: examples and
# tests use them to stand for a public egress address.
NOT_PUBLIC: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(c)
    for c in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/3",
    )
)
PUBLIC_ADDRESSES = 2**32 - sum(n.num_addresses for n in NOT_PUBLIC)

# How much of the public Internet a set of rules may admit before it counts as "open to the
# Internet": a /16's worth (65,536 addresses). A bastion, an office or a runner pool's NAT egress
# needs a few addresses; a /16 is already a whole organisation's block, so a set beyond it is not
# "our runners / our operators" but a slice of the Internet. The plan-time policy pack (issue 12,
# hybridserve/policy/rules.py) judges the planned security groups and EKS endpoint with the same
# bound, so `validate` refuses, naming the key, what `plan` would refuse later. This judges what a
# set covers, not how it is spelt: 0.0.0.0/1 + 128.0.0.0/1 is the whole Internet like 0.0.0.0/0 is,
# and so are the 256 /8s listed one by one.
MAX_PUBLIC_ADDRESSES = 2**16


def is_private(cidr: str) -> bool:
    """True when all of `cidr` lies in one of PRIVATE_RANGES."""
    n = net(cidr)
    return any(n.subnet_of(ipaddress.IPv4Network(r)) for r, _ in PRIVATE_RANGES)


def not_public(cidr: str) -> bool:
    """True when any part of `cidr` is private, shared, loopback, link-local, reserved or multicast space."""
    n = net(cidr)
    return any(n.overlaps(p) for p in NOT_PUBLIC)


def public_addresses(cidrs: Iterable[str]) -> int:
    """How many public addresses the union of `cidrs` admits (overlapping rules counted once)."""
    union = list(ipaddress.collapse_addresses(net(c) for c in cidrs))
    total = 0
    for n in union:
        # NOT_PUBLIC ranges are disjoint CIDR blocks, and two blocks overlap only by containment.
        hidden = sum(min(n.num_addresses, p.num_addresses) for p in NOT_PUBLIC if n.overlaps(p))
        total += n.num_addresses - hidden
    return total


def internet_exposure(cidrs: Iterable[str]) -> str | None:
    """None when the union of `cidrs` stays within MAX_PUBLIC_ADDRESSES; else how much of the Internet
    it opens to, for a message ("the whole internet", "131,072 public addresses (0.0035% of ...)")."""
    count = public_addresses(cidrs)
    if count >= PUBLIC_ADDRESSES:
        return "the whole internet"
    if count > MAX_PUBLIC_ADDRESSES:
        share = f"{100 * count / PUBLIC_ADDRESSES:.2g}%"
        return f"{count:,} public addresses ({share} of the public IPv4 internet; at most {MAX_PUBLIC_ADDRESSES:,}, a /16, are accepted)"
    return None


# --- names -------------------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")


def _check_label(value: str) -> str:
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid name; use 1-32 lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-' (it becomes part of resource names)"
        )
    return value


Label = Annotated[str, AfterValidator(_check_label)]
"""A short lowercase name that is safe inside cloud resource names (team, environment, pool names)."""


_K8S_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_K8S_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _check_k8s_labels(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        if not _K8S_LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key (prefix/name, name ≤ 63 chars)")
        if not _K8S_LABEL_VALUE.match(str(val)):
            raise ValueError(f"label {key}={val!r}: value must be ≤ 63 chars of letters, digits, '-', '_', '.'")
    return value


K8sLabels = Annotated[dict[str, str], AfterValidator(_check_k8s_labels)]


def _check_tags(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        if not key or len(key) > 128 or key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r} must be 1-128 characters and must not start with 'aws:'")
        if len(str(val)) > 256:
            raise ValueError(f"tag {key!r}: value is longer than 256 characters")
    return value


Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]
"""Cloud tags: AWS limits (key ≤ 128, value ≤ 256, no 'aws:' prefix) also fit OpenStack tags."""
