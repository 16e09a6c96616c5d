"""Where models run (issue 7): the EKS and Magnum clusters with their GPU node pools.

`build(ctx, network, storage)` runs after the network (subnets, security groups, the EKS cluster name
the subnets are tagged for) and the storage (the stack key, the model bucket, the role names the key
policy already names). It builds `EksGpuCluster` (infra/components/eks.py) and `MagnumGpuCluster`
(infra/components/magnum.py), one Kubernetes provider per cluster, and the cluster-side add-ons
through it, and returns `ClusterParts`: a typed `ClusterHandle` per site for what runs on the clusters
(the provider, the Kubernetes version, the GPU pools with their labels and taints, what must be ready
first). Stack outputs: `clusterNames` {aws, openstack}, `kubeconfigs` (secret, by
ctx.kubernetes_provider), `modelReaderRoleArn`, `tritonServiceAccount`, `gpuPools`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES
from hybridserve.stackconfig.schema.clusters import POOL_LABEL, Taint
from infra.components.eks import SYSTEM_POOL, EksGpuCluster, EksGpuClusterArgs, gpu_pool_labels
from infra.components.magnum import MagnumGpuCluster, MagnumGpuClusterArgs
from infra.components.network import NetworkParts
from infra.components.storage import StorageParts
from infra.context import StackContext

Site = Literal["aws", "openstack"]


@dataclass(frozen=True)
class GpuPool:
    """A GPU node pool as a workload sees it: how to land on it and what one node offers."""

    name: str
    node_labels: dict[str, str]
    taints: tuple[Taint, ...]
    gpus_per_node: int
    node_group: pulumi.Resource

    def tolerations(self) -> list[dict[str, str]]:
        return [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect} for t in self.taints]


@dataclass
class ClusterHandle:
    """One site's cluster, for the components that run on it (Triton, monitoring)."""

    site: Site
    provider: k8s.Provider
    kubernetes_version: str  # minor, e.g. "1.31"
    gpu_pools: list[GpuPool]
    # Where CPU workloads of the kit (the smoke gate, Prometheus) may run; {}: any untainted node.
    system_node_selector: dict[str, str]
    # What a workload needs before it can start: node groups, the GPU device plugin, storage.
    ready: list[pulumi.Resource] = field(default_factory=list)

    @property
    def pool_names(self) -> list[str]:
        return [p.name for p in self.gpu_pools]


@dataclass
class ClusterParts:
    """The clusters, for the program's later components (returned by `build`)."""

    eks: EksGpuCluster
    magnum: MagnumGpuCluster
    aws: ClusterHandle
    openstack: ClusterHandle

    def site(self, name: Site) -> ClusterHandle:
        return self.aws if name == "aws" else self.openstack


def _minor(tag: str) -> str:
    return ".".join(tag.lstrip("v").split(".")[:2])


def build(ctx: StackContext, network: NetworkParts, storage: StorageParts) -> ClusterParts:
    cfg = ctx.config
    namespace = cfg.serving.namespace
    eks_cfg = cfg.aws.eks
    monitoring = cfg.serving.monitoring

    eks = EksGpuCluster(
        "eks",
        EksGpuClusterArgs(
            name=network.eks_cluster_name,  # the network tagged its subnets for this name
            region=cfg.aws.region,
            cfg=eks_cfg,
            roles=storage.roles,
            account=storage.account,
            vpc_id=network.vpc_id,
            private_subnet_ids=list(network.private_subnet_ids),
            node_security_group_ids=[network.aws_peer_security_group_id],
            key_arn=storage.key.arn,
            bucket_arn=storage.bucket.bucket.arn,
            prefix=storage.prefix,
            triton_namespace=namespace,
            tags=ctx.tags,
            log_key_arn=network.logs_kms_key_arn,
        ),
        opts=ctx.component_opts(),
    )
    aws_k8s = ctx.kubernetes_provider("aws", eks.kubeconfig, parent=eks)
    eks.install(aws_k8s)

    os_cfg = cfg.openstack
    magnum_cfg = os_cfg.magnum
    dns = list(os_cfg.network.dns_nameservers)
    runners = list(magnum_cfg.deploy_access.runner_cidrs) if magnum_cfg.deploy_access else []
    magnum = MagnumGpuCluster(
        "magnum",
        MagnumGpuClusterArgs(
            name=ctx.name("k8s"),
            cfg=magnum_cfg,
            flavors=os_cfg.flavors(),
            network_id=network.openstack_network_id,
            subnet_id=network.openstack_subnet_id,
            external_network_id=network.openstack_external_network_id,
            dns_nameserver=dns[0] if dns else None,
            volume_type=cfg.storage.cinder_volume_type,
            region=os_cfg.region,
            # Nodes and pods reach the API through the same load balancer as the deployer.
            api_allowed_cidrs=list(dict.fromkeys([*runners, os_cfg.network.cidr, magnum_cfg.pod_cidr])) if runners else [],
        ),
        opts=ctx.component_opts(),
    )
    os_k8s = ctx.kubernetes_provider("openstack", magnum.kubeconfig, parent=magnum)
    magnum.install(os_k8s, dcgm_exporter=monitoring.dcgm_exporter, service_monitors=monitoring.prometheus != "none")

    flavors = os_cfg.flavors()
    aws_handle = ClusterHandle(
        site="aws",
        provider=aws_k8s,
        kubernetes_version=eks_cfg.version,
        gpu_pools=[
            GpuPool(
                pool.name, gpu_pool_labels(pool), tuple(pool.taints),
                min(AWS_INSTANCE_TYPES[t].gpu_count for t in pool.instance_types), eks.gpu_node_groups[pool.name],
            )
            for pool in eks_cfg.gpu_pools
        ],
        system_node_selector={POOL_LABEL: SYSTEM_POOL},
        ready=[eks.system_nodes, eks.ebs_csi, eks.device_plugin, eks.metrics_server, *eks.gpu_node_groups.values()],
    )
    os_handle = ClusterHandle(
        site="openstack",
        provider=os_k8s,
        kubernetes_version=_minor(magnum_cfg.template.kube_tag),
        gpu_pools=[
            GpuPool(pool.name, magnum.gpu_labels[pool.name], tuple(pool.taints), flavors[pool.flavor].gpu_count, magnum.gpu_node_groups[pool.name])
            for pool in magnum_cfg.gpu_pools
        ],
        system_node_selector={},  # Magnum's default workers carry no label of ours; GPU nodes are tainted
        ready=[magnum.cluster, magnum.device_plugin, *magnum.gpu_node_groups.values()],
    )

    ctx.outputs.extra["clusterNames"] = {"aws": eks.name, "openstack": magnum.name}
    ctx.outputs.extra["modelReaderRoleArn"] = eks.model_reader_role.arn
    ctx.outputs.extra["tritonServiceAccount"] = {"namespace": namespace, "name": eks_cfg.triton_service_account}
    ctx.outputs.extra["gpuPools"] = {
        "aws": {pool: group.node_group_name for pool, group in eks.gpu_node_groups.items()},
        "openstack": {pool: group.name for pool, group in magnum.gpu_node_groups.items()},
    }
    return ClusterParts(eks=eks, magnum=magnum, aws=aws_handle, openstack=os_handle)
