"""Sizing and catalogue checks of a stack (issue 11): what a cloud would refuse, or bill, or never schedule.

- GPU machines in the CPU pools (EKS system pool, Magnum masters and default workers), CPU machines in GPU pools;
- a Triton pod larger than any node of its site's GPU pools (GPUs, vCPUs, memory), replicas in whole pods per node;
- networks too small for the nodes at max size (OpenStack tenant subnet, EKS private subnets);
- SLOs and flavor figures that are not finite or beyond what can be measured;
- Magnum's kube_tag against upstream Kubernetes support, AWS regions and zone names against their catalogues.

Through the loader like tests/test_stackconfig_schema.py, and through the CLI (exit 2, the key named, no traceback).
The suite judges dates on 2026-12-01 (tests/conftest.py); some tests move it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hybridserve.stackconfig import StackConfigError, build_stack_config
from hybridserve.stackconfig.catalog import AWS_REGIONS, DEFAULT_MAGNUM_KUBE_TAG, KUBERNETES_RELEASES, kubernetes_support
from hybridserve.stackconfig.loader import stack_warnings
from cliutil import run_cli
from stackutil import reachable

REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}
SOURCE = "stacks/Pulumi.acme-dev.yaml"


def build(extra: dict | None = None):
    return build_stack_config(reachable({**REQUIRED, **(extra or {})}), source=SOURCE)


def problems_of(extra: dict) -> list[str]:
    with pytest.raises(StackConfigError) as info:
        build(extra)
    assert info.value.exit_code == 2
    return info.value.problems


def only_problem(extra: dict, key: str) -> str:
    """The one problem of a stack, which must name `key` (the full config key) right after the file."""
    [problem] = problems_of(extra)
    assert problem.startswith(f"{SOURCE}: {key}: "), problem
    return problem


def aws(**eks) -> dict:
    return {"hybridserve:aws": {"eks": eks}}


def magnum(**cluster) -> dict:
    return {"hybridserve:openstack": {"magnum": cluster}}


def serving(**values) -> dict:
    return {"hybridserve:serving": values}


# --- 1. machines of the right kind in each pool ------------------------------------------------------


def test_a_gpu_instance_type_in_the_system_pool_is_refused_with_its_price_and_cpu_types():
    problem = only_problem(aws(system_pool={"instance_types": ["m6i.large", "p5.48xlarge"]}), "hybridserve:aws.eks.system_pool.instance_types[1]")
    assert "'p5.48xlarge' is a GPU instance type (8× H100, about USD 40,179/month per node)" in problem
    assert "use a CPU instance type, e.g." in problem and "m6i.large" in problem
    assert build(aws(system_pool={"instance_types": ["m7i.xlarge"]})).aws.eks.system_pool.instance_types == ["m7i.xlarge"]


@pytest.mark.parametrize("key", ["master_flavor", "worker_flavor"])
def test_a_gpu_flavor_for_magnum_masters_or_default_workers_is_refused(key):
    problem = only_problem(magnum(template={key: "gpu.a100.4xlarge"}), f"hybridserve:openstack.magnum.template.{key}")
    assert "'gpu.a100.4xlarge' is a GPU flavor (1× A100" in problem and "use a CPU flavor, e.g. m1.large" in problem


def test_a_gpu_flavor_the_stack_declares_is_refused_for_the_masters_too():
    extra = {"hybridserve:openstack": {
        "flavor_catalog": {"site.gpu": {"vcpus": 8, "memory_gib": 32, "gpu_model": "T4", "gpu_count": 1}, "site.cpu": {"vcpus": 4, "memory_gib": 16}},
        "magnum": {"template": {"master_flavor": "site.gpu"}},
    }}
    problem = only_problem(extra, "hybridserve:openstack.magnum.template.master_flavor")
    assert "'site.gpu' is a GPU flavor" in problem and "site.cpu" in problem
    extra["hybridserve:openstack"]["magnum"]["template"]["master_flavor"] = "site.cpu"
    assert build(extra).openstack.magnum.template.master_flavor == "site.cpu"


def test_cpu_machines_in_gpu_pools_are_refused_on_both_sites():
    problem = only_problem(aws(gpu_pools=[{"name": "gpu", "instance_types": ["m6i.large"]}]), "hybridserve:aws.eks.gpu_pools[0].instance_types[0]")
    assert "'m6i.large' is not a known GPU instance type" in problem
    problem = only_problem(magnum(gpu_pools=[{"name": "gpu", "flavor": "m1.xlarge"}]), "hybridserve:openstack.magnum.gpu_pools[0].flavor")
    assert "'m1.xlarge' is not a known GPU flavor" in problem


# --- 2. a Triton pod fits one node of its pools --------------------------------------------------------


def test_a_pod_asking_more_gpus_than_any_node_has_is_refused_naming_both_keys():
    problems = problems_of(serving(resources={"gpus": 2}))
    assert len(problems) == 2  # one per site: g4dn.xlarge and gpu.t4.large have 1 GPU
    aws_problem, os_problem = sorted(problems)
    assert aws_problem.startswith(f"{SOURCE}: hybridserve:serving.resources.gpus: 2 per Triton pod is more than any node of the GPU pools on aws offers")
    assert "hybridserve:aws.eks.gpu_pools[0].instance_types: g4dn.xlarge (GPUs: 1)" in aws_problem and "e.g. g4dn.12xlarge" in aws_problem
    assert "hybridserve:openstack.magnum.gpu_pools[0].flavor: gpu.t4.large (GPUs: 1)" in os_problem and "gpu.t4x2.xlarge" in os_problem


def test_a_pod_fits_when_a_pool_has_nodes_with_enough_gpus():
    cfg = build({
        **serving(resources={"gpus": 2}, targets=["aws"]),
        "hybridserve:aws": {"eks": {"gpu_pools": [{"name": "quad", "instance_types": ["g5.12xlarge"], "max_size": 1}]}},
    })
    assert cfg.serving.resources.gpus == 2 and stack_warnings(cfg) == []


@pytest.mark.parametrize(("key", "value", "shown"), [("cpu_request", "64", "vCPUs: 4, 3.92 allocatable"), ("memory_request", "600Gi", "memory: 16 GiB, 15.34 GiB allocatable")])
def test_cpu_or_memory_beyond_any_node_is_refused(key, value, shown):
    limit = key.replace("request", "limit")
    problems = problems_of(serving(resources={key: value, limit: value}, targets=["aws"]))
    [problem] = problems
    assert problem.startswith(f"{SOURCE}: hybridserve:serving.resources.{key}: {value} per Triton pod is more than any node")
    assert f"hybridserve:aws.eks.gpu_pools[0].instance_types: g4dn.xlarge ({shown})" in problem


def test_a_request_of_a_whole_node_is_refused_since_the_kubelet_keeps_some():
    # vision-prod asked for 4 CPUs and 16Gi on g5.xlarge (4 vCPUs, 16 GiB): never schedulable on EKS, whose
    # AMI keeps 80m CPU and at least 674 MiB of memory for the kubelet and eviction.
    pool = {"name": "a10g", "instance_types": ["g5.xlarge"], "max_size": 2}
    resources = {"cpu_request": "4", "cpu_limit": "8", "memory_request": "16Gi", "memory_limit": "24Gi"}
    problems = problems_of({**serving(resources=resources, targets=["aws"]), **aws(gpu_pools=[pool])})
    assert [p.split(": ")[1] for p in sorted(problems)] == ["hybridserve:serving.resources.cpu_request", "hybridserve:serving.resources.memory_request"]
    assert all("g5.xlarge (vCPUs: 4, 3.92 allocatable, memory: 16 GiB, 15.34 GiB allocatable)" in p for p in problems)
    assert all("e.g. g5.2xlarge" in p for p in problems)  # the same GPU model first
    cfg = build({**serving(resources={**resources, "cpu_request": "3.9", "memory_request": "15Gi"}, targets=["aws"]), **aws(gpu_pools=[pool])})
    assert cfg.serving.resources.cpu_request == "3.9"
    # Magnum's kubelet keeps at least the 100 MiB eviction threshold: gpu.t4.large has 8 vCPUs and 32 GiB.
    problem = only_problem(serving(resources={"memory_request": "32Gi", "memory_limit": "32Gi"}, targets=["openstack"]), "hybridserve:serving.resources.memory_request")
    assert "gpu.t4.large (memory: 32 GiB, 31.90 GiB allocatable)" in problem
    assert build(serving(resources={"cpu_request": "8", "cpu_limit": "8"}, targets=["openstack"])).serving.resources.cpu_request == "8"


def test_a_pool_no_pod_fits_while_another_does_is_a_warning():
    cfg = build({
        **serving(resources={"gpus": 4}, targets=["aws"], replicas={"min": 1, "max": 1}),
        "hybridserve:aws": {"eks": {"gpu_pools": [
            {"name": "quad", "instance_types": ["g5.12xlarge"]},
            {"name": "single", "instance_types": ["g5.xlarge"]},
        ]}},
    })
    [warning] = stack_warnings(cfg)
    assert warning.startswith("config: hybridserve:aws.eks.gpu_pools[1].instance_types: g5.xlarge nodes cannot hold a Triton pod (GPUs: 1)")


def test_replicas_count_whole_pods_per_node():
    # 3 GPUs per pod on 4-GPU nodes: one pod per node, so one node at max_size holds 1 replica, not 4/3.
    extra = {
        **serving(resources={"gpus": 3}, targets=["aws"], replicas={"min": 1, "max": 2}),
        "hybridserve:aws": {"eks": {"gpu_pools": [{"name": "quad", "instance_types": ["g5.12xlarge"], "min_size": 0, "desired_size": 1, "max_size": 1}]}},
    }
    problem = only_problem(extra, "hybridserve:serving.replicas.max")
    assert "2 replicas × 3 GPU need 6 GPUs on aws, but its GPU pools reach only 3 of 4, since a pod's GPUs" in problem
    extra["hybridserve:aws"]["eks"]["gpu_pools"][0]["max_size"] = 2
    assert build(extra).serving.replicas.max == 2


# --- 3. networks hold the nodes ----------------------------------------------------------------------


def test_an_openstack_slash_28_does_not_take_40_nodes():
    extra = {"hybridserve:openstack": {"network": {"cidr": "10.64.0.0/28"}, "magnum": {"gpu_pools": [{"name": "gpu", "max_size": 40}]}}}
    problem = only_problem(extra, "hybridserve:openstack.network.cidr")
    assert "10.64.0.0/28 has 10 addresses for ports (16 less network, broadcast, gateway and 3 for DHCP)" in problem
    assert "needs 51: 1 masters, 1 default workers, 40 GPU nodes at max_size and 3 load balancers × 3 ports; use a /26 or larger" in problem


def test_the_openstack_count_is_exact_at_the_boundary():
    # /27: 32 - 6 = 26 ports; 1 master + 1 worker + 15 GPU nodes + 3 load balancers × 3 = 26 fits, one more does not.
    def extra(max_size: int) -> dict:
        return {"hybridserve:openstack": {"network": {"cidr": "10.64.0.0/27"}, "magnum": {"gpu_pools": [{"name": "gpu", "max_size": max_size}]}}}

    assert build(extra(15)).openstack.network.cidr == "10.64.0.0/27"
    assert "needs 27" in only_problem(extra(16), "hybridserve:openstack.network.cidr")
    # Triton not served on OpenStack: no internal load balancer there, room for 3 more nodes.
    assert build({**extra(18), **serving(targets=["aws"])}).openstack.magnum.gpu_pools[0].max_size == 18


def test_eks_private_subnets_hold_the_nodes_and_without_a_pod_cidr_the_pods():
    extra = {"hybridserve:aws": {"vpc": {"private_subnet_prefix": 28}, "eks": {"gpu_pools": [{"name": "gpu", "max_size": 18}]}}}
    problem = only_problem(extra, "hybridserve:aws.vpc.private_subnet_prefix")
    assert "/28 private subnets hold 11 addresses each (22 in 2 zones, AWS keeps 5 per subnet), but the cluster needs at least 23" in problem
    assert "21 nodes at max_size and 2 Triton pods (VPC CNI" in problem


# --- 4. SLOs and other figures are finite ------------------------------------------------------------


@pytest.mark.parametrize(
    ("slo", "key", "expected"),
    [
        ({"slo": {"max_p99_ms": float("inf")}}, "hybridserve:serving.slo.max_p99_ms", "inf is not valid; give a finite number of ms"),
        ({"slo": {"max_p99_ms": 60000}}, "hybridserve:serving.slo.max_p99_ms", "at most 10,000"),
        ({"slo": {"min_throughput": float("inf")}}, "hybridserve:serving.slo.min_throughput", "inf is not valid; give a finite number of inferences/s, at most 1,000,000"),
        ({"slo": {"min_throughput": float("nan")}}, "hybridserve:serving.slo.min_throughput", "NaN is out of range"),
        ({"slo": {"max_error_rate": float("inf")}}, "hybridserve:serving.slo.max_error_rate", "is out of range; must be less than 1"),
        ({"model_slos": {"resnet": {"min_throughput": 1e300}}}, "hybridserve:serving.model_slos.resnet.min_throughput", "1e+300 is not valid"),
        ({"model_slos": {"resnet": {"max_p99_ms": float("inf")}}}, "hybridserve:serving.model_slos.resnet.max_p99_ms", "inf is not valid"),
    ],
)
def test_non_finite_or_unmeasurable_slos_are_refused(slo, key, expected):
    assert expected in only_problem(serving(**slo), key)


def test_the_largest_measurable_slos_are_accepted():
    cfg = build(serving(slo={"max_p99_ms": 10000, "min_throughput": 1_000_000}))
    assert cfg.serving.slo.max_p99_ms == 10000


@pytest.mark.parametrize("key", ["usd_per_hour", "memory_gib", "gpu_memory_gib"])
def test_a_declared_flavor_takes_finite_figures(key):
    spec = {"vcpus": 4, "memory_gib": 16, key: float("inf")}
    problem = only_problem({"hybridserve:openstack": {"flavor_catalog": {"site.cpu": spec}}}, f"hybridserve:openstack.flavor_catalog.site.cpu.{key}")
    assert "inf is not valid; give a finite number" in problem


# --- 5. catalogues: kube_tag, regions, zones ---------------------------------------------------------


def test_an_end_of_life_kube_tag_is_refused_with_the_supported_releases():
    problem = only_problem(magnum(template={"kube_tag": "v1.30.7"}), "hybridserve:openstack.magnum.template.kube_tag")
    assert "'v1.30.7' is of Kubernetes 1.30, past its upstream end of life on 2025-07-15" in problem
    assert "use a release in upstream support as of 2026-12-01: v1.35.9, v1.36.4, v1.37.1" in problem
    # 1.34 ended on 2026-10-27, a month before the suite's date
    assert "past its upstream end of life on 2026-10-27" in only_problem(magnum(template={"kube_tag": "v1.34.6"}), "hybridserve:openstack.magnum.template.kube_tag")
    assert "not a Kubernetes release the kit knows" in only_problem(magnum(template={"kube_tag": "v1.99.0"}), "hybridserve:openstack.magnum.template.kube_tag")


def test_an_unreleased_kube_tag_is_refused(monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_TODAY", "2026-08-01")
    assert "not released before 2026-08-26" in only_problem(magnum(template={"kube_tag": "v1.37.0"}), "hybridserve:openstack.magnum.template.kube_tag")


def test_a_kube_tag_near_its_end_of_life_warns(monkeypatch):
    extra = magnum(template={"kube_tag": "v1.35.9"})
    assert stack_warnings(build(extra)) == []  # 89 days left on 2026-12-01
    monkeypatch.setenv("HYBRIDSERVE_TODAY", "2027-01-15")
    [warning] = stack_warnings(build(extra))
    assert "kube_tag: 'v1.35.9': Kubernetes 1.35 reaches its upstream end of life in 44 days (2027-02-28); plan the upgrade to v1.36.4, v1.37.1" in warning
    monkeypatch.setenv("HYBRIDSERVE_TODAY", "2027-03-01")
    assert "past its upstream end of life on 2027-02-28" in only_problem(extra, "hybridserve:openstack.magnum.template.kube_tag")


def test_a_patch_newer_than_the_catalogue_warns():
    [warning] = stack_warnings(build(magnum(template={"kube_tag": "v1.36.40"})))
    assert "'v1.36.40' is newer than the latest 1.36 patch the catalogue knows (v1.36.4)" in warning


def test_a_kube_tag_the_pinned_gpu_operator_is_not_validated_on_warns():
    [warning] = stack_warnings(build(magnum(template={"kube_tag": "v1.37.1"})))
    assert "kube_tag: 'v1.37.1': the GPU operator v26.7.0 is validated on Kubernetes 1.33-1.36, not 1.37" in warning
    # the device plugin alone (a node image with the driver) has no such range
    assert stack_warnings(build(magnum(template={"kube_tag": "v1.37.1"}, nvidia={"mode": "device-plugin"}))) == []


def test_the_default_kube_tag_and_the_examples_are_in_support():
    assert build().openstack.magnum.template.kube_tag == DEFAULT_MAGNUM_KUBE_TAG
    assert kubernetes_support(DEFAULT_MAGNUM_KUBE_TAG[1:].rsplit(".", 1)[0]) == "supported"
    r = KUBERNETES_RELEASES["1.36"]
    assert DEFAULT_MAGNUM_KUBE_TAG == f"v1.36.{r.latest_patch}"


def test_unknown_regions_are_refused_and_the_catalogue_matches_botocore():
    problem = only_problem({"aws:region": "us-north-7"}, "aws:region")
    assert "'us-north-7' is not an AWS region the kit knows; known: af-south-1" in problem
    import botocore.loaders

    partitions = {p["partition"]: set(p["regions"]) for p in botocore.loaders.Loader().load_data("endpoints")["partitions"]}
    assert set(AWS_REGIONS) == partitions["aws"] | partitions["aws-us-gov"]


def test_zone_ids_and_zones_of_another_region_or_none_are_refused():
    problem = only_problem({"hybridserve:aws": {"vpc": {"availability_zones": ["us-east-1a", "use1-az2"]}}}, "hybridserve:aws.vpc.availability_zones[1]")
    assert "'use1-az2' is an Availability Zone ID; give zone names, e.g. us-east-1a" in problem and "describe-availability-zones --region us-east-1" in problem
    problem = only_problem({"hybridserve:aws": {"vpc": {"availability_zones": ["us-east-1a", "us-east-1z"]}}}, "hybridserve:aws.vpc.availability_zones[1]")
    assert "'us-east-1z' does not exist in us-east-1; its zones: us-east-1a" in problem
    problem = only_problem({"aws:region": "eu-west-1", "hybridserve:aws": {"vpc": {"availability_zones": ["eu-west-1a", "eu-central-1b"]}}}, "hybridserve:aws.vpc.availability_zones[1]")
    assert "'eu-central-1b' is not a zone of region eu-west-1" in problem


def test_default_zones_that_a_region_lacks_are_refused():
    problem = only_problem({"aws:region": "ca-central-1", "hybridserve:aws": {"vpc": {"az_count": 3}}}, "hybridserve:aws.vpc.az_count")
    assert "would include ca-central-1c, which does not exist; list vpc.availability_zones from ca-central-1a, ca-central-1b, ca-central-1d" in problem
    cfg = build({"aws:region": "ca-central-1", "hybridserve:aws": {"vpc": {"availability_zones": ["ca-central-1a", "ca-central-1b", "ca-central-1d"]}}})
    assert cfg.aws.vpc.zones("ca-central-1")[-1] == "ca-central-1d"


# --- through the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def checkout(example_checkout: Path) -> Path:
    return example_checkout / "stacks"


def test_the_examples_validate(checkout: Path, capsys):
    code, out, err = run_cli(["validate"], capsys)
    assert code == 0 and "4 stacks valid" in out, err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML text as a user writes it, edited into vision-dev's file
        (("      system_pool:\n        instance_types: [t3.large]", "      system_pool:\n        instance_types: [p5.48xlarge]"),
         "stacks/Pulumi.vision-dev.yaml: hybridserve:aws.eks.system_pool.instance_types[0]: 'p5.48xlarge' is a GPU instance type"),
        (("    network:\n      cidr: 10.110.0.0/22", "    network:\n      cidr: 10.110.0.0/28"),
         "stacks/Pulumi.vision-dev.yaml: hybridserve:openstack.network.cidr: 10.110.0.0/28 has 10 addresses for ports"),
        (("      max_p99_ms: 600", "      max_p99_ms: .inf"),
         "hybridserve:serving.slo.max_p99_ms: .inf cannot be stored by Pulumi"),  # refused as the file is read
        (("      max_p99_ms: 600", "      max_p99_ms: 1e9"),
         "stacks/Pulumi.vision-dev.yaml: hybridserve:serving.slo.max_p99_ms:"),
        (("      gpus: 1", "      gpus: 8"),
         "stacks/Pulumi.vision-dev.yaml: hybridserve:serving.resources.gpus: 8 per Triton pod is more than any node of the GPU pools on aws offers"),
        (("    magnum:\n", "    magnum:\n      template:\n        kube_tag: v1.30.7\n"),
         "stacks/Pulumi.vision-dev.yaml: hybridserve:openstack.magnum.template.kube_tag: 'v1.30.7' is of Kubernetes 1.30, past its upstream end of life"),
    ],
)
def test_validate_names_the_key_and_exits_2(checkout: Path, capsys, text, expected):
    path = checkout / "Pulumi.vision-dev.yaml"
    old, new = text
    content = path.read_text()
    assert content.count(old) == 1, old
    path.write_text(content.replace(old, new))
    yaml.safe_load(path.read_text())  # still YAML: the schema is what refuses it
    code, out, err = run_cli(["validate"], capsys)
    assert code == 2 and expected in err, err
    assert "Traceback" not in out + err
