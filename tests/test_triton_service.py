"""Triton on both clusters (issue 10): the serving components under the mock engine, read as a cluster would.

Every example stack is planned once (the real program, infra/plan.py). The assertions read what the engine
received: per site the publication, the Deployment (its arguments are the local plane's, from
hybridserve.tritonargs), Services, PDB, NetworkPolicies, HPA, ServiceMonitor, image pre-pull, the candidate
gate Job (the new version alone, before the Deployment changes) and the smoke gate Job after the rollout, and
the order a `pulumi up` creates them in (the recorded dependencies).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hybridserve.gateagreement import CANDIDATE_ENV, SERVED_ENV
from hybridserve.gatejob import GATE_DIR, METRICS_URL_ENV, URL_ENV
from hybridserve.paths import repo_root
from hybridserve.stackconfig import StackConfigError, build_stack_config, stack_files
from hybridserve.stackconfig.catalog import HELM_CHARTS, TRITON_RELEASES
from hybridserve.tritonargs import CREDENTIALS_FILE_ENV, Listen, server_arguments
from infra.components.monitoring import QUEUE_TIME_METRIC
from infra.mocks import MockContext
from infra.plan import SECRET_MARKER, Plan, PlannedResource, plan_stack_file
from stackutil import reachable

EXAMPLES = repo_root() / "stacks"
NAMES = sorted(stack_files(EXAMPLES))
SITES = ("aws", "openstack")
REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}


_EXAMPLE_PLANS: dict[str, Plan] = {}


@pytest.fixture(scope="module", autouse=True)
def _example_plans(example_plans):
    """The session's plans of the unchanged example stacks (tests/conftest.py): planned once per run, not per module."""
    _EXAMPLE_PLANS.update(example_plans)
    yield
    _EXAMPLE_PLANS.clear()


def plan_of(name: str) -> Plan:
    """Read-only: the session's plan of example stack `name`."""
    return _EXAMPLE_PLANS[name]


def component(plan: Plan, name: str) -> PlannedResource:
    [found] = [r for r in plan.resources if r.name == name and not r.custom]
    return found


def child(plan: Plan, parent: str, type_: str, name: str | None = None) -> PlannedResource:
    urn = component(plan, parent).urn
    found = [r for r in plan.resources if r.parent == urn and r.type == type_ and (name is None or r.name == f"{parent}-{name}")]
    assert len(found) == 1, (parent, type_, name, [r.name for r in found])
    return found[0]


def of_type(plan: Plan, type_: str) -> list[PlannedResource]:
    return [r for r in plan.resources if r.type == type_]


def publication(plan: Plan, site: str) -> PlannedResource:
    [pub] = [r for r in of_type(plan, "pulumi-python:dynamic/hybridserve:ModelPublication") if r.name == f"models-{site}"]
    return pub


def deployment(plan: Plan, site: str) -> dict:
    return child(plan, f"triton-{site}", "kubernetes:apps/v1:Deployment").inputs


def container(plan: Plan, site: str) -> dict:
    [c] = deployment(plan, site)["spec"]["template"]["spec"]["containers"]
    return c


# --- what each site gets, in which order ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_each_site_gets_publication_triton_and_gate_in_dependency_order(name):
    plan = plan_of(name)
    urns = {r.urn: r for r in plan.resources}
    assert len(urns) == len(plan.resources), "duplicate URNs: the engine refuses them (children need unique names per site)"
    for site in plan.config.serving.targets:
        pub = publication(plan, site)
        parent = f"triton-{site}"
        deploy = child(plan, parent, "kubernetes:apps/v1:Deployment")
        service = child(plan, parent, "kubernetes:core/v1:Service", "service")
        pdb = child(plan, parent, "kubernetes:policy/v1:PodDisruptionBudget")
        policy = child(plan, parent, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "network-policy")
        hpa = child(plan, parent, "kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
        job = child(plan, parent, "kubernetes:batch/v1:Job", "smoke-gate")
        candidate = child(plan, parent, "kubernetes:batch/v1:Job", "candidate-gate")
        assert pub.urn in deploy.dependencies  # published before the rollout reads it
        assert {deploy.urn, service.urn, policy.urn} <= set(job.dependencies)  # the gate runs after the rollout
        # the candidate is gated before the Deployment changes: a failed candidate stops `pulumi up` there
        assert candidate.urn in deploy.dependencies and deploy.urn not in candidate.dependencies
        account = child(plan, parent, "kubernetes:core/v1:ServiceAccount").urn
        files = child(plan, parent, "kubernetes:core/v1:ConfigMap").urn
        candidate_policy = child(plan, parent, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "candidate-network-policy").urn
        assert {pub.urn, account, files, candidate_policy} <= set(candidate.dependencies)
        if site == "openstack":  # its credential file, mounted from the Secret
            assert child(plan, parent, "kubernetes:core/v1:Secret").urn in candidate.dependencies
        assert deploy.urn in hpa.dependencies
        namespace = child(plan, parent, "kubernetes:core/v1:Namespace").urn
        assert namespace in pdb.dependencies and namespace in service.dependencies
        # every Kubernetes object of the site goes through that site's provider
        for r in plan.resources:
            if r.parent == component(plan, parent).urn:
                assert r.provider.endswith(f"::k8s-{site}"), r.urn


@pytest.mark.parametrize("name", NAMES)
def test_plan_shows_each_sites_serving_in_creation_order(name):
    from hybridserve.stackconfig.cli import serving_rollout

    rollout = serving_rollout(plan_of(name))
    assert set(rollout) == set(plan_of(name).config.serving.targets)
    for site, order in rollout.items():
        kinds = [r.type.rsplit(":", 1)[-1] for r in order]
        position = {kind: kinds.index(kind) for kind in kinds}
        names = [r.name for r in order]
        candidate, gate = names.index(f"triton-{site}-candidate-gate"), names.index(f"triton-{site}-smoke-gate")
        assert position["ModelPublication"] < candidate < position["Deployment"] < gate
        assert position["Deployment"] < position["HorizontalPodAutoscaler"]
        for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
            assert position[kind] < gate, kind
        assert names[-1] == f"triton-{site}-smoke-gate"  # the gate comes last: it judges what was rolled out


@pytest.mark.parametrize("name", NAMES)
def test_stack_outputs_per_site(name):
    plan = plan_of(name)
    ns = plan.config.serving.namespace
    for site in SITES:
        assert plan.outputs["tritonEndpoints"][site]["grpc"] == f"triton.{ns}.svc.cluster.local:8001"
        pub = publication(plan, site).inputs
        published = plan.outputs["modelPublications"][site]
        assert (published["uri"], published["version"], published["digest"]) == (pub["uri"], pub["version"], pub["digest"])
        gate = plan.outputs["smokeGate"][site]
        assert gate["job"].startswith("triton-smoke-") and gate["namespace"] == ns
        assert gate["verdict"] == "not run"  # offline: no Job ran; after `pulumi up` it reads passed
        assert f"hybridserve smoke-report --stack {name} --site {site}" in gate["report"]
        candidate = child(plan, f"triton-{site}", "kubernetes:batch/v1:Job", "candidate-gate").inputs["metadata"]["name"]
        assert gate["candidate"]["job"] == candidate and gate["candidate"]["version"] == published["version"]
        assert gate["candidate"]["verdict"] == "not run" and f"kubectl logs -n {ns} job/{candidate} -c smoke-gate" in gate["candidate"]["report"]
        # the promotion record: the version, and per gate its Job, verdict and when it ran (the Job's status)
        record = plan.outputs["promotions"][site]
        assert (record["version"], record["uri"]) == (published["version"], published["uri"])
        assert record["candidateGate"] == {"job": candidate, "verdict": "not run", "started": None, "completed": None}
        assert record["rolloutGate"] == {"job": gate["job"], "verdict": "not run", "started": None, "completed": None}


# --- the publication ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_publication_per_site_is_keyed_by_content_and_keeps_secrets(name):
    plan = plan_of(name)
    cfg = plan.config
    aws, openstack = publication(plan, "aws").inputs, publication(plan, "openstack").inputs
    bucket = cfg.storage.model_bucket
    assert aws["store"]["bucket"] == bucket and aws["store"]["sse"] == "aws:kms"
    assert aws["store"]["kmsKeyId"].startswith("arn:aws:kms:") and aws["store"]["roleArn"].endswith("-model-writer")
    assert aws["uri"] == f"s3://{bucket}/{cfg.storage.prefix}/{aws['version']}"
    assert aws["version"] == "v" + aws["digest"][:16] and aws["keep"] == cfg.serving.publication.keep_versions
    assert openstack["store"]["sse"] == "AES256" and openstack["credentials"] == SECRET_MARKER
    assert openstack["uri"].startswith("s3://https://") and openstack["uri"].endswith(f"/{cfg.storage.prefix}/{openstack['version']}")
    # the same models and target settings on both GPU sites: the same content, the same version name
    assert aws["digest"] == openstack["digest"] and aws["target"]["gpu"] is True
    assert publication(plan, "aws").inputs["__provider"] == SECRET_MARKER  # the pickled provider is never shown


# --- the Deployment ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_deployment_runs_the_local_planes_arguments_on_the_published_uri(name):
    plan = plan_of(name)
    s = plan.config.serving
    for site in SITES:
        pub = publication(plan, site).inputs
        c = container(plan, site)
        spec = deployment(plan, site)["spec"]
        models = [m.name for m in s.models] or ["image_classifier", "text_encoder"]
        expected = server_arguments(pub["uri"], models, Listen("0.0.0.0", s.http_port, s.grpc_port, s.metrics_port),
                                    exit_timeout_s=s.drain_seconds, gpu_metrics=True)
        assert c["command"] == ["tritonserver"] and c["args"] == expected
        assert "--model-control-mode=explicit" in c["args"] and "--strict-readiness=true" in c["args"] and "--allow-metrics=true" in c["args"]
        assert c["image"] == f"{s.triton_image}:{s.triton_version}" and s.release in TRITON_RELEASES
        # a new published version is a rolling update
        assert spec["template"]["metadata"]["annotations"]["hybridserve.io/model-version"] == pub["version"]
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        assert "replicas" not in spec  # the HPA owns the count; `pulumi up` must not reset it


@pytest.mark.parametrize("name", NAMES)
def test_deployment_is_locked_down_and_lands_on_the_gpu_pools(name):
    plan = plan_of(name)
    s = plan.config.serving
    for site in SITES:
        pod = deployment(plan, site)["spec"]["template"]["spec"]
        c = container(plan, site)
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
        assert pod["automountServiceAccountToken"] is False
        # where Triton writes: /tmp (the model copy) and /dev/shm sized from the stack, in memory
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": s.shm_size}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        gpus = str(s.resources.gpus)
        assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == gpus
        assert c["resources"]["limits"]["memory"] == s.resources.memory_limit
        # the pools of this site, their taint tolerated
        pools = plan.config.aws.eks.gpu_pools if site == "aws" else plan.config.openstack.magnum.gpu_pools
        [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        exprs = {e["key"]: e["values"] for e in term["matchExpressions"]}
        assert exprs == {"nvidia.com/gpu.present": ["true"], "hybridserve.io/pool": sorted(p.name for p in pools)}
        assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in pod["tolerations"]
        # probes: loading may take startup_seconds; then live and ready
        probes = {k: c[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes == {"startupProbe": "/v2/health/ready", "livenessProbe": "/v2/health/live", "readinessProbe": "/v2/health/ready"}
        assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= s.startup_seconds
        # drain: out of the Services (preStop), then Triton's own exit timeout, within the grace period
        prestop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
        assert f"--exit-timeout-secs={s.drain_seconds}" in c["args"]
        assert pod["terminationGracePeriodSeconds"] > prestop + s.drain_seconds
        assert {t["topologyKey"] for t in pod["topologySpreadConstraints"]} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}


def test_identity_is_irsa_on_aws_and_a_credential_file_on_openstack():
    plan = plan_of("search-dev")
    sa = child(plan, "triton-aws", "kubernetes:core/v1:ServiceAccount").inputs
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == plan.outputs["modelReaderRoleArn"]
    assert sa["metadata"]["name"] == plan.config.aws.eks.triton_service_account and sa["automountServiceAccountToken"] is False
    for site in SITES:
        env = {e["name"]: e for e in container(plan, site)["env"]}
        assert not any(k.startswith("AWS_ACCESS") or k.startswith("AWS_SECRET") or "valueFrom" in e for k, e in env.items())
    aws_env = {e["name"]: e.get("value") for e in container(plan, "aws")["env"]}
    assert aws_env["AWS_REGION"] == plan.config.aws.region and CREDENTIALS_FILE_ENV not in aws_env
    # No keys for Triton: the only access keys are the edge sites' read-only users (hosts outside AWS, no IRSA).
    assert not [r.name for r in of_type(plan, "aws:iam/accessKey:AccessKey") if not (r.name.startswith("edge-") and r.name.endswith("-reader-key"))]
    # OpenStack: Swift's S3 keys in a Secret, mounted as Triton's credential file (not environment variables)
    secret = child(plan, "triton-openstack", "kubernetes:core/v1:Secret").inputs
    assert secret["stringData"] == SECRET_MARKER
    os_env = {e["name"]: e.get("value") for e in container(plan, "openstack")["env"]}
    assert os_env[CREDENTIALS_FILE_ENV] == "/var/run/secrets/hybridserve/s3/credentials.json"
    pod = deployment(plan, "openstack")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    namespace = child(plan, "triton-openstack", "kubernetes:core/v1:Namespace").inputs["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


# --- around the Deployment -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_services_pdb_autoscaler_and_monitor(name):
    plan = plan_of(name)
    s = plan.config.serving
    for site in SITES:
        selector = deployment(plan, site)["spec"]["selector"]["matchLabels"]
        service = child(plan, f"triton-{site}", "kubernetes:core/v1:Service", "service").inputs["spec"]
        assert service["type"] == "ClusterIP" and service["selector"] == selector
        assert {p["name"]: p["port"] for p in service["ports"]} == {"http": s.http_port, "grpc": s.grpc_port, "metrics": s.metrics_port}
        lb = child(plan, f"triton-{site}", "kubernetes:core/v1:Service", "load-balancer").inputs
        assert lb["spec"]["type"] == "LoadBalancer" and {p["name"] for p in lb["spec"]["ports"]} == {"http", "grpc"}  # no metrics outside
        internal = "service.beta.kubernetes.io/aws-load-balancer-internal" if site == "aws" else "service.beta.kubernetes.io/openstack-internal-load-balancer"
        assert lb["metadata"]["annotations"][internal] == "true"
        pdb = child(plan, f"triton-{site}", "kubernetes:policy/v1:PodDisruptionBudget").inputs["spec"]
        assert pdb == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
        hpa = child(plan, f"triton-{site}", "kubernetes:autoscaling/v2:HorizontalPodAutoscaler").inputs["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (s.replicas.min, s.replicas.max)
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
        assert hpa["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": QUEUE_TIME_METRIC}, "target": {"type": "AverageValue", "averageValue": "50"}}}]
        monitor = child(plan, f"triton-{site}", "kubernetes:monitoring.coreos.com/v1:ServiceMonitor").inputs
        assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
        # the queue-time metric comes from the adapter of this site; the ServiceMonitor waits for the operator's CRDs
        releases = {r.inputs["name"]: r for r in of_type(plan, "kubernetes:helm.sh/v3:Release") if r.provider.endswith(f"::k8s-{site}")}
        adapter = releases["prometheus-adapter"]
        assert adapter.inputs["values"]["rules"]["custom"][0]["name"]["as"] == QUEUE_TIME_METRIC
        hpa_deps = set(child(plan, f"triton-{site}", "kubernetes:autoscaling/v2:HorizontalPodAutoscaler").dependencies)
        assert adapter.urn in hpa_deps and releases["kps"].urn in set(child(plan, f"triton-{site}", "kubernetes:monitoring.coreos.com/v1:ServiceMonitor").dependencies)
        for release in ("kps", "prometheus-adapter"):
            chart = HELM_CHARTS["kube-prometheus-stack" if release == "kps" else release]
            assert (releases[release].inputs["chart"], releases[release].inputs["version"]) == (chart.name, chart.version)
        assert releases["kps"].inputs["values"]["grafana"] == {"enabled": False}  # its chart ships a default admin password
        # DCGM: the chart on EKS (device plugin); Magnum's GPU operator runs its own
        assert ("dcgm-exporter" in releases) == (site == "aws")


def test_cpu_autoscaling_without_prometheus():
    cfg = build_stack_config(reachable({**REQUIRED, "hybridserve:serving": {"autoscaling": {"metric": "cpu"}, "monitoring": {"prometheus": "none"}}}))
    assert cfg.serving.autoscaling.metric == "cpu"
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:serving": {"monitoring": {"prometheus": "none"}}}))
    assert any("hybridserve:serving.autoscaling.metric: queue_time needs Triton's metrics in Prometheus" in p for p in info.value.problems)


@pytest.mark.parametrize("name", NAMES)
def test_network_policies_admit_only_clients_the_peer_site_and_prometheus(name):
    plan = plan_of(name)
    s = plan.config.serving
    for site in SITES:
        deny = child(plan, f"triton-{site}", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "default-deny").inputs["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        spec = child(plan, f"triton-{site}", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "network-policy").inputs["spec"]
        peers = plan.outputs["network"]["openstack" if site == "aws" else "aws"]
        blocks = [p["ipBlock"]["cidr"] for rule in spec["ingress"] for p in rule["from"] if "ipBlock" in p]
        assert peers["cidr"] in blocks  # the other site, over the VPN
        assert "0.0.0.0/0" not in blocks
        monitoring = [rule for rule in spec["ingress"] if rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]]
        assert monitoring[0]["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.monitoring.namespace}}}]
        # egress: DNS and the object store's port only
        ports = [[p["port"] for p in rule["ports"]] for rule in spec["egress"]]
        uri = publication(plan, site).inputs["uri"]  # s3://bucket/... on AWS, s3://https://host:port/... on Swift
        store_port = 443 if site == "aws" else int(uri.split("://")[2].split("/")[0].split(":")[1])
        assert ports == [[53, 53], [store_port]]
        [store] = spec["egress"][1]["to"]
        assert store["ipBlock"]["except"] == ["169.254.169.254/32"]  # never the instance metadata service


def test_eks_enforces_network_policies():
    plan = plan_of("vision-dev")
    [cni] = [r for r in of_type(plan, "aws:eks/addon:Addon") if r.inputs["addonName"] == "vpc-cni"]
    assert json.loads(cni.inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:openstack": {"magnum": {"template": {"network_driver": "flannel"}}}}))
    assert any("network_driver: flannel enforces no NetworkPolicy" in p for p in info.value.problems)


def test_image_is_prepulled_on_gpu_nodes_and_digests_can_be_pinned():
    plan = plan_of("vision-dev")
    for site in SITES:
        ds = child(plan, f"triton-{site}", "kubernetes:apps/v1:DaemonSet").inputs["spec"]["template"]["spec"]
        assert ds["containers"][0]["image"] == container(plan, site)["image"]
        assert ds["affinity"] == deployment(plan, site)["spec"]["template"]["spec"]["affinity"]
    digest = "sha256:" + "a" * 64
    cfg = build_stack_config(reachable({**REQUIRED, "hybridserve:serving": {"triton_digest": digest, "gate": {"image_digest": digest}}}))
    assert cfg.serving.image == f"nvcr.io/nvidia/tritonserver:{cfg.serving.triton_version}@{digest}"
    assert cfg.serving.gate_image == f"nvcr.io/nvidia/tritonserver:{cfg.serving.release}-py3-sdk@{digest}"
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:serving": {"triton_version": "23.01-py3"}}))
    assert any("hybridserve:serving.triton_version: '23.01-py3' is not a Triton release the kit knows" in p for p in info.value.problems)


# --- the smoke gate Job ------------------------------------------------------------------------------------


def gate_of(plan: Plan, site: str) -> tuple[dict, dict]:
    job = child(plan, f"triton-{site}", "kubernetes:batch/v1:Job", "smoke-gate").inputs
    config_map = child(plan, f"triton-{site}", "kubernetes:core/v1:ConfigMap").inputs
    return job, config_map


def test_gate_job_runs_the_stock_sdk_image_with_the_gate_mounted():
    plan = plan_of("vision-dev")
    s = plan.config.serving
    for site in SITES:
        job, config_map = gate_of(plan, site)
        pod = job["spec"]["template"]["spec"]
        [c] = pod["containers"]
        assert c["image"] == f"{s.triton_image}:{s.release}-py3-sdk"
        assert c["workingDir"] == GATE_DIR and c["command"][:3] == ["python3", "-m", "smoke_tests"]
        assert s.gate.window_seconds is None and "--window" not in c["command"]  # the profile's windows
        spec = json.loads(c["command"][c["command"].index("--slos") + 1])
        assert spec["slos"]["*"]["min_throughput"] == s.slo.min_throughput and spec["wait_ready_s"] == s.slo.wait_ready_seconds
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env[URL_ENV] == f"triton.{s.namespace}.svc.cluster.local:{s.grpc_port}"
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] == s.gate.timeout_seconds
        assert int(job["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) > s.gate.timeout_seconds
        [volume] = [v for v in pod["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == config_map["metadata"]["name"] and config_map["immutable"] is True
        paths = {i["path"] for i in volume["configMap"]["items"]}
        assert {"smoke_tests/__main__.py", "smoke_tests/cli.py", "model_repo/text_encoder/config.pbtxt", "model_repo/text_encoder/1/reference.npz"} <= paths
        # the served (GPU) config, not the local one: its tolerances are what the gate compares with
        served = config_map["data"]["model_repo__image_classifier__config.pbtxt"]
        assert 'backend: "pytorch"' in served and "KIND_GPU" in served


@pytest.mark.parametrize("window", [0, -1, 61])
def test_a_gate_window_out_of_range_is_refused_naming_the_key(window):
    cfg = build_stack_config(reachable({**REQUIRED, "hybridserve:serving": {"gate": {"window_seconds": 0.5}}}))
    assert cfg.serving.gate.window_seconds == 0.5
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:serving": {"gate": {"window_seconds": window}}}))
    assert any("hybridserve:serving.gate.window_seconds" in p for p in info.value.problems), info.value.problems


@pytest.fixture(scope="module")
def stricter_slo_plan(tmp_path_factory) -> Plan:
    """vision-dev with a stricter SLO (serving.slo.min_throughput 11): both gates' Jobs must be renamed by it.
    Planned once for the two tests that read it (read-only)."""
    stacks = tmp_path_factory.mktemp("stricter") / "stacks"
    shutil.copytree(EXAMPLES, stacks)
    path = stacks / "Pulumi.vision-dev.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["hybridserve:serving"]["slo"]["min_throughput"] = 11
    path.write_text(yaml.safe_dump(doc))
    return plan_stack_file(path)


def test_gate_job_name_follows_what_it_validates(stricter_slo_plan: Plan):
    """A new model version, Deployment spec or SLO renames the Job, so `pulumi up` runs the gate again."""
    base = {site: gate_of(plan_of("vision-dev"), site)[0]["metadata"]["name"] for site in SITES}
    changed = stricter_slo_plan
    for site in SITES:
        assert gate_of(changed, site)[0]["metadata"]["name"] != base[site]
        assert publication(changed, site).inputs["version"] == publication(plan_of("vision-dev"), site).inputs["version"]
    # the same inputs give the same name: an unchanged stack does not rerun the gate
    again = plan_stack_file(EXAMPLES / "Pulumi.vision-dev.yaml")
    assert {site: gate_of(again, site)[0]["metadata"]["name"] for site in SITES} == base


# --- the candidate gate (before traffic) ---------------------------------------------------------------------


def candidate_of(plan: Plan, site: str) -> PlannedResource:
    return child(plan, f"triton-{site}", "kubernetes:batch/v1:Job", "candidate-gate")


@pytest.mark.parametrize("name", NAMES)
def test_candidate_gate_runs_the_deployments_triton_as_a_sidecar_and_the_gate_on_loopback(name):
    plan = plan_of(name)
    s = plan.config.serving
    for site in SITES:
        job = candidate_of(plan, site).inputs
        pod = job["spec"]["template"]["spec"]
        serving_pod = deployment(plan, site)["spec"]["template"]["spec"]
        [sidecar, agreement] = pod["initContainers"]
        # Triton as the Deployment runs it (image, arguments on the new URI, resources with the GPU, identity,
        # mounts), as a native sidecar; started once live, so a model that fails to load is the gate's report
        expected = {k: v for k, v in container(plan, site).items() if k != "lifecycle"}
        expected["startupProbe"] = {**expected["startupProbe"], "httpGet": {"path": "/v2/health/live", "port": "http"}}
        assert sidecar == {**expected, "restartPolicy": "Always"}
        assert f"--model-repository={publication(plan, site).inputs['uri']}" in sidecar["args"]
        for key in ("serviceAccountName", "automountServiceAccountToken", "enableServiceLinks", "securityContext", "affinity", "tolerations"):
            assert pod[key] == serving_pod[key], key
        assert {v["name"]: v for v in serving_pod["volumes"]}.items() <= {v["name"]: v for v in pod["volumes"]}.items()
        assert pod["restartPolicy"] == "Never"
        # the gate: the stock SDK image and the post-rollout gate's command, against the sidecar over loopback
        [gate] = pod["containers"]
        [post] = gate_of(plan, site)[0]["spec"]["template"]["spec"]["containers"]
        assert gate["image"] == s.gate_image and gate["command"] == post["command"]
        env = {e["name"]: e["value"] for e in gate["env"]}
        assert env[URL_ENV] == f"127.0.0.1:{s.grpc_port}" and env[METRICS_URL_ENV] == f"127.0.0.1:{s.metrics_port}"
        # between them, once Triton has started: old against new on the reference inputs (reports, never fails)
        assert agreement["image"] == s.gate_image and "restartPolicy" not in agreement
        assert agreement["command"] == ["python3", "agreement.py", "--model-repo", "model_repo", "--wait-s", f"{s.slo.wait_ready_seconds:g}"]
        agree_env = {e["name"]: e["value"] for e in agreement["env"]}
        assert agree_env[CANDIDATE_ENV] == f"127.0.0.1:{s.grpc_port}" and agree_env[SERVED_ENV] == f"triton.{s.namespace}.svc.cluster.local:{s.grpc_port}"
        for c in (gate, agreement):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True and sc["capabilities"] == {"drop": ["ALL"]}
            assert c["resources"]["limits"]["cpu"] and c["resources"]["limits"]["memory"]
        # no Service selects the candidate: it takes no traffic
        labels = job["spec"]["template"]["metadata"]["labels"]
        for svc in ("service", "load-balancer"):
            selector = child(plan, f"triton-{site}", "kubernetes:core/v1:Service", svc).inputs["spec"]["selector"]
            assert not selector.items() <= labels.items(), svc
        assert job["spec"]["template"]["metadata"]["annotations"]["hybridserve.io/model-version"] == publication(plan, site).inputs["version"]
        # bounded: one try; scale-up, pull and loading as the rollout allows, then the gate; Pulumi waits longer
        spec = job["spec"]
        assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == s.startup_seconds + 900 + s.gate.timeout_seconds
        assert int(job["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) > spec["activeDeadlineSeconds"]
        # no TTL: a finished pod holds no GPU, its log is the report, and a Job deleted behind Pulumi would be drift
        assert "ttlSecondsAfterFinished" not in spec
        assert job["metadata"]["name"].startswith("triton-candidate-") and len(job["metadata"]["name"]) <= 63


@pytest.mark.parametrize("name", NAMES)
def test_candidate_network_policy_lets_triton_read_the_store_and_nothing_in(name):
    plan = plan_of(name)
    for site in SITES:
        labels = candidate_of(plan, site).inputs["spec"]["template"]["metadata"]["labels"]
        spec = child(plan, f"triton-{site}", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "candidate-network-policy").inputs["spec"]
        assert spec["podSelector"]["matchLabels"].items() <= labels.items()
        assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
        serving = child(plan, f"triton-{site}", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "network-policy").inputs["spec"]
        # DNS and the object store's port (never the metadata service), as Triton's pods; and the serving pods'
        # gRPC port, which admit the candidate there (the agreement step)
        grpc = plan.config.serving.grpc_port
        assert spec["egress"] == [*serving["egress"], {"to": [{"podSelector": {"matchLabels": serving["podSelector"]["matchLabels"]}}], "ports": [{"port": grpc, "protocol": "TCP"}]}]
        admitted = [r for r in serving["ingress"] if any(p.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items() and p.get("podSelector") for p in r["from"])]
        assert [r["ports"] for r in admitted] == [[{"port": "grpc", "protocol": "TCP"}]]
        # the post-rollout gate's policy does not select the candidate (it may reach the serving pods)
        gate_policy = child(plan, f"triton-{site}", "kubernetes:networking.k8s.io/v1:NetworkPolicy", "gate-network-policy").inputs["spec"]
        assert not gate_policy["podSelector"]["matchLabels"].items() <= labels.items()


def _names(plan: Plan) -> dict[str, tuple[str, str]]:
    return {site: (candidate_of(plan, site).inputs["metadata"]["name"], gate_of(plan, site)[0]["metadata"]["name"]) for site in SITES}


def test_candidate_job_name_follows_what_it_validates(tmp_path: Path, stricter_slo_plan: Plan):
    """A new model version, Triton container or SLO renames the candidate Job (the gate runs again before the
    rollout); a change outside the candidate's pod (the autoscaler's scale-down window) does not."""
    stacks = tmp_path / "stacks"
    shutil.copytree(EXAMPLES, stacks)
    path = stacks / "Pulumi.vision-dev.yaml"
    original = path.read_text()
    base = _names(plan_of("vision-dev"))

    def variant(change) -> Plan:
        doc = yaml.safe_load(original)
        change(doc["config"]["hybridserve:serving"])
        path.write_text(yaml.safe_dump(doc))
        return plan_stack_file(path)

    scaled = variant(lambda s: s.setdefault("autoscaling", {}).update(scale_down_stabilization_seconds=420))
    assert _names(scaled) == base
    stricter = stricter_slo_plan  # the SLO's min_throughput made 11, as variant() would
    for site in SITES:
        assert _names(stricter)[site][0] != base[site][0] and _names(stricter)[site][1] != base[site][1]
    image = variant(lambda s: s.update(triton_digest="sha256:" + "b" * 64))
    for site in SITES:
        assert _names(image)[site][0] != base[site][0]
        assert publication(image, site).inputs["version"] == publication(plan_of("vision-dev"), site).inputs["version"]
    # another model version (here the pin `hybridserve ci rollback` sets): gated alone before the Deployment goes back to it
    pinned = variant(lambda s: s.setdefault("publication", {}).update(pin_version="v" + "0" * 16))
    for site in SITES:
        assert publication(pinned, site).inputs["version"] == "v" + "0" * 16
        assert _names(pinned)[site][0] != base[site][0]
        assert candidate_of(pinned, site).inputs["spec"]["template"]["metadata"]["annotations"]["hybridserve.io/model-version"] == "v" + "0" * 16


def test_every_catalogued_cluster_version_runs_native_sidecars():
    """The candidate gate needs sidecar containers (on by default from 1.29): no EKS or Magnum version the
    kit accepts is older, so validation has nothing to refuse; a catalogue entry below it fails here."""
    from hybridserve.stackconfig.catalog import EKS_VERSIONS, KUBERNETES_RELEASES
    from infra.components.triton import NATIVE_SIDECAR_MINOR

    for minor in [*EKS_VERSIONS, *KUBERNETES_RELEASES]:
        assert tuple(int(x) for x in minor.split(".")) >= NATIVE_SIDECAR_MINOR, minor


def test_policy_pack_checks_tritons_sidecar_in_the_candidate_job():
    """triton-pod-hardening reads init containers of Jobs too: the candidate passes; a root sidecar without
    probes or explicit model control is refused."""
    import copy

    from hybridserve.policy import rules

    items = plan_of("vision-prod").as_json()["resources"]
    candidates = [i for i in items if i["type"] == "kubernetes:batch/v1:Job" and i["name"].endswith("-candidate-gate")]
    assert len(candidates) == 2
    assert not [v for v in rules.evaluate(rules.resources_from_plan(items), None) if v.policy == "triton-pod-hardening"]
    broken = copy.deepcopy(items)
    job = next(i for i in broken if i["name"] == "triton-aws-candidate-gate")
    sidecar = job["inputs"]["spec"]["template"]["spec"]["initContainers"][0]
    sidecar["securityContext"]["runAsUser"] = 0
    del sidecar["livenessProbe"]
    sidecar["args"] = [a for a in sidecar["args"] if not a.startswith("--model-control-mode")]
    found = [v.message for v in rules.evaluate(rules.resources_from_plan(broken), None) if v.policy == "triton-pod-hardening"]
    assert len(found) == 3 and all("container triton" in m for m in found), found


# --- deploy access ------------------------------------------------------------------------------------------


def test_public_deploy_path_opens_only_the_runners():
    plan = plan_of("vision-prod")
    [cluster] = of_type(plan, "aws:eks/cluster:Cluster")
    vpc = cluster.inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is True and vpc["publicAccessCidrs"] == ["198.51.100.0/24"]
    assert not [r for r in of_type(plan, "aws:ec2/securityGroup:SecurityGroup") if r.name == "api-access"]


def test_private_deploy_path_admits_the_runner_on_the_control_plane():
    plan = plan_of("vision-dev")  # a runner in the private cloud reaches EKS over the VPN
    [cluster] = of_type(plan, "aws:eks/cluster:Cluster")
    vpc = cluster.inputs["vpcConfig"]
    assert vpc["endpointPublicAccess"] is False and vpc["endpointPrivateAccess"] is True
    [group] = [r for r in of_type(plan, "aws:ec2/securityGroup:SecurityGroup") if r.name == "api-access"]
    # the id the engine gives that group (the mocks derive it from stack, type and name), and nothing else
    expected_id = MockContext("eu-central-1", "vision-dev", group.type, group.name).aws_id("sg-")
    assert vpc["securityGroupIds"] == [expected_id]
    [rule] = group.inputs["ingress"]
    assert (rule["protocol"], rule["fromPort"], rule["toPort"], rule["cidrBlocks"]) == ("tcp", 443, 443, ["10.110.3.0/24"])


@pytest.mark.parametrize(
    ("access", "message"),
    [
        (None, "hybridserve:aws.eks.deploy_access: is not set, but `pulumi up` declares Kubernetes objects on this cluster"),
        ({"via": "public_endpoint", "runner_cidrs": ["10.0.0.0/24"]}, "hybridserve:aws.eks.deploy_access.runner_cidrs[0]: 10.0.0.0/24 is private address space"),
        ({"via": "private_network", "runner_cidrs": ["172.31.0.0/24"]}, "hybridserve:aws.eks.deploy_access.runner_cidrs[0]: 172.31.0.0/24 is not inside a network routed to the aws cluster"),
        ({"via": "public_endpoint", "runner_cidrs": ["0.0.0.0/0"]}, "0.0.0.0/0 opens the Kubernetes API to the whole internet"),
        ({"via": "sideways", "runner_cidrs": ["10.0.0.0/24"]}, "hybridserve:aws.eks.deploy_access.via: 'sideways' is not valid"),
    ],
)
def test_validate_refuses_a_deployer_that_cannot_reach_a_cluster(access, message):
    eks = {} if access is None else {"deploy_access": access}
    values = {**REQUIRED, "hybridserve:aws": {"eks": eks}}
    values = reachable(values) if access is not None else {**reachable({**REQUIRED}), "hybridserve:aws": {"eks": {}}}
    with pytest.raises(StackConfigError) as info:
        build_stack_config(values)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_a_private_runner_on_the_peer_site_reaches_both_clusters():
    runner = {"via": "private_network", "runner_cidrs": ["10.64.1.0/24"]}  # in the default OpenStack network
    cfg = build_stack_config({**REQUIRED, "hybridserve:aws": {"eks": {"deploy_access": runner}}, "hybridserve:openstack": {"magnum": {"deploy_access": runner}}})
    assert cfg.aws.eks.private_runner_cidrs == ["10.64.1.0/24"] and not cfg.openstack.magnum.api_floating_ip


def test_the_triton_release_must_load_torchscript_of_the_build_torch():
    from infra.components.serving import libtorch_compatibility

    assert libtorch_compatibility("24.10", "2.13.0")[0] == "error"  # 2.5.0a0 is older than the build's torch
    kind, why = libtorch_compatibility("26.11", "2.13.0")
    assert kind == "warning" and "no source states the PyTorch version" in why
    assert libtorch_compatibility("26.04", "2.12.1") is None and libtorch_compatibility("26.04", "2.11.0") is None
    # the plan carries the warning for the default release
    assert any("serving.triton_version 26.11" in w for w in plan_of("vision-dev").warnings)


# --- Triton's Swift credential: read-only, and secret ----------------------------------------------------


def test_triton_reads_swift_with_a_read_only_users_credential_and_the_publication_writes_with_the_deployers(monkeypatch):
    """Triton's keys belong to a user with only the reader role that the container's read ACL admits; the
    deployer's own (member) credential stays with the publication. Both stay Pulumi secrets."""
    import infra.plan
    from google.protobuf import json_format

    raw: dict[str, dict] = {}
    original = infra.plan.RecordingMonitor.RegisterResource

    def spy(self, request):
        raw[request.name] = json_format.MessageToDict(request.object)
        return original(self, request)

    monkeypatch.setattr(infra.plan.RecordingMonitor, "RegisterResource", spy)
    plan = plan_stack_file(EXAMPLES / "Pulumi.search-dev.yaml")
    region, creds = plan.config.aws.region, "openstack:identity/ec2CredentialV3:Ec2CredentialV3"
    by_name = {r.name: r for r in plan.resources}

    reader, deployer = by_name["s3-read-credentials"], by_name["s3-credentials"]
    user, assignment = by_name["triton-reader"], by_name["triton-reader-role"]
    assert user.type == "openstack:identity/user:User" and "password" not in user.inputs
    user_id = MockContext(region, "search-dev", user.type, user.name).uuid("user", user.name).replace("-", "")
    assert reader.inputs["userId"] == user_id and "userId" not in deployer.inputs
    role_id = MockContext(region, "search-dev", "openstack:identity/getRole:getRole", json.dumps({"name": "reader"}, sort_keys=True)).uuid("role", "reader").replace("-", "")
    assert assignment.inputs == {"userId": user_id, "projectId": reader.inputs["projectId"], "roleId": role_id}
    assert assignment.urn in reader.dependencies  # the EC2 token carries the roles the user has when it is used
    container = next(r for r in of_type(plan, "openstack:objectstorage/container:Container"))
    assert container.inputs["containerRead"] == f"{reader.inputs['projectId']}:{user_id}"  # keystoneauth ACL: that user reads
    assert "containerWrite" not in container.inputs

    # The Secret Triton mounts holds the reader's keys, sent to the engine as a secret.
    string_data = raw["triton-openstack-s3-credentials"]["stringData"]
    assert string_data["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's secret signature
    s3 = json.loads(string_data["value"]["credentials.json"])["s3"][""]
    reader_access = MockContext(region, "search-dev", creds, "s3-read-credentials").digest("access", length=32)
    deployer_access = MockContext(region, "search-dev", creds, "s3-credentials").digest("access", length=32)
    assert s3["key_id"] == reader_access != deployer_access
    assert s3["secret_key"] == f"mockec2secret{MockContext(region, 'search-dev', creds, 's3-read-credentials').digest('secret', length=32)}"
    assert child(plan, "triton-openstack", "kubernetes:core/v1:Secret").inputs["stringData"] == SECRET_MARKER
    assert reader.urn in child(plan, "triton-openstack", "kubernetes:core/v1:Secret").dependencies
    # The publication writes with the deployer's credential, never the reader's.
    published_with = raw["models-openstack"]["credentials"]
    assert published_with["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    assert published_with["value"]["accessKey"] == deployer_access
    assert publication(plan, "openstack").inputs["credentials"] == SECRET_MARKER
    assert reader_access not in json.dumps(plan.as_json()) and deployer_access not in json.dumps(plan.as_json())


def test_a_deployer_who_may_not_create_users_opts_out_and_is_warned(tmp_path):
    from test_network import section, variant

    from hybridserve.stackconfig.loader import stack_warnings

    path = variant(tmp_path, "search-dev", lambda c: section(c, "storage").update(triton_swift_identity="deployer"))
    plan = plan_stack_file(path)
    assert not of_type(plan, "openstack:identity/user:User") and not of_type(plan, "openstack:identity/roleAssignment:RoleAssignment")
    [credential] = of_type(plan, "openstack:identity/ec2CredentialV3:Ec2CredentialV3")
    assert credential.urn in child(plan, "triton-openstack", "kubernetes:core/v1:Secret").dependencies
    assert "containerRead" not in of_type(plan, "openstack:objectstorage/container:Container")[0].inputs
    assert any(
        "hybridserve:storage.triton_swift_identity: 'deployer': Triton reads Swift with the deploying user's EC2 credential" in w
        for w in stack_warnings(plan.config)
    )
    assert not any("triton_swift_identity" in w for w in stack_warnings(plan_of("search-dev").config))
