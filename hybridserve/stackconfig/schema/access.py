"""How the deployer reaches each cluster's Kubernetes API (`aws.eks.deploy_access`, `openstack.magnum.deploy_access`).

The program declares Kubernetes objects (add-ons, Triton, the smoke gate) in the same `pulumi up` that
creates the clusters, so the machine running `pulumi up` (a terminal or a CI runner: "the deployer")
must reach both API servers on the first run. There is no safe default that works everywhere, so a
stack says it explicitly, per site:

- `via: public_endpoint`: the API gets a public address that admits only `runner_cidrs` (the
  runner's egress addresses, e.g. a NAT gateway of the CI system). EKS: the public endpoint with
  those CIDRs (added to `public_access_cidrs`). Magnum: a floating IP on the API load balancer,
  with `master_lb_allowed_cidrs` = the runners plus the cluster's own networks.
- `via: private_network`: the runner sits in a network routed to the cluster: the site's own
  network, or the peer site (through the VPN), or a network behind the VPN. EKS: the private
  endpoint; an extra control-plane security group admits `runner_cidrs` on 443. Magnum: the API
  load balancer's private address; `master_lb_allowed_cidrs` admits the runners.

`access_issues` (hooked into StackConfig.issues) refuses a stack whose deployer cannot reach a cluster,
naming the key: no `deploy_access`, runner CIDRs that are private on a public endpoint (or the reverse),
or a private runner network that is not routed to the cluster. `public_endpoint_issues` judges who may
reach a public endpoint as a set (EKS `public_access_cidrs` with the public runners): together they must
not admit the Internet, however spelt (0.0.0.0/1 + 128.0.0.0/1 is 0.0.0.0/0), and each must be public
address space (the endpoint sees public source addresses, so a private CIDR there never matches).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from hybridserve.stackconfig.schema.common import (
    MAX_PUBLIC_ADDRESSES,
    Cidr,
    ConfigModel,
    Issue,
    Loc,
    internet_exposure,
    net,
    not_public,
    public_addresses,
)

if TYPE_CHECKING:  # pragma: no cover
    from hybridserve.stackconfig.schema.stack import StackConfig

KUBERNETES_API_PORT = {"aws": 443, "openstack": 6443}


class DeployAccess(ConfigModel):
    """How `pulumi up` reaches this cluster's Kubernetes API (see the module docstring)."""

    via: Literal["public_endpoint", "private_network"]
    # public_endpoint: the runners' public egress CIDRs; private_network: the runners' network(s).
    # At most 60: on the private path each CIDR is an inbound rule of the EKS API security group, and AWS
    # allows 60 inbound rules per security group by default (Amazon VPC quotas, "Inbound or outbound rules
    # per security group", docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html, read 2026-12-01).
    runner_cidrs: list[Cidr] = Field(min_length=1, max_length=60)

    def issues(self) -> Iterator[Issue]:
        if len(set(self.runner_cidrs)) != len(self.runner_cidrs):
            yield Issue(("runner_cidrs",), f"{self.runner_cidrs} lists a CIDR twice")


def routed_networks(cfg: "StackConfig", site: str) -> list[tuple[Loc, str]]:
    """Networks from which traffic reaches `site`'s cluster API privately: the site's own and the VPN's peers."""
    aws = [(("aws", "vpc", "cidr"), cfg.aws.vpc.cidr)]
    aws += [(("vpn", "extra_aws_cidrs", i), c) for i, c in enumerate(cfg.vpn.extra_aws_cidrs)]
    openstack = [(("openstack", "network", "cidr"), cfg.openstack.network.cidr)]
    openstack += [(("vpn", "extra_openstack_cidrs", i), c) for i, c in enumerate(cfg.vpn.extra_openstack_cidrs)]
    return aws + openstack if site == "aws" else openstack + aws


def _how(site: str) -> str:
    key = "aws.eks.deploy_access" if site == "aws" else "openstack.magnum.deploy_access"
    return (
        f"set hybridserve:{key} to {{via: public_endpoint, runner_cidrs: [<the runner's public egress CIDR>]}} or "
        f"{{via: private_network, runner_cidrs: [<the runner's network, routed to this cluster>]}} (README: reaching the clusters)"
    )


def access_issues(cfg: "StackConfig") -> Iterator[Issue]:
    """Locations from the root. Both clusters always carry Kubernetes objects (add-ons; Triton where targeted)."""
    sites: dict[str, tuple[Loc, DeployAccess | None]] = {
        "aws": (("aws", "eks", "deploy_access"), cfg.aws.eks.deploy_access),
        "openstack": (("openstack", "magnum", "deploy_access"), cfg.openstack.magnum.deploy_access),
    }
    for site, (loc, access) in sites.items():
        if access is None:
            yield Issue(loc, f"is not set, but `pulumi up` declares Kubernetes objects on this cluster in the run that creates it; {_how(site)}")
            continue
        for i, cidr in enumerate(access.runner_cidrs):
            where = (*loc, "runner_cidrs", i)
            if access.via == "private_network":  # a public path is judged with the endpoint's other sources (public_endpoint_issues)
                networks = routed_networks(cfg, site)
                if not any(net(cidr).subnet_of(net(n)) for _, n in networks if net(cidr).version == net(n).version):
                    shown = ", ".join(n for _, n in networks)
                    yield Issue(
                        where,
                        f"{cidr} is not inside a network routed to the {site} cluster ({shown}); a private runner must sit in one of "
                        "them, or use via: public_endpoint",
                    )
        if site == "aws":
            eks = cfg.aws.eks
            if access.via == "public_endpoint" and eks.endpoint_public_access is False:
                yield Issue(("aws", "eks", "endpoint_public_access"), "false, but deploy_access.via is public_endpoint; remove it or reach the API via: private_network")
            if access.via == "private_network" and not eks.endpoint_private_access:
                yield Issue(("aws", "eks", "endpoint_private_access"), "false, but deploy_access.via is private_network; the private endpoint must be on")
        else:
            template = cfg.openstack.magnum.template
            if not template.master_lb_enabled:
                yield Issue(
                    ("openstack", "magnum", "template", "master_lb_enabled"),
                    "false; the kit reaches the Magnum API through its load balancer (deploy_access), so it must be true",
                )
    yield from public_endpoint_issues(cfg)


def public_endpoint_issues(cfg: "StackConfig") -> Iterator[Issue]:
    """Who may reach a public API endpoint, judged as a set: EKS `public_access_cidrs` plus the runners of a
    public deploy path; Magnum's floating IP admits the runners of a public deploy path. Locations from the root."""
    eks = cfg.aws.eks
    sources: list[tuple[Loc, str]] = [(("aws", "eks", "public_access_cidrs", i), c) for i, c in enumerate(eks.public_access_cidrs)]
    if eks.deploy_access is not None and eks.deploy_access.via == "public_endpoint":
        sources += [(("aws", "eks", "deploy_access", "runner_cidrs", i), c) for i, c in enumerate(eks.deploy_access.runner_cidrs)]
    yield from _public_sources_issues(
        sources, anywhere_allowed=eks.allow_public_api_from_anywhere, escape=" (or set hybridserve:aws.eks.allow_public_api_from_anywhere: true to accept that)"
    )
    magnum = cfg.openstack.magnum.deploy_access
    if magnum is not None and magnum.via == "public_endpoint":
        sources = [(("openstack", "magnum", "deploy_access", "runner_cidrs", i), c) for i, c in enumerate(magnum.runner_cidrs)]
        yield from _public_sources_issues(sources, anywhere_allowed=False, escape="")


def _public_sources_issues(sources: list[tuple[Loc, str]], *, anywhere_allowed: bool, escape: str) -> Iterator[Issue]:
    """The set must not admit the Internet (however spelt); each entry must be public address space, since
    a public endpoint sees public source addresses only (a private CIDR there can never match)."""
    from hybridserve.stackconfig.schema.stack import format_loc  # stack.py imports this module

    if not sources:
        return
    exposure = internet_exposure(c for _, c in sources)
    if exposure is not None and not anywhere_allowed:
        # The message sits on the largest contributor and names the rest.
        first, cidr = max(sources, key=lambda s: public_addresses([s[1]]))
        others = [(l, c) for l, c in sources if l != first and not net(c).subnet_of(net(cidr))]  # those that add to it
        together = f" together with {', '.join(f'{format_loc(l)} ({c})' for l, c in others)}" if others else ""
        yield Issue(first, f"{cidr}{together} opens the Kubernetes API to {exposure}; list only the runners' and operators' egress CIDRs{escape}")
    for where, cidr in sources:
        if exposure is not None and net(cidr).num_addresses > MAX_PUBLIC_ADDRESSES:
            continue  # judged (or accepted by the opt-in) as part of the set above
        if not not_public(cidr):
            continue
        if public_addresses([cidr]) == 0:
            yield Issue(
                where,
                f"{cidr} is private address space, which never reaches a public endpoint (it sees the public source address); "
                "give the public egress CIDR, or use deploy_access via: private_network for a runner inside a routed network",
            )
        else:
            yield Issue(where, f"{cidr} mixes public and private or reserved address space; list public egress CIDRs only")
