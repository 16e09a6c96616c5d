"""The OpenStack site's Kubernetes cluster (issue 7, part 3): Magnum with GPU node groups.

`MagnumGpuCluster` ("hybridserve:cluster:MagnumGpuCluster"), built by infra/components/cluster.py
after the network (tenant network and subnet, external network) and the storage (Swift credentials):

- a cluster template (immutable: a content hash in its name, replaced create-before-delete on any change; the
  cluster is then replaced delete-first, as the Heat driver upgrades nothing in place): Kubernetes, the configured image, flavors and network driver, the tenant
  network and subnet from the network component, no floating IPs on nodes unless configured, a
  load balancer for the API (with a floating IP only if `master_lb_floating_ip_enabled`), Cinder
  CSI, node volumes of the cloud operator's encrypted volume type (`storage.cinder_volume_type`),
  Magnum's cluster autoscaler;
- the cluster (masters, the default CPU node group) and one node group per GPU pool: the pool's
  flavor, min / max, node_count (ignored after creation: the autoscaler owns it), role `gpu`, labels
  that mark GPU nodes and the pool. Magnum has no taint API: GPU nodes are kept for GPU work by the
  kubelet itself, `--register-with-taints=nvidia.com/gpu=true:NoSchedule` and `--node-labels=...`
  in the node group's `kubelet_options` label (Heat-based Kubernetes drivers); docs/gpu-pools.md
  says what to do on drivers without it;
- the kubeconfig from the cluster, a secret, feeding this cluster's Kubernetes provider
  (`ctx.kubernetes_provider("openstack", ...)`, exported as a secret);
- the API load balancer the deployer reaches (`deploy_access`): a floating IP on a public path,
  `master_lb_allowed_cidrs` admitting only the runners and the cluster's own networks;
- on the cluster: the default StorageClass on the encrypted Cinder type, the NVIDIA GPU operator
  (the driver from the GPU pools' image, as NVIDIA publishes no Fedora CoreOS driver container; the toolkit
  from the operator unless `openstack.magnum.nvidia.toolkit` says the image has it; or the device plugin
  alone, `openstack.magnum.nvidia.mode`) with GPU
  feature discovery and, where monitoring is on, its DCGM exporter. Triton's namespace, service
  account and Swift credentials Secret belong to the Triton component.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_openstack as openstack

from hybridserve.stackconfig.catalog import MachineType
from hybridserve.stackconfig.schema.clusters import GPU_TAINT_KEY, MagnumCluster, OpenStackGpuPool, gpu_node_labels
from infra.components import type_token

GPU_TOLERATION = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
_POD_CIDR_LABEL = {"calico": "calico_ipv4pool", "flannel": "flannel_network_cidr"}


@dataclass
class MagnumGpuClusterArgs:
    name: str
    cfg: MagnumCluster
    flavors: dict[str, MachineType]
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    external_network_id: pulumi.Input[str]
    dns_nameserver: str | None
    volume_type: str
    region: str | None
    # Who may reach the API load balancer: the deployers (deploy_access) and the cluster's own networks.
    api_allowed_cidrs: list[str]


def kubelet_options(pool: OpenStackGpuPool, labels: dict[str, str]) -> str:
    """The node group's kubelet flags: the GPU taint(s) and labels, registered by each node itself."""
    taints = ",".join(f"{t.key}={t.value}:{t.effect}" if t.value else f"{t.key}:{t.effect}" for t in pool.taints)
    node_labels = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"--register-with-taints={taints} --node-labels={node_labels}"


def template_labels(args: MagnumGpuClusterArgs) -> dict[str, str]:
    cfg, t = args.cfg, args.cfg.template
    labels = {
        "kube_tag": t.kube_tag,
        "container_runtime": "containerd",
        "cinder_csi_enabled": "true",
        # Node container volumes on the cloud operator's encrypted (LUKS) Cinder type.
        "docker_volume_type": args.volume_type,
        "master_lb_floating_ip_enabled": str(cfg.api_floating_ip).lower(),
        "auto_scaling_enabled": str(t.auto_scaling_enabled).lower(),
        # The default (CPU) node group keeps its size; GPU node groups scale within their min / max.
        "min_node_count": str(cfg.worker_count),
        "max_node_count": str(cfg.worker_count),
        "service_cluster_ip_range": cfg.service_cidr,
    }
    if t.network_driver in _POD_CIDR_LABEL:
        labels[_POD_CIDR_LABEL[t.network_driver]] = cfg.pod_cidr
    if args.api_allowed_cidrs:
        # Octavia's allowed_cidrs on the API listener (Magnum label; without it the listener admits 0.0.0.0/0).
        labels["master_lb_allowed_cidrs"] = ",".join(args.api_allowed_cidrs)
    return {**labels, **t.labels}


def template_name(cluster: str, spec: dict[str, Any]) -> str:
    """`<cluster>-template-<hash>`: a hash of the template's known inputs (ids still unknown in a preview are left
    out; a change of them replaces the template all the same, replace_on_changes)."""
    known = {k: v for k, v in spec.items() if isinstance(v, (str, int, bool, dict, type(None)))}
    digest = hashlib.sha256(json.dumps(known, sort_keys=True).encode()).hexdigest()[:10]
    return f"{cluster}-template-{digest}"


class MagnumGpuCluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: MagnumGpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("cluster", "MagnumGpuCluster"), name, None, opts)
        self._args = args
        cfg, t = args.cfg, args.cfg.template
        template_args: dict[str, Any] = {}
        if args.dns_nameserver:
            template_args["dns_nameserver"] = args.dns_nameserver
        if t.keypair:
            template_args["keypair_id"] = t.keypair
        template_spec: dict[str, Any] = dict(
            coe="kubernetes",
            server_type="vm",
            image=t.image,
            flavor=t.worker_flavor,
            master_flavor=t.master_flavor,
            docker_volume_size=t.docker_volume_size_gb,
            network_driver=t.network_driver,
            volume_driver=t.volume_driver,
            external_network_id=args.external_network_id,
            fixed_network=args.network_id,
            fixed_subnet=args.subnet_id,
            floating_ip_enabled=t.floating_ip_enabled,
            master_lb_enabled=t.master_lb_enabled,
            tls_disabled=False,
            public=False,
            registry_enabled=False,
            labels=template_labels(args),
            region=args.region,
            **template_args,
        )
        # Magnum refuses to change a template a cluster uses, or to delete it (openstack/magnum db/sqlalchemy/api.py:
        # a referenced template may only be renamed or published): a template is immutable here. Its name carries a
        # hash of what defines it, any change replaces it (replace_on_changes), the replacement is created
        # first and the old one deleted only after the cluster has moved off it (create-before-replace: never
        # delete_before_replace).
        self.template = openstack.containerinfra.ClusterTemplate(
            "template",
            name=template_name(args.name, template_spec),
            **template_spec,
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["*"], delete_before_replace=False),
        )
        cluster_args: dict[str, Any] = {"keypair": t.keypair} if t.keypair else {}
        self.cluster = openstack.containerinfra.Cluster(
            "cluster",
            name=args.name,
            cluster_template_id=self.template.id,
            master_count=cfg.master_count,
            node_count=cfg.worker_count,
            floating_ip_enabled=t.floating_ip_enabled,
            master_lb_enabled=t.master_lb_enabled,
            fixed_network=args.network_id,
            fixed_subnet=args.subnet_id,
            create_timeout=90,
            region=args.region,
            **cluster_args,
            # A new template means a new cluster. The provider would call Magnum's cluster upgrade on a changed
            # cluster_template_id (terraform-provider-openstack resource_openstack_containerinfra_cluster_v1.go:
            # not ForceNew, Update calls clusters.Upgrade), but the Heat driver refuses every upgrade since Magnum
            # 2024.1 ("Upgrading a cluster that uses the Magnum Heat driver" is NotSupported; openstack/magnum
            # 2fd3059f, which names blue-green replacement as the way). Replaced delete-first: its node groups and
            # Kubernetes objects go with it, and a second cluster would need twice the GPU quota; the AWS site
            # serves meanwhile. The old template is deleted only after this replacement.
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=["clusterTemplateId"], delete_before_replace=True),
        )
        self.name: pulumi.Output[str] = self.cluster.name
        # The provider marks the kubeconfig secret (additional_secret_outputs); kept secret here too.
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(self.cluster.kubeconfig.apply(lambda k: k["raw_config"]))

        self.gpu_node_groups: dict[str, openstack.containerinfra.NodeGroup] = {}
        self.gpu_labels: dict[str, dict[str, str]] = {}  # node labels per pool (the kubelet registers them)
        for pool in cfg.gpu_pools:
            flavor = args.flavors[pool.flavor]
            labels = gpu_node_labels(pool.name, flavor.gpu_model, pool.labels)
            self.gpu_labels[pool.name] = labels
            # GPU nodes boot an image with the NVIDIA driver (the pool's, else openstack.magnum.nvidia.gpu_image).
            image = cfg.nvidia.pool_image(pool)
            group_args: dict[str, Any] = {"image_id": image} if image else {}
            self.gpu_node_groups[pool.name] = openstack.containerinfra.NodeGroup(
                f"gpu-{pool.name}",
                cluster_id=self.cluster.id,
                name=f"gpu-{pool.name}",
                role="gpu",
                flavor_id=pool.flavor,
                docker_volume_size=pool.disk_size_gb,
                min_node_count=pool.min_size,
                max_node_count=pool.max_size,
                node_count=pool.desired_size,
                # Magnum labels of the group (merged over the template's): the kubelet registers taint and labels.
                labels={"kubelet_options": kubelet_options(pool, labels)},
                merge_labels=True,
                region=args.region,
                **group_args,
                # The autoscaler owns the node count after creation: `pulumi up` must not reset it.
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["nodeCount"]),
            )
        self.register_outputs({"name": self.name, "api_address": self.cluster.api_address})

    def install(self, provider: k8s.Provider, *, dcgm_exporter: bool, service_monitors: bool) -> None:
        args, cfg = self._args, self._args.cfg
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(self.gpu_node_groups.values()))

        k8s.storage.v1.StorageClass(
            "cinder-encrypted",
            metadata={"name": "cinder-encrypted", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            provisioner="cinder.csi.openstack.org",
            parameters={"type": args.volume_type},
            reclaim_policy="Delete",
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            opts=k8s_opts,
        )

        nvidia = cfg.nvidia
        chart = nvidia.chart
        if nvidia.mode == "gpu-operator":
            # The GPU pools' image carries the driver (NVIDIA publishes no Fedora CoreOS driver container; schema
            # MagnumNvidia refuses driver 'operator'); the toolkit comes from the operator unless the image has it.
            values: dict[str, Any] = {
                "driver": {"enabled": nvidia.driver == "operator"},
                "toolkit": {"enabled": nvidia.toolkit == "operator"},
                "devicePlugin": {"enabled": True},
                "gfd": {"enabled": nvidia.gpu_feature_discovery},
                # The operator's own DCGM exporter; its ServiceMonitor only where Prometheus runs.
                "dcgmExporter": {"enabled": dcgm_exporter, "serviceMonitor": {"enabled": dcgm_exporter and service_monitors}},
                "daemonsets": {"tolerations": [GPU_TOLERATION]},
                "node-feature-discovery": {"worker": {"tolerations": [GPU_TOLERATION]}},
            }
            release, namespace = "gpu-operator", "gpu-operator"
        else:
            values = {
                "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "gfd": {"enabled": nvidia.gpu_feature_discovery},
            }
            release, namespace = "nvidia-device-plugin", "nvidia-device-plugin"
        self.device_plugin = k8s.helm.v3.Release(
            "nvidia",
            name=release,
            chart=chart.chart,
            version=chart.version,
            repository_opts={"repo": chart.repository},
            namespace=namespace,
            create_namespace=True,
            values=values,
            opts=k8s_opts,
        )
