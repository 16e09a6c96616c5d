"""The program: config -> context (naming, tags, providers) -> components in dependency order -> outputs.

Each component takes the typed parts of the ones it depends on (no string-keyed lookups):

    network  ->  vpn (network)
    storage  ->  clusters (network, storage)  ->  serving (network, storage, clusters)

storage comes before the clusters: EKS encrypts its secrets with the stack key, and the key policy
names the clusters' roles by ARN (infra/components/policies.py), so it needs nothing from them.
"""

from __future__ import annotations

from infra.components import cluster, network, serving, storage, vpn
from infra.config import read_config
from infra.context import StackContext


def build(ctx: StackContext) -> None:
    """Every component of the stack, wired by their typed parts."""
    net = network.build(ctx)
    vpn.build(ctx, net)
    store = storage.build(ctx)
    clusters = cluster.build(ctx, net, store)
    serving.build(ctx, net, store, clusters)


def run() -> StackContext:
    ctx = StackContext(read_config())
    build(ctx)
    ctx.export_outputs()
    return ctx
