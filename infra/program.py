"""The program: config -> context (naming, tags, providers) -> components in dependency order -> outputs.

Each component takes the typed parts of the ones it depends on (no string-keyed lookups):

    network  ->  vpn (network)  ->  edge_links (network, vpn): one EdgeSiteHandle per edge site
    storage  ->  clusters (network, storage)  ->  serving (network, storage, clusters)
    storage, edge_links  ->  edge_sites: per edge site its publication, hub reader and EdgeHosts

storage comes before the clusters: EKS encrypts its secrets with the stack key, and the key policy
names the clusters' roles by ARN (infra/components/policies.py), so it needs nothing from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from infra.components import cluster, edge_links, edge_sites, network, serving, storage, vpn
from infra.components.edge_links import EdgeSiteHandle
from infra.config import read_config
from infra.context import StackContext


@dataclass
class Built:
    """What `build` made that later wiring takes; `edge_hosts`: per edge site its publication, reader and EdgeHosts."""

    network: network.NetworkParts
    vpn: vpn.SiteToSiteVpn
    edge_sites: list[EdgeSiteHandle]
    edge_hosts: list[edge_sites.EdgeSiteParts] = field(default_factory=list)


def build(ctx: StackContext) -> Built:
    """Every component of the stack, wired by their typed parts."""
    serving.check_gate_time(ctx.config)  # reads the model repository: before anything is registered
    net = network.build(ctx)
    hub_vpn = vpn.build(ctx, net)
    # Edge sites: their VPN links; their hosts are provisioned from these handles once the storage exists.
    handles = edge_links.build(ctx, net, hub_vpn)
    store = storage.build(ctx)
    clusters = cluster.build(ctx, net, store)
    serving.build(ctx, net, store, clusters)
    hosts = edge_sites.build(ctx, store, handles)
    return Built(net, hub_vpn, handles, hosts)


def run() -> StackContext:
    ctx = StackContext(read_config())
    build(ctx)
    ctx.export_outputs()
    return ctx
