"""The root of the stack configuration: one `StackConfig` per team and environment.

Config keys (stack file `stacks/Pulumi.<team>-<env>.yaml`, `pulumi config set`):

    hybridserve:team          str, required      hybridserve:aws        object (AwsConfig)
    hybridserve:environment   str, required      hybridserve:openstack  object (OpenStackConfig)
    hybridserve:cost_center   str, required      hybridserve:vpn        object (VpnConfig)
    hybridserve:tags          object, optional   hybridserve:storage    object (StorageConfig)
    aws:region                str (AWS provider) hybridserve:serving    object (ServingConfig)
    hybridserve:openstack_password, hybridserve:vpn_psk   optional secrets (SECRET_KEYS)

Nested values are set with `--path`, e.g.
    pulumi config set --path 'hybridserve:aws.eks.gpu_pools[0].max_size' 4
    pulumi config set --secret hybridserve:vpn_psk '...'

Secrets never enter this model: the program reads them with `pulumi.Config.get_secret`, so their
values stay Pulumi secrets; offline tools only learn whether they are set (`secrets_set`).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES, OPENSTACK_FLAVORS, MachineType, brief
from hybridserve.stackconfig.schema.access import access_issues
from hybridserve.stackconfig.schema.clusters import EksCluster, MagnumCluster
from hybridserve.stackconfig.schema.common import ConfigModel, Issue, Label, Loc, Tags, net
from hybridserve.stackconfig.schema.network import AwsVpc, OpenStackNetwork
from hybridserve.stackconfig.schema.serving import ServingConfig
from hybridserve.stackconfig.schema.storage import StorageConfig, check_bucket_name
from hybridserve.stackconfig.schema.vpn import VpnConfig

PROJECT = "hybridserve"
SECRET_KEYS: tuple[str, ...] = ("openstack_password", "vpn_psk")
MANAGED_TAG_KEYS = ("project", "team", "environment", "cost-center", "managed-by", "stack")
# AWS takes 50 user tags per resource; the managed tags and up to 4 the kit adds itself (a subnet's Name, tier and
# two Kubernetes discovery tags) share them (tests/test_names.py plans a stack with this many).
MAX_USER_TAGS = 50 - len(MANAGED_TAG_KEYS) - 4


class FlavorSpec(ConfigModel):
    """A flavor of the team's OpenStack cloud, with its chargeback rate for the cost estimate."""

    vcpus: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    gpu_model: str | None = None
    gpu_count: int = Field(default=0, ge=0, le=16)
    gpu_memory_gib: float = Field(default=0, ge=0)
    usd_per_hour: float = Field(default=0.0, ge=0)

    def machine(self, name: str) -> MachineType:
        return MachineType(name, self.vcpus, self.memory_gib, self.gpu_model, self.gpu_count, self.gpu_memory_gib, self.usd_per_hour)


class AwsConfig(ConfigModel):
    # Filled from the provider key `aws:region`, which the AWS provider reads too.
    region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    vpc: AwsVpc = AwsVpc()
    eks: EksCluster = EksCluster()

    def issues(self) -> Iterator[Issue]:
        for i, zone in enumerate(self.vpc.availability_zones):
            if not (zone.startswith(self.region) and len(zone) == len(self.region) + 1 and zone[-1].isalpha()):
                yield Issue(("vpc", "availability_zones", i), f"{zone!r} is not a zone of region {self.region}; e.g. {self.region}a")


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
        gpu = sorted(n for n, m in flavors.items() if m.is_gpu)
        for i, pool in enumerate(self.magnum.gpu_pools):
            if pool.flavor not in flavors or not flavors[pool.flavor].is_gpu:
                yield Issue(("magnum", "gpu_pools", i, "flavor"), f"{pool.flavor!r} is not a known GPU flavor; known: {brief(gpu, 30)} (declare it in {where})")


class StackConfig(ConfigModel):
    team: Label
    environment: Label
    cost_center: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:/=+@-]*$")
    tags: Tags = Field(default_factory=dict)
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

    # --- networks ---------------------------------------------------------------------------

    def vpn_reachable_networks(self) -> list[tuple[Loc, str]]:
        """Networks routed across the VPN: unique within a stack and within a peering group."""
        found: list[tuple[Loc, str]] = [(("aws", "vpc", "cidr"), self.aws.vpc.cidr)]
        if self.aws.eks.pod_cidr:
            found.append((("aws", "eks", "pod_cidr"), self.aws.eks.pod_cidr))
        found.append((("openstack", "network", "cidr"), self.openstack.network.cidr))
        found += [(("vpn", "extra_openstack_cidrs", i), c) for i, c in enumerate(self.vpn.extra_openstack_cidrs)]
        found += [(("vpn", "extra_aws_cidrs", i), c) for i, c in enumerate(self.vpn.extra_aws_cidrs)]
        return found

    def all_networks(self) -> list[tuple[Loc, str]]:
        """Every network of the stack, tunnel and cluster-internal ones included: no two may overlap.

        Tunnel inside CIDRs are link-local to one VPN connection and cluster service / overlay
        pod CIDRs never leave their cluster, so other stacks may reuse them.
        """
        return [
            *self.vpn_reachable_networks(),
            *((("vpn", "tunnel_inside_cidrs", i), c) for i, c in enumerate(self.vpn.tunnel_inside_cidrs)),
            (("aws", "eks", "service_cidr"), self.aws.eks.service_cidr),
            (("openstack", "magnum", "pod_cidr"), self.openstack.magnum.pod_cidr),
            (("openstack", "magnum", "service_cidr"), self.openstack.magnum.service_cidr),
        ]

    # --- checks across sections -------------------------------------------------------------

    def issues(self) -> Iterator[Issue]:
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
        yield from self._gpu_capacity()
        yield from access_issues(self)
        from hybridserve.stackconfig.vpncheck import stack_issues  # network/VPN checks across sections

        yield from stack_issues(self)

    def _gpu_capacity(self) -> Iterator[Issue]:
        need = self.serving.replicas.max * self.serving.resources.gpus
        if need == 0:
            return
        flavors = self.openstack.flavors()
        capacity = {
            "aws": sum(p.max_size * min(AWS_INSTANCE_TYPES[t].gpu_count for t in p.instance_types) for p in self.aws.eks.gpu_pools),
            "openstack": sum(p.max_size * flavors[p.flavor].gpu_count for p in self.openstack.magnum.gpu_pools if p.flavor in flavors),
        }
        for target in self.serving.targets:
            if capacity[target] < need:
                yield Issue(
                    ("serving", "replicas", "max"),
                    f"{self.serving.replicas.max} replicas × {self.serving.resources.gpus} GPU need {need} GPUs on {target}, "
                    f"but its GPU pools reach only {capacity[target]} at max_size; raise the pools' max_size or lower replicas.max",
                )


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
