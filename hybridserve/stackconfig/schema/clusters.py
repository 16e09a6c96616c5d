"""Kubernetes clusters and their node pools: EKS (`hybridserve:aws.eks`) and Magnum (`hybridserve:openstack.magnum`).

Every pool has min / desired / max node counts (min ≤ desired ≤ max); GPU pools carry a
`nvidia.com/gpu` NoSchedule taint by default so only GPU workloads (Triton) land on them.
Instance types are checked against `hybridserve.stackconfig.catalog`; OpenStack flavors are
checked by `OpenStackConfig` (stack.py) because a stack may declare its own flavors.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES, aws_cpu_instance_types, aws_gpu_instance_types, brief
from hybridserve.stackconfig.schema.common import Cidr, ConfigModel, Issue, K8sLabels, Label, net

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
# EKS spells taint effects differently from Kubernetes.
EKS_TAINT_EFFECTS: dict[str, str] = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


class Taint(ConfigModel):
    key: str = Field(min_length=1, max_length=253)
    value: str = Field(default="", max_length=63)
    effect: TaintEffect = "NoSchedule"


def _gpu_taints() -> list[Taint]:
    return [Taint(key="nvidia.com/gpu", value="present", effect="NoSchedule")]


def _check_gpu_type(value: str) -> str:
    if value not in AWS_INSTANCE_TYPES or not AWS_INSTANCE_TYPES[value].is_gpu:
        raise ValueError(
            f"{value!r} is not a known GPU instance type; known: {brief(aws_gpu_instance_types(), 40)} "
            "(catalogue: hybridserve/stackconfig/catalog.py)"
        )
    return value


def _check_cpu_type(value: str) -> str:
    if value not in AWS_INSTANCE_TYPES:
        raise ValueError(f"{value!r} is not a known instance type; known CPU types: {brief(aws_cpu_instance_types(), 40)}")
    return value


GpuInstanceType = Annotated[str, AfterValidator(_check_gpu_type)]
InstanceType = Annotated[str, AfterValidator(_check_cpu_type)]


class NodeCounts(ConfigModel):
    """Autoscaling bounds of a pool. min_size 0 lets a GPU pool scale to zero when idle."""

    min_size: int = Field(default=0, ge=0, le=1000)
    desired_size: int = Field(default=1, ge=0, le=1000)
    max_size: int = Field(default=2, ge=1, le=1000)

    def issues(self) -> Iterator[Issue]:
        rule = "min ≤ desired ≤ max"
        if self.min_size > self.max_size:
            yield Issue(("min_size",), f"{self.min_size} is greater than max_size ({self.max_size}); {rule}")
        if self.desired_size < self.min_size:
            yield Issue(("desired_size",), f"{self.desired_size} is less than min_size ({self.min_size}); {rule}")
        if self.desired_size > self.max_size:
            yield Issue(("desired_size",), f"{self.desired_size} is greater than max_size ({self.max_size}); {rule}")


class AwsSystemPool(NodeCounts):
    """CPU nodes for cluster add-ons (CoreDNS, the NVIDIA device plugin, controllers)."""

    instance_types: list[InstanceType] = Field(default_factory=lambda: ["m6i.large"], min_length=1)
    min_size: int = Field(default=2, ge=1, le=100)
    desired_size: int = Field(default=2, ge=1, le=100)
    max_size: int = Field(default=3, ge=1, le=100)
    disk_size_gb: int = Field(default=50, ge=20, le=16384)


class AwsGpuPool(NodeCounts):
    """An EKS managed node group of GPU instances. The first instance type is the one priced in the plan."""

    name: Label
    instance_types: list[GpuInstanceType] = Field(default_factory=lambda: ["g4dn.xlarge"], min_length=1)
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    ami_type: Literal["AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA", "AL2_x86_64_GPU"] = "AL2023_x86_64_NVIDIA"
    disk_size_gb: int = Field(default=100, ge=20, le=16384)
    labels: K8sLabels = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=_gpu_taints)


def _default_aws_gpu_pools() -> list[AwsGpuPool]:
    return [AwsGpuPool(name="gpu")]


_K8S_VERSION = re.compile(r"^1\.\d{2}$")


def _version_text(value: object) -> object:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # YAML reads 1.30 as the number 1.3
        raise ValueError(f"{value} is a number; quote the version so YAML keeps it as text, e.g. \"1.31\"")
    return value


def _check_k8s_version(value: str) -> str:
    if not _K8S_VERSION.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes minor version; expected e.g. '1.31' (quote it in YAML)")
    return value


EKS_LOG_TYPES = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]
# EKS accepts a service CIDR only inside these private ranges, between /12 and /24.
_EKS_SERVICE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


class EksCluster(ConfigModel):
    version: Annotated[str, BeforeValidator(_version_text), AfterValidator(_check_k8s_version)] = "1.31"
    endpoint_private_access: bool = True
    endpoint_public_access: bool = True
    # Who may reach the public API endpoint (the operator running `pulumi up` needs to).
    public_access_cidrs: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1)
    service_cidr: Cidr = "172.20.0.0/16"
    # None: pods take VPC subnet addresses (VPC CNI default). A CIDR: a secondary VPC range for
    # pods (VPC CNI custom networking); it is routed, so it must not overlap other networks.
    pod_cidr: Cidr | None = None
    log_types: list[EKS_LOG_TYPES] = Field(default_factory=lambda: ["api", "audit", "authenticator"])
    system_pool: AwsSystemPool = AwsSystemPool()
    gpu_pools: list[AwsGpuPool] = Field(default_factory=_default_aws_gpu_pools)

    def issues(self) -> Iterator[Issue]:
        svc = net(self.service_cidr)
        if not (12 <= svc.prefixlen <= 24 and any(svc.subnet_of(net(r)) for r in _EKS_SERVICE_RANGES)):
            yield Issue(
                ("service_cidr",),
                f"{self.service_cidr} is not valid for EKS; use a /12../24 inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
            )
        yield from _unique_pool_names(self.gpu_pools)


class OpenStackGpuPool(NodeCounts):
    """A Magnum node group on a GPU flavor."""

    name: Label
    flavor: str = "gpu.t4.large"
    # Docker/containerd volume per node (Magnum docker_volume_size): images of Triton are large.
    disk_size_gb: int = Field(default=100, ge=20, le=16384)
    image: str | None = None  # None: the cluster template's image
    labels: K8sLabels = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=_gpu_taints)


def _default_openstack_gpu_pools() -> list[OpenStackGpuPool]:
    return [OpenStackGpuPool(name="gpu")]


class MagnumTemplate(ConfigModel):
    """Settings of the Magnum cluster template."""

    image: str = Field(default="fedora-coreos-40", min_length=1)
    kube_tag: str = Field(default="v1.30.7", pattern=r"^v1\.\d{2}\.\d+$")
    network_driver: Literal["calico", "flannel", "cilium"] = "calico"
    volume_driver: Literal["cinder"] = "cinder"
    master_flavor: str = "m1.large"
    worker_flavor: str = "m1.xlarge"
    docker_volume_size_gb: int = Field(default=50, ge=10, le=16384)
    master_lb_enabled: bool = True
    floating_ip_enabled: bool = False  # nodes stay private; the API is reached through the LB
    labels: dict[str, str] = Field(default_factory=dict)  # extra Magnum labels, passed through


class MagnumCluster(ConfigModel):
    template: MagnumTemplate = MagnumTemplate()
    master_count: Literal[1, 3, 5] = 1  # odd, for etcd quorum
    worker_count: int = Field(default=1, ge=1, le=100)  # the default (CPU) node group
    pod_cidr: Cidr = "10.100.0.0/16"
    service_cidr: Cidr = "10.254.0.0/16"
    gpu_pools: list[OpenStackGpuPool] = Field(default_factory=_default_openstack_gpu_pools)

    def issues(self) -> Iterator[Issue]:
        yield from _unique_pool_names(self.gpu_pools)


def _unique_pool_names(pools: list) -> Iterator[Issue]:
    seen: dict[str, int] = {}
    for i, pool in enumerate(pools):
        if pool.name in seen:
            yield Issue(("gpu_pools", i, "name"), f"{pool.name!r} is already used by gpu_pools[{seen[pool.name]}]; pool names must be unique")
        seen.setdefault(pool.name, i)
