"""Component plug-ins of the program, built in the order of `COMPONENTS` (see README.md here).

Each entry is "module:function"; the function takes the StackContext and builds one area:

    def build(ctx: StackContext) -> None

Builders run in list order, so a builder may `ctx.get()` what an earlier one `ctx.put()`.
Add one line per component; keep the order network -> vpn -> storage -> cluster -> serving
(storage first: EKS encrypts its secrets with the stack key).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.context import StackContext

Builder = Callable[["StackContext"], None]

COMPONENTS: list[str] = [
    "infra.components.network:build",      # AWS VPC + OpenStack network (issue 6)
    "infra.components.vpn:build",          # IPsec site-to-site VPN (issue 6)
    # storage before cluster: EKS encrypts secrets with the stack key; the key policy names the
    # cluster's roles by ARN (infra/components/policies.py), so it needs nothing from the cluster.
    "infra.components.storage:build",      # KMS key, S3 SSE-KMS model + log buckets, Swift (issue 7)
    "infra.components.cluster:build",      # EKS + Magnum, GPU node pools, k8s providers (issue 7)
]


def load_builders(entries: list[str] | None = None) -> list[Builder]:
    builders: list[Builder] = []
    for entry in COMPONENTS if entries is None else entries:
        module_name, _, func_name = entry.partition(":")
        module = importlib.import_module(module_name)
        builders.append(getattr(module, func_name or "build"))
    return builders


def type_token(area: str, name: str) -> str:
    """The component type token convention: hybridserve:<area>:<Name>."""
    return f"hybridserve:{area}:{name}"
