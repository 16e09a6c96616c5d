"""The AWS site's Kubernetes cluster (issue 7, part 2): EKS with GPU managed node groups.

`EksGpuCluster` ("hybridserve:cluster:EksGpuCluster"), built by infra/components/cluster.py after the
network (private subnets, the peer security group) and the storage (the stack key, the bucket):

- the cluster in the private subnets; API endpoint private, or public only for the configured
  CIDRs (the schema rejects 0.0.0.0/0 unless explicitly allowed); Kubernetes secrets encrypted with
  the stack key; control-plane logs (api, audit, authenticator at least) into a log group with a
  retention; access entries (API mode), the deployer gets cluster admin; standard support only
  (no extended-support surcharge);
- the IAM OIDC provider for IAM roles for service accounts (IRSA): every in-cluster AWS identity
  is a role trusted by exactly one service account; no static access keys anywhere;
- a small CPU system node group and one managed node group per GPU pool: AL2023 NVIDIA AMI, the
  configured instance types, min / desired / max (desired is the autoscaler's after creation:
  ignored on updates), a launch template with an encrypted gp3 root volume (stack key) and IMDSv2
  required (hop limit 1: pods use IRSA, not the node role), labels (nvidia.com/gpu.present, pool,
  accelerator) and the taint nvidia.com/gpu=true:NoSchedule;
- scaling: the cluster autoscaler (Helm, pinned) with a least-privilege role that may only scale
  Auto Scaling groups tagged for this cluster; it discovers the node groups by their tags and
  scales GPU pools up from their minimum, zero included: each GPU group's ASG carries
  `k8s.io/cluster-autoscaler/node-template/...` tags (labels, taint, nvidia.com/gpu count) so the
  autoscaler knows what an empty group would provide;
- add-ons: VPC CNI (its own IRSA role), CoreDNS, kube-proxy, the EBS CSI driver (its own IRSA
  role) with an encrypted gp3 StorageClass on the stack key as the default class; the NVIDIA device
  plugin (Helm, pinned) tolerating the GPU taint, with GPU feature discovery; metrics-server;
- the API endpoint the deployer reaches (`deploy_access`): public for the runners' CIDRs, or private
  with a control-plane security group admitting the runners' network on 443;
- the model-reader role for Triton: read-only on the bucket's model prefix and kms:Decrypt on the
  stack key (through S3 only), trusted only by <serving.namespace>/<eks.triton_service_account>
  (the Triton component creates that namespace and service account, annotated with the role).

Kubernetes objects go through this cluster's provider (`ctx.kubernetes_provider("aws", ...)`),
whose kubeconfig authenticates with `aws eks get-token` (no token is stored) and is exported as a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES, CLUSTER_AUTOSCALER_IMAGE_TAGS, eks_support
from hybridserve.stackconfig.schema.clusters import (
    AWS_AUTOSCALER_GPU_LABEL,
    EKS_TAINT_EFFECTS,
    GPU_TAINT_KEY,
    POOL_LABEL,
    AwsGpuPool,
    EksCluster,
    gpu_node_labels,
)
from infra.components import type_token
from infra.components.policies import (
    S3_READ_ACTIONS,
    Account,
    RoleNames,
    document,
    statement,
    trust_service,
    trust_service_account,
)

MANAGED = "arn:{partition}:iam::aws:policy/{name}"
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
SYSTEM_POOL = "system"
CLUSTER_AUTOSCALER_SA = ("kube-system", "cluster-autoscaler")
EBS_CSI_SA = ("kube-system", "ebs-csi-controller-sa")
VPC_CNI_SA = ("kube-system", "aws-node")
ROOT_DEVICE = "/dev/xvda"  # AL2023 root volume
GPU_TOLERATION = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@dataclass
class EksGpuClusterArgs:
    name: str  # the cluster name the network tagged its subnets for
    region: str
    cfg: EksCluster
    roles: RoleNames
    account: Account
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Input[str]]
    node_security_group_ids: list[pulumi.Input[str]]  # e.g. the network's peer security group (Triton from OpenStack)
    key_arn: pulumi.Input[str]
    bucket_arn: pulumi.Input[str]
    prefix: str
    triton_namespace: str
    # The stack's common tags (cost center, team, ...): the provider's default tags reach the launch
    # template itself, not the instances and volumes it launches, so they go into its tag specifications.
    tags: dict[str, str] = field(default_factory=dict)
    # The stack's log key (the network's): the control-plane log group is encrypted with it.
    log_key_arn: pulumi.Input[str] | None = None


def model_reader_policy(bucket_arn: pulumi.Input[str], prefix: str, key_arn: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """Read-only on the model prefix; decrypt with the stack key, through S3 only.

    Triton checks a bucket with HeadBucket before it reads (triton-inference-server/core,
    src/filesystem/implementations/s3.h, S3FileSystem::CheckClient), which S3 authorizes as
    s3:ListBucket without a prefix: allowed too. The bucket holds only the model prefix.
    """
    return document(
        statement("ListTheModelPrefix", "Allow", "s3:ListBucket", bucket_arn, None, {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}),
        statement("HeadTheBucket", "Allow", "s3:ListBucket", bucket_arn, None, {"Null": {"s3:prefix": "true"}}),
        statement("ReadTheModelPrefix", "Allow", S3_READ_ACTIONS, pulumi.Output.concat(bucket_arn, f"/{prefix}/*")),
        statement("DecryptWithTheStackKey", "Allow", "kms:Decrypt", key_arn, None, {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}),
    )


def autoscaler_policy(cluster: str, account: Account) -> pulumi.Output[str]:
    """The cluster autoscaler: describe anything (discovery), scale only this cluster's node groups (by tag)."""
    return document(
        statement(
            "DiscoverNodeGroups", "Allow",
            [
                "autoscaling:DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeLaunchConfigurations",
                "autoscaling:DescribeScalingActivities",
                "autoscaling:DescribeTags",
                "ec2:DescribeImages",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplateVersions",
                "ec2:GetInstanceTypesFromInstanceRequirements",
            ],
            "*",
        ),
        # Labels and taints of a node group scaled to zero.
        statement(
            "DescribeThisClustersNodeGroups", "Allow", "eks:DescribeNodegroup",
            pulumi.Output.concat("arn:", account.partition, ":eks:", account.region, ":", account.id, f":nodegroup/{cluster}/*"),
        ),
        statement(
            "ScaleOnlyThisClustersNodeGroups", "Allow",
            ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"], "*", None,
            {"StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}": "owned", "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true"}},
        ),
    )


def kubeconfig(name: str, region: str, endpoint: pulumi.Input[str], ca_data: pulumi.Input[str]) -> pulumi.Output[str]:
    """A kubeconfig that gets a short-lived token from `aws eks get-token` (the caller's AWS identity): nothing static."""

    def build(args: list[str]) -> str:
        server, ca = args
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": ca}}],
                "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
                "current-context": name,
                "users": [
                    {
                        "name": name,
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "aws",
                                "args": ["eks", "get-token", "--cluster-name", name, "--region", region, "--output", "json"],
                                "interactiveMode": "Never",
                            }
                        },
                    }
                ],
            }
        )

    return pulumi.Output.all(endpoint, ca_data).apply(build)


def gpu_pool_labels(pool: AwsGpuPool) -> dict[str, str]:
    gpu = AWS_INSTANCE_TYPES[pool.instance_types[0]].gpu_model
    labels = gpu_node_labels(pool.name, gpu, pool.labels)
    # The autoscaler's AWS provider treats nodes with this label as GPU nodes (waits for the device plugin).
    labels[AWS_AUTOSCALER_GPU_LABEL] = f"nvidia-{gpu.lower()}" if gpu else "nvidia"
    return labels


class EksGpuCluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: EksGpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("cluster", "EksGpuCluster"), name, None, opts)
        self._args = args
        cfg, roles, acct = args.cfg, args.roles, args.account
        child = pulumi.ResourceOptions(parent=self)
        managed = lambda policy: acct.partition.apply(lambda p: MANAGED.format(partition=p, name=policy))  # noqa: E731

        # --- control plane ---------------------------------------------------------------------------
        self.cluster_role = aws.iam.Role("cluster-role", name=roles.cluster, assume_role_policy=trust_service("eks.amazonaws.com"), opts=child)
        cluster_policy = aws.iam.RolePolicyAttachment(
            "cluster-role-eks-policy", role=self.cluster_role.name, policy_arn=managed("AmazonEKSClusterPolicy"), opts=child
        )
        self.log_group = aws.cloudwatch.LogGroup(
            "control-plane-logs", name=f"/aws/eks/{args.name}/cluster", retention_in_days=cfg.log_retention_days,
            kms_key_id=args.log_key_arn, opts=child,
        )
        vpc_config: dict[str, Any] = {
            "subnet_ids": args.private_subnet_ids,
            "endpoint_private_access": cfg.endpoint_private_access,
            "endpoint_public_access": cfg.public_access,
        }
        if cfg.public_access:
            vpc_config["public_access_cidrs"] = cfg.public_cidrs
        if cfg.private_runner_cidrs:
            # The deployer reaches the private endpoint from a routed network (the VPC, or the peer site
            # over the VPN); the cluster's own security group admits only the cluster, so this one admits it.
            self.api_access_security_group = aws.ec2.SecurityGroup(
                "api-access",
                name=f"{args.name}-api-access",
                description="Kubernetes API (443) from the networks that run pulumi up (aws.eks.deploy_access)",
                vpc_id=args.vpc_id,
                ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": cfg.private_runner_cidrs, "description": "deployer"}],
                tags={"Name": f"{args.name}-api-access"},
                opts=child,
            )
            vpc_config["security_group_ids"] = [self.api_access_security_group.id]
        self.cluster = aws.eks.Cluster(
            "cluster",
            name=args.name,
            version=cfg.version,
            role_arn=self.cluster_role.arn,
            vpc_config=vpc_config,
            kubernetes_network_config={"service_ipv4_cidr": cfg.service_cidr, "ip_family": "ipv4"},
            encryption_config={"provider": {"key_arn": args.key_arn}, "resources": ["secrets"]},
            enabled_cluster_log_types=list(cfg.log_types),
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            # STANDARD: no extended-support surcharge (AWS upgrades the cluster when standard support ends). A
            # version already in extended support needs EXTENDED to be created at all (validate warns of the cost).
            upgrade_policy={"support_type": "EXTENDED" if eks_support(cfg.version) == "extended" else "STANDARD"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_policy, self.log_group]),
        )
        self.name: pulumi.Output[str] = self.cluster.name
        # Cluster admins besides the creator (whose admin access ends with the creating session's role).
        for i, role in enumerate(cfg.admin_role_arns):
            entry = aws.eks.AccessEntry(f"admin-{i}", cluster_name=self.cluster.name, principal_arn=role, type="STANDARD", opts=child)
            aws.eks.AccessPolicyAssociation(
                f"admin-{i}-cluster-admin", cluster_name=self.cluster.name, principal_arn=role,
                policy_arn=CLUSTER_ADMIN_POLICY, access_scope={"type": "cluster"},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            )
        self.issuer: pulumi.Output[str] = self.cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        self.oidc = aws.iam.OpenIdConnectProvider("oidc", url=self.issuer, client_id_lists=["sts.amazonaws.com"], opts=child)

        def irsa_role(logical: str, role: str, namespace: str, account_name: str, description: str) -> aws.iam.Role:
            return aws.iam.Role(
                logical, name=role, description=description,
                assume_role_policy=trust_service_account(self.oidc.arn, self.issuer, namespace, account_name), opts=child,
            )

        # --- add-ons that nodes need ----------------------------------------------------------------
        self.vpc_cni_role = irsa_role("vpc-cni-role", roles.vpc_cni, *VPC_CNI_SA, "VPC CNI (aws-node) of the EKS cluster")
        cni_policy = aws.iam.RolePolicyAttachment("vpc-cni-role-policy", role=self.vpc_cni_role.name, policy_arn=managed("AmazonEKS_CNI_Policy"), opts=child)
        vpc_cni = aws.eks.Addon(
            "vpc-cni", cluster_name=self.cluster.name, addon_name="vpc-cni", service_account_role_arn=self.vpc_cni_role.arn,
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            # The VPC CNI enforces NetworkPolicies only when asked to (Triton's namespace is default-deny).
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cni_policy]),
        )
        kube_proxy = aws.eks.Addon(
            "kube-proxy", cluster_name=self.cluster.name, addon_name="kube-proxy",
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE", opts=child,
        )

        # --- nodes -----------------------------------------------------------------------------------
        self.node_role = aws.iam.Role("node-role", name=roles.node, assume_role_policy=trust_service("ec2.amazonaws.com"), opts=child)
        node_policies = [
            aws.iam.RolePolicyAttachment(f"node-role-{p}", role=self.node_role.name, policy_arn=managed(p), opts=child) for p in NODE_POLICIES
        ]
        node_deps = [*node_policies, vpc_cni, kube_proxy]
        self.node_security_group_ids = [self.cluster.vpc_config.cluster_security_group_id, *args.node_security_group_ids]

        sys_pool = cfg.system_pool
        self.system_nodes = self._node_group(
            SYSTEM_POOL, ami_type="AL2023_x86_64_STANDARD", instance_types=list(sys_pool.instance_types), capacity_type="ON_DEMAND",
            sizes=(sys_pool.min_size, sys_pool.desired_size, sys_pool.max_size), disk_gb=sys_pool.disk_size_gb,
            labels={POOL_LABEL: SYSTEM_POOL}, taints=[], deps=node_deps,
        )
        self.gpu_node_groups: dict[str, aws.eks.NodeGroup] = {}
        for pool in cfg.gpu_pools:
            labels = gpu_pool_labels(pool)
            group = self._node_group(
                f"gpu-{pool.name}", ami_type=pool.ami_type, instance_types=list(pool.instance_types), capacity_type=pool.capacity_type,
                sizes=(pool.min_size, pool.desired_size, pool.max_size), disk_gb=pool.disk_size_gb,
                labels=labels, taints=[{"key": t.key, "value": t.value, "effect": EKS_TAINT_EFFECTS[t.effect]} for t in pool.taints], deps=node_deps,
            )
            self.gpu_node_groups[pool.name] = group
            self._scale_from_zero_tags(pool, group, labels)

        cluster_deps = [self.system_nodes, vpc_cni]
        # metrics.k8s.io for the CPU-based HorizontalPodAutoscaler (EKS community add-on).
        self.metrics_server = aws.eks.Addon(
            "metrics-server", cluster_name=self.cluster.name, addon_name="metrics-server",
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=cluster_deps),
        )
        aws.eks.Addon(
            "coredns", cluster_name=self.cluster.name, addon_name="coredns",
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=cluster_deps),
        )
        self.ebs_csi_role = irsa_role("ebs-csi-role", roles.ebs_csi, *EBS_CSI_SA, "EBS CSI driver of the EKS cluster")
        ebs_policy = aws.iam.RolePolicyAttachment(
            "ebs-csi-role-policy", role=self.ebs_csi_role.name, policy_arn=managed("service-role/AmazonEBSCSIDriverPolicy"), opts=child
        )
        self.ebs_csi = aws.eks.Addon(
            "aws-ebs-csi-driver", cluster_name=self.cluster.name, addon_name="aws-ebs-csi-driver", service_account_role_arn=self.ebs_csi_role.arn,
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*cluster_deps, ebs_policy]),
        )

        # --- IAM for workloads -----------------------------------------------------------------------
        self.autoscaler_role = irsa_role("cluster-autoscaler-role", roles.autoscaler, *CLUSTER_AUTOSCALER_SA, "Kubernetes cluster autoscaler")
        aws.iam.RolePolicy("cluster-autoscaler-policy", role=self.autoscaler_role.id, policy=autoscaler_policy(args.name, acct), opts=child)
        self.model_reader_role = irsa_role(
            "model-reader-role", roles.model_reader, args.triton_namespace, cfg.triton_service_account,
            "Triton reads the model repository (read-only on the prefix, decrypt with the stack key)",
        )
        aws.iam.RolePolicy(
            "model-reader-policy", role=self.model_reader_role.id,
            policy=model_reader_policy(args.bucket_arn, args.prefix, args.key_arn, args.region), opts=child,
        )

        self.kubeconfig: pulumi.Output[str] = kubeconfig(args.name, args.region, self.cluster.endpoint, self.cluster.certificate_authority.data)
        self.register_outputs(
            {"name": self.name, "endpoint": self.cluster.endpoint, "model_reader_role_arn": self.model_reader_role.arn, "oidc_provider_arn": self.oidc.arn}
        )

    def _node_group(
        self, group: str, *, ami_type: str, instance_types: list[str], capacity_type: str, sizes: tuple[int, int, int], disk_gb: int,
        labels: dict[str, str], taints: list[dict[str, str]], deps: list[pulumi.Resource],
    ) -> aws.eks.NodeGroup:
        args = self._args
        child = pulumi.ResourceOptions(parent=self)
        name_tags = {**args.tags, "Name": f"{args.name}-{group}"}
        template = aws.ec2.LaunchTemplate(
            f"{group}-launch-template",
            name=f"{args.name}-{group}",
            description=f"{group} nodes of {args.name}: encrypted gp3 root volume, IMDSv2 only",
            update_default_version=True,
            block_device_mappings=[
                {
                    "device_name": ROOT_DEVICE,
                    "ebs": {
                        "volume_size": disk_gb, "volume_type": "gp3", "encrypted": "true", "kms_key_id": args.key_arn, "delete_on_termination": "true",
                    },
                }
            ],
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1, "instance_metadata_tags": "disabled"},
            vpc_security_group_ids=self.node_security_group_ids,
            tag_specifications=[{"resource_type": kind, "tags": name_tags} for kind in ("instance", "volume", "network-interface")],
            opts=child,
        )
        low, desired, high = sizes
        return aws.eks.NodeGroup(
            group,
            cluster_name=self.cluster.name,
            node_group_name=group,
            node_role_arn=self.node_role.arn,
            subnet_ids=args.private_subnet_ids,
            ami_type=ami_type,
            capacity_type=capacity_type,
            instance_types=instance_types,
            scaling_config={"min_size": low, "desired_size": desired, "max_size": high},
            update_config={"max_unavailable": 1},
            launch_template={"id": template.id, "version": template.latest_version.apply(str)},
            labels=labels,
            taints=taints,
            # The autoscaler owns the node count after creation: `pulumi up` must not reset it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=deps, ignore_changes=["scalingConfig.desiredSize"]),
        )

    def _scale_from_zero_tags(self, pool: AwsGpuPool, group: aws.eks.NodeGroup, labels: dict[str, str]) -> None:
        """What an empty GPU group would provide, as tags on its Auto Scaling group (the autoscaler's node template)."""
        asg = group.resources.apply(lambda rs: rs[0].autoscaling_groups[0].name)
        gpus = min(AWS_INSTANCE_TYPES[t].gpu_count for t in pool.instance_types)
        tags = {f"{NODE_TEMPLATE}/label/{k}": v for k, v in labels.items()}
        tags.update({f"{NODE_TEMPLATE}/taint/{t.key}": f"{t.value}:{t.effect}" for t in pool.taints})
        tags[f"{NODE_TEMPLATE}/resources/nvidia.com/gpu"] = str(gpus)
        for key, value in sorted(tags.items()):
            aws.autoscaling.Tag(
                f"gpu-{pool.name}-asg-{key.removeprefix(NODE_TEMPLATE + '/')}",
                autoscaling_group_name=asg,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=pulumi.ResourceOptions(parent=self),
            )

    # --- Kubernetes objects (through the cluster's provider) -------------------------------------------

    def install(self, provider: k8s.Provider, *, device_plugin: bool = True) -> None:
        args, cfg = self._args, self._args.cfg
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[self.system_nodes, self.ebs_csi])

        k8s.storage.v1.StorageClass(
            "gp3-encrypted",
            metadata={"name": "gp3-encrypted", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true", "kmsKeyId": args.key_arn, "csi.storage.k8s.io/fstype": "ext4"},
            reclaim_policy="Delete",
            volume_binding_mode="WaitForFirstConsumer",
            allow_volume_expansion=True,
            opts=k8s_opts,
        )

        if device_plugin:
            chart = cfg.nvidia.chart
            values: dict[str, Any] = {
                "tolerations": [GPU_TOLERATION, {"key": "CriticalAddonsOnly", "operator": "Exists"}],
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                # GPU feature discovery labels the nodes (product, memory, CUDA driver); it brings node-feature-discovery.
                "gfd": {"enabled": cfg.nvidia.gpu_feature_discovery},
            }
            if cfg.nvidia.mode == "gpu-operator":
                # The AMI has the driver and toolkit: the operator only adds the device plugin and monitoring.
                values = {
                    "driver": {"enabled": False}, "toolkit": {"enabled": False}, "daemonsets": {"tolerations": [GPU_TOLERATION]},
                    "gfd": {"enabled": cfg.nvidia.gpu_feature_discovery},
                    # DCGM exporter: the serving monitoring component installs it (infra/components/monitoring.py).
                    "dcgmExporter": {"enabled": False},
                }
            self.device_plugin = k8s.helm.v3.Release(
                "nvidia-device-plugin",
                name="nvidia-device-plugin" if cfg.nvidia.mode == "device-plugin" else "gpu-operator",
                chart=chart.chart,
                version=chart.version,
                repository_opts={"repo": chart.repository},
                namespace="nvidia-device-plugin" if cfg.nvidia.mode == "device-plugin" else "gpu-operator",
                create_namespace=True,
                values=values,
                opts=k8s_opts,
            )

        if cfg.autoscaler.enabled:
            chart = cfg.autoscaler.chart
            namespace, sa = CLUSTER_AUTOSCALER_SA
            self.autoscaler = k8s.helm.v3.Release(
                "cluster-autoscaler",
                name="cluster-autoscaler",
                chart=chart.chart,
                version=chart.version,
                repository_opts={"repo": chart.repository},
                namespace=namespace,
                values={
                    "cloudProvider": "aws",
                    "awsRegion": args.region,
                    "autoDiscovery": {"clusterName": args.name, "tags": ["k8s.io/cluster-autoscaler/enabled", f"k8s.io/cluster-autoscaler/{args.name}"]},
                    "image": {"tag": cfg.autoscaler.image_tag or CLUSTER_AUTOSCALER_IMAGE_TAGS[cfg.version]},
                    "rbac": {"serviceAccount": {"create": True, "name": sa, "annotations": {"eks.amazonaws.com/role-arn": self.autoscaler_role.arn}}},
                    "extraArgs": {
                        "expander": cfg.autoscaler.expander,
                        "balance-similar-node-groups": True,
                        "scale-down-unneeded-time": cfg.autoscaler.scale_down_unneeded_time,
                        "skip-nodes-with-system-pods": False,
                    },
                    "nodeSelector": {POOL_LABEL: SYSTEM_POOL},
                },
                opts=k8s_opts,
            )
