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

import base64
import binascii
import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal, NamedTuple, Union

from pydantic import AfterValidator, Field

from hybridserve.stackconfig.schema.common import PRIVATE_HINT, Cidr, ConfigModel, Issue, Label, Loc, is_private, net, not_public
from hybridserve.stackconfig.schema.network import IPv4

if TYPE_CHECKING:  # pragma: no cover
    from hybridserve.stackconfig.schema.stack import StackConfig

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


# SSH host key types pulumi-command's connection accepts as `hostKey` (golang.org/x/crypto/ssh ParseAuthorizedKey,
# pulumi-command 1.2.1 provider/pkg/provider/remote/connection.go, read 2026-12-01); ssh-dss is left out: OpenSSH
# disabled DSA host keys by default in 7.0 (2015) and removed DSA in 9.8 (2024).
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
HOST_KEY_HINT = "the host's public key line, e.g. the content of /etc/ssh/ssh_host_ed25519_key.pub ('ssh-ed25519 AAAAC3Nza...')"


def _check_host_key(value: str) -> str:
    """An authorized_keys-format public key line: TYPE BASE64 [comment], the blob's own type naming TYPE (what
    ParseAuthorizedKey checks before the key itself); returned as `TYPE BASE64` (a comment plays no part)."""
    parts = value.strip().split()
    if len(parts) < 2:
        raise ValueError(f"expected {HOST_KEY_HINT}")
    kind, blob = parts[0], parts[1]
    if kind not in HOST_KEY_TYPES:
        raise ValueError(f"{kind[:40]!r} is not an SSH host key type; expected one of {', '.join(HOST_KEY_TYPES)} ({HOST_KEY_HINT})")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the key after {kind} is not base64 ({HOST_KEY_HINT})") from None
    # SSH wire format (RFC 4253 section 6.6): a uint32 length, then the key type again.
    n = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else -1
    if n < 0 or raw[4:4 + n] != kind.encode() or len(raw) <= 4 + n:
        raise ValueError(f"the base64 key is not a {kind} public key (a truncated or mistyped line?); expected {HOST_KEY_HINT}")
    return f"{kind} {blob}"


HostKey = Annotated[str, AfterValidator(_check_host_key)]


class EdgeHost(ConfigModel):
    """A host the operator owns at the site, reached over the site's VPN link (provisioned by infra/components/edge.py)."""

    name: Label
    address: IPv4
    ssh_user: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$")
    accelerator: Literal["cpu", "nvidia-gpu"] = "cpu"
    gpu_model: str | None = Field(default=None, min_length=1, max_length=32)  # e.g. "L4"; nvidia-gpu only
    disk_gb: int = Field(default=100, ge=20, le=100_000)
    # The host's SSH public key: `pulumi up` connects only when the host presents it (pulumi-command's `hostKey`);
    # without it the host key is not checked at all (required in prod environments: edge_deploy_issues).
    host_key: HostKey | None = Field(default=None, max_length=16_384)

    def issues(self) -> Iterator[Issue]:
        if self.accelerator == "nvidia-gpu" and self.gpu_model is None:
            yield Issue(("gpu_model",), "accelerator nvidia-gpu needs the GPU model (e.g. L4, T4, A2)")
        if self.accelerator == "cpu" and self.gpu_model is not None:
            yield Issue(("gpu_model",), f"{self.gpu_model!r} is set but accelerator is cpu; set accelerator: nvidia-gpu or remove gpu_model")


class SshProxy(ConfigModel):
    """A jump host `pulumi up` reaches the site's hosts through (pulumi-command's `proxy`), with the same deploy key:
    for a site linked only to the hub the runner is not in. It sits in a linked hub's networks; the runner reaches
    it over the hubs' own VPN link."""

    address: IPv4
    user: str = Field(min_length=1, max_length=32, pattern=r"^[a-z_][a-z0-9_-]*$")
    port: int = Field(default=22, ge=1, le=65535)
    host_key: HostKey | None = Field(default=None, max_length=16_384)


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
    # Networks allowed to SSH to the hosts besides the deploy runners, e.g. the site's LAN for its operators
    # (the host firewall drops SSH from anywhere else). Private address space.
    admin_cidrs: list[Cidr] = Field(default_factory=list, max_length=20)
    # Where `pulumi up` runs its SSH commands to the hosts from, when not the clusters' private runners
    # (aws.eks / openstack.magnum deploy_access via: private_network): e.g. a runner inside this site's networks,
    # or the private network of a runner whose clusters' deploy path is public. See edge_deploy_issues.
    deployer_cidrs: list[Cidr] = Field(default_factory=list, max_length=10)
    # A jump host in a linked hub's networks that `pulumi up` reaches the hosts through (the runner is in the other hub).
    ssh_proxy: SshProxy | None = None
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
        for key in ("inference_cidrs", "admin_cidrs", "deployer_cidrs"):
            what = {"inference_cidrs": "inference is", "admin_cidrs": "SSH is", "deployer_cidrs": "SSH is"}[key]
            for i, cidr in enumerate(getattr(self, key)):
                if not is_private(cidr):
                    yield Issue((key, i), f"{cidr} is not private address space; {what} admitted from private networks only ({PRIVATE_HINT})")


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


# --- checks that need the whole stack (hooked into StackConfig.issues / warnings) -----------------------------


def deployer_networks(cfg: "StackConfig", site: EdgeSite) -> list[tuple[Loc, str]]:
    """Where `pulumi up` SSHes to the site's hosts from, by the key that says so: the site's `deployer_cidrs`, else
    the clusters' private runners (a public deploy path names egress addresses, which say nothing of where the
    runner is). Locations from the root, except the site's own (relative to the site)."""
    if site.deployer_cidrs:
        return [(("deployer_cidrs", j), c) for j, c in enumerate(site.deployer_cidrs)]
    found: list[tuple[Loc, str]] = []
    for loc, access in ((("aws", "eks"), cfg.aws.eks.deploy_access), (("openstack", "magnum"), cfg.openstack.magnum.deploy_access)):
        if access is not None and access.via == "private_network":
            found += [((*loc, "deploy_access", "runner_cidrs", j), c) for j, c in enumerate(access.runner_cidrs)]
    firsts: dict[str, tuple[Loc, str]] = {}
    for loc, cidr in found:
        firsts.setdefault(cidr, (loc, cidr))
    return list(firsts.values())


def ssh_sources(cfg: "StackConfig", site: EdgeSite) -> list[str]:
    """What the host firewall admits for SSH besides the linked hubs' networks: where `pulumi up` connects from (its
    jump host when the site has one, else the runner's networks) and the site's admins."""
    deployer = [f"{site.ssh_proxy.address}/32"] if site.ssh_proxy else [c for _, c in deployer_networks(cfg, site)]
    return list(dict.fromkeys([*deployer, *site.admin_cidrs]))


def _hubs_holding(cfg: "StackConfig", hubs: dict[str, str], cidr: str) -> list[str]:
    return [h for h in hubs if any(net(cidr).subnet_of(net(c)) for c in cfg.site_networks(h))]


def edge_deploy_issues(cfg: "StackConfig") -> Iterator[Issue]:
    """Every edge site must be reachable over SSH from where `pulumi up` runs (its remote commands are the hosts'
    provisioning): the runner sits in the site's own networks or in the networks of a hub the site is linked to (a
    spoke's VPN link carries its hub's networks only: traffic from the other hub is not routed to the site), or
    `ssh_proxy` names a jump host in a linked hub that the runner reaches over the hubs' link. In prod environments
    every host (and the jump host) pins its SSH host key. Locations from the root."""
    from hybridserve.stackconfig.schema.stack import format_loc
    from hybridserve.stackconfig.vpncheck import PROD_ENVIRONMENTS

    hubs = {s.name: s.kind for s in cfg.sites if s.kind in HUB_SECTIONS}
    for i, site in cfg.edge_sites():
        here = ("sites", i)
        linked = [link.to for link in site.links if link.to in hubs]
        networks = deployer_networks(cfg, site)
        how = (f"link the site to the runner's hub in {format_loc((*here, 'links'))}, set {format_loc((*here, 'ssh_proxy'))} to a jump host "
               f"in a linked hub ({{address: ..., user: ...}}), or list the runner's private network in {format_loc((*here, 'deployer_cidrs'))}")
        if not networks:
            yield Issue((*here, "deployer_cidrs"),
                        "is not set and no cluster has a private deploy path (deploy_access via: private_network), so where `pulumi up` "
                        "runs its SSH commands to the site's hosts from is not known; list the runner's private network here (inside "
                        "this site's networks or a linked hub's), or give the clusters a private deploy path")
        proxy = site.ssh_proxy
        if proxy is not None and not set(_hubs_holding(cfg, hubs, f"{proxy.address}/32")) & set(linked):
            yield Issue((*here, "ssh_proxy", "address"),
                        f"{proxy.address} is not in the networks of a hub this site is linked to ({', '.join(linked) or 'none'}); the jump "
                        "host must sit where the site's VPN link reaches")
        for loc, cidr in networks:
            own = loc[0] == "deployer_cidrs"
            said = "" if own else f" (`pulumi up` runs there: {format_loc(loc)})"
            inside = _hubs_holding(cfg, hubs, cidr)
            if proxy is not None:
                if not inside:  # the hubs reach each other over their own link: any hub's network reaches the jump host
                    yield Issue((*here, *loc) if own else (*here, "ssh_proxy"),
                                f"{cidr}{said} is in no hub's networks, so it does not reach the jump host {proxy.address} over the VPN")
                continue
            if any(net(cidr).subnet_of(net(c)) for c in site.cidrs) or set(inside) & set(linked):
                continue
            where = (*here, *loc) if own else (*here, "links")
            if not inside:
                yield Issue(where, f"{cidr}{said} is in none of this site's networks nor a linked hub's, so the site's VPN links do not "
                                   f"carry its SSH to the hosts; {how}")
                continue
            hub = inside[0]
            link = f"{{to: {hub}, tunnel_inside_cidrs: [...]}}" if hubs[hub] == "aws" else f"{{to: {hub}}}"
            yield Issue(where, f"{cidr}{said} is in the {hub} hub's networks, but site {site.name!r} is linked to "
                               f"{', '.join(linked) or 'no hub'} only, and a spoke's link carries its hub's networks only: the hosts are "
                               f"unreachable from there; add the link {link}, set {format_loc((*here, 'ssh_proxy'))} to a jump host in "
                               f"{', '.join(linked) or 'a linked hub'}, or list the runner's private network in {format_loc((*here, 'deployer_cidrs'))}")
        if cfg.environment in PROD_ENVIRONMENTS:
            for j, host in enumerate(site.hosts):
                if host.host_key is None:
                    yield Issue((*here, "hosts", j, "host_key"), _host_key_message(host.name, host.address, prod=True))
            if proxy is not None and proxy.host_key is None:
                yield Issue((*here, "ssh_proxy", "host_key"), _host_key_message("the jump host", proxy.address, prod=True))


def _host_key_message(name: str, address: str, *, prod: bool) -> str:
    start = "is required in prod environments" if prod else "is not set"
    who = name if name == "the jump host" else f"host {name!r}"
    return (f"{start}: without it `pulumi up` does not check {who}'s SSH host key, so whoever answers at {address} gets "
            f"the deployment (and the hub's read key); set it to {HOST_KEY_HINT} (ssh-keyscan -t ed25519 {address}, "
            "checked against the host's console)")


def edge_deploy_warnings(cfg: "StackConfig") -> Iterator[Issue]:
    from hybridserve.stackconfig.edgemodels import hub_kind
    from hybridserve.stackconfig.vpncheck import PROD_ENVIRONMENTS

    container = cfg.bucket_names()[("storage", "swift_container")]
    for i, site in cfg.edge_sites():
        if hub_kind(cfg, site) == "openstack":
            # Swift authorizes reads per container (its read ACL, docs.openstack.org/swift/latest/overview_acl.html, read
            # 2026-12-01) and its S3 API has no per-prefix policies: the site's key cannot be narrowed to its prefix.
            who = ("the Triton reader's EC2 credential" if cfg.storage.triton_swift_identity == "reader-user"
                   else "the deployer's EC2 credential (storage.triton_swift_identity: deployer), which also writes")
            yield Issue(("sites", i, "links"),
                        f"site {site.name!r} reads from Swift (linked to no AWS hub) with {who}, which reads the whole container "
                        f"{container!r}: the clusters' publications and every edge site's prefix, not only its own (Swift's read ACLs "
                        "are per container); link it to the aws hub to read with an IAM user limited to its own prefix")
    if cfg.environment in PROD_ENVIRONMENTS:
        return  # missing host keys are refused in edge_deploy_issues
    for i, site in cfg.edge_sites():
        for j, host in enumerate(site.hosts):
            if host.host_key is None:
                yield Issue(("sites", i, "hosts", j, "host_key"), _host_key_message(host.name, host.address, prod=False))
        if site.ssh_proxy is not None and site.ssh_proxy.host_key is None:
            yield Issue(("sites", i, "ssh_proxy", "host_key"), _host_key_message("the jump host", site.ssh_proxy.address, prod=False))


def gpu_pin_key(site: str) -> str:
    """The edge_pins key of a site's GPU rendering (its nvidia-gpu hosts read it: infra/components/edge_sites.py)."""
    return f"{site}/gpu"


def edge_publication_keys(site: EdgeSite) -> list[str]:
    """The site's edge publications, as serving.publication.edge_pins names them: the CPU rendering, the GPU one."""
    return [site.name, *([gpu_pin_key(site.name)] if any(h.accelerator == "nvidia-gpu" for h in site.hosts) else [])]


def edge_pin_issues(cfg: "StackConfig") -> Iterator[Issue]:
    """A rollback pins the clusters and every edge site together: `serving.publication.pin_version` and, per edge site,
    `edge_pins.<site>` (the edge rendering has its own version names). One without the other would leave the edge hosts
    on model_repo/'s content while the clusters serve the pinned version, or the reverse. Locations from the root."""
    pub = cfg.serving.publication
    loc = ("serving", "publication", "edge_pins")
    edge = [key for _, site in cfg.edge_sites() for key in edge_publication_keys(site)]
    for name in pub.edge_pins:
        if name not in edge:
            yield Issue((*loc, name), f"{name!r} is not an edge publication of this stack (an edge site, or <site>/gpu for its GPU "
                                      f"hosts' rendering; here: {', '.join(edge) or 'none'})")
    if pub.pin_version is None:
        if pub.edge_pins:
            yield Issue(loc, "is set without serving.publication.pin_version; the edge sites follow the clusters' pin: set both "
                             "(hybridserve ci rollback does) or remove both")
        return
    missing = [name for name in edge if name not in pub.edge_pins]
    if missing:
        yield Issue(loc, f"has no pin for {', '.join(missing)}, but pin_version {pub.pin_version} is set: those edge hosts would serve "
                         "model_repo/ while the clusters serve the pinned version; `hybridserve ci rollback` pins both, or set "
                         f"edge_pins.<site> to the edge version published with {pub.pin_version} (stack output edgeHosts.<site>.publication.kept)")
