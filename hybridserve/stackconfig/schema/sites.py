"""The sites of a stack (`hybridserve:sites`): a list of typed entries discriminated by `kind`.

    hybridserve:sites:
      - {name: aws, kind: aws}                  # the AWS hub; its settings: hybridserve:aws (or inline here)
      - {name: openstack, kind: openstack}      # the OpenStack hub; its settings: hybridserve:openstack
      - name: plant-a                           # an edge site: hosts the operator owns, a spoke of the VPN
        kind: edge
        cidrs: [192.168.50.0/24]
        vpn_gateway_ip: 203.0.113.10
        links: [{to: aws, tunnel_inside_cidrs: [169.254.31.0/30, 169.254.31.4/30]}, {to: openstack}]
        hosts: [{name: cam-1, address: 192.168.50.10, ssh_user: ops, accelerator: cpu, disk_gb: 200}]

Without `hybridserve:sites` a stack has the two hub sites `aws` and `openstack` (the shape before
sites were a list), so existing stack files read as before. The VPN is hub and spokes: the hubs'
link (`hybridserve:vpn`, AWS VPN connection <-> Neutron VPNaaS) and one link per edge site and hub
it names in `links`, all with the one profile of `hybridserve:vpn` (schema/vpn.py, vpncheck.py).

A kind is one entry class here (in `Site` and `SITE_KINDS`) plus the component that builds it. Every kind that
is not a hub is a spoke and keeps the spoke shape, which the stack-wide checks, the cross-stack checks, the plan's
site table and the AWS peer group read without knowing the kind: `cidrs` (its networks), `vpn_gateway_ip`,
`links` (EdgeLink entries). The hub kinds (`HUB_SECTIONS`) are the two clouds the clusters run on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated, Literal, NamedTuple, Union

from pydantic import Field

from hybridserve.stackconfig.schema.common import PRIVATE_HINT, Cidr, ConfigModel, Issue, Label, Loc, is_private, net, not_public
from hybridserve.stackconfig.schema.network import IPv4

# Site names share the key space of the config sections in messages; a site may not take one of their names.
RESERVED_SITE_NAMES = frozenset({"vpn", "storage", "serving", "sites", "tags", "team", "environment", "cost_center"})
# The hubs' own section, by kind: their settings live there (hybridserve:aws, hybridserve:openstack).
HUB_SECTIONS: dict[str, str] = {"aws": "aws", "openstack": "openstack"}


class AwsSite(ConfigModel):
    """The AWS hub: its settings are the section `hybridserve:aws` (the loader moves inline settings there)."""

    kind: Literal["aws"] = "aws"
    name: Label = "aws"


class OpenStackSite(ConfigModel):
    """The OpenStack hub: its settings are the section `hybridserve:openstack`."""

    kind: Literal["openstack"] = "openstack"
    name: Label = "openstack"


class EdgeLink(ConfigModel):
    """A VPN link from an edge site to a hub site, named by the hub's `name`."""

    to: Label
    # AWS links only: the inside /30 of each of the VPN connection's two tunnels (unique per gateway, like the hubs' own).
    tunnel_inside_cidrs: list[Cidr] = Field(default_factory=list, max_length=2)
    # Keepers of the link's generated pre-shared keys (AWS: one per tunnel; OpenStack: the first): change one to rotate.
    psk_rotation: list[int] = Field(default_factory=lambda: [0, 0], min_length=2, max_length=2)


class EdgeHost(ConfigModel):
    """A host the operator owns at the site, reached over the site's VPN link (provisioned by infra/components/edge.py)."""

    name: Label
    address: IPv4
    ssh_user: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$")
    accelerator: Literal["cpu", "nvidia-gpu"] = "cpu"
    gpu_model: str | None = Field(default=None, min_length=1, max_length=32)  # e.g. "L4"; nvidia-gpu only
    disk_gb: int = Field(default=100, ge=20, le=100_000)

    def issues(self) -> Iterator[Issue]:
        if self.accelerator == "nvidia-gpu" and self.gpu_model is None:
            yield Issue(("gpu_model",), "accelerator nvidia-gpu needs the GPU model (e.g. L4, T4, A2)")
        if self.accelerator == "cpu" and self.gpu_model is not None:
            yield Issue(("gpu_model",), f"{self.gpu_model!r} is set but accelerator is cpu; set accelerator: nvidia-gpu or remove gpu_model")


class EdgeSlo(ConfigModel):
    """What the per-host gate checks at an edge site: mostly p99 latency at low concurrency."""

    max_p99_ms: float = Field(default=100.0, gt=0, le=10_000)
    concurrency: int = Field(default=1, ge=1, le=16)
    min_throughput: float | None = Field(default=None, gt=0, le=1_000_000)
    max_error_rate: float = Field(default=0.0, ge=0, lt=1)


class EdgeModel(ConfigModel):
    """Which variant of a model an edge site serves and what it must keep."""

    # "full": the model as published; otherwise the name of a compressed variant (a model whose config.pbtxt
    # has the parameter `variant_of` naming this model, e.g. text_encoder_int8).
    variant: str = Field(default="full", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    # Largest accuracy drop against the full model the variant may show (absolute, 0.01 = one point); full: 0.
    max_accuracy_drop: float = Field(default=0.0, ge=0, le=1)
    slo: EdgeSlo = EdgeSlo()

    def issues(self) -> Iterator[Issue]:
        if self.variant != "full" and "max_accuracy_drop" not in self.model_fields_set:
            yield Issue(("max_accuracy_drop",), f"variant {self.variant!r} is compressed: state the accuracy bound it must keep (e.g. max_accuracy_drop: 0.01)")


class EdgeSite(ConfigModel):
    """Hosts the operator owns near where data is produced, a spoke linked to one or both hubs."""

    kind: Literal["edge"]
    name: Label
    # The site's networks (routed across its VPN links); private address space, distinct from every other site's.
    cidrs: list[Cidr] = Field(min_length=1, max_length=10)
    # The public address of the site's IPsec gateway (the AWS customer gateway and the Neutron peer).
    vpn_gateway_ip: IPv4
    links: list[EdgeLink] = Field(default_factory=list, max_length=2)
    hosts: list[EdgeHost] = Field(default_factory=list, max_length=100)
    # Networks allowed to call inference on the hosts (the host firewall admits only these); the hubs' networks
    # reach the hosts over the VPN anyway for publication and the gate.
    inference_cidrs: list[Cidr] = Field(default_factory=list, max_length=20)
    # The kit's edge runtime release installed on the hosts (a change is a rolling restart, one host at a time).
    runtime_version: str = Field(default="1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    # Per model (by name): the variant to serve and its edge objectives. Empty: every model, full, default SLOs.
    models: dict[str, EdgeModel] = Field(default_factory=dict)
    # Triton's ports on the hosts (clients and `hybridserve edge status` use them; the firewall admits them).
    http_port: int = Field(default=8000, ge=1024, le=65535)
    grpc_port: int = Field(default=8001, ge=1024, le=65535)
    metrics_port: int = Field(default=8002, ge=1024, le=65535)

    def issues(self) -> Iterator[Issue]:
        if not self.links:
            yield Issue(("links",), "an edge site needs a VPN link to at least one hub site (e.g. links: [{to: aws, tunnel_inside_cidrs: [...]}])")
        seen_to: dict[str, int] = {}
        for i, link in enumerate(self.links):
            if link.to in seen_to:
                yield Issue(("links", i, "to"), f"{link.to!r} is linked twice (links[{seen_to[link.to]}]); one link per hub")
            seen_to.setdefault(link.to, i)
        if not_public(f"{self.vpn_gateway_ip}/32"):
            yield Issue(("vpn_gateway_ip",), f"{self.vpn_gateway_ip} is not a public address; the hubs reach the site's IPsec gateway over the Internet")
        for i, cidr in enumerate(self.cidrs):
            for j in range(i):
                if net(cidr).overlaps(net(self.cidrs[j])):
                    yield Issue(("cidrs", i), f"{cidr} overlaps cidrs[{j}] ({self.cidrs[j]})")
        names: dict[str, int] = {}
        addresses: dict[str, int] = {}
        for i, host in enumerate(self.hosts):
            if host.name in names:
                yield Issue(("hosts", i, "name"), f"{host.name!r} is already hosts[{names[host.name]}]; host names must be unique in a site")
            names.setdefault(host.name, i)
            if host.address in addresses:
                yield Issue(("hosts", i, "address"), f"{host.address} is already hosts[{addresses[host.address]}]'s address")
            addresses.setdefault(host.address, i)
            ip = ipaddress.IPv4Address(host.address)
            inside = [c for c in self.cidrs if ip in net(c)]
            if not inside:
                yield Issue(("hosts", i, "address"), f"{host.address} is outside the site's networks ({', '.join(self.cidrs)}); hosts are reached over the VPN, inside them")
            elif ip in (net(inside[0]).network_address, net(inside[0]).broadcast_address) and net(inside[0]).prefixlen < 31:
                yield Issue(("hosts", i, "address"), f"{host.address} is the network or broadcast address of {inside[0]}")
        seen_ports: dict[int, str] = {}
        for key, port in (("http_port", self.http_port), ("grpc_port", self.grpc_port), ("metrics_port", self.metrics_port)):
            if port in seen_ports:
                yield Issue((key,), f"{port} is already {seen_ports[port]}; Triton's HTTP, gRPC and metrics ports must differ")
            seen_ports.setdefault(port, key)
        for i, cidr in enumerate(self.inference_cidrs):
            if not is_private(cidr):
                yield Issue(("inference_cidrs", i), f"{cidr} is not private address space; inference is admitted from private networks only ({PRIVATE_HINT})")


Site = Annotated[Union[AwsSite, OpenStackSite, EdgeSite], Field(discriminator="kind")]
SITE_KINDS: dict[str, type[ConfigModel]] = {"aws": AwsSite, "openstack": OpenStackSite, "edge": EdgeSite}


def default_sites() -> list:
    return [AwsSite(), OpenStackSite()]


class VpnLink(NamedTuple):
    """One link of the VPN: a spoke (or the OpenStack hub) to a hub; `loc` is where it is declared."""

    a: str  # site name: the OpenStack hub for the hubs' link, else the edge site
    b: str  # site name of the hub it links to
    loc: Loc
    tunnel_inside_cidrs: tuple[str, ...]
    psk_rotation: tuple[int, ...]
