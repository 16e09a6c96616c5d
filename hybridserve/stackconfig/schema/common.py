"""Shared building blocks of the stack configuration schema: the base model, CIDRs, names, tags, issues.

Two layers of checks, so errors can always name the exact key:
- field checks (types, formats, ranges) are pydantic validators and become pydantic errors;
- checks that compare several fields are written as `issues()` methods returning `Issue`s with
  a location relative to the model; `collect_issues` walks the tree and prefixes locations.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from hybridserve.netspace import MAX_PUBLIC_ADDRESSES, NOT_PUBLIC_V4, PUBLIC_ADDRESSES, internet_exposure, public_addresses  # noqa: F401 (re-exported)

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

# What counts as public and how much of it a set of rules may admit: one definition with the policy pack.
NOT_PUBLIC = NOT_PUBLIC_V4


def is_private(cidr: str) -> bool:
    """True when all of `cidr` lies in one of PRIVATE_RANGES."""
    n = net(cidr)
    return any(n.subnet_of(ipaddress.IPv4Network(r)) for r, _ in PRIVATE_RANGES)


def not_public(cidr: str) -> bool:
    """True when any part of `cidr` is private, shared, loopback, link-local, reserved or multicast space."""
    n = net(cidr)
    return any(n.overlaps(p) for p in NOT_PUBLIC)


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


# The characters every AWS service takes in tags (https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html,
# checked 2026-12-01): the provider's default tags reach IAM, KMS, EKS, ..., not only EC2, which takes more.
_AWS_TAG_TEXT = re.compile(r"^[\w .:/=+\-@]*$")
# OpenStack gets each tag as one "key=value" string; Neutron takes tags of up to 255 characters
# (neutron/extensions/tagging.py MAX_TAG_LEN).
NEUTRON_TAG_LENGTH = 255


def _check_tags(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        if not key or len(key) > 128 or key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r} must be 1-128 characters and must not start with 'aws:'")
        if len(str(val)) > 256:
            raise ValueError(f"tag {key!r}: value is longer than 256 characters")
        for what, text in (("key", key), ("value", str(val))):
            if not _AWS_TAG_TEXT.match(text):
                raise ValueError(f"tag {what} {text!r}: use letters, digits, spaces and _ . : / = + - @ only (what every AWS service accepts)")
        if len(f"{key}={val}") > NEUTRON_TAG_LENGTH:
            raise ValueError(f"tag {key!r}: key and value together are {len(key) + 1 + len(str(val))} characters as the OpenStack tag "
                             f"'key=value'; Neutron allows {NEUTRON_TAG_LENGTH}")
    return value


Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]
"""Cloud tags: AWS limits (key ≤ 128, value ≤ 256, no 'aws:' prefix, its common characters) and "key=value" within Neutron's 255."""
