"""The root of the stack configuration: one `StackConfig` per team and environment.

Config keys (stack file `stacks/Pulumi.<team>-<env>.yaml`, `pulumi config set`):

    hybridserve:team          str, required      hybridserve:aws        object (AwsConfig)
    hybridserve:environment   str, required      hybridserve:openstack  object (OpenStackConfig)
    hybridserve:cost_center   str, required      hybridserve:vpn        object (VpnConfig)
    hybridserve:tags          object, optional   hybridserve:storage    object (StorageConfig)
    aws:region                str (AWS provider) hybridserve:serving    object (ServingConfig)
    hybridserve:sites         list of sites (schema/sites.py): the hubs aws and openstack, edge sites
    hybridserve:openstack_password, hybridserve:vpn_psk   optional secrets (SECRET_KEYS)
    hybridserve:edge_ssh_private_key                      secret, required with edge sites (the hosts' deploy key)

Nested values are set with `--path`, e.g.
    pulumi config set --path 'hybridserve:aws.eks.gpu_pools[0].max_size' 4
    pulumi config set --secret hybridserve:vpn_psk '...'

Secrets never enter this model: the program reads them with `pulumi.Config.get_secret`, so their
values stay Pulumi secrets; offline tools only learn whether they are set (`secrets_set`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES, AWS_REGIONS, OPENSTACK_FLAVORS, MachineType, brief
from hybridserve.stackconfig.schema.access import access_issues
from hybridserve.stackconfig.schema.clusters import EksCluster, MagnumCluster, NodeCounts, gpu_in_cpu_pool
from hybridserve.stackconfig.schema.common import ConfigModel, Issue, Label, Loc, Tags, net
from hybridserve.stackconfig.schema.network import AwsVpc, OpenStackNetwork
from hybridserve.stackconfig.schema.serving import ServingConfig, bounded, parse_quantity
from hybridserve.stackconfig.schema.sites import (
    HUB_SECTIONS,
    RESERVED_SITE_NAMES,
    EdgeSite,
    Site,
    VpnLink,
    default_sites,
    edge_deploy_issues,
    edge_deploy_warnings,
    edge_pin_issues,
)
from hybridserve.stackconfig.schema.storage import StorageConfig, check_bucket_name
from hybridserve.stackconfig.schema.vpn import VpnConfig

PROJECT = "hybridserve"
# edge_ssh_private_key: the deploy key the program reaches edge hosts with (required when the stack has edge sites).
SECRET_KEYS: tuple[str, ...] = ("openstack_password", "vpn_psk", "edge_ssh_private_key")
EDGE_SSH_KEY = "edge_ssh_private_key"
# An Availability Zone ID (use1-az1), which the VPC's subnets do not take: they take zone names (us-east-1a).
_AZ_ID = re.compile(r"^[a-z]{3,5}\d-az\d+$")
MANAGED_TAG_KEYS = ("project", "team", "environment", "cost-center", "managed-by", "stack")
# AWS takes 50 user tags per resource; the managed tags and up to 4 the kit adds itself (a subnet's Name, tier and
# two Kubernetes discovery tags) share them (tests/test_names.py plans a stack with this many).
MAX_USER_TAGS = 50 - len(MANAGED_TAG_KEYS) - 4


class FlavorSpec(ConfigModel):
    """A flavor of the team's OpenStack cloud, with its chargeback rate for the cost estimate."""

    vcpus: int = Field(ge=1, le=4096)
    memory_gib: Annotated[float, bounded(65536, "GiB")] = Field(gt=0)
    gpu_model: str | None = None
    gpu_count: int = Field(default=0, ge=0, le=16)
    gpu_memory_gib: Annotated[float, bounded(1024, "GiB per GPU")] = Field(default=0.0, ge=0)
    # Finite: an infinite or NaN rate would make the plan's cost estimate meaningless.
    usd_per_hour: Annotated[float, bounded(10_000, "USD per hour")] = Field(default=0.0, ge=0)

    def machine(self, name: str) -> MachineType:
        return MachineType(name, self.vcpus, self.memory_gib, self.gpu_model, self.gpu_count, self.gpu_memory_gib, self.usd_per_hour)


def _account_text(value: Any) -> Any:
    """An unquoted account id is a YAML number: read it as the digits it was written as; then 12 digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is not None and not (isinstance(value, str) and len(value) == 12 and value.isascii() and value.isdigit()):
        raise ValueError(f"{value!r} is not an AWS account id; expected its 12 digits, quoted (e.g. '012345678901')")
    return value


class AwsConfig(ConfigModel):
    # Filled from the provider key `aws:region`, which the AWS provider reads too.
    region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    # The AWS account the stack deploys to. None: not declared. Declared, the AWS provider refuses any
    # other account (allowed_account_ids), and the cross-stack checks tell stacks in different accounts apart.
    account_id: Annotated[str | None, BeforeValidator(_account_text)] = None
    vpc: AwsVpc = AwsVpc()
    eks: EksCluster = EksCluster()

    def issues(self) -> Iterator[Issue]:
        known = AWS_REGIONS.get(self.region)
        if known is None:
            yield Issue(("region",), f"{self.region!r} is not an AWS region the kit knows; known: {brief(sorted(AWS_REGIONS), 40)} (hybridserve/stackconfig/catalog.py AWS_REGIONS)")
        zones = known or ()
        for i, zone in enumerate(self.vpc.availability_zones):
            if _AZ_ID.match(zone):
                yield Issue(
                    ("vpc", "availability_zones", i),
                    f"{zone!r} is an Availability Zone ID; give zone names, e.g. {', '.join(zones[:3]) or self.region + 'a'} "
                    f"(`aws ec2 describe-availability-zones --region {self.region}` maps IDs to names for your account)",
                )
            elif not (zone.startswith(self.region) and len(zone) == len(self.region) + 1 and zone[-1].isalpha()):
                yield Issue(("vpc", "availability_zones", i), f"{zone!r} is not a zone of region {self.region}; its zones: {', '.join(zones) or self.region + 'a'}")
            elif known is not None and zone not in zones:
                yield Issue(("vpc", "availability_zones", i), f"{zone!r} does not exist in {self.region}; its zones: {', '.join(zones)}")
        if known is not None and not self.vpc.availability_zones:
            missing = [z for z in self.vpc.zones(self.region) if z not in zones]
            if missing:
                # The default takes the first letters a, b, c...; some regions skip one.
                yield Issue(
                    ("vpc", "az_count"),
                    f"{self.vpc.az_count} zones of {self.region} by default would include {', '.join(missing)}, which does not exist; "
                    f"list vpc.availability_zones from {', '.join(zones)}",
                )


class OpenStackConfig(ConfigModel):
    cloud: str = Field(default="openstack", min_length=1)  # entry in clouds.yaml
    region: str | None = None  # None: the cloud's default region
    external_network: str = Field(default="public", min_length=1)  # floating IPs / router gateway / VPN endpoint
    network: OpenStackNetwork = OpenStackNetwork()
    magnum: MagnumCluster = MagnumCluster()
    # Flavors of this cloud; they extend and override catalog.OPENSTACK_FLAVORS.
    flavor_catalog: dict[str, FlavorSpec] = Field(default_factory=dict)

    def flavors(self) -> dict[str, MachineType]:
        merged = dict(OPENSTACK_FLAVORS)
        merged.update({name: spec.machine(name) for name, spec in self.flavor_catalog.items()})
        return merged

    def issues(self) -> Iterator[Issue]:
        flavors = self.flavors()
        where = "hybridserve/stackconfig/catalog.py or hybridserve:openstack.flavor_catalog"
        for key in ("master_flavor", "worker_flavor"):
            name = getattr(self.magnum.template, key)
            if name not in flavors:
                yield Issue(("magnum", "template", key), f"{name!r} is not a known flavor; known: {brief(sorted(flavors), 30)} (declare it in {where})")
        cpu = sorted(n for n, m in flavors.items() if not m.is_gpu)
        for key in ("master_flavor", "worker_flavor"):
            m = flavors.get(getattr(self.magnum.template, key))
            if m is not None and m.is_gpu:
                # Masters and the default workers run the control plane and add-ons, untainted.
                yield Issue(("magnum", "template", key), gpu_in_cpu_pool(m, "flavor", cpu))
        gpu = sorted(n for n, m in flavors.items() if m.is_gpu)
        for i, pool in enumerate(self.magnum.gpu_pools):
            if pool.flavor not in flavors or not flavors[pool.flavor].is_gpu:
                yield Issue(("magnum", "gpu_pools", i, "flavor"), f"{pool.flavor!r} is not a known GPU flavor; known: {brief(gpu, 30)} (declare it in {where})")


class StackConfig(ConfigModel):
    team: Label
    environment: Label
    cost_center: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/=+@-]*$")
    tags: Tags = Field(default_factory=dict)
    # The sites, hubs and edge sites (schema/sites.py); the hubs' settings are the sections aws and openstack.
    sites: list[Site] = Field(default_factory=default_sites, min_length=2, max_length=50)
    aws: AwsConfig = AwsConfig()
    openstack: OpenStackConfig = OpenStackConfig()
    vpn: VpnConfig = VpnConfig()
    storage: StorageConfig = StorageConfig()
    serving: ServingConfig = ServingConfig()
    # Which of SECRET_KEYS the stack sets (their values are never held here).
    secrets_set: frozenset[str] = frozenset()

    # --- naming -----------------------------------------------------------------------------

    @property
    def stack_name(self) -> str:
        return f"{self.team}-{self.environment}"

    @property
    def prefix(self) -> str:
        return f"{PROJECT}-{self.team}-{self.environment}"

    def resource_name(self, thing: str) -> str:
        """Physical name of a cloud resource: <project>-<team>-<env>-<thing>."""
        return f"{self.prefix}-{thing}"

    def common_tags(self) -> dict[str, str]:
        """Tags on every resource: the user's tags, then the managed ones (which win)."""
        return {
            **self.tags,
            "project": PROJECT,
            "team": self.team,
            "environment": self.environment,
            "cost-center": self.cost_center,
            "managed-by": "pulumi",
            "stack": self.stack_name,
        }

    def bucket_names(self) -> dict[Loc, str]:
        """Every bucket/container name of the stack, explicit or derived, by the key that sets it."""
        return {
            ("storage", "model_bucket"): self.storage.model_bucket or self.resource_name("models"),
            ("storage", "swift_container"): self.storage.swift_container or self.resource_name("models"),
            ("storage", "access_logs", "bucket"): self.storage.access_logs.bucket or self.resource_name("access-logs"),
        }

    def kms_alias(self) -> str:
        return self.storage.kms.alias or f"alias/{self.prefix}"

    # --- sites and links -------------------------------------------------------------------

    def site(self, name: str) -> Site | None:
        return next((s for s in self.sites if s.name == name), None)

    def hub(self, kind: str) -> Site | None:
        """The hub site of `kind` (aws or openstack)."""
        return next((s for s in self.sites if s.kind == kind), None)

    def edge_sites(self) -> list[tuple[int, EdgeSite]]:
        """(index in `sites`, entry) of every edge site."""
        return [(i, s) for i, s in enumerate(self.sites) if isinstance(s, EdgeSite)]

    def spokes(self) -> list[tuple[int, Any]]:
        """(index, entry) of every site that is not a hub: a spoke has `cidrs`, `vpn_gateway_ip` and `links` (schema/sites.py)."""
        return [(i, s) for i, s in enumerate(self.sites) if s.kind not in HUB_SECTIONS]

    def links(self) -> list[VpnLink]:
        """Every link of the VPN, hub and spokes: the hubs' own (hybridserve:vpn), then each edge site's."""
        aws, os_ = self.hub("aws"), self.hub("openstack")
        found = []
        if aws is not None and os_ is not None:
            found.append(VpnLink(os_.name, aws.name, ("vpn",), tuple(self.vpn.tunnel_inside_cidrs), tuple(self.vpn.psk_rotation)))
        for i, site in self.spokes():
            for j, link in enumerate(site.links):
                found.append(VpnLink(site.name, link.to, ("sites", i, "links", j), tuple(link.tunnel_inside_cidrs), tuple(link.psk_rotation)))
        return found

    def site_networks(self, name: str) -> list[str]:
        """The networks of site `name` routed across the VPN."""
        site = self.site(name)
        if site is not None and site.kind not in HUB_SECTIONS:
            return list(site.cidrs)
        return [c for loc, c in self.vpn_reachable_networks() if _site_of(loc, self) == name]

    # --- networks ---------------------------------------------------------------------------

    def vpn_reachable_networks(self) -> list[tuple[Loc, str]]:
        """Networks routed across the VPN: unique within a stack and within a peering group."""
        found: list[tuple[Loc, str]] = [(("aws", "vpc", "cidr"), self.aws.vpc.cidr)]
        if self.aws.eks.pod_cidr:
            found.append((("aws", "eks", "pod_cidr"), self.aws.eks.pod_cidr))
        found.append((("openstack", "network", "cidr"), self.openstack.network.cidr))
        found += [(("vpn", "extra_openstack_cidrs", i), c) for i, c in enumerate(self.vpn.extra_openstack_cidrs)]
        found += [(("vpn", "extra_aws_cidrs", i), c) for i, c in enumerate(self.vpn.extra_aws_cidrs)]
        for i, site in self.spokes():
            found += [(("sites", i, "cidrs", j), c) for j, c in enumerate(site.cidrs)]
        return found

    def all_networks(self) -> list[tuple[Loc, str]]:
        """Every network of the stack, tunnel and cluster-internal ones included: no two may overlap.

        Tunnel inside CIDRs are link-local to one VPN connection and cluster service / overlay
        pod CIDRs never leave their cluster, so other stacks may reuse them.
        """
        return [
            *self.vpn_reachable_networks(),
            *((("vpn", "tunnel_inside_cidrs", i), c) for i, c in enumerate(self.vpn.tunnel_inside_cidrs)),
            *(((*link.loc, "tunnel_inside_cidrs", k), c) for link in self.links() if link.loc != ("vpn",) for k, c in enumerate(link.tunnel_inside_cidrs)),
            (("aws", "eks", "service_cidr"), self.aws.eks.service_cidr),
            (("openstack", "magnum", "pod_cidr"), self.openstack.magnum.pod_cidr),
            (("openstack", "magnum", "service_cidr"), self.openstack.magnum.service_cidr),
        ]

    # --- checks across sections -------------------------------------------------------------

    def issues(self) -> Iterator[Issue]:
        yield from self._site_issues()
        nets = self.all_networks()
        for i, (loc, cidr) in enumerate(nets):
            for other_loc, other in nets[:i]:
                if net(cidr).overlaps(net(other)):
                    yield Issue(loc, f"{cidr} overlaps {format_loc(other_loc)} ({other}); every network of a stack must be distinct")
        if len(self.tags) > MAX_USER_TAGS:
            yield Issue(("tags",), f"{len(self.tags)} tags; at most {MAX_USER_TAGS}: AWS allows 50 per resource, and the kit's own "
                                   f"tags ({', '.join(MANAGED_TAG_KEYS)}, and up to 4 on subnets) take the rest")
        for key in self.tags:
            if key in MANAGED_TAG_KEYS:
                yield Issue(("tags", key), f"{key!r} is set by the kit; remove it (managed tags: {', '.join(MANAGED_TAG_KEYS)})")
        for loc, name in self.bucket_names().items():
            if loc[-1] not in self.storage.model_fields_set:  # derived: explicit names are checked by the field
                try:
                    check_bucket_name(name)
                except ValueError as exc:
                    yield Issue(loc, f"the derived name {name!r} is not valid ({exc}); set it explicitly")
        from hybridserve.stackconfig.schema.network import address_space_issues  # checks across sections
        from hybridserve.stackconfig.schema.storage import bucket_issues

        yield from bucket_issues(self)
        yield from address_space_issues(self)
        yield from self._gpu_capacity()
        yield from self._openstack_addresses()
        yield from self._aws_subnet_addresses()
        yield from access_issues(self)
        yield from edge_deploy_issues(self)
        yield from edge_pin_issues(self)
        from hybridserve.stackconfig.vpncheck import stack_issues  # network/VPN checks across sections

        yield from stack_issues(self)

    def _site_issues(self) -> Iterator[Issue]:
        """Names unique, one hub of each kind, links from edge sites to hubs that exist."""
        from hybridserve.stackconfig.schema.vpn import inside_cidr_issues

        names: dict[str, int] = {}
        for i, site in enumerate(self.sites):
            if site.name in names:
                yield Issue(("sites", i, "name"), f"{site.name!r} is already the name of sites[{names[site.name]}]; site names must be unique")
            names.setdefault(site.name, i)
            if site.name in RESERVED_SITE_NAMES:
                yield Issue(("sites", i, "name"), f"{site.name!r} is a config section's name; name the site otherwise")
            elif site.name in HUB_SECTIONS and site.name != site.kind:
                yield Issue(("sites", i, "name"), f"{site.name!r} is the name of the {site.name} hub's section; name the {site.kind} site otherwise")
        for kind in HUB_SECTIONS:
            of_kind = [i for i, s in enumerate(self.sites) if s.kind == kind]
            if not of_kind:
                yield Issue(("sites",), f"no site of kind {kind!r}; a stack has one aws and one openstack hub site (e.g. - {{name: {kind}, kind: {kind}}})")
            for i in of_kind[1:]:
                yield Issue(("sites", i, "kind"), f"a second {kind!r} site (the first is sites[{of_kind[0]}]); a stack has one hub of each cloud kind")
        hubs = {s.name: s.kind for s in self.sites if s.kind in HUB_SECTIONS}
        gateways: dict[str, int] = {}
        for i, site in self.spokes():
            if site.vpn_gateway_ip in gateways:
                yield Issue(("sites", i, "vpn_gateway_ip"), f"{site.vpn_gateway_ip} is already sites[{gateways[site.vpn_gateway_ip]}]'s gateway; each edge site has its own")
            gateways.setdefault(site.vpn_gateway_ip, i)
            for j, link in enumerate(site.links):
                loc = ("sites", i, "links", j)
                if link.to not in hubs:
                    what = "an edge site (links go from edge sites to hubs only)" if link.to in names else "not a site of this stack"
                    yield Issue((*loc, "to"), f"{link.to!r} is {what}; link to a hub: {', '.join(sorted(hubs)) or 'none declared'}")
                    continue
                if hubs[link.to] == "aws":
                    if len(link.tunnel_inside_cidrs) != 2:
                        yield Issue((*loc, "tunnel_inside_cidrs"), f"{list(link.tunnel_inside_cidrs)} has {len(link.tunnel_inside_cidrs)} entries; an AWS VPN connection has exactly 2 tunnels, give two /30s")
                    yield from (Issue((*loc, *x.loc), x.message) for x in inside_cidr_issues(link.tunnel_inside_cidrs))
                elif link.tunnel_inside_cidrs:
                    yield Issue((*loc, "tunnel_inside_cidrs"), "a Neutron VPNaaS link has no tunnel inside addresses (policy-based); remove them")

    def warnings(self) -> Iterator[Issue]:
        yield from edge_deploy_warnings(self)
        for target in self.serving.targets:
            pools = self._gpu_pool_shapes(target)
            fits = [_pod_fit(m, self._pod_requests(), target) for _, _, m in pools]
            if any(not misses for misses in fits):
                for (loc, _, m), misses in zip(pools, fits):
                    if misses:
                        yield Issue(loc, f"{m.name} nodes cannot hold a Triton pod ({'; '.join(misses)}): this pool's nodes would stay idle")

    # --- sizing: what a Triton pod asks for against the nodes of its site's GPU pools ---------

    def _pod_requests(self) -> dict[str, float]:
        """A Triton pod's requests (GPUs, vCPUs, bytes); a malformed quantity counts 0 (reported by serving)."""
        res = self.serving.resources
        wanted = {"gpus": float(res.gpus), "cpu_request": 0.0, "memory_request": 0.0}
        for key in ("cpu_request", "memory_request"):
            try:
                wanted[key] = parse_quantity(getattr(res, key))
            except ValueError:
                pass
        return wanted

    def _gpu_pool_shapes(self, target: str) -> list[tuple[Loc, NodeCounts, MachineType]]:
        """(key of the pool's machine, pool, machine) of every GPU pool Triton may run on at `target`."""
        if target == "aws":
            return [
                (("aws", "eks", "gpu_pools", i, "instance_types"), p, min((AWS_INSTANCE_TYPES[t] for t in p.instance_types), key=lambda m: m.gpu_count))
                for i, p in enumerate(self.aws.eks.gpu_pools)
            ]
        flavors = self.openstack.flavors()
        return [
            (("openstack", "magnum", "gpu_pools", i, "flavor"), p, flavors[p.flavor])
            for i, p in enumerate(self.openstack.magnum.gpu_pools)
            if p.flavor in flavors and flavors[p.flavor].is_gpu
        ]

    def _gpu_capacity(self) -> Iterator[Issue]:
        res, replicas = self.serving.resources, self.serving.replicas.max
        if res.gpus == 0:
            return
        wanted = self._pod_requests()
        for target in self.serving.targets:
            pools = self._gpu_pool_shapes(target)
            if not pools:
                continue  # unknown flavors are reported by OpenStackConfig
            fits = [_pod_fit(m, wanted, target) for _, _, m in pools]
            if all(fits):
                # A pod is placed whole on one node: a request no node of the site's GPU pools has is never scheduled.
                shown = "; ".join(f"{format_loc(loc)}: {m.name} ({', '.join(f)})" for (loc, _, m), f in zip(pools, fits))
                short = [key for key, unit in (("gpus", "GPU"), ("cpu_request", "vCPU"), ("memory_request", "memory"))
                         if all(any(miss.startswith(unit) for miss in f) for f in fits)]
                for key in short:
                    yield Issue(
                        ("serving", "resources", key),
                        f"{getattr(res, key)} per Triton pod is more than any node of the GPU pools on {target} offers ({shown}); "
                        f"a pod runs on one node: lower serving.resources.{key} or give a pool a larger "
                        f"{'instance type' if target == 'aws' else 'flavor'}{_bigger(target, wanted, {m.gpu_model for _, _, m in pools}, self)}",
                    )
                if not short:
                    yield Issue(("serving", "resources", "gpus"), f"a Triton pod fits no node of the GPU pools on {target} ({shown}); size one pool for it")
                continue
            pods = sum(pool.max_size * _pods_per_node(m, wanted, target) for _, pool, m in pools)
            if pods < replicas:
                raw = sum(pool.max_size * m.gpu_count for _, pool, m in pools)
                usable = pods * res.gpus
                why = f" of {raw}, since a pod's GPUs, vCPUs and memory must be on one node" if usable < raw else ""
                yield Issue(
                    ("serving", "replicas", "max"),
                    f"{replicas} replicas × {res.gpus} GPU need {replicas * res.gpus} GPUs on {target}, "
                    f"but its GPU pools reach only {usable}{why} at max_size; raise the pools' max_size or lower replicas.max",
                )


    # --- addresses: do the nodes (and what else takes a port) fit the networks? ----------------

    def _openstack_addresses(self) -> Iterator[Issue]:
        """The tenant subnet must hold a port for every node at max size and every load balancer.

        Neutron allocates from the subnet minus its network and broadcast addresses and the gateway
        (the router's interface here); DHCP takes a port per DHCP agent hosting the network
        (`dhcp_agents_per_network`, 1 by default, up to 3 in HA clouds; OVN takes one metadata port
        instead): 3 are kept for them. Magnum puts every master, default worker and GPU node (at
        max_size) on it. Each Octavia load balancer takes its VIP and, with amphorae, one port per
        amphora (two in ACTIVE_STANDBY): 3 each, for the API and etcd load balancers Magnum creates with
        master_lb_enabled and Triton's internal LoadBalancer Service. The VPN service sits on the router
        (no port of its own) and floating IPs come from the external network.
        """
        os_, magnum = self.openstack, self.openstack.magnum
        size = net(os_.network.cidr).num_addresses
        unusable, dhcp = 3, 3
        nodes = magnum.master_count + magnum.worker_count + sum(p.max_size for p in magnum.gpu_pools)
        lbs = (2 if magnum.template.master_lb_enabled else 0) + (1 if "openstack" in self.serving.targets and self.serving.expose == "internal" else 0)
        need = nodes + 3 * lbs
        if need > size - unusable - dhcp:
            prefix = next((p for p in range(28, 15, -1) if 2 ** (32 - p) - unusable - dhcp >= need), 16)
            yield Issue(
                ("openstack", "network", "cidr"),
                f"{os_.network.cidr} has {size - unusable - dhcp} addresses for ports ({size} less network, broadcast, gateway and 3 for DHCP), "
                f"but the cluster needs {need}: {magnum.master_count} masters, {magnum.worker_count} default workers, "
                f"{nodes - magnum.master_count - magnum.worker_count} GPU nodes at max_size and {lbs} load balancers × 3 ports; "
                f"use a /{prefix} or larger, or lower the GPU pools' max_size",
            )

    def _aws_subnet_addresses(self) -> Iterator[Issue]:
        """The private subnets must hold every EKS node at max size and, without a pod CIDR, the pods.

        AWS keeps 5 addresses of each subnet. Node groups launch into every private subnet. With the VPC CNI
        and no `eks.pod_cidr`, every pod not on the host network takes a subnet address too, and the CNI
        keeps a spare ENI's worth per node (WARM_ENI_TARGET=1): this counts only the certain part, one
        address per node and one per Triton pod, so a pass is no promise that the warm pool fits.
        """
        vpc, eks = self.aws.vpc, self.aws.eks
        per_subnet = 2 ** (32 - vpc.private_subnet_prefix) - 5
        have = per_subnet * vpc.zone_count()
        nodes = eks.system_pool.max_size + sum(p.max_size for p in eks.gpu_pools)
        pods = self.serving.replicas.max if eks.pod_cidr is None and "aws" in self.serving.targets else 0
        if nodes + pods > have:
            what = f"{nodes} nodes at max_size" + (f" and {pods} Triton pods (VPC CNI: pods take subnet addresses without eks.pod_cidr)" if pods else "")
            yield Issue(
                ("aws", "vpc", "private_subnet_prefix"),
                f"/{vpc.private_subnet_prefix} private subnets hold {per_subnet} addresses each ({have} in {vpc.zone_count()} zones, AWS keeps 5 per subnet), "
                f"but the cluster needs at least {nodes + pods}: {what}; use a shorter prefix or lower the pools' max_size",
            )


# What a node offers pods: its capacity less what the kubelet keeps (allocatable), as the node images compute it.
# EKS AL2023 AMIs (awslabs/amazon-eks-ami nodeadm, kubelet config, checked 2026-12-01): kube-reserved CPU is 6% of
# the first core, 1% of the second, 0.5% of the next two and 0.25% of the rest; kube-reserved memory is
# 11 MiB × max pods + 255 MiB, plus the 100 MiB hard-eviction threshold. Max pods differs per type (VPC CNI
# ENI limits); 29, the fewest of the catalogue's GPU types (g4dn.xlarge), makes this a lower bound on what is
# kept. Magnum's kubelet keeps at least the upstream 100 MiB eviction threshold. DaemonSets (device plugin,
# DCGM exporter, CNI, kube-proxy) take more, so a pod that passes may still need a larger node.
_EKS_MIN_MAX_PODS = 29
_MIB = 2**20


def _allocatable(m: MachineType, target: str) -> tuple[float, float]:
    """(vCPUs, bytes) a node of `m` offers pods at `target` (see above)."""
    mem = m.memory_gib * 2**30 - 100 * _MIB
    if target != "aws":
        return float(m.vcpus), mem
    shares = [0.06, 0.01, 0.005, 0.005] + [0.0025] * max(0, m.vcpus - 4)
    return m.vcpus - sum(shares[: m.vcpus]), mem - (11 * _EKS_MIN_MAX_PODS + 255) * _MIB


def _pod_fit(m: MachineType, wanted: dict[str, float], target: str) -> list[str]:
    """What of a pod's requests a node of `m` lacks (empty: it fits)."""
    cpu, mem = _allocatable(m, target)
    misses = []
    if wanted["gpus"] > m.gpu_count:
        misses.append(f"GPUs: {m.gpu_count}")
    if wanted["cpu_request"] > cpu:
        misses.append(f"vCPUs: {m.vcpus}, {cpu:g} allocatable")
    if wanted["memory_request"] > mem:
        misses.append(f"memory: {m.memory_gib:g} GiB, {mem / 2**30:.2f} GiB allocatable")
    return misses


def _pods_per_node(m: MachineType, wanted: dict[str, float], target: str) -> int:
    cpu, mem = _allocatable(m, target)
    limits = [m.gpu_count // int(wanted["gpus"])] if wanted["gpus"] else []
    if wanted["cpu_request"]:
        limits.append(math.floor(cpu / wanted["cpu_request"]))
    if wanted["memory_request"]:
        limits.append(math.floor(mem / wanted["memory_request"]))
    return min(limits) if limits else 0


def _bigger(target: str, wanted: dict[str, float], models: set[str | None], cfg: "StackConfig") -> str:
    """", e.g. <the cheapest GPU machines a pod fits, of the pools' GPU models first>" ("" when none)."""
    machines = AWS_INSTANCE_TYPES.values() if target == "aws" else cfg.openstack.flavors().values()
    big = sorted((m for m in machines if m.is_gpu and not _pod_fit(m, wanted, target)), key=lambda m: (m.gpu_model not in models, m.usd_per_hour))
    return f", e.g. {', '.join(m.name for m in big[:3])}" if big else ""


def _site_of(loc: Loc, cfg: "StackConfig") -> str | None:
    """The name of the site a network (by its key) belongs to; hub sections and the VPN extras count for their hub."""
    head = loc[0]
    if head == "vpn" and len(loc) > 1 and str(loc[1]).startswith("extra_"):
        head = "aws" if loc[1] == "extra_aws_cidrs" else "openstack"
    if head in HUB_SECTIONS:
        hub = cfg.hub(head)
        return hub.name if hub is not None else None
    if head == "sites":
        return cfg.sites[int(loc[1])].name
    return None


# --- key paths -----------------------------------------------------------------------------------

_PROVIDER_KEYS: dict[Loc, str] = {("aws", "region"): "aws:region"}


def format_loc(loc: Loc) -> str:
    """('aws', 'eks', 'gpu_pools', 0, 'min_size') -> 'hybridserve:aws.eks.gpu_pools[0].min_size'."""
    if not loc:
        return f"{PROJECT}:"
    if tuple(loc[:2]) in _PROVIDER_KEYS:
        head, rest = _PROVIDER_KEYS[tuple(loc[:2])], loc[2:]
    else:
        head, rest = f"{PROJECT}:{loc[0]}", loc[1:]
    out = head
    for part in rest:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
