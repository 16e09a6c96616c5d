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
or a private runner network that is not routed to the cluster.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from hybridserve.stackconfig.schema.common import Cidr, ConfigModel, Issue, Loc, net

if TYPE_CHECKING:  # pragma: no cover
    from hybridserve.stackconfig.schema.stack import StackConfig

KUBERNETES_API_PORT = {"aws": 443, "openstack": 6443}
# Address space that is never a runner's public egress address.
_NOT_PUBLIC = tuple(
    ipaddress.IPv4Network(c)
    for c in ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3")
)


class DeployAccess(ConfigModel):
    """How `pulumi up` reaches this cluster's Kubernetes API (see the module docstring)."""

    via: Literal["public_endpoint", "private_network"]
    # public_endpoint: the runners' public egress CIDRs; private_network: the runners' network(s).
    runner_cidrs: list[Cidr] = Field(min_length=1)

    def issues(self) -> Iterator[Issue]:
        if len(set(self.runner_cidrs)) != len(self.runner_cidrs):
            yield Issue(("runner_cidrs",), f"{self.runner_cidrs} lists a CIDR twice")


def not_public(cidr: str) -> bool:
    """True when any part of `cidr` is private, shared, loopback, link-local or multicast space."""
    n = net(cidr)
    return any(n.overlaps(p) for p in _NOT_PUBLIC)


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
            if access.via == "public_endpoint":
                if net(cidr).prefixlen == 0 and not (site == "aws" and cfg.aws.eks.allow_public_api_from_anywhere):
                    yield Issue(where, f"{cidr} opens the Kubernetes API to the whole internet; list the runners' egress CIDRs")
                elif not_public(cidr):
                    yield Issue(
                        where,
                        f"{cidr} is private address space, which never reaches a public endpoint; give the runner's public egress "
                        "CIDR, or use via: private_network for a runner inside a routed network",
                    )
            else:
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
