"""GPU clusters on both clouds (issue 7): what a cloud would check, asserted on the recorded offline plan.

Each example stack is planned once (the real program under the mock engine, infra/plan.py); the
assertions read the inputs the engine received, and parse IAM documents from their JSON text.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import pytest
import yaml

import infra.components
import infra.plan
from hybridserve.cli import main
from hybridserve.paths import repo_root
from hybridserve.stackconfig import StackConfigError, build_stack_config, stack_files
from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES, CLUSTER_AUTOSCALER_IMAGE_TAGS, HELM_CHARTS, HOURS_PER_MONTH
from infra.plan import SECRET_MARKER, Plan, PlannedResource, plan_stack_file
from stackutil import reachable

EXAMPLES = repo_root() / "stacks"
NAMES = sorted(stack_files(EXAMPLES))
REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}
ACCOUNT = "123456789012"
IGNORED: dict[tuple[str, str], list[str]] = {}  # (stack, urn) -> ignoreChanges, recorded by the spy below


@pytest.fixture(autouse=True, scope="module")
def _record_ignore_changes():
    """The plan records inputs only; also keep what the engine would be told to ignore on updates."""
    original = infra.plan.RecordingMonitor.RegisterResource

    def spy(self, request):
        response = original(self, request)
        if request.ignoreChanges:
            IGNORED[(response.urn.split("::")[0], response.urn)] = list(request.ignoreChanges)
        return response

    infra.plan.RecordingMonitor.RegisterResource = spy
    yield
    infra.plan.RecordingMonitor.RegisterResource = original


@cache
def plan_of(name: str) -> Plan:
    return plan_stack_file(EXAMPLES / f"Pulumi.{name}.yaml")


def of_type(plan: Plan, type_: str) -> list[PlannedResource]:
    return [r for r in plan.resources if r.type == type_]


def one(plan: Plan, type_: str, name: str) -> PlannedResource:
    found = [r for r in of_type(plan, type_) if r.name == name]
    assert len(found) == 1, (type_, name)
    return found[0]


def by_urn(plan: Plan) -> dict[str, PlannedResource]:
    return {r.urn: r for r in plan.resources}


def children(plan: Plan, component: str) -> list[PlannedResource]:
    parent = next(r.urn for r in plan.resources if r.name == component and not r.custom)
    return [r for r in plan.resources if r.parent == parent]


def statements(doc: str) -> list[dict]:
    parsed = json.loads(doc)
    assert parsed["Version"] == "2012-10-17"
    return parsed["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def key_arn(plan: Plan) -> str:
    return plan.outputs["kmsKeyArn"]


def node_groups(plan: Plan) -> dict[str, PlannedResource]:
    return {r.inputs["nodeGroupName"]: r for r in of_type(plan, "aws:eks/nodeGroup:NodeGroup")}


# --- EKS: control plane -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_eks_endpoint_is_never_open_to_the_internet_and_secrets_are_encrypted_with_the_stack_key(name):
    plan = plan_of(name)
    eks = plan.config.aws.eks
    cluster = one(plan, "aws:eks/cluster:Cluster", "cluster")
    vpc = cluster.inputs["vpcConfig"]
    assert not any(c.endswith("/0") for c in vpc.get("publicAccessCidrs", [])), vpc
    if vpc["endpointPublicAccess"]:
        assert vpc["publicAccessCidrs"] == eks.public_access_cidrs != []
    else:
        assert "publicAccessCidrs" not in vpc and vpc["endpointPrivateAccess"] is True
    # the cluster sits in the network's private subnets
    assert vpc["subnetIds"] == plan.outputs["network"]["aws"]["privateSubnetIds"]
    assert cluster.inputs["name"] == f"hybridserve-{name}-eks"
    assert cluster.inputs["encryptionConfig"] == {"resources": ["secrets"], "provider": {"keyArn": key_arn(plan)}}
    assert {"api", "audit", "authenticator"} <= set(cluster.inputs["enabledClusterLogTypes"])
    assert cluster.inputs["accessConfig"]["authenticationMode"] == "API"
    logs = one(plan, "aws:cloudwatch/logGroup:LogGroup", "control-plane-logs")
    assert logs.inputs["name"] == f"/aws/eks/hybridserve-{name}-eks/cluster" and logs.inputs["retentionInDays"] == eks.log_retention_days


def test_dev_stacks_keep_the_api_private_and_prod_stacks_list_their_networks():
    assert one(plan_of("vision-dev"), "aws:eks/cluster:Cluster", "cluster").inputs["vpcConfig"]["endpointPublicAccess"] is False
    prod = one(plan_of("vision-prod"), "aws:eks/cluster:Cluster", "cluster").inputs["vpcConfig"]
    assert prod["endpointPublicAccess"] is True and prod["publicAccessCidrs"] == ["198.51.100.0/24"]


# --- EKS: node groups --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_gpu_node_group_is_nvidia_tainted_encrypted_imdsv2_and_sized_as_configured(name):
    plan = plan_of(name)
    groups = node_groups(plan)
    templates = {r.inputs["name"]: r for r in of_type(plan, "aws:ec2/launchTemplate:LaunchTemplate")}
    lt_by_id = {r.name: r for r in templates.values()}
    pools = plan.config.aws.eks.gpu_pools
    assert set(groups) == {"system", *(f"gpu-{p.name}" for p in pools)}
    for pool in pools:
        group = groups[f"gpu-{pool.name}"].inputs
        assert group["amiType"] == "AL2023_x86_64_NVIDIA"
        assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"} in group["taints"]
        assert group["instanceTypes"] == pool.instance_types
        scaling = group["scalingConfig"]
        assert scaling["minSize"] <= scaling["desiredSize"] <= scaling["maxSize"]
        assert (scaling["minSize"], scaling["desiredSize"], scaling["maxSize"]) == (pool.min_size, pool.desired_size, pool.max_size)
        gpu = AWS_INSTANCE_TYPES[pool.instance_types[0]].gpu_model
        assert {"nvidia.com/gpu.present": "true", "hybridserve.io/pool": pool.name, "hybridserve.io/accelerator": gpu}.items() <= group["labels"].items()
        assert group["subnetIds"] == plan.outputs["network"]["aws"]["privateSubnetIds"]
        assert "diskSize" not in group  # the launch template sizes the root volume
    for group_name, group in groups.items():
        template = templates[f"hybridserve-{name}-eks-{group_name}"]
        assert group.inputs["launchTemplate"]["id"].startswith("lt-")
        [root] = template.inputs["blockDeviceMappings"]
        # cost tags on what the template launches (provider default tags stop at the template itself)
        specs = {spec["resourceType"]: spec["tags"] for spec in template.inputs["tagSpecifications"]}
        assert set(specs) == {"instance", "volume", "network-interface"}
        for tags in specs.values():
            assert tags["cost-center"] == plan.config.cost_center and tags["team"] == plan.config.team
            assert tags["Name"] == f"hybridserve-{name}-eks-{group_name}"
        assert root["deviceName"] == "/dev/xvda"
        assert root["ebs"]["encrypted"] == "true" and root["ebs"]["kmsKeyId"] == key_arn(plan) and root["ebs"]["volumeType"] == "gp3"
        meta = template.inputs["metadataOptions"]
        assert meta["httpTokens"] == "required" and meta["httpPutResponseHopLimit"] == 1
    assert lt_by_id  # launch templates exist
    disk = {f"gpu-{p.name}": p.disk_size_gb for p in pools} | {"system": plan.config.aws.eks.system_pool.disk_size_gb}
    for group_name, size in disk.items():
        assert templates[f"hybridserve-{name}-eks-{group_name}"].inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"] == size


def test_the_system_pool_is_untainted_cpu_and_hosts_the_autoscaler():
    plan = plan_of("search-prod")
    system = node_groups(plan)["system"].inputs
    assert system["amiType"] == "AL2023_x86_64_STANDARD" and not system.get("taints")
    assert system["labels"] == {"hybridserve.io/pool": "system"}
    release = one(plan, "kubernetes:helm.sh/v3:Release", "cluster-autoscaler").inputs
    assert release["values"]["nodeSelector"] == {"hybridserve.io/pool": "system"}


@pytest.mark.parametrize("name", ["vision-dev", "search-prod"])
def test_desired_size_is_left_to_the_autoscaler_after_creation(name):
    plan = plan_of(name)
    for group in of_type(plan, "aws:eks/nodeGroup:NodeGroup"):
        assert IGNORED[(group.urn.split("::")[0], group.urn)] == ["scalingConfig.desiredSize"], group.name
    for group in of_type(plan, "openstack:containerinfra/nodeGroup:NodeGroup"):
        assert IGNORED[(group.urn.split("::")[0], group.urn)] == ["nodeCount"], group.name


@pytest.mark.parametrize("name", NAMES)
def test_the_autoscaler_can_scale_gpu_pools_from_zero(name):
    plan = plan_of(name)
    cluster = f"hybridserve-{name}-eks"
    tags = {r.inputs["tag"]["key"]: r.inputs for r in of_type(plan, "aws:autoscaling/tag:Tag")}
    for pool in plan.config.aws.eks.gpu_pools:
        mine = {k: v for k, v in tags.items() if v["autoscalingGroupName"].startswith(f"eks-gpu-{pool.name}-")}
        template = "k8s.io/cluster-autoscaler/node-template"
        assert mine[f"{template}/taint/nvidia.com/gpu"]["tag"]["value"] == "true:NoSchedule"
        gpus = min(AWS_INSTANCE_TYPES[t].gpu_count for t in pool.instance_types)
        assert mine[f"{template}/resources/nvidia.com/gpu"]["tag"]["value"] == str(gpus)
        assert mine[f"{template}/label/hybridserve.io/pool"]["tag"]["value"] == pool.name

    release = one(plan, "kubernetes:helm.sh/v3:Release", "cluster-autoscaler").inputs
    chart = HELM_CHARTS["cluster-autoscaler"]
    assert (release["chart"], release["version"], release["repositoryOpts"]["repo"]) == (chart.name, chart.version, chart.repository)
    values = release["values"]
    assert values["autoDiscovery"]["clusterName"] == cluster
    assert values["image"]["tag"] == CLUSTER_AUTOSCALER_IMAGE_TAGS[plan.config.aws.eks.version]
    role = values["rbac"]["serviceAccount"]
    assert role["name"] == "cluster-autoscaler" and role["annotations"]["eks.amazonaws.com/role-arn"].endswith(f":role/hybridserve-{name}-cluster-autoscaler")

    policy = {s["Sid"]: s for s in statements(one(plan, "aws:iam/rolePolicy:RolePolicy", "cluster-autoscaler-policy").inputs["policy"])}
    scale = policy["ScaleOnlyThisClustersNodeGroups"]
    assert set(scale["Action"]) == {"autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"}
    assert scale["Condition"]["StringEquals"][f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster}"] == "owned"
    assert all(a.split(":")[1].startswith(("Describe", "Get")) for a in policy["DiscoverNodeGroups"]["Action"])
    assert policy["DescribeThisClustersNodeGroups"]["Resource"].endswith(f":nodegroup/{cluster}/*")
    assert set(policy) == {"DiscoverNodeGroups", "DescribeThisClustersNodeGroups", "ScaleOnlyThisClustersNodeGroups"}


# --- IAM for workloads ---------------------------------------------------------------------------------------


def irsa_subjects(role: PlannedResource) -> tuple[str, str]:
    [trust] = statements(role.inputs["assumeRolePolicy"])
    assert trust["Effect"] == "Allow" and trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert set(trust["Principal"]) == {"Federated"} and ":oidc-provider/oidc.eks." in trust["Principal"]["Federated"]
    [(sub_key, subject)] = [(k, v) for k, v in trust["Condition"]["StringEquals"].items() if k.endswith(":sub")]
    assert trust["Condition"]["StringEquals"][sub_key.replace(":sub", ":aud")] == "sts.amazonaws.com"
    assert list(trust["Condition"]) == ["StringEquals"]  # no StringLike: no wildcard subjects
    return sub_key, subject


@pytest.mark.parametrize("name", NAMES)
def test_the_model_reader_reads_only_the_prefix_decrypts_only_the_key_and_trusts_one_service_account(name):
    plan = plan_of(name)
    bucket, prefix = plan.config.storage.model_bucket, plan.config.storage.prefix
    role = one(plan, "aws:iam/role:Role", "model-reader-role")
    _, subject = irsa_subjects(role)
    assert subject == f"system:serviceaccount:{plan.config.serving.namespace}:{plan.config.aws.eks.triton_service_account}"

    policy = statements(one(plan, "aws:iam/rolePolicy:RolePolicy", "model-reader-policy").inputs["policy"])
    actions = {a: s for s in policy for a in as_list(s["Action"])}
    assert set(actions) == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"}
    assert all(s["Effect"] == "Allow" for s in policy)
    assert actions["s3:GetObject"]["Resource"] == f"arn:aws:s3:::{bucket}/{prefix}/*"
    # Listing: under the prefix only; and with no prefix at all, which is how S3 authorizes the HeadBucket
    # Triton sends before it reads (S3FileSystem::CheckClient): without it no model would load.
    listing = [s for s in policy if as_list(s["Action"]) == ["s3:ListBucket"]]
    assert all(s["Resource"] == f"arn:aws:s3:::{bucket}" for s in listing)
    assert sorted((json.dumps(s["Condition"], sort_keys=True) for s in listing)) == sorted([
        json.dumps({"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}, sort_keys=True),
        json.dumps({"Null": {"s3:prefix": "true"}}, sort_keys=True),
    ])
    assert actions["kms:Decrypt"]["Resource"] == key_arn(plan)
    # nothing attached beyond that inline policy
    attached = [r for r in of_type(plan, "aws:iam/rolePolicyAttachment:RolePolicyAttachment") if r.inputs["role"] == role.inputs["name"]]
    assert attached == []
    assert plan.outputs["modelReaderRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/hybridserve-{name}-model-reader"


def test_control_plane_logs_are_encrypted_and_operators_get_cluster_admin():
    plan = plan_of("vision-prod")
    [group] = [r for r in of_type(plan, "aws:cloudwatch/logGroup:LogGroup") if r.inputs["name"] == "/aws/eks/hybridserve-vision-prod-eks/cluster"]
    [logs_key] = [r for r in of_type(plan, "aws:kms/key:Key") if r.name.endswith("-logs")]
    [flow] = [r for r in of_type(plan, "aws:cloudwatch/logGroup:LogGroup") if r.inputs["name"] == "/hybridserve-vision-prod/vpc-flow-logs"]
    assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:") and group.inputs["kmsKeyId"] == flow.inputs["kmsKeyId"]  # the stack's log key
    # the log key lets CloudWatch Logs use it for that group (its encryption context), and for the network's
    [logs] = [s for s in statements(logs_key.inputs["policy"]) if s["Sid"] == "CloudWatchLogsOfThisNetwork"]
    allowed = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    assert "arn:aws:logs:eu-central-1:123456789012:log-group:/aws/eks/hybridserve-vision-prod-eks/cluster" in allowed
    entries = of_type(plan, "aws:eks/accessEntry:AccessEntry")
    role = "arn:aws:iam::123456789012:role/vision-platform-admins"
    assert [e.inputs["principalArn"] for e in entries] == [role] == plan.config.aws.eks.admin_role_arns
    [policy] = of_type(plan, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert policy.inputs["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert policy.inputs["accessScope"] == {"type": "cluster"} and entries[0].urn in policy.dependencies
    assert not of_type(plan_of("vision-dev"), "aws:eks/accessEntry:AccessEntry")


def test_every_in_cluster_identity_is_a_role_for_exactly_one_service_account():
    plan = plan_of("vision-prod")
    subjects = {r.name: irsa_subjects(r)[1] for r in of_type(plan, "aws:iam/role:Role") if "Federated" in r.inputs["assumeRolePolicy"]}
    assert subjects == {
        "vpc-cni-role": "system:serviceaccount:kube-system:aws-node",
        "ebs-csi-role": "system:serviceaccount:kube-system:ebs-csi-controller-sa",
        "cluster-autoscaler-role": "system:serviceaccount:kube-system:cluster-autoscaler",
        "model-reader-role": "system:serviceaccount:triton:triton",
    }
    assert not of_type(plan, "aws:iam/accessKey:AccessKey") and not of_type(plan, "aws:iam/user:User")
    addons = {r.inputs["addonName"]: r.inputs for r in of_type(plan, "aws:eks/addon:Addon")}
    assert set(addons) == {"vpc-cni", "kube-proxy", "coredns", "aws-ebs-csi-driver", "metrics-server"}
    assert addons["aws-ebs-csi-driver"]["serviceAccountRoleArn"].endswith(":role/hybridserve-vision-prod-ebs-csi")
    # the role names the key policy (built earlier, by storage) grants are the roles the cluster creates
    key_policy = json.loads(one(plan, "aws:kms/key:Key", "key").inputs["policy"])
    granted = {arn for s in key_policy["Statement"] for arn in s.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn", [])}
    created = {f"arn:aws:iam::{ACCOUNT}:role/{r.inputs['name']}" for r in of_type(plan, "aws:iam/role:Role")}
    assert granted - created == {f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"}


# --- Kubernetes objects ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_kubernetes_objects_go_through_their_clusters_provider_and_kubeconfigs_are_secret(name):
    plan = plan_of(name)
    urns = by_urn(plan)
    providers = {r.name: r for r in of_type(plan, "pulumi:providers:kubernetes")}
    assert set(providers) == {"k8s-aws", "k8s-openstack"}
    assert all(p.inputs["kubeconfig"] == SECRET_MARKER for p in providers.values())
    assert plan.outputs["kubeconfigs"] == SECRET_MARKER
    for r in plan.resources:
        if r.type.startswith("kubernetes:"):
            parent = urns[r.parent].name  # the cluster component, or a per-site serving component
            site = "aws" if parent == "eks" or parent.endswith("-aws") else "openstack"
            assert parent in ("eks", "magnum") or parent.endswith(("-aws", "-openstack")), r.urn
            assert r.provider == providers[f"k8s-{site}"].urn, r.urn
    assert plan.outputs["clusterNames"] == {"aws": f"hybridserve-{name}-eks", "openstack": f"hybridserve-{name}-k8s"}


@pytest.mark.parametrize("name", NAMES)
def test_nvidia_plugin_and_encrypted_default_storage_on_both_clusters(name):
    plan = plan_of(name)
    releases = {r.name: r.inputs for r in of_type(plan, "kubernetes:helm.sh/v3:Release")}
    eks_plugin, os_plugin = releases["nvidia-device-plugin"], releases["nvidia"]
    plugin = HELM_CHARTS["nvidia-device-plugin"]
    assert (eks_plugin["chart"], eks_plugin["version"], eks_plugin["repositoryOpts"]["repo"]) == (plugin.name, plugin.version, plugin.repository)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in eks_plugin["values"]["tolerations"]
    operator = HELM_CHARTS["gpu-operator"]
    assert (os_plugin["chart"], os_plugin["version"], os_plugin["repositoryOpts"]["repo"]) == (operator.name, operator.version, operator.repository)
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in os_plugin["values"]["daemonsets"]["tolerations"]
    # NVIDIA publishes no Fedora CoreOS driver container: the GPU pools' image carries the driver, the operator the toolkit.
    assert os_plugin["values"]["driver"] == {"enabled": False} and os_plugin["values"]["toolkit"] == {"enabled": True}

    classes = {r.inputs["metadata"]["name"]: r.inputs for r in of_type(plan, "kubernetes:storage.k8s.io/v1:StorageClass")}
    gp3, cinder = classes["gp3-encrypted"], classes["cinder-encrypted"]
    assert gp3["provisioner"] == "ebs.csi.aws.com"
    assert gp3["parameters"] == {"type": "gp3", "encrypted": "true", "kmsKeyId": key_arn(plan), "csi.storage.k8s.io/fstype": "ext4"}
    assert cinder["provisioner"] == "cinder.csi.openstack.org" and cinder["parameters"] == {"type": plan.config.storage.cinder_volume_type}
    for sc in (gp3, cinder):
        assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


# --- Magnum ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_magnum_template_is_private_on_the_tenant_network_with_an_api_load_balancer(name):
    plan = plan_of(name)
    t = plan.config.openstack.magnum.template
    net = plan.outputs["network"]["openstack"]
    template = one(plan, "openstack:containerinfra/clusterTemplate:ClusterTemplate", "template").inputs
    assert template["coe"] == "kubernetes" and template["image"] == t.image
    assert (template["flavor"], template["masterFlavor"]) == (t.worker_flavor, t.master_flavor)
    assert template["fixedNetwork"] == net["networkId"] and template["fixedSubnet"] == net["subnetId"]
    assert template["floatingIpEnabled"] is False and template["masterLbEnabled"] is True
    # The API load balancer: a floating IP only on a public deploy path; either way only the runners and the
    # cluster's own networks (nodes, pods) reach it.
    access = plan.config.openstack.magnum.deploy_access
    assert template["labels"]["master_lb_floating_ip_enabled"] == ("true" if access.via == "public_endpoint" else "false")
    allowed = template["labels"]["master_lb_allowed_cidrs"].split(",")
    assert allowed == [*access.runner_cidrs, plan.config.openstack.network.cidr, plan.config.openstack.magnum.pod_cidr]
    assert template["labels"]["docker_volume_type"] == plan.config.storage.cinder_volume_type
    assert template["labels"]["kube_tag"] == t.kube_tag and template["tlsDisabled"] is False and template["public"] is False
    cluster = one(plan, "openstack:containerinfra/cluster:Cluster", "cluster").inputs
    assert cluster["masterCount"] == plan.config.openstack.magnum.master_count and cluster["floatingIpEnabled"] is False


@pytest.mark.parametrize("name", NAMES)
def test_magnum_gpu_node_groups_are_sized_labelled_and_tainted_by_the_kubelet(name):
    plan = plan_of(name)
    flavors = plan.config.openstack.flavors()
    groups = {r.inputs["name"]: r.inputs for r in of_type(plan, "openstack:containerinfra/nodeGroup:NodeGroup")}
    pools = plan.config.openstack.magnum.gpu_pools
    assert set(groups) == {f"gpu-{p.name}" for p in pools}
    for pool in pools:
        group = groups[f"gpu-{pool.name}"]
        assert group["flavorId"] == pool.flavor and group["role"] == "gpu"
        assert group["minNodeCount"] <= group["nodeCount"] <= group["maxNodeCount"]
        assert (group["minNodeCount"], group["nodeCount"], group["maxNodeCount"]) == (pool.min_size, pool.desired_size, pool.max_size)
        options = group["labels"]["kubelet_options"].split()
        assert "--register-with-taints=nvidia.com/gpu=true:NoSchedule" in options
        node_labels = dict(kv.split("=") for kv in next(o for o in options if o.startswith("--node-labels=")).removeprefix("--node-labels=").split(","))
        assert node_labels == {"nvidia.com/gpu.present": "true", "hybridserve.io/pool": pool.name, "hybridserve.io/accelerator": flavors[pool.flavor].gpu_model}
        assert group["mergeLabels"] is True
        # the driver comes with the image (no Fedora CoreOS driver container exists): never the template's stock image
        nvidia = plan.config.openstack.magnum.nvidia
        assert group["imageId"] == (pool.image or nvidia.gpu_image) != plan.config.openstack.magnum.template.image


# --- cost ------------------------------------------------------------------------------------------------------


def test_plan_prices_every_pool_at_min_and_max(capsys):
    code = 0
    try:
        main(["plan", "--stack", "vision-prod", "--stacks-dir", str(EXAMPLES)])
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr().out
    assert code == 0
    plan = plan_of("vision-prod")
    lines = {line.item: line for line in plan.cost.lines}
    pool = plan.config.aws.eks.gpu_pools[0]
    line = lines[f"EKS GPU pool {pool.name}"]
    price = AWS_INSTANCE_TYPES[pool.instance_types[0]].usd_per_hour
    assert (line.monthly_min, line.monthly_max) == (pytest.approx(price * pool.min_size * HOURS_PER_MONTH), pytest.approx(price * pool.max_size * HOURS_PER_MONTH))
    assert "Magnum GPU pool a10" in lines
    assert "EKS GPU pool a10g" in out and f"{line.monthly_max:,.0f}" in out


# --- what the schema refuses: the key path, and nothing planned -----------------------------------------------


BAD = {
    "unknown-instance-type": (("hybridserve:aws", "eks", "gpu_pools", 0, "instance_types"), ["g9.mega"],
                              "hybridserve:aws.eks.gpu_pools[0].instance_types[0]: 'g9.mega' is not a known GPU instance type"),
    "cpu-type-in-gpu-pool": (("hybridserve:aws", "eks", "gpu_pools", 0, "instance_types"), ["m6i.large"],
                             "hybridserve:aws.eks.gpu_pools[0].instance_types[0]: 'm6i.large' is not a known GPU instance type"),
    "min-greater-than-max": (("hybridserve:aws", "eks", "gpu_pools", 0, "min_size"), 5,
                             "hybridserve:aws.eks.gpu_pools[0].min_size: 5 is greater than max_size (2)"),
    "unknown-flavor": (("hybridserve:openstack", "magnum", "gpu_pools", 0, "flavor"), "gpu.h100.huge",
                       "hybridserve:openstack.magnum.gpu_pools[0].flavor: 'gpu.h100.huge' is not a known GPU flavor"),
    "cpu-flavor-in-gpu-pool": (("hybridserve:openstack", "magnum", "gpu_pools", 0, "flavor"), "m1.xlarge",
                               "hybridserve:openstack.magnum.gpu_pools[0].flavor: 'm1.xlarge' is not a known GPU flavor"),
    "api-open-to-all": (("hybridserve:aws", "eks", "public_access_cidrs"), ["0.0.0.0/0"],
                        "hybridserve:aws.eks.public_access_cidrs[0]: 0.0.0.0/0 opens the Kubernetes API to the whole internet"),
    "gpu-pool-without-taint": (("hybridserve:aws", "eks", "gpu_pools", 0, "taints"), [],
                               "hybridserve:aws.eks.gpu_pools[0].taints: no nvidia.com/gpu NoSchedule taint"),
    "magnum-pool-without-taint": (("hybridserve:openstack", "magnum", "gpu_pools", 0, "taints"), [{"key": "other", "value": "x"}],
                                  "hybridserve:openstack.magnum.gpu_pools[0].taints: no nvidia.com/gpu NoSchedule taint"),
    "magnum-driver-container-on-fcos": (("hybridserve:openstack", "magnum", "nvidia"), {"driver": "operator"},
                                        "hybridserve:openstack.magnum.nvidia.driver: 'operator' would run the GPU operator's driver container, "
                                        "and NVIDIA publishes none for Fedora CoreOS"),
    "audit-logs-off": (("hybridserve:aws", "eks", "log_types"), ["api"],
                       "hybridserve:aws.eks.log_types: ['api'] lacks audit, authenticator"),
}


def _set(doc: dict, path: tuple, value) -> None:
    node = doc["config"]
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_pool_settings_are_rejected_with_the_key_path_and_nothing_is_planned(case, tmp_path: Path, capsys, monkeypatch):
    path_, value, message = BAD[case]
    stacks = tmp_path / "stacks"
    shutil.copytree(EXAMPLES, stacks)
    file = stacks / "Pulumi.vision-dev.yaml"
    doc = yaml.safe_load(file.read_text())
    _set(doc, path_, value)
    file.write_text(yaml.safe_dump(doc))

    ran = []
    monkeypatch.setattr(infra.plan, "_run_program", lambda *a, **k: ran.append(a))
    with pytest.raises(StackConfigError) as info:
        plan_stack_file(file)
    assert any(message in p for p in info.value.problems), info.value.problems
    assert ran == []  # the program never ran: nothing planned

    out_file = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--stack", "vision-dev", "--stacks-dir", str(stacks), "--json", str(out_file)])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and message in " ".join(err.split())
    assert "pulumi:pulumi:Stack" not in out and not out_file.exists()


def test_open_api_needs_an_explicit_opt_in_and_public_access_needs_cidrs():
    eks = {"public_access_cidrs": ["0.0.0.0/0"], "allow_public_api_from_anywhere": True}
    assert build_stack_config(reachable({**REQUIRED, "hybridserve:aws": {"eks": eks}})).aws.eks.public_access
    private = {"via": "private_network", "runner_cidrs": ["10.0.8.0/24"]}  # a runner inside the default VPC
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:aws": {"eks": {"endpoint_public_access": True, "deploy_access": private}}}))
    assert any("hybridserve:aws.eks.public_access_cidrs: is empty while endpoint_public_access is true" in p for p in info.value.problems)
    cfg = build_stack_config(reachable({**REQUIRED, "hybridserve:aws": {"eks": {"deploy_access": private}}}))
    assert cfg.aws.eks.public_access is False and cfg.aws.eks.public_access_cidrs == [] and cfg.aws.eks.private_runner_cidrs == ["10.0.8.0/24"]
    # a public deploy path opens the public endpoint to the runners only
    public = build_stack_config(reachable(REQUIRED)).aws.eks
    assert public.public_access is True and public.public_cidrs == ["198.51.100.0/24"] and public.public_access_cidrs == []
    assert [(t.key, t.value, t.effect) for t in cfg.aws.eks.gpu_pools[0].taints] == [("nvidia.com/gpu", "true", "NoSchedule")]


# --- the contract with the Triton component ---------------------------------------------------------------------


def test_clusters_hand_typed_handles_to_the_triton_component(monkeypatch):
    """What serving.build receives from the clusters: a ClusterHandle per site (provider, GPU pools, readiness)."""
    import infra.program
    from infra.components import cluster, network, storage
    from infra.components.cluster import ClusterHandle

    seen = {}

    def build(ctx) -> None:
        net = network.build(ctx)
        parts = cluster.build(ctx, net, storage.build(ctx))
        for site in ("aws", "openstack"):
            handle = parts.site(site)
            assert isinstance(handle, ClusterHandle) and handle.site == site
            seen[site] = {
                "provider": handle.provider is ctx.providers.kubernetes[site],
                "version": handle.kubernetes_version,
                "pools": [(p.name, p.node_labels.get("hybridserve.io/pool"), p.tolerations(), p.gpus_per_node) for p in handle.gpu_pools],
                "ready": len(handle.ready) > 0,
            }
        parts.eks.kubeconfig.apply(lambda text: seen.update(kubeconfig=json.loads(text)))

    monkeypatch.setattr(infra.program, "build", build)
    plan_stack_file(EXAMPLES / "Pulumi.vision-dev.yaml")
    # the EKS kubeconfig holds no credential: the client runs `aws eks get-token` with its own identity
    [user] = seen.pop("kubeconfig")["users"]
    assert set(user["user"]) == {"exec"} and user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "hybridserve-vision-dev-eks"]
    toleration = [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert seen == {
        "aws": {"provider": True, "version": "1.35", "pools": [("t4", "t4", toleration, 1)], "ready": True},
        "openstack": {"provider": True, "version": "1.36", "pools": [("t4", "t4", toleration, 1)], "ready": True},
    }
