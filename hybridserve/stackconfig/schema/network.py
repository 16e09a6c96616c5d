"""Networks: the AWS VPC (`hybridserve:aws.vpc`) and the OpenStack tenant network (`hybridserve:openstack.network`).

The two sites reach each other only through the VPN (`hybridserve:vpn`); nothing is opened to the
Internet. `openstack.network.ingress` is refused (issue 11: Magnum owns the nodes' security groups, so
no rule of it could act); its rules are still judged (never an admin port to the Internet, by what all
rules opening that port cover together, not by how a CIDR is spelt). Every network of a stack is
private address space (`address_space_issues`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple

from pydantic import AfterValidator, Field

from hybridserve.stackconfig.schema.common import PRIVATE_HINT, Cidr, ConfigModel, Issue, internet_exposure, is_private, net, public_addresses

if TYPE_CHECKING:  # pragma: no cover
    from hybridserve.stackconfig.schema.stack import StackConfig


def _check_ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address, e.g. 10.0.0.2") from None


IPv4 = Annotated[str, AfterValidator(_check_ipv4)]


class SubnetPlan(NamedTuple):
    availability_zone: str
    public_cidr: str
    private_cidr: str


from hybridserve.netspace import ADMIN_PORTS  # noqa: E402 (one list for validate and the policy pack)


class FlowLogs(ConfigModel):
    """VPC flow logs (audit) to a CloudWatch log group encrypted with the network's own KMS key."""

    enabled: bool = True
    retention_days: Literal[30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] = 365
    traffic_type: Literal["ALL", "ACCEPT", "REJECT"] = "ALL"
    max_aggregation_interval: Literal[60, 600] = 600


class AwsVpc(ConfigModel):
    """The VPC: one public and one private subnet per availability zone; GPU nodes live in the private ones."""

    cidr: Cidr = "10.0.0.0/16"
    # Empty: the first `az_count` zones of the region (<region>a, <region>b, ...). EKS needs two.
    availability_zones: list[str] = Field(default_factory=list, max_length=6)
    az_count: int = Field(default=2, ge=2, le=6)
    # Subnet sizes as prefix lengths: /20 private subnets hold 4091 pod/node IPs each (VPC CNI).
    private_subnet_prefix: int = Field(default=20, ge=16, le=28)
    public_subnet_prefix: int = Field(default=24, ge=16, le=28)
    # "single": one NAT gateway (dev, cheaper); "per_az": one per zone (HA, no cross-AZ dependency).
    nat_gateways: Literal["single", "per_az"] = "single"
    flow_logs: FlowLogs = FlowLogs()
    # A gateway endpoint for S3 on the private route tables: model downloads skip the NAT gateways.
    s3_endpoint: bool = True

    def zones(self, region: str) -> list[str]:
        if self.availability_zones:
            return list(self.availability_zones)
        return [f"{region}{chr(ord('a') + i)}" for i in range(self.az_count)]

    def zone_count(self) -> int:
        return len(self.availability_zones) or self.az_count

    def subnet_plan(self, region: str) -> list[SubnetPlan]:
        """Deterministic carving: private subnets from the bottom of the VPC, public ones after them.

        Raises ValueError when they do not fit (the `issues` check reports that first).
        """
        zones = self.zones(region)
        vpc = net(self.cidr)
        private = list(_take(vpc, self.private_subnet_prefix, len(zones), used=[]))
        public = list(_take(vpc, self.public_subnet_prefix, len(zones), used=private))
        return [SubnetPlan(z, str(pub), str(priv)) for z, pub, priv in zip(zones, public, private)]

    def issues(self) -> Iterator[Issue]:
        prefix = net(self.cidr).prefixlen
        if not 16 <= prefix <= 24:
            yield Issue(("cidr",), f"{self.cidr} has prefix /{prefix}; an AWS VPC must be between /16 and /24")
        if len(self.availability_zones) == 1:
            yield Issue(("availability_zones",), f"{self.availability_zones} lists one zone; list at least 2 (EKS and the NAT/subnet layout need two zones)")
        if len(set(self.availability_zones)) != len(self.availability_zones):
            yield Issue(("availability_zones",), f"{self.availability_zones} lists a zone twice; zones must be distinct")
        if self.availability_zones and "az_count" in self.model_fields_set and self.az_count != len(self.availability_zones):
            yield Issue(("az_count",), f"{self.az_count} does not match the {len(self.availability_zones)} availability_zones listed; set one of them")
        for key in ("private_subnet_prefix", "public_subnet_prefix"):
            if getattr(self, key) <= prefix:
                yield Issue((key,), f"/{getattr(self, key)} is not smaller than the VPC (/{prefix}); use a prefix longer than {prefix}")
                return
        try:
            self.subnet_plan("region-")
        except ValueError:
            n = self.zone_count()
            yield Issue(
                ("cidr",),
                f"{self.cidr} cannot hold {n} private /{self.private_subnet_prefix} and {n} public "
                f"/{self.public_subnet_prefix} subnets; use a larger VPC or longer subnet prefixes",
            )


def _take(space: ipaddress.IPv4Network, prefix: int, count: int, used: list) -> Iterator[ipaddress.IPv4Network]:
    taken = 0
    if count == 0:
        return
    for candidate in space.subnets(new_prefix=prefix):
        if any(candidate.overlaps(u) for u in used):
            continue
        yield candidate
        taken += 1
        if taken == count:
            return
    raise ValueError("subnets do not fit")


class IngressRule(ConfigModel):
    """An opening of the cluster nodes' security group beyond the two sites (e.g. a monitoring network)."""

    cidr: Cidr
    protocol: Literal["tcp", "udp", "icmp"] = "tcp"
    port: int | None = Field(default=None, ge=1, le=65535)
    port_max: int | None = Field(default=None, ge=1, le=65535)  # None: just `port`
    description: str = Field(default="", max_length=255)

    def port_range(self) -> tuple[int, int] | None:
        if self.port is None:
            return None
        return self.port, self.port_max or self.port

    def issues(self) -> Iterator[Issue]:
        if self.protocol == "icmp":
            if self.port is not None or self.port_max is not None:
                yield Issue(("port",), "icmp has no ports; remove port/port_max")
            return
        if self.port is None:
            yield Issue(("port",), f"{self.protocol} needs a port (and optionally port_max); opening every port is not allowed")
            return
        low, high = self.port_range() or (0, 0)
        if high < low:
            yield Issue(("port_max",), f"{high} is less than port ({low})")

    def opens(self, protocol: str, port: int) -> bool:
        """Whether this rule admits `protocol` (tcp or udp) traffic to `port`."""
        span = self.port_range()
        return self.protocol == protocol and span is not None and span[0] <= port <= span[1]


class OpenStackNetwork(ConfigModel):
    """The tenant network and subnet that the Magnum cluster and the VPN service attach to."""

    cidr: Cidr = "10.64.0.0/22"
    dns_nameservers: list[IPv4] = Field(default_factory=lambda: ["1.1.1.1", "9.9.9.9"], max_length=5)
    # None: the cloud's default MTU; set it lower when the underlay adds encapsulation.
    mtu: int | None = Field(default=None, ge=1280, le=9000)
    # Refused when not empty (issue 11): Magnum attaches its own node security groups and takes no other,
    # so there is no group these openings could act in (infra/components/openstack_network.py says why).
    ingress: list[IngressRule] = Field(default_factory=list, max_length=50)

    def issues(self) -> Iterator[Issue]:
        prefix = net(self.cidr).prefixlen
        if not 16 <= prefix <= 28:
            yield Issue(("cidr",), f"{self.cidr} has prefix /{prefix}; use a network between /16 and /28")
        yield from admin_port_issues(self.ingress, ("ingress",))
        if self.ingress:
            yield Issue(
                ("ingress",),
                "Magnum creates and attaches the nodes' security groups itself and accepts no other, so these openings "
                "would act nowhere; remove `ingress` (the nodes have no floating IPs; inference from other networks: "
                "serving.client_cidrs, the cluster API: magnum.deploy_access.runner_cidrs)",
            )


def admin_port_issues(rules: list[IngressRule], loc: tuple[str, ...]) -> Iterator[Issue]:
    """An admin port must not be open to the Internet, however the rules that open it are spelt.

    Judged per protocol and port over every rule that opens it, by the union of their CIDRs (see
    common.MAX_PUBLIC_ADDRESSES): 0.0.0.0/1 on 22 plus 128.0.0.0/1 on 20-25 is SSH from everywhere, like
    0.0.0.0/0 on 22. The message sits on the rule that admits the most and names the others.
    """
    for port, what in ADMIN_PORTS.items():
        for protocol in ("tcp", "udp"):
            opening = [(i, r.cidr) for i, r in enumerate(rules) if r.opens(protocol, port)]
            exposure = internet_exposure(c for _, c in opening)
            if exposure is None:
                continue
            first, cidr = max(opening, key=lambda o: public_addresses([o[1]]))
            others = [(i, c) for i, c in opening if i != first and not net(c).subnet_of(net(cidr))]  # those that add to it
            together = f" together with {', '.join(f'{loc[-1]}[{i}] ({c})' for i, c in others)}" if others else ""
            yield Issue(
                (*loc, first, "cidr"),
                f"{cidr}{together} would open {what} ({protocol} port {port}) to {exposure}; "
                "admin ports only from narrow CIDRs (e.g. a bastion's /32)",
            )


def address_space_issues(cfg: "StackConfig") -> Iterator[Issue]:
    """The stack's own networks (VPC, pod and service ranges, the OpenStack network, the networks behind
    the VPN) must be private address space; locations from the root."""
    for loc, cidr in cfg.all_networks():
        if "tunnel_inside_cidrs" in loc:
            continue  # link-local /30s inside 169.254.0.0/16, checked by VpnConfig
        if not is_private(cidr):
            yield Issue(
                loc,
                f"{cidr} is not private address space; the stack's networks are routed inside the sites and across the VPN, "
                f"where a public range would shadow that part of the Internet: use {PRIVATE_HINT}",
            )
