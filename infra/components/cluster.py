"""Where models run (issue 7): the EKS and Magnum clusters with their GPU node pools.

`build` runs after the network (`ctx.get("network")`: subnets, security groups, the EKS cluster
name the subnets are tagged for) and after the storage (`ctx.get("storage")`: the stack key,
the model bucket, the Swift credentials, the role names the key policy already names). It builds
`EksGpuCluster` (infra/components/eks.py) and `MagnumGpuCluster` (infra/components/magnum.py), one
Kubernetes provider per cluster, and the cluster-side objects through it.

Published for later builders (Triton): `ctx.put("clusters", ClusterParts)`. Stack outputs:
`clusterNames` {aws, openstack}, `kubeconfigs` (secret, by ctx.kubernetes_provider),
`modelReaderRoleArn`, `tritonServiceAccount`.

Without a network component (not yet in COMPONENTS) the clusters cannot be placed: the builder
then plans nothing and warns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from hybridserve.stackconfig.schema.clusters import GPU_PRESENT_LABEL, GPU_TAINT_EFFECT, GPU_TAINT_KEY
from infra.components.eks import EksGpuCluster, EksGpuClusterArgs
from infra.components.magnum import MODEL_CREDENTIALS_SECRET, MagnumGpuCluster, MagnumGpuClusterArgs
from infra.context import StackContext


@dataclass
class ClusterParts:
    """What the Triton component needs from the clusters (`ctx.get("clusters")`)."""

    eks: EksGpuCluster
    magnum: MagnumGpuCluster
    providers: dict[str, k8s.Provider]  # "aws", "openstack"
    triton_namespace: str  # created on both clusters
    triton_service_account: str  # on both; on EKS annotated with the model-reader role
    model_reader_role_arn: pulumi.Output[str]
    # On the OpenStack cluster: a Secret (in triton_namespace) with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_DEFAULT_REGION for Swift's S3 API.
    swift_credentials_secret: str
    gpu_node_selector: dict[str, str] = field(default_factory=lambda: {GPU_PRESENT_LABEL: "true"})
    gpu_tolerations: list[dict[str, Any]] = field(
        default_factory=lambda: [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}]
    )


def _eks_name(ctx: StackContext, network: Any) -> str:
    # The network tags its subnets for this name (kubernetes.io/cluster/<name>); both must agree.
    return getattr(network, "eks_cluster_name", None) or ctx.name("eks")


def build(ctx: StackContext) -> None:
    if not ctx.has("network"):
        pulumi.log.warn("clusters: no network component in COMPONENTS (infra/components/__init__.py); the EKS and Magnum clusters are not planned")
        return
    cfg = ctx.config
    network = ctx.get("network")
    storage = ctx.get("storage")
    namespace = cfg.serving.namespace
    eks_cfg = cfg.aws.eks

    eks = EksGpuCluster(
        "eks",
        EksGpuClusterArgs(
            name=_eks_name(ctx, network),
            region=cfg.aws.region,
            cfg=eks_cfg,
            roles=storage.roles,
            account=storage.account,
            private_subnet_ids=list(network.private_subnet_ids),
            node_security_group_ids=[network.aws_peer_security_group_id],
            key_arn=storage.key.arn,
            bucket_arn=storage.bucket.bucket.arn,
            prefix=storage.prefix,
            triton_namespace=namespace,
        ),
        opts=ctx.component_opts(),
    )
    aws_k8s = ctx.kubernetes_provider("aws", eks.kubeconfig, parent=eks)
    eks.install(aws_k8s)

    os_cfg = cfg.openstack
    dns = list(os_cfg.network.dns_nameservers)
    magnum = MagnumGpuCluster(
        "magnum",
        MagnumGpuClusterArgs(
            name=ctx.name("k8s"),
            cfg=os_cfg.magnum,
            flavors=os_cfg.flavors(),
            network_id=network.openstack_network_id,
            subnet_id=network.openstack_subnet_id,
            external_network_id=network.openstack_external_network_id,
            dns_nameserver=dns[0] if dns else None,
            volume_type=cfg.storage.cinder_volume_type,
            triton_namespace=namespace,
            triton_service_account=eks_cfg.triton_service_account,
            region=os_cfg.region,
        ),
        opts=ctx.component_opts(),
    )
    os_k8s = ctx.kubernetes_provider("openstack", magnum.kubeconfig, parent=magnum)
    magnum.install(os_k8s, storage.swift.access_key, storage.swift.secret_key, cfg.storage.swift_s3_region)

    ctx.put(
        "clusters",
        ClusterParts(
            eks=eks,
            magnum=magnum,
            providers={"aws": aws_k8s, "openstack": os_k8s},
            triton_namespace=namespace,
            triton_service_account=eks_cfg.triton_service_account,
            model_reader_role_arn=eks.model_reader_role.arn,
            swift_credentials_secret=MODEL_CREDENTIALS_SECRET,
        ),
    )
    ctx.outputs.extra["clusterNames"] = {"aws": eks.name, "openstack": magnum.name}
    ctx.outputs.extra["modelReaderRoleArn"] = eks.model_reader_role.arn
    ctx.outputs.extra["tritonServiceAccount"] = {"namespace": namespace, "name": eks_cfg.triton_service_account}
    ctx.outputs.extra["gpuPools"] = {
        "aws": {pool: group.node_group_name for pool, group in eks.gpu_node_groups.items()},
        "openstack": {pool: group.name for pool, group in magnum.gpu_node_groups.items()},
    }
