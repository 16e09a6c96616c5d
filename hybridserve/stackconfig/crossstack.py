"""Checks across every stack in `stacks/`: what one stack file alone cannot tell.

- S3 bucket names are global (per AWS partition): no two stacks may create an S3 bucket of the same
  name, model or access-log bucket, explicit or derived (the names of `StackConfig.bucket_names`,
  which the program creates).
- Swift containers are per cloud: no two stacks on the same OpenStack cloud and region may share one.
- Stacks in the same `vpn.peering_group` meet over the VPN: their routed networks (VPC, EKS pod
  CIDR, OpenStack network) must not overlap, or routes become ambiguous.
- Edge sites' gateways linked to AWS: one customer gateway per address and ASN in an account and region, so
  two stacks there may not link the same gateway address with the same `vpn.customer_asn`.
- EBS encryption by default is one setting per AWS account and region: at most one stack there may
  own it (`storage.ebs_default_encryption: owner`), or destroying one would turn it off for the
  others. Stacks name their account in `aws.account_id`; two owners in one region conflict unless
  both name accounts and the accounts differ (nothing else in a stack file tells accounts apart).
"""

from __future__ import annotations

from collections.abc import Mapping

from hybridserve.stackconfig.schema.common import net
from hybridserve.stackconfig.schema.stack import StackConfig, format_loc
from hybridserve.stackconfig.schema.storage import S3_BUCKET_KEYS, s3_partition


def cross_stack_problems(stacks: Mapping[str, StackConfig], *, only: set[str] | None = None) -> list[str]:
    """Problems as one-line messages; `stacks` maps a source (file path) to its valid config.

    `only`: report only problems that involve these sources (planning one stack).
    """
    problems: list[tuple[set[str], str]] = []
    items = list(stacks.items())

    s3: dict[tuple, tuple[str, tuple]] = {}
    swift: dict[tuple, tuple[str, tuple]] = {}
    for source, cfg in items:
        for loc, name in cfg.bucket_names().items():
            if loc in S3_BUCKET_KEYS:  # the model bucket and its access-log bucket alike
                partition = s3_partition(cfg.aws.region)
                first = s3.setdefault((partition, name), (source, loc))
                scope = f"S3 bucket names are global (in AWS partition {partition})"
            else:
                key = (cfg.openstack.cloud, cfg.openstack.region, name)
                first = swift.setdefault(key, (source, loc))
                scope = f"Swift container names must be unique on cloud {cfg.openstack.cloud!r}"
            if first[0] != source:
                problems.append(({source, first[0]}, f"{source}: {format_loc(loc)}: {name!r} is already used by {first[0]} ({format_loc(first[1])}); {scope}, pick another name"))

    for i, (source, cfg) in enumerate(items):
        for other_source, other in items[:i]:
            if cfg.vpn.peering_group != other.vpn.peering_group:
                continue
            for loc, cidr in cfg.vpn_reachable_networks():
                for other_loc, other_cidr in other.vpn_reachable_networks():
                    if net(cidr).overlaps(net(other_cidr)):
                        problems.append((
                            {source, other_source},
                            f"{source}: {format_loc(loc)}: {cidr} overlaps {format_loc(other_loc)} ({other_cidr}) of {other_source}; "
                            f"stacks in peering group {cfg.vpn.peering_group!r} meet over the VPN, so their networks must be distinct "
                            "(or put them in different hybridserve:vpn.peering_group)",
                        ))

    # An AWS customer gateway is one per address and ASN in an account and region: a second stack "creating" it gets
    # the first one's, and destroying either would pull it from under the other's VPN connection.
    gateways: dict[tuple, tuple[str, tuple]] = {}
    for source, cfg in items:
        aws_hub = cfg.hub("aws")
        for i, site in cfg.spokes():
            if aws_hub is None or not any(link.to == aws_hub.name for link in site.links):
                continue
            key = (cfg.aws.account_id, cfg.aws.region, site.vpn_gateway_ip, cfg.vpn.customer_asn)
            first = gateways.setdefault(key, (source, ("sites", i, "vpn_gateway_ip")))
            if first[0] != source:
                problems.append((
                    {source, first[0]},
                    f"{source}: {format_loc(('sites', i, 'vpn_gateway_ip'))}: {site.vpn_gateway_ip} is also the gateway of an edge site of {first[0]} "
                    f"({format_loc(first[1])}) linked to AWS in region {cfg.aws.region}; AWS keeps one customer gateway per address and ASN, "
                    "so the stacks would share (and destroy) one: give the edge site one stack, or set a different vpn.customer_asn",
                ))

    ebs_owners: list[tuple[str, StackConfig]] = []
    loc = ("storage", "ebs_default_encryption")
    for source, cfg in items:
        if cfg.storage.ebs_default_encryption != "owner":
            continue
        for other_source, other in ebs_owners:
            mine, theirs = cfg.aws.account_id, other.aws.account_id
            if cfg.aws.region != other.aws.region or (mine and theirs and mine != theirs):
                continue
            where = f"account {mine} and region {cfg.aws.region}" if mine and mine == theirs else f"region {cfg.aws.region}"
            hint = "" if mine and theirs else f" (if they deploy to different AWS accounts, set {format_loc(('aws', 'account_id'))} in both)"
            problems.append((
                {source, other_source},
                f"{source}: {format_loc(loc)}: 'owner', but {other_source} owns EBS encryption by default in {where} too; "
                "it is one setting per AWS account and region (destroying one owner would turn it off for the other): "
                f"keep 'owner' on one stack and set 'unmanaged' on the others{hint}",
            ))
        ebs_owners.append((source, cfg))

    relevant = [msg for involved, msg in problems if only is None or involved & only]
    return list(dict.fromkeys(relevant))
