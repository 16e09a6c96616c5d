"""The program's components: one ComponentResource per thing a user names (network, VPN, storage, GPU
cluster, model publication, Triton service, ...), each with a typed args dataclass.

`infra/program.py` builds them in dependency order and passes each the typed parts it needs from the
ones before (`NetworkParts`, `StorageParts`, `ClusterParts`): no string-keyed lookups, so a missing
or misspelt dependency is an import or type error, not a runtime surprise.
"""

from __future__ import annotations


def type_token(area: str, name: str) -> str:
    """The component type token convention: hybridserve:<area>:<Name>."""
    return f"hybridserve:{area}:{name}"
