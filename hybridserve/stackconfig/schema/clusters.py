"""Kubernetes clusters and their node pools: EKS (`hybridserve:aws.eks`) and Magnum (`hybridserve:openstack.magnum`).

Every pool has min / desired / max node counts (min ≤ desired ≤ max); GPU pools carry the
taint `nvidia.com/gpu=true:NoSchedule` (required; more taints may be added) so only GPU workloads
(Triton, which tolerates it) land on them, and the labels of `gpu_node_labels()`.
Instance types are checked against `hybridserve.stackconfig.catalog`; OpenStack flavors are
checked by `OpenStackConfig` (stack.py) because a stack may declare its own flavors.

Secure by default: the EKS API endpoint is private unless `public_access_cidrs` lists the
networks allowed to reach it; a set that admits the Internet (0.0.0.0/0, or 0.0.0.0/1 + 128.0.0.0/1)
is rejected unless `allow_public_api_from_anywhere` is set (schema/access.py). Control-plane logs api, audit and authenticator cannot be turned off. Helm charts (NVIDIA
device plugin / GPU operator, cluster autoscaler) are pinned in `catalog.HELM_CHARTS`; a stack may
pin another version here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from hybridserve.stackconfig.catalog import (
    AWS_INSTANCE_TYPES,
    DEFAULT_EKS_VERSION,
    DEFAULT_MAGNUM_KUBE_TAG,
    EKS_EXTENDED_SUPPORT_USD_PER_HOUR,
    EKS_VERSIONS,
    GPU_OPERATOR_KUBERNETES,
    HELM_CHARTS,
    HOURS_PER_MONTH,
    KUBE_TAG_WARN_DAYS,
    KUBERNETES_RELEASES,
    MachineType,
    aws_cpu_instance_types,
    aws_gpu_instance_types,
    brief,
    eks_support,
    kubernetes_support,
    supported_kubernetes_minors,
    today,
)
from hybridserve.stackconfig.schema.access import DeployAccess
from hybridserve.stackconfig.schema.common import Cidr, ConfigModel, Issue, K8sLabels, Label, net

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
# EKS spells taint effects differently from Kubernetes.
EKS_TAINT_EFFECTS: dict[str, str] = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


class Taint(ConfigModel):
    key: str = Field(min_length=1, max_length=253)
    value: str = Field(default="", max_length=63)
    effect: TaintEffect = "NoSchedule"


# The taint that keeps every non-GPU workload off GPU nodes; Triton and the NVIDIA pods tolerate it.
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
GPU_TAINT_EFFECT = "NoSchedule"
# Node labels every GPU node carries on both clouds (selectors for Triton and the NVIDIA pods).
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
POOL_LABEL = "hybridserve.io/pool"
ACCELERATOR_LABEL = "hybridserve.io/accelerator"
# The label the cluster autoscaler's AWS provider reads to know a node has (or will have) a GPU.
AWS_AUTOSCALER_GPU_LABEL = "k8s.amazonaws.com/accelerator"


def _gpu_taints() -> list[Taint]:
    return [Taint(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect=GPU_TAINT_EFFECT)]


def gpu_node_labels(pool_name: str, accelerator: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of a GPU pool's nodes: the user's, then the kit's (which win)."""
    labels = {**(extra or {}), GPU_PRESENT_LABEL: "true", POOL_LABEL: pool_name}
    if accelerator:
        labels[ACCELERATOR_LABEL] = accelerator
    return labels


def _gpu_taint_issues(taints: list[Taint]) -> Iterator[Issue]:
    if not any(t.key == GPU_TAINT_KEY and t.effect in ("NoSchedule", "NoExecute") for t in taints):
        yield Issue(
            ("taints",),
            f"no {GPU_TAINT_KEY} NoSchedule taint; a GPU pool must keep other workloads off its nodes "
            f"(add {{key: {GPU_TAINT_KEY}, value: '{GPU_TAINT_VALUE}', effect: {GPU_TAINT_EFFECT}}} or remove `taints` for the default)",
        )


class HelmChartPin(ConfigModel):
    """A Helm chart at a pinned version (repository URL and version; never 'latest')."""

    chart: str = Field(min_length=1)
    repository: str = Field(pattern=r"^(https|oci)://[^\s]+$")
    version: str = Field(pattern=r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


def _pin(name: str) -> HelmChartPin:
    chart = HELM_CHARTS[name]
    return HelmChartPin(chart=chart.name, repository=chart.repository, version=chart.version)


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
    m = AWS_INSTANCE_TYPES[value]
    if m.is_gpu:
        # The system pool runs add-ons (CoreDNS, controllers), untainted: GPU nodes there are paid for and
        # idle, and Triton could not use them (it goes to the tainted GPU pools).
        raise ValueError(gpu_in_cpu_pool(m, "instance type", aws_cpu_instance_types()))
    return value


def gpu_in_cpu_pool(m: MachineType, what: str, cpu_names: list[str]) -> str:
    """The message for a GPU machine in a CPU-only pool, with its price and CPU alternatives."""
    monthly = m.usd_per_hour * HOURS_PER_MONTH
    return (
        f"{m.name!r} is a GPU {what} ({m.gpu_count}× {m.gpu_model}, about USD {monthly:,.0f}/month per node), but this pool "
        f"runs cluster add-ons, not GPU work; use a CPU {what}, e.g. {', '.join(cpu_names[:6])} (GPUs go in gpu_pools)"
    )


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
    # The EKS-optimized AL2023 NVIDIA AMI: NVIDIA driver and container toolkit preinstalled
    # (the device plugin comes from the Helm chart). AL2 GPU AMIs are end-of-life.
    ami_type: Literal["AL2023_x86_64_NVIDIA"] = "AL2023_x86_64_NVIDIA"
    # Root volume (gp3, encrypted with the stack key): container images of Triton and models are large.
    disk_size_gb: int = Field(default=100, ge=20, le=16384)
    labels: K8sLabels = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=_gpu_taints)

    def issues(self) -> Iterator[Issue]:
        yield from super().issues()
        yield from _gpu_taint_issues(self.taints)
        known = [AWS_INSTANCE_TYPES[t] for t in self.instance_types if t in AWS_INSTANCE_TYPES]
        shapes = {(m.vcpus, m.memory_gib, m.gpu_count) for m in known}
        if len(shapes) > 1:
            described = ", ".join(f"{m.name} ({m.vcpus} vCPU, {m.memory_gib:g} GiB, {m.gpu_count} GPU)" for m in known)
            yield Issue(
                ("instance_types",),
                f"{described} differ in size; the cluster autoscaler sizes a node group by one of its types, so every type "
                "of a pool must have the same vCPUs, memory and GPUs (make one pool per size)",
            )
        gpus = {m.gpu_model for m in known}
        if len(gpus) > 1:
            yield Issue(
                ("instance_types",),
                f"{self.instance_types} mix GPU models ({', '.join(sorted(g for g in gpus if g))}); a pool has one accelerator, "
                "use one pool per GPU model",
            )


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


_REQUIRED_LOG_TYPES = ("api", "audit", "authenticator")


class ClusterAutoscaler(ConfigModel):
    """The Kubernetes cluster autoscaler on EKS: discovers the node groups by tag, scales GPU pools from min (0 too)."""

    enabled: bool = True
    chart: HelmChartPin = Field(default_factory=lambda: _pin("cluster-autoscaler"))
    # None: the autoscaler image of the cluster's Kubernetes minor (catalog.EKS_VERSIONS).
    image_tag: str | None = Field(default=None, pattern=r"^v\d+\.\d+\.\d+$")
    # Which node group grows first: least-waste picks the cheapest fit for pending GPU pods.
    expander: Literal["least-waste", "random", "most-pods", "priority", "price"] = "least-waste"
    # How long a node must be unneeded before it is removed (GPU nodes are expensive: not too long).
    scale_down_unneeded_time: str = Field(default="10m", pattern=r"^\d+[smh]$")


class NvidiaDevicePlugin(ConfigModel):
    """How GPUs become schedulable (`nvidia.com/gpu` resources).

    device-plugin: the NVIDIA device plugin DaemonSet only (the node image has the driver: EKS AL2023 NVIDIA).
    gpu-operator: the NVIDIA GPU operator (driver container, toolkit, device plugin), for images without a driver.
    """

    mode: Literal["device-plugin", "gpu-operator"] = "device-plugin"
    # GPU feature discovery: node labels for the GPU product, memory and driver (nvidia.com/gpu.product, ...).
    gpu_feature_discovery: bool = True
    device_plugin_chart: HelmChartPin = Field(default_factory=lambda: _pin("nvidia-device-plugin"))
    gpu_operator_chart: HelmChartPin = Field(default_factory=lambda: _pin("gpu-operator"))

    @property
    def chart(self) -> HelmChartPin:
        return self.device_plugin_chart if self.mode == "device-plugin" else self.gpu_operator_chart


class EksCluster(ConfigModel):
    # A minor of catalog.EKS_VERSIONS in standard support today; extended support warns (it costs extra),
    # past its end is refused (AWS creates no such cluster).
    version: Annotated[str, BeforeValidator(_version_text), AfterValidator(_check_k8s_version)] = DEFAULT_EKS_VERSION
    endpoint_private_access: bool = True
    # None: public only when public_access_cidrs lists networks. The default endpoint is private
    # (reached over the VPN or from the VPC); `pulumi up` must then run from such a network.
    endpoint_public_access: bool | None = None
    # Who may reach the public API endpoint (the operator running `pulumi up` needs to).
    public_access_cidrs: list[Cidr] = Field(default_factory=list)
    # public_access_cidrs (with public runners) that admit the Internet are rejected unless this is true.
    allow_public_api_from_anywhere: bool = False
    service_cidr: Cidr = "172.20.0.0/16"
    # None: pods take VPC subnet addresses (VPC CNI default). A CIDR: a secondary VPC range for
    # pods (VPC CNI custom networking); it is routed, so it must not overlap other networks.
    pod_cidr: Cidr | None = None
    log_types: list[EKS_LOG_TYPES] = Field(default_factory=lambda: list(_REQUIRED_LOG_TYPES))
    # Retention of the control-plane log group /aws/eks/<cluster>/cluster.
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] = 90
    system_pool: AwsSystemPool = AwsSystemPool()
    gpu_pools: list[AwsGpuPool] = Field(default_factory=_default_aws_gpu_pools)
    autoscaler: ClusterAutoscaler = ClusterAutoscaler()
    nvidia: NvidiaDevicePlugin = NvidiaDevicePlugin()
    # Triton's service account (in hybridserve:serving.namespace): the only one trusted by the model-reader role.
    triton_service_account: Label = "triton"
    # IAM roles given cluster admin (access entries) besides the identity that creates the cluster, e.g. the
    # operators' SSO role and the CI deploy role: without them only the creator could ever administer it.
    admin_role_arns: list[Annotated[str, Field(pattern=r"^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]+$")]] = Field(default_factory=list)
    # How `pulumi up` reaches the API (required; schema/access.py). public_endpoint adds the runners to
    # the public endpoint's CIDRs; private_network admits them on 443 through a control-plane security group.
    deploy_access: DeployAccess | None = None

    def warnings(self) -> Iterator[Issue]:
        if eks_support(self.version) == "extended":
            v = EKS_VERSIONS[self.version]
            yield Issue(
                ("version",),
                f"{self.version!r} is in EKS extended support since {v.standard_end} (until {v.extended_end}): the control plane costs "
                f"USD {EKS_EXTENDED_SUPPORT_USD_PER_HOUR:.2f}/h instead of 0.10; upgrade to {', '.join(_usable_eks_versions())}",
            )
        elif eks_support(self.version) == "standard":
            left = (EKS_VERSIONS[self.version].standard_end - today()).days
            if left <= 60:
                yield Issue(
                    ("version",),
                    f"{self.version!r} leaves EKS standard support in {left} days ({EKS_VERSIONS[self.version].standard_end}); "
                    f"plan the upgrade to {', '.join(v for v in _usable_eks_versions() if v != self.version) or 'a newer version'}",
                )

    @property
    def public_cidrs(self) -> list[str]:
        """Who may reach the public endpoint: the listed operators and, on a public deploy path, the runners."""
        runners = self.deploy_access.runner_cidrs if self.deploy_access and self.deploy_access.via == "public_endpoint" else []
        return list(dict.fromkeys([*self.public_access_cidrs, *runners]))

    @property
    def private_runner_cidrs(self) -> list[str]:
        """Runner networks the control plane's security group must admit (private deploy path)."""
        access = self.deploy_access
        return list(access.runner_cidrs) if access and access.via == "private_network" else []

    @property
    def public_access(self) -> bool:
        return bool(self.public_cidrs) if self.endpoint_public_access is None else self.endpoint_public_access

    def issues(self) -> Iterator[Issue]:
        if self.pod_cidr is not None:
            # The VPN would route the range and the peer would admit it, but the VPC gets no secondary
            # range, pod subnets or ENIConfigs: pods would keep VPC addresses. Refused until that is wired.
            yield Issue(
                ("pod_cidr",),
                f"{self.pod_cidr}: VPC CNI custom networking is not wired yet (no secondary VPC range, pod subnets or "
                "ENIConfigs), so pods would keep VPC subnet addresses while the VPN routes this range; remove pod_cidr "
                "(pods take VPC addresses; size the private subnets for them)",
            )
        svc = net(self.service_cidr)
        if not (12 <= svc.prefixlen <= 24 and any(svc.subnet_of(net(r)) for r in _EKS_SERVICE_RANGES)):
            yield Issue(
                ("service_cidr",),
                f"{self.service_cidr} is not valid for EKS; use a /12../24 inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
            )
        support = eks_support(self.version)
        if support in ("unknown", "unreleased", "ended"):
            v = EKS_VERSIONS.get(self.version)
            why = {
                "unknown": "is not an EKS version the kit knows (hybridserve/stackconfig/catalog.py EKS_VERSIONS)",
                "unreleased": f"is not available in EKS before {v.released if v else '?'}",
                "ended": f"reached the end of EKS extended support on {v.extended_end if v else '?'}: AWS upgrades such clusters and creates none",
            }[support]
            usable = ", ".join(_usable_eks_versions()) or "none known"
            yield Issue(("version",), f"{self.version!r} {why}; use one in standard support as of {today()}: {usable}")
        # public_access_cidrs are judged as a set with the public runners: access.public_endpoint_issues.
        if self.endpoint_public_access and not self.public_cidrs:
            yield Issue(("public_access_cidrs",), "is empty while endpoint_public_access is true; list the networks allowed to reach the API endpoint")
        if not self.public_access and self.public_access_cidrs:
            yield Issue(("public_access_cidrs",), f"{self.public_access_cidrs} has no effect: endpoint_public_access is false; remove it or enable the public endpoint")
        if not self.endpoint_private_access and not self.public_access:
            yield Issue(("endpoint_private_access",), "false while the public endpoint is off too; nothing could reach the API (enable one of them)")
        missing = [t for t in _REQUIRED_LOG_TYPES if t not in self.log_types]
        if missing:
            yield Issue(("log_types",), f"{self.log_types} lacks {', '.join(missing)}; api, audit and authenticator logs are always on (add more, not fewer)")
        if len(set(self.admin_role_arns)) != len(self.admin_role_arns):
            yield Issue(("admin_role_arns",), f"{self.admin_role_arns} lists a role twice (one access entry per role)")
        if len(set(self.log_types)) != len(self.log_types):
            yield Issue(("log_types",), f"{self.log_types} lists a log type twice")
        yield from _unique_pool_names(self.gpu_pools)


class OpenStackGpuPool(NodeCounts):
    """A Magnum node group on a GPU flavor."""

    name: Label
    flavor: str = "gpu.t4.large"
    # Docker/containerd volume per node (Magnum docker_volume_size): images of Triton are large.
    disk_size_gb: int = Field(default=100, ge=20, le=16384)
    image: str | None = None  # None: the cluster template's image
    labels: K8sLabels = Field(default_factory=dict)
    # Magnum node groups have no taint API: the kit registers these through the kubelet
    # (`--register-with-taints` in the node group's `kubelet_options` label, Heat drivers).
    taints: list[Taint] = Field(default_factory=_gpu_taints)

    def issues(self) -> Iterator[Issue]:
        yield from super().issues()
        yield from _gpu_taint_issues(self.taints)


def _default_openstack_gpu_pools() -> list[OpenStackGpuPool]:
    return [OpenStackGpuPool(name="gpu")]


class MagnumTemplate(ConfigModel):
    """Settings of the Magnum cluster template."""

    image: str = Field(default="fedora-coreos-40", min_length=1)
    # A Kubernetes release (v<minor>.<patch>) in upstream support today (catalog.KUBERNETES_RELEASES):
    # past its end of life it gets no security fixes, so it is refused; a warning 60 days before.
    kube_tag: str = Field(default=DEFAULT_MAGNUM_KUBE_TAG, pattern=r"^v1\.\d{2}\.\d+$")
    network_driver: Literal["calico", "flannel", "cilium"] = "calico"
    volume_driver: Literal["cinder"] = "cinder"
    master_flavor: str = "m1.large"
    worker_flavor: str = "m1.xlarge"
    docker_volume_size_gb: int = Field(default=50, ge=10, le=16384)
    master_lb_enabled: bool = True
    floating_ip_enabled: bool = False  # nodes stay private; the API is reached through the LB
    # A floating IP on the API load balancer (reachable from outside the tenant network). Off: the
    # API is reached over the VPN / from the tenant network, like the EKS private endpoint.
    master_lb_floating_ip_enabled: bool = False
    # Magnum's cluster autoscaler scales the node groups between their min and max.
    auto_scaling_enabled: bool = True
    keypair: str | None = Field(default=None, min_length=1)  # SSH key pair on the nodes; None: no SSH access
    labels: dict[str, str] = Field(default_factory=dict)  # extra Magnum labels, passed through

    @property
    def kube_minor(self) -> str:
        return self.kube_tag[1:].rsplit(".", 1)[0]

    def issues(self) -> Iterator[Issue]:
        minor, support = self.kube_minor, kubernetes_support(self.kube_minor)
        if support == "supported":
            return
        r = KUBERNETES_RELEASES.get(minor)
        why = {
            "unknown": f"is not a Kubernetes release the kit knows (minor {minor}; hybridserve/stackconfig/catalog.py KUBERNETES_RELEASES)",
            "unreleased": f"is of Kubernetes {minor}, not released before {r.released if r else '?'}",
            "ended": f"is of Kubernetes {minor}, past its upstream end of life on {r.end_of_life if r else '?'} (no more patch releases, so no security fixes)",
        }[support]
        yield Issue(("kube_tag",), f"{self.kube_tag!r} {why}; use a release in upstream support as of {today()}: {_kube_tag_choices()}")

    def warnings(self) -> Iterator[Issue]:
        r = KUBERNETES_RELEASES.get(self.kube_minor)
        if r is None or kubernetes_support(self.kube_minor) != "supported":
            return
        left = (r.end_of_life - today()).days
        if left <= KUBE_TAG_WARN_DAYS:
            newer = [f"v{m}.{KUBERNETES_RELEASES[m].latest_patch}" for m in supported_kubernetes_minors() if m > self.kube_minor]
            yield Issue(("kube_tag",), f"{self.kube_tag!r}: Kubernetes {self.kube_minor} reaches its upstream end of life in {left} days ({r.end_of_life}); plan the upgrade to {', '.join(newer) or 'a newer release'}")
        patch = int(self.kube_tag.rsplit(".", 1)[1])
        if r.latest_patch is not None and patch > r.latest_patch:
            yield Issue(("kube_tag",), f"{self.kube_tag!r} is newer than the latest {self.kube_minor} patch the catalogue knows (v{self.kube_minor}.{r.latest_patch}); check that the release exists")


def _kube_tag_choices() -> str:
    return ", ".join(f"v{m}.{KUBERNETES_RELEASES[m].latest_patch}" for m in supported_kubernetes_minors()) or "none known"


# --- Magnum GPU nodes: where the NVIDIA driver comes from (issue 11) ----------------------------------------
# The kit's Magnum surface (node groups' `kubelet_options`, `docker_volume_type`) is the Heat driver on Fedora
# CoreOS. NVIDIA publishes no driver container for Fedora CoreOS, so the GPU operator's driver DaemonSet would
# pull an image that does not exist and no node would ever advertise nvidia.com/gpu. Sources (checked 2026-12-01):
# NVIDIA/gpu-operator#2664 (2026-07-24, maintainers: no plan to publish Fedora driver images; the operator
# derives nvcr.io/nvidia/driver:<version>-fedora<N>, which is absent), NVIDIA/gpu-operator#696 (FCOS support
# request closed), the GPU operator's platform support page (Ubuntu, RHEL, RHCOS only). NVIDIA documents
# `driver.enabled=false` for nodes with the driver pre-installed: the GPU pools' image carries the driver
# (Fedora CoreOS with the NVIDIA kernel module layered in), the operator brings the container toolkit (or the
# image does), the device plugin, GPU feature discovery and DCGM.
MagnumDriverSource = Literal["preinstalled", "operator"]


class MagnumNvidia(NvidiaDevicePlugin):
    """`openstack.magnum.nvidia`: the EKS settings plus where the driver and the container toolkit come from."""

    mode: Literal["device-plugin", "gpu-operator"] = "gpu-operator"
    # preinstalled: the GPU pools' image (gpu_pools[].image, else gpu_image) has the NVIDIA kernel driver.
    # operator: the GPU operator's driver container; refused, as NVIDIA publishes none for Fedora CoreOS.
    driver: MagnumDriverSource = "preinstalled"
    # The NVIDIA container toolkit: the operator's toolkit DaemonSet (configures the nodes' containerd), or the image.
    # Mode 'device-plugin' installs no toolkit: there the GPU image must carry it (and its containerd runtime).
    toolkit: MagnumDriverSource = "operator"
    # The image of GPU pools that name none (driver 'preinstalled'): a Glance image of the cloud operator, Fedora
    # CoreOS like template.image (os_distro fedora-coreos) with the NVIDIA kernel driver layered in. The kit does
    # not build it; ask the cloud operator (as for storage.cinder_volume_type). Without it GPU nodes would boot the
    # template's stock image, which has no driver.
    gpu_image: str = Field(default="fedora-coreos-40-nvidia", min_length=1, max_length=255)

    def pool_image(self, pool: OpenStackGpuPool) -> str | None:
        """The image a GPU pool's nodes boot: its own, else gpu_image when the driver comes with the image."""
        return pool.image or (self.gpu_image if self.driver == "preinstalled" else None)

    def issues(self) -> Iterator[Issue]:
        if self.driver == "operator":
            yield Issue(
                ("driver",),
                "'operator' would run the GPU operator's driver container, and NVIDIA publishes none for Fedora CoreOS "
                "(Magnum's Kubernetes image): no node would advertise nvidia.com/gpu. Use 'preinstalled' with a GPU "
                "image that carries the NVIDIA driver (nvidia.gpu_image or gpu_pools[].image)",
            )


def _magnum_nvidia() -> MagnumNvidia:
    return MagnumNvidia()


class MagnumCluster(ConfigModel):
    template: MagnumTemplate = MagnumTemplate()
    # How `pulumi up` reaches the API load balancer (required; schema/access.py). public_endpoint puts a
    # floating IP on it; either way `master_lb_allowed_cidrs` admits only the runners and the cluster's networks.
    deploy_access: DeployAccess | None = None
    master_count: Literal[1, 3, 5] = 1  # odd, for etcd quorum
    worker_count: int = Field(default=1, ge=1, le=100)  # the default (CPU) node group
    pod_cidr: Cidr = "10.100.0.0/16"
    service_cidr: Cidr = "10.254.0.0/16"
    gpu_pools: list[OpenStackGpuPool] = Field(default_factory=_default_openstack_gpu_pools)
    # The GPU operator without its driver container: see MagnumNvidia (the GPU pools' image carries the driver).
    nvidia: MagnumNvidia = Field(default_factory=_magnum_nvidia)

    @property
    def api_floating_ip(self) -> bool:
        """A floating IP on the API load balancer: asked for, or needed by a public deploy path."""
        public = self.deploy_access is not None and self.deploy_access.via == "public_endpoint"
        return self.template.master_lb_floating_ip_enabled or public

    def warnings(self) -> Iterator[Issue]:
        low, high = GPU_OPERATOR_KUBERNETES
        minor = self.template.kube_minor
        pinned = HELM_CHARTS["gpu-operator"].version
        in_range = _minor_key(low) <= _minor_key(minor) <= _minor_key(high)
        if self.nvidia.mode == "gpu-operator" and self.nvidia.gpu_operator_chart.version == pinned and not in_range:
            yield Issue(
                ("template", "kube_tag"),
                f"{self.template.kube_tag!r}: the GPU operator {pinned} is validated on Kubernetes {low}-{high}, not {minor}; "
                "choose a kube_tag in that range or pin a GPU operator release validated on it (nvidia.gpu_operator_chart)",
            )

    def issues(self) -> Iterator[Issue]:
        yield from _unique_pool_names(self.gpu_pools)
        if self.template.network_driver == "flannel":
            yield Issue(
                ("template", "network_driver"),
                "flannel enforces no NetworkPolicy, so Triton's namespace would stay open to every pod; use calico or cilium",
            )


def _minor_key(minor: str) -> tuple[int, ...]:
    return tuple(int(part) for part in minor.split("."))


def _usable_eks_versions() -> list[str]:
    return [m for m in EKS_VERSIONS if eks_support(m) == "standard"]


def _unique_pool_names(pools: list) -> Iterator[Issue]:
    seen: dict[str, int] = {}
    for i, pool in enumerate(pools):
        if pool.name in seen:
            yield Issue(("gpu_pools", i, "name"), f"{pool.name!r} is already used by gpu_pools[{seen[pool.name]}]; pool names must be unique")
        seen.setdefault(pool.name, i)
