"""Catalogue of the machine types the kit knows: AWS instance types and OpenStack flavors.

Used twice: validation (an unknown instance type or flavor is an error that lists the known
ones) and the plan's monthly cost estimate.

Prices
- AWS: on-demand Linux list price in us-east-1, USD per hour, as published by AWS (mid-2025,
  after the June 2025 P4/P5 price reduction). Other regions and savings plans differ; the plan
  prints an *estimate*, not a quote. Update the table here when prices change.
- OpenStack: a private cloud has no list price. The default flavors carry an internal
  chargeback rate (USD per hour) a platform team would set; a stack can declare its own
  flavors and rates under `hybridserve:openstack.flavor_catalog`, which extend and override
  `OPENSTACK_FLAVORS` for that stack.

A month is `HOURS_PER_MONTH` = 730 hours (8760 / 12).

Pinned Helm charts (`HELM_CHARTS`) and the cluster autoscaler image per Kubernetes minor
(`CLUSTER_AUTOSCALER_IMAGE_TAGS`; the autoscaler's minor must match the cluster's) live here too,
so a version bump is one reviewed line. Stacks may pin another chart version in their config.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

HOURS_PER_MONTH = 730.0
EKS_CONTROL_PLANE_USD_PER_HOUR = 0.10
# AWS Site-to-Site VPN: per connection-hour, and data transfer out of AWS per GB (first 10 TB/month) — the
# list prices of aws.amazon.com/vpn/pricing and the EC2 on-demand data transfer table, unchanged for years in
# most regions; some regions charge more. NOT re-read on 2026-12-01 (the pricing pages cannot be fetched from
# the build machines): the plan's cost table prints them as list prices to check. Used for the edge sites'
# links (hybridserve/stackconfig/cost.py).
AWS_VPN_CONNECTION_USD_PER_HOUR = 0.05
AWS_TRANSFER_OUT_USD_PER_GB = 0.09


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpus: int
    memory_gib: float
    gpu_model: str | None  # None: a CPU-only machine
    gpu_count: int
    gpu_memory_gib: float  # per GPU
    usd_per_hour: float

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0


def _m(name: str, vcpus: int, mem: float, gpu: str | None, count: int, gpu_mem: float, price: float) -> MachineType:
    return MachineType(name, vcpus, mem, gpu, count, gpu_mem, price)


AWS_INSTANCE_TYPES: dict[str, MachineType] = {
    m.name: m
    for m in (
        # NVIDIA T4 (g4dn)
        _m("g4dn.xlarge", 4, 16, "T4", 1, 16, 0.526),
        _m("g4dn.2xlarge", 8, 32, "T4", 1, 16, 0.752),
        _m("g4dn.4xlarge", 16, 64, "T4", 1, 16, 1.204),
        _m("g4dn.8xlarge", 32, 128, "T4", 1, 16, 2.176),
        _m("g4dn.12xlarge", 48, 192, "T4", 4, 16, 3.912),
        _m("g4dn.16xlarge", 64, 256, "T4", 1, 16, 4.352),
        _m("g4dn.metal", 96, 384, "T4", 8, 16, 7.824),
        # NVIDIA A10G (g5)
        _m("g5.xlarge", 4, 16, "A10G", 1, 24, 1.006),
        _m("g5.2xlarge", 8, 32, "A10G", 1, 24, 1.212),
        _m("g5.4xlarge", 16, 64, "A10G", 1, 24, 1.624),
        _m("g5.8xlarge", 32, 128, "A10G", 1, 24, 2.448),
        _m("g5.12xlarge", 48, 192, "A10G", 4, 24, 5.672),
        _m("g5.16xlarge", 64, 256, "A10G", 1, 24, 4.096),
        _m("g5.24xlarge", 96, 384, "A10G", 4, 24, 8.144),
        _m("g5.48xlarge", 192, 768, "A10G", 8, 24, 16.288),
        # NVIDIA L4 (g6)
        _m("g6.xlarge", 4, 16, "L4", 1, 24, 0.8048),
        _m("g6.2xlarge", 8, 32, "L4", 1, 24, 0.9776),
        _m("g6.4xlarge", 16, 64, "L4", 1, 24, 1.3232),
        _m("g6.8xlarge", 32, 128, "L4", 1, 24, 2.0144),
        _m("g6.12xlarge", 48, 192, "L4", 4, 24, 4.6016),
        _m("g6.16xlarge", 64, 256, "L4", 1, 24, 3.3968),
        _m("g6.24xlarge", 96, 384, "L4", 4, 24, 6.6752),
        _m("g6.48xlarge", 192, 768, "L4", 8, 24, 13.3504),
        # NVIDIA L40S (g6e)
        _m("g6e.xlarge", 4, 32, "L40S", 1, 48, 1.861),
        _m("g6e.2xlarge", 8, 64, "L40S", 1, 48, 2.242),
        _m("g6e.12xlarge", 48, 384, "L40S", 4, 48, 10.493),
        # NVIDIA V100 (p3), A100 (p4d), H100 (p5)
        _m("p3.2xlarge", 8, 61, "V100", 1, 16, 3.06),
        _m("p3.8xlarge", 32, 244, "V100", 4, 16, 12.24),
        _m("p4d.24xlarge", 96, 1152, "A100", 8, 40, 21.96),
        _m("p5.48xlarge", 192, 2048, "H100", 8, 80, 55.04),
        # CPU: system node pools (CoreDNS, controllers, Triton's sidecars)
        _m("t3.medium", 2, 4, None, 0, 0, 0.0416),
        _m("t3.large", 2, 8, None, 0, 0, 0.0832),
        _m("m6i.large", 2, 8, None, 0, 0, 0.096),
        _m("m6i.xlarge", 4, 16, None, 0, 0, 0.192),
        _m("m6i.2xlarge", 8, 32, None, 0, 0, 0.384),
        _m("m7i.large", 2, 8, None, 0, 0, 0.1008),
        _m("m7i.xlarge", 4, 16, None, 0, 0, 0.2016),
        _m("c6i.xlarge", 4, 8, None, 0, 0, 0.17),
    )
}

OPENSTACK_FLAVORS: dict[str, MachineType] = {
    m.name: m
    for m in (
        _m("m1.small", 1, 2, None, 0, 0, 0.01),
        _m("m1.medium", 2, 4, None, 0, 0, 0.02),
        _m("m1.large", 4, 8, None, 0, 0, 0.04),
        _m("m1.xlarge", 8, 16, None, 0, 0, 0.08),
        _m("gpu.t4.large", 8, 32, "T4", 1, 16, 0.30),
        _m("gpu.t4x2.xlarge", 16, 64, "T4", 2, 16, 0.60),
        _m("gpu.a10.xlarge", 16, 64, "A10", 1, 24, 0.55),
        _m("gpu.l40s.2xlarge", 32, 128, "L40S", 1, 48, 1.20),
        _m("gpu.a100.4xlarge", 32, 256, "A100", 1, 80, 1.80),
    )
}


@dataclass(frozen=True)
class HelmChart:
    name: str
    repository: str
    version: str


HELM_CHARTS: dict[str, HelmChart] = {
    c.name: c
    for c in (
        # Checked 2026-12-01 against each chart's Chart.yaml / Helm index in its repository (newest releases seen):
        # NVIDIA/k8s-device-plugin 0.20.0 (2026-08-19, kubeVersion >=1.10): advertises nvidia.com/gpu on nodes
        # whose image has the driver (EKS AL2023 NVIDIA AMI); gfd.enabled adds GPU feature discovery.
        HelmChart("nvidia-device-plugin", "https://nvidia.github.io/k8s-device-plugin", "0.20.0"),
        # NVIDIA/gpu-operator v26.7.0 (2026-08-20; validated on Kubernetes 1.33-1.36): driver container, toolkit,
        # device plugin, for images without a driver.
        HelmChart("gpu-operator", "https://helm.ngc.nvidia.com/nvidia", "v26.7.0"),  # GPU_OPERATOR_KUBERNETES below
        # kubernetes/autoscaler cluster-autoscaler chart 9.59.0 (2026-07-21); the image tag is set per cluster
        # minor from EKS_VERSIONS (the chart's own default is v1.35.0).
        HelmChart("cluster-autoscaler", "https://kubernetes.github.io/autoscaler", "9.59.0"),
        # Serving monitoring (infra/components/monitoring.py):
        # prometheus-community/helm-charts charts/kube-prometheus-stack 88.5.3 (2026-08-21, kubeVersion >=1.25),
        HelmChart("kube-prometheus-stack", "https://prometheus-community.github.io/helm-charts", "88.5.3"),
        # charts/prometheus-adapter 5.3.0 (2026-02-19, appVersion v0.12.0),
        HelmChart("prometheus-adapter", "https://prometheus-community.github.io/helm-charts", "5.3.0"),
        # NVIDIA/dcgm-exporter deployment/Chart.yaml 4.8.2 (2026-05-06, kubeVersion >=1.19).
        HelmChart("dcgm-exporter", "https://nvidia.github.io/dcgm-exporter/helm-charts", "4.8.2"),
    )
}

# The Kubernetes minors the pinned GPU operator (HELM_CHARTS["gpu-operator"], v26.7.0) is validated on, first and
# last, as recorded with the chart above (checked 2026-12-01); Magnum clusters run it by default.
GPU_OPERATOR_KUBERNETES = ("1.33", "1.36")


@dataclass(frozen=True)
class EksVersion:
    """A Kubernetes minor on Amazon EKS: its support window and the cluster autoscaler image that matches it."""

    minor: str
    released: date  # available in EKS
    standard_end: date  # then extended support (extra cost) until extended_end
    extended_end: date  # after it, AWS upgrades clusters and creates none of this version
    autoscaler_tag: str  # registry.k8s.io/autoscaling/cluster-autoscaler: its minor must equal the cluster's


# Checked 2026-12-01. Support dates: the EKS user guide's release calendar (docs.aws.amazon.com/eks/latest/
# userguide/kubernetes-versions.html; awsdocs/amazon-eks-user-guide latest/ug/versioning/kubernetes-versions.adoc
# for 1.30-1.34) and endoflife.date/amazon-eks, which re-reads that table (products/amazon-eks.md, 2026-08-21)
# for 1.35 and 1.36. Autoscaler tags: kubernetes/autoscaler tags cluster-autoscaler-1.3x.y, images promoted
# by kubernetes/k8s.io PR #9760 (2026-07-22). Newer versions or patches may exist after those sources.
EKS_VERSIONS: dict[str, EksVersion] = {
    v.minor: v
    for v in (
        EksVersion("1.30", date(2024, 5, 23), date(2025, 7, 23), date(2026, 7, 23), "v1.30.0"),
        EksVersion("1.31", date(2024, 9, 26), date(2025, 11, 26), date(2026, 11, 26), "v1.31.0"),
        EksVersion("1.32", date(2025, 1, 23), date(2026, 3, 23), date(2027, 3, 23), "v1.32.7"),
        EksVersion("1.33", date(2025, 5, 29), date(2026, 7, 29), date(2027, 7, 29), "v1.33.6"),
        EksVersion("1.34", date(2025, 10, 2), date(2026, 12, 2), date(2027, 12, 2), "v1.34.5"),
        EksVersion("1.35", date(2026, 1, 28), date(2027, 3, 27), date(2028, 3, 27), "v1.35.2"),
        EksVersion("1.36", date(2026, 6, 2), date(2027, 8, 2), date(2028, 8, 2), "v1.36.1"),
    )
}
# The schema's default: in standard support on the date above, with the longest time left but one
# (1.36 is newer; 1.35 has more add-on and chart releases validated against it: gpu-operator v26.7.0
# validates 1.33-1.36, the cluster-autoscaler chart 9.59.0 ships 1.35).
DEFAULT_EKS_VERSION = "1.35"
# Amazon EKS pricing: USD 0.10 per cluster-hour in standard support, 0.60 in extended support.
EKS_EXTENDED_SUPPORT_USD_PER_HOUR = 0.60
TODAY_ENV = "HYBRIDSERVE_TODAY"  # an ISO date the support checks use instead of the clock (tests, planning ahead)


def today() -> date:
    """The date support windows are judged on: the clock, or HYBRIDSERVE_TODAY."""
    import os

    from hybridserve.errors import UserError

    value = os.environ.get(TODAY_ENV)
    if value:
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise UserError(f"{TODAY_ENV}={value!r} is not an ISO date (YYYY-MM-DD); unset it to use today's date") from None
    return date.today()


def eks_support(minor: str, on: date | None = None) -> str:
    """"standard", "extended", "ended", "unreleased" or "unknown" for an EKS minor on a date (default: today)."""
    v = EKS_VERSIONS.get(minor)
    if v is None:
        return "unknown"
    on = on or today()
    if on < v.released:
        return "unreleased"
    if on <= v.standard_end:
        return "standard"
    return "extended" if on <= v.extended_end else "ended"


@dataclass(frozen=True)
class KubernetesRelease:
    """An upstream Kubernetes minor: its patch releases are supported until `end_of_life`."""

    minor: str
    released: date  # the .0 release
    end_of_life: date  # no patch releases after it (the upstream "patch releases" policy: about 14 months)
    # The newest x.y.<patch> seen on the date below (newer ones may exist); None: ended before that date.
    latest_patch: int | None


# Checked 2026-12-01 on kubernetes.io/releases (and its per-minor pages kubernetes.io/releases/1.3x/), under
# the upstream "patch releases" policy (kubernetes.io/releases/patch-releases/): each minor gets patch releases
# for about 14 months (12 months, then 2 months of maintenance mode), then none. End-of-life dates and the
# latest patches are as those pages list them (1.35.9 and 1.37.1 released 2026-09-15, 1.36.4 on 2026-08-11).
# A Magnum cluster's kube_tag names one of these releases; it must be in upstream support on today's date.
KUBERNETES_RELEASES: dict[str, KubernetesRelease] = {
    r.minor: r
    for r in (
        KubernetesRelease("1.30", date(2024, 4, 17), date(2025, 7, 15), None),
        KubernetesRelease("1.31", date(2024, 8, 13), date(2025, 10, 28), None),
        KubernetesRelease("1.32", date(2024, 12, 11), date(2026, 2, 28), None),
        KubernetesRelease("1.33", date(2025, 4, 23), date(2026, 6, 28), None),
        KubernetesRelease("1.34", date(2025, 8, 27), date(2026, 10, 27), None),
        KubernetesRelease("1.35", date(2025, 12, 17), date(2027, 2, 28), 9),
        KubernetesRelease("1.36", date(2026, 4, 22), date(2027, 6, 28), 4),
        KubernetesRelease("1.37", date(2026, 8, 26), date(2027, 10, 28), 1),
    )
}
# Magnum's kube_tag default: the newest minor the pinned GPU operator (v26.7.0) is validated on (1.33-1.36),
# at its latest patch seen; upstream support until 2027-06-28.
DEFAULT_MAGNUM_KUBE_TAG = "v1.36.4"
# Which minors a Magnum cloud can actually run is its driver's (the cloud operator's): the Heat driver
# (k8s_fedora_coreos_v1) is deprecated since Magnum 2025.1 (20.0.0 release notes), its CI last tested 1.28
# (openstack/magnum .zuul.yaml job k8s_fcos_v1-1.28, dropped August 2025); the Cluster API drivers
# (magnum-capi-helm, vexxhost magnum-cluster-api) run the releases their images ship. Not judged here:
# check `openstack coe cluster template show` on the target cloud.
KUBE_TAG_WARN_DAYS = 60  # warn this long before a kube_tag's end of life


def kubernetes_support(minor: str, on: date | None = None) -> str:
    """"supported", "ended", "unreleased" or "unknown" for an upstream Kubernetes minor on a date (default: today)."""
    r = KUBERNETES_RELEASES.get(minor)
    if r is None:
        return "unknown"
    on = on or today()
    if on < r.released:
        return "unreleased"
    return "supported" if on <= r.end_of_life else "ended"


def supported_kubernetes_minors(on: date | None = None) -> list[str]:
    return [m for m in KUBERNETES_RELEASES if kubernetes_support(m, on) == "supported"]


# AWS regions (commercial partition `aws` and GovCloud `aws-us-gov`) and the Availability Zone names each
# has. Regions: botocore 1.44.5 (the pinned boto3's) data/endpoints.json partitions, checked 2026-12-01
# (tests compare the two). Zones: the AWS documentation "AWS Availability Zones" page
# (docs.aws.amazon.com/global-infrastructure/latest/regions/aws-availability-zones.html, AZ IDs per
# region), read 2026-12-01. Zone names are the region code plus a letter; in the oldest regions the
# letters are mapped per account and some are missing (ca-central-1 has a, b, d; us-west-1 gives each
# account two of a, b, c; ap-northeast-1 has a, c, d, older accounts b too): the letters listed here are
# every one that exists in some account. `aws ec2 describe-availability-zones --region R` shows an account's.
def _zones(region: str, letters: str) -> tuple[str, ...]:
    return tuple(f"{region}{letter}" for letter in letters)


AWS_REGIONS: dict[str, tuple[str, ...]] = {
    region: _zones(region, letters)
    for region, letters in (
        ("af-south-1", "abc"), ("ap-east-1", "abc"), ("ap-east-2", "abc"),
        ("ap-northeast-1", "abcd"), ("ap-northeast-2", "abcd"), ("ap-northeast-3", "abc"),
        ("ap-south-1", "abc"), ("ap-south-2", "abc"),
        ("ap-southeast-1", "abc"), ("ap-southeast-2", "abc"), ("ap-southeast-3", "abc"), ("ap-southeast-4", "abc"),
        ("ap-southeast-5", "abc"), ("ap-southeast-6", "abc"), ("ap-southeast-7", "abc"),
        ("ca-central-1", "abd"), ("ca-west-1", "abc"),
        ("eu-central-1", "abc"), ("eu-central-2", "abc"), ("eu-north-1", "abc"), ("eu-south-1", "abc"), ("eu-south-2", "abc"),
        ("eu-west-1", "abc"), ("eu-west-2", "abc"), ("eu-west-3", "abc"),
        ("il-central-1", "abc"), ("me-central-1", "abc"), ("me-south-1", "abc"), ("mx-central-1", "abc"),
        ("sa-east-1", "abc"),
        ("us-east-1", "abcdef"), ("us-east-2", "abc"), ("us-west-1", "abc"), ("us-west-2", "abcd"),
        ("us-gov-east-1", "abc"), ("us-gov-west-1", "abc"),
    )
}


# The cluster autoscaler image per EKS minor (kept for callers that only need the tag).
CLUSTER_AUTOSCALER_IMAGE_TAGS: dict[str, str] = {m: v.autoscaler_tag for m, v in EKS_VERSIONS.items()}


@dataclass(frozen=True)
class TritonRelease:
    """An NGC release of Triton Inference Server and what its images hold (None: no source found)."""

    release: str  # NGC tag prefix, e.g. "26.11" (images <release>-py3, <release>-py3-sdk)
    server: str | None  # Triton server version
    released: str | None  # ISO date
    pytorch: str | None  # the PyTorch (libtorch) the PyTorch backend of this release is built on
    source: str


# Releases a stack may name in serving.triton_version (checked 2026-12-01). The clusters run the
# models on the PyTorch (libtorch) backend of the stock `-py3` image: its Python has no torch (the
# Python backend there serves model.py files without their packages: server issue #5461), so the
# local plane's Python-backend model.py cannot run on it; the same model.pt can.
TRITON_RELEASES: dict[str, TritonRelease] = {
    r.release: r
    for r in (
        TritonRelease(
            "24.10", "2.51.0", "2024-10-28", "2.5.0a0",
            "triton-inference-server/server build.py at v2.51.0 (2.51.0 -> 24.10); compatibility.md (PyTorch 2.5.0a0+e000cf0ad9.nv24.10)",
        ),
        TritonRelease(
            "26.04", None, None, "2.12.0a0",
            "triton-inference-server/pytorch_backend README, branch r26.05: 26.04 uses nvcr.io/nvidia/pytorch:26.04-py3, PyTorch 2.12.0a0",
        ),
        TritonRelease(
            "26.11", "2.75.0", "2026-11-17", None,
            "GitHub release v2.75.0 of triton-inference-server/server: 'corresponding to NGC container 26.11'; its PyTorch version is not in the sources found",
        ),
    )
}


def aws_gpu_instance_types() -> list[str]:
    return sorted(n for n, m in AWS_INSTANCE_TYPES.items() if m.is_gpu)


def aws_cpu_instance_types() -> list[str]:
    return sorted(n for n, m in AWS_INSTANCE_TYPES.items() if not m.is_gpu)


def brief(names: list[str], limit: int = 12) -> str:
    """A readable list of valid names for an error message."""
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit} more)" if len(names) > limit else "")
