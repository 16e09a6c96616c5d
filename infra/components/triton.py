"""Triton Inference Server on one site's cluster (`TritonService`, "hybridserve:serving:TritonService").

Built per site in `serving.targets` by infra/components/serving.py, after the cluster (a typed
`ClusterHandle`: provider, GPU pools, what must be ready) and the model publication of that site
(`ModelPublication`: the published URI and version). Everything goes through the cluster's provider:

- Namespace with Pod Security `restricted` enforced; the service account Triton runs as: on AWS
  annotated with the model-reader IRSA role (no keys anywhere), on OpenStack with the Swift S3
  credentials in a Secret mounted as Triton's credential file (not environment variables);
- Deployment: the pinned image, the `tritonserver` arguments of hybridserve/tritonargs.py (the local
  plane starts its server with the same function) with `--model-repository` = the published URI,
  GPU requests = limits, the GPU pools selected and their taints tolerated, /dev/shm sized for the
  backends, non-root (UID 10001), no privilege escalation, every capability dropped, RuntimeDefault
  seccomp, read-only root with emptyDirs where Triton writes; startup probe sized to model loading,
  liveness /v2/health/live, readiness /v2/health/ready; rolling update with no unavailable replica;
  spread over zones and nodes; preStop + grace period that let in-flight requests finish; the
  published version as a pod annotation, so a new model version is a rolling update;
- Services (in-cluster: HTTP, gRPC, metrics; optionally an internal load balancer for HTTP and gRPC,
  reached over the VPN), PodDisruptionBudget, NetworkPolicy (inference only from the namespace
  itself, configured namespaces and networks and the peer site; metrics from Prometheus; egress only
  DNS and the object store), HorizontalPodAutoscaler (Triton's queue time through the Prometheus
  adapter, or CPU), ServiceMonitor, a DaemonSet that pre-pulls the image on GPU nodes and keeps it
  from image garbage collection;
- the pre-traffic (candidate) gate, before the Deployment changes: a Job per candidate (published
  version and Triton's container) that runs Triton exactly as the Deployment would (same image,
  arguments, identity, GPU request, placement) as a native sidecar (an init container with
  `restartPolicy: Always`, Kubernetes >= 1.29; every catalogued EKS and Magnum version has it); then
  an init container that sends the reference inputs to the candidate and to the version serving now
  and reports their agreement (it judges nothing: hybridserve/gateagreement.py); then the smoke gate
  against the candidate on localhost as the main container: when the gate exits, the kubelet
  stops Triton and the Job completes. Its pods carry no label a Service selects, so the candidate
  takes no traffic. The Deployment `depends_on` this Job: a failed candidate fails `pulumi up`
  before any serving pod changes (the old version keeps serving); a passing one lets the rolling
  update switch traffic;
- the smoke gate after the rollout: a ConfigMap with the gate's code and reference sets
  (hybridserve/gatejob.py) and a Job named after the hash of what it validates (published version,
  Deployment spec, SLOs, gate files): every change runs it again, and Pulumi awaits Jobs, so a
  failed gate fails `pulumi up` (`hybridserve ci rollback` then pins the previous version).

Neither gate Job has `ttlSecondsAfterFinished`: a finished pod holds no GPU (the scheduler and the
kubelet's device manager count only pods that have not terminated), its log is the gate's report,
and a Job deleted behind Pulumi's back would read as drift in `ci drift` (a refresh-preview) and be
created again, running the gate once more. Each Job is replaced (the old one deleted) when its name
changes, so one of each stays per site.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from hybridserve.gateagreement import CANDIDATE_ENV, SERVED_ENV
from hybridserve.gatejob import GATE_DIR, METRICS_URL_ENV, URL_ENV, agreement_command, configmap_payload, files_digest, gate_command
from hybridserve.stackconfig.schema.clusters import GPU_PRESENT_LABEL, POOL_LABEL
from hybridserve.stackconfig.schema.serving import ServingConfig
from hybridserve.tritonargs import CREDENTIALS_FILE_ENV, Listen, s3_credentials_file, server_arguments
from infra.components import type_token
from infra.components.cluster import ClusterHandle
from infra.components.monitoring import QUEUE_TIME_METRIC, ClusterMonitoring

RUN_AS = 10001  # a high UID: no clash with host users (the image's files are world-readable)
PRESTOP_SECONDS = 10  # endpoints are removed from Services while the pod still serves
NAME = "triton"
GATE_NAME = "triton-smoke"
CANDIDATE_NAME = "triton-candidate"
# Native sidecars (init containers with restartPolicy: Always) are on by default from Kubernetes 1.29
# (beta; GA in 1.33): kubernetes.io/docs/concepts/workloads/pods/sidecar-containers (read 2026-12-01).
# Every EKS and Magnum version of hybridserve/stackconfig/catalog.py is newer (tests/test_triton_service.py).
NATIVE_SIDECAR_MINOR = (1, 29)
LOOPBACK = "127.0.0.1"
CREDENTIALS_MOUNT = "/var/run/secrets/hybridserve/s3"
CREDENTIALS_KEY = "credentials.json"
PREPULL_RESOURCES = {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"}}
GATE_RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
AGREEMENT_RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
VERSION_ANNOTATION = "hybridserve.io/model-version"
REPOSITORY_ANNOTATION = "hybridserve.io/model-repository"
# Where kube-dns runs on both clusters (EKS CoreDNS and Magnum's CoreDNS keep this label).
DNS_PEERS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
METADATA_SERVICE = "169.254.169.254/32"


@dataclass
class IrsaIdentity:
    """AWS: the pods assume this role through their service account (web identity); no keys."""

    role_arn: pulumi.Input[str]
    region: str


@dataclass
class S3KeyIdentity:
    """An S3-compatible store with static keys (Swift's S3 API): a Secret mounted as Triton's credential file."""

    access_key: pulumi.Input[str]  # secret
    secret_key: pulumi.Input[str]  # secret
    region: str


@dataclass
class GateSpec:
    """The smoke gate of this site: the files its Job mounts and the JSON spec (`--slos`) it enforces.
    Its image, profile and bounds are the stack's (serving.gate)."""

    files: dict[str, bytes]
    spec: dict[str, Any]


@dataclass
class TritonServiceArgs:
    cluster: ClusterHandle
    serving: ServingConfig
    model_repository: pulumi.Input[str]  # the published URI (s3://...)
    model_version: pulumi.Input[str]  # the published version (rollout annotation)
    models: list[str]  # loaded at start
    identity: IrsaIdentity | S3KeyIdentity
    service_account: str
    peer_cidrs: list[str]  # the other site's networks: inference over the VPN
    lb_source_cidrs: list[str]  # where an internal load balancer's traffic comes from (proxying LBs)
    object_store_port: int
    gate: GateSpec
    monitoring: ClusterMonitoring | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)  # e.g. the publication


def labels_of(site: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/instance": f"{NAME}-{site}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "hybridserve",
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector_of(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": component}


def quantity(value: float) -> str:
    """A Kubernetes quantity for a plain number: 50 -> "50", 12.5 -> "12500m"."""
    return str(int(value)) if float(value).is_integer() else f"{round(value * 1000)}m"


def restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS, "seccompProfile": {"type": "RuntimeDefault"}}


def gpu_placement(cluster: ClusterHandle) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(affinity, tolerations) that put a pod on the site's GPU pools and nowhere else."""
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [
                        {"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]},
                        {"key": POOL_LABEL, "operator": "In", "values": sorted(cluster.pool_names)},
                    ]}
                ]
            }
        }
    }
    tolerations: list[dict[str, str]] = []
    for pool in cluster.gpu_pools:
        tolerations += [t for t in pool.tolerations() if t not in tolerations]
    return affinity, tolerations


def deployment_spec(args: TritonServiceArgs, uri: str, version: str) -> dict[str, Any]:
    """The Deployment's spec (plain data: its hash names the smoke gate Job)."""
    s, cluster = args.serving, args.cluster
    res = s.resources
    listen = Listen("0.0.0.0", s.http_port, s.grpc_port, s.metrics_port)
    container_args = server_arguments(uri, args.models, listen, exit_timeout_s=s.drain_seconds, gpu_metrics=res.gpus > 0)
    gpus = {"nvidia.com/gpu": str(res.gpus)} if res.gpus else {}
    env = [{"name": "HOME", "value": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        # Triton copies an s3:// repository to a temporary directory before loading it: room for the models.
        {"name": "tmp", "emptyDir": {"sizeLimit": "20Gi"}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": s.shm_size}},
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}, {"name": "shm", "mountPath": "/dev/shm"}]
    if isinstance(args.identity, IrsaIdentity):
        env += [{"name": "AWS_REGION", "value": args.identity.region}, {"name": "AWS_DEFAULT_REGION", "value": args.identity.region}]
    else:
        env.append({"name": CREDENTIALS_FILE_ENV, "value": f"{CREDENTIALS_MOUNT}/{CREDENTIALS_KEY}"})
        volumes.append({"name": "s3-credentials", "secret": {"secretName": f"{NAME}-s3-credentials", "defaultMode": 0o440}})
        mounts.append({"name": "s3-credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True})
    probe_port = "http"
    affinity, tolerations = gpu_placement(cluster)
    selector = selector_of("inference-server")
    container = {
        "name": NAME,
        "image": s.image,
        "imagePullPolicy": "Always",
        "command": ["tritonserver"],
        "args": container_args,
        "ports": [
            {"name": "http", "containerPort": s.http_port, "protocol": "TCP"},
            {"name": "grpc", "containerPort": s.grpc_port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": s.metrics_port, "protocol": "TCP"},
        ],
        "env": env,
        "resources": {
            "requests": {"cpu": res.cpu_request, "memory": res.memory_request, **gpus},
            "limits": {"cpu": res.cpu_limit, "memory": res.memory_limit, **gpus},
        },
        "securityContext": restricted_container(),
        "volumeMounts": mounts,
        # Model loading: ready within startup_seconds, checked every 10 s.
        "startupProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": probe_port},
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": max(3, math.ceil(s.startup_seconds / 10)),
        },
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": probe_port}, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": probe_port}, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 2},
        # Out of the Services first, then SIGTERM: Triton refuses new requests and finishes the
        # in-flight ones within --exit-timeout-secs (drain_seconds).
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_SECONDS)]}}},
    }
    return {
        "selector": {"matchLabels": selector},
        "revisionHistoryLimit": 5,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {
                "labels": {**labels_of(cluster.site, "inference-server")},
                "annotations": {VERSION_ANNOTATION: version, REPOSITORY_ANNOTATION: uri},
            },
            "spec": {
                "serviceAccountName": args.service_account,
                # IRSA mounts its own projected token; nothing in the pod talks to the Kubernetes API.
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": restricted_pod(),
                "affinity": affinity,
                "tolerations": tolerations,
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}
                    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                ],
                "terminationGracePeriodSeconds": PRESTOP_SECONDS + s.drain_seconds + 10,
                "containers": [container],
                "volumes": volumes,
            },
        },
    }


def gate_container(serving: ServingConfig, command: list[str], grpc: str, metrics: str, tmp: str) -> dict[str, Any]:
    """The smoke gate's container (stock SDK image, the gate mounted at GATE_DIR) aimed at `grpc` / `metrics`
    (host:port); `tmp`: the name of its emptyDir volume for /tmp."""
    return {
        "name": "smoke-gate",
        "image": serving.gate_image,
        "imagePullPolicy": "Always",
        "workingDir": GATE_DIR,
        "command": command,
        "env": [
            {"name": URL_ENV, "value": grpc},
            {"name": METRICS_URL_ENV, "value": metrics},
            {"name": "HOME", "value": "/tmp"},
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "resources": GATE_RESOURCES,
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "gate", "mountPath": GATE_DIR, "readOnly": True},
            {"name": tmp, "mountPath": "/tmp"},
        ],
    }


def gate_volumes(config_map: pulumi.Input[str], items: list[dict[str, str]], tmp: str) -> list[dict[str, Any]]:
    return [
        {"name": "gate", "configMap": {"name": config_map, "items": items}},
        {"name": tmp, "emptyDir": {"sizeLimit": "1Gi"}},
    ]


def candidate_pod_spec(args: TritonServiceArgs, uri: str, version: str, *, command: list[str], config_map: str,
                       items: list[dict[str, str]], served: str) -> dict[str, Any]:
    """The candidate gate's pod (plain data: its hash names the Job): the Deployment's Triton container as a
    native sidecar; then the agreement step (old against new on the reference inputs: the candidate on
    the loopback interface, the version serving now at `served`, host:port); then the smoke gate as the
    main container against the candidate."""
    s = args.serving
    template = deployment_spec(args, uri, version)["template"]
    pod = copy.deepcopy(template["spec"])
    [server] = pod.pop("containers")
    del server["lifecycle"]  # no Service routes to this pod: nothing to leave before SIGTERM
    # An init container that keeps running (native sidecar): the main container starts once its startup
    # probe passes, and the kubelet stops it when the main container has exited, so the Job completes.
    server["restartPolicy"] = "Always"
    # Started = live: a model that fails to load leaves Triton live but not ready (strict readiness), and
    # the gate reports why (the repository index); a startup probe on ready would restart Triton instead.
    server["startupProbe"] = {**server["startupProbe"], "httpGet": {"path": "/v2/health/live", "port": "http"}}
    del pod["topologySpreadConstraints"]  # one pod
    loopback = f"{LOOPBACK}:{s.grpc_port}"
    agreement = {
        # A plain init container after the sidecar: runs once Triton is started, ends before the gate's load.
        **gate_container(s, agreement_command(s.slo.wait_ready_seconds), loopback, f"{LOOPBACK}:{s.metrics_port}", "gate-tmp"),
        "name": "agreement",
        "resources": AGREEMENT_RESOURCES,
    }
    agreement["env"] = [{"name": CANDIDATE_ENV, "value": loopback}, {"name": SERVED_ENV, "value": served},
                        *[e for e in agreement["env"] if e["name"] not in (URL_ENV, METRICS_URL_ENV)]]
    pod.update(
        restartPolicy="Never",
        # The smoke gate leaves when it is done; Triton drains nothing (no client but the gate).
        terminationGracePeriodSeconds=s.drain_seconds + 10,
        initContainers=[server, agreement],
        # Its own /tmp: Triton's (the model copy) is not the gate's business.
        containers=[gate_container(s, command, loopback, f"{LOOPBACK}:{s.metrics_port}", "gate-tmp")],
        volumes=[*pod["volumes"], *gate_volumes(config_map, items, "gate-tmp")],
    )
    return {
        "metadata": {
            "labels": labels_of(args.cluster.site, "candidate-gate"),
            "annotations": {**template["metadata"]["annotations"], "kubectl.kubernetes.io/default-container": "smoke-gate"},
        },
        "spec": pod,
    }


def spec_hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class TritonService(pulumi.ComponentResource):
    def __init__(self, name: str, args: TritonServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("serving", "TritonService"), name, None, opts)
        s, cluster = args.serving, args.cluster
        site = cluster.site
        ns_name = s.namespace

        def k8s_opts(*deps: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[*cluster.ready, *deps])

        # --- namespace and identity ---------------------------------------------------------------------
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": ns_name,
                "labels": {
                    **labels_of(site, "namespace"),
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                },
            },
            opts=k8s_opts(),
        )
        sa_meta: dict[str, Any] = {"name": args.service_account, "namespace": ns_name, "labels": labels_of(site, "inference-server")}
        identity_deps: list[pulumi.Resource] = [self.namespace]
        if isinstance(args.identity, IrsaIdentity):
            sa_meta["annotations"] = {"eks.amazonaws.com/role-arn": args.identity.role_arn, "eks.amazonaws.com/sts-regional-endpoints": "true"}
        else:
            ident = args.identity
            text = pulumi.Output.all(ident.access_key, ident.secret_key).apply(lambda a: s3_credentials_file(a[0], a[1], ident.region))
            self.credentials = k8s.core.v1.Secret(
                f"{name}-s3-credentials",
                metadata={"name": f"{NAME}-s3-credentials", "namespace": ns_name, "labels": labels_of(site, "inference-server")},
                type="Opaque",
                string_data={CREDENTIALS_KEY: pulumi.Output.secret(text)},
                opts=k8s_opts(self.namespace),
            )
            identity_deps.append(self.credentials)
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account", metadata=sa_meta, automount_service_account_token=False, opts=k8s_opts(self.namespace)
        )
        identity_deps.append(self.service_account)

        # Deny by default in the namespace; then what Triton and the smoke gate need, nothing more.
        self.default_deny = k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata={"name": "default-deny", "namespace": ns_name, "labels": labels_of(site, "namespace")},
            spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            opts=k8s_opts(self.namespace),
        )

        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-network-policy",
            metadata={"name": NAME, "namespace": ns_name, "labels": labels_of(site, "inference-server")},
            spec=self._network_policy(args, selector_of("inference-server")),
            opts=k8s_opts(self.namespace),
        )

        # --- the gate's files (both gates mount them) -------------------------------------------------------
        gate = args.gate
        data, binary, items = configmap_payload(gate.files)
        gate_digest = files_digest(gate.files)
        gate_files_name = f"{GATE_NAME}-{gate_digest[:10]}"
        self.gate_files = k8s.core.v1.ConfigMap(
            f"{name}-gate-files",
            metadata={"name": gate_files_name, "namespace": ns_name, "labels": labels_of(site, "smoke-gate")},
            data=data,
            binary_data=binary,
            immutable=True,
            opts=k8s_opts(self.namespace),
        )
        command = gate_command(
            gate.spec, profile=s.gate.profile, max_concurrency=s.gate.max_concurrency, client_processes=2,
            window_s=s.gate.window_seconds,
        )
        rollout_timeout = s.startup_seconds + 900  # node scale-up and the image pull come before model loading

        # --- the candidate gate: the new version alone, before the Deployment changes ------------------------
        self.candidate_network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-candidate-network-policy",
            # Gate and Triton talk over the pod's loopback; out: DNS and the object store, as Triton's pods, and
            # the serving pods' gRPC port (the agreement step asks the version serving now).
            metadata={"name": CANDIDATE_NAME, "namespace": ns_name, "labels": labels_of(site, "candidate-gate")},
            spec={
                "podSelector": {"matchLabels": selector_of("candidate-gate")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [
                    *self._egress(args),
                    {"to": [{"podSelector": {"matchLabels": selector_of("inference-server")}}], "ports": [{"port": s.grpc_port, "protocol": "TCP"}]},
                ],
            },
            opts=k8s_opts(self.namespace),
        )
        internal = f"{NAME}.{ns_name}.svc.cluster.local"
        candidate = pulumi.Output.all(args.model_repository, args.model_version).apply(
            lambda a: candidate_pod_spec(args, a[0], a[1], command=command, config_map=gate_files_name, items=items,
                                         served=f"{internal}:{s.grpc_port}")
        )
        # Named after what it validates: the candidate's pod (Triton's image, arguments with the published
        # URI, resources; the gate's image and command with the SLOs) and the gate's files.
        candidate_name = candidate.apply(lambda p: f"{CANDIDATE_NAME}-{spec_hash(p, gate_digest)[:10]}")
        candidate_deadline = rollout_timeout + s.gate.timeout_seconds
        self.candidate_job = k8s.batch.v1.Job(
            f"{name}-candidate-gate",
            metadata={
                "name": candidate_name,
                "namespace": ns_name,
                "labels": labels_of(site, "candidate-gate"),
                # Pulumi waits for the Job, and the Deployment waits for Pulumi: a failed candidate fails `pulumi up`
                # before a serving pod changes.
                "annotations": {"pulumi.com/timeoutSeconds": str(candidate_deadline + 120)},
            },
            spec={
                "backoffLimit": 0,  # a failed gate is a verdict, not a flake to retry
                # Scale-up, pull and loading (as the rollout), then the gate; the kubelet stops the pod after that.
                "activeDeadlineSeconds": candidate_deadline,
                "template": candidate,
            },
            opts=k8s_opts(*identity_deps, *args.depends_on, self.gate_files, self.default_deny, self.candidate_network_policy, self.network_policy),
        )

        # --- the Deployment -------------------------------------------------------------------------
        spec = pulumi.Output.all(args.model_repository, args.model_version).apply(lambda a: deployment_spec(args, a[0], a[1]))
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={
                "name": NAME,
                "namespace": ns_name,
                "labels": labels_of(site, "inference-server"),
                "annotations": {"pulumi.com/timeoutSeconds": str(rollout_timeout)},
            },
            spec=spec,
            opts=k8s_opts(*identity_deps, *args.depends_on, self.candidate_job),
        )

        # --- Services ---------------------------------------------------------------------------------
        selector = selector_of("inference-server")
        ports = [
            {"name": "http", "port": s.http_port, "targetPort": "http", "protocol": "TCP"},
            {"name": "grpc", "port": s.grpc_port, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
            {"name": "metrics", "port": s.metrics_port, "targetPort": "metrics", "protocol": "TCP"},
        ]
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": NAME, "namespace": ns_name, "labels": labels_of(site, "inference-server")},
            spec={"type": "ClusterIP", "selector": selector, "ports": ports},
            opts=k8s_opts(self.namespace),
        )
        self.load_balancer: k8s.core.v1.Service | None = None
        if s.expose == "internal":
            annotations = (
                {"service.beta.kubernetes.io/aws-load-balancer-internal": "true", "service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
                if site == "aws"
                else {"service.beta.kubernetes.io/openstack-internal-load-balancer": "true"}
            )
            self.load_balancer = k8s.core.v1.Service(
                f"{name}-load-balancer",
                metadata={"name": f"{NAME}-internal", "namespace": ns_name, "labels": labels_of(site, "inference-server"), "annotations": annotations},
                # Local: the client's address reaches the pod (the NetworkPolicy judges it), no second hop.
                spec={"type": "LoadBalancer", "selector": selector, "ports": ports[:2], "externalTrafficPolicy": "Local"},
                opts=k8s_opts(self.namespace),
            )

        # --- availability, network, scaling -------------------------------------------------------------
        self.pdb = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-disruption-budget",
            metadata={"name": NAME, "namespace": ns_name, "labels": labels_of(site, "inference-server")},
            # One pod at a time may be evicted (node drains, scale-down): never the whole service.
            spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
            opts=k8s_opts(self.namespace),
        )
        self.gate_network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-gate-network-policy",
            metadata={"name": GATE_NAME, "namespace": ns_name, "labels": labels_of(site, "smoke-gate")},
            spec={
                "podSelector": {"matchLabels": selector_of("smoke-gate")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [
                    {"to": [DNS_PEERS], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {
                        "to": [{"podSelector": {"matchLabels": selector}}],
                        "ports": [{"port": p, "protocol": "TCP"} for p in (s.http_port, s.grpc_port, s.metrics_port)],
                    },
                ],
            },
            opts=k8s_opts(self.namespace),
        )
        scaler_deps: list[pulumi.Resource] = [self.deployment]
        if s.autoscaling.metric == "queue_time":
            metric = {
                "type": "Pods",
                "pods": {"metric": {"name": QUEUE_TIME_METRIC}, "target": {"type": "AverageValue", "averageValue": quantity(s.autoscaling.target_queue_time_ms)}},
            }
            scaler_deps += args.monitoring.ready if args.monitoring else []
        else:
            metric = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": s.autoscaling.target_cpu_utilization}}}
        self.autoscaler = k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-autoscaler",
            metadata={"name": NAME, "namespace": ns_name, "labels": labels_of(site, "inference-server")},
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
                "minReplicas": s.replicas.min,
                "maxReplicas": s.replicas.max,
                "metrics": [metric],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": s.autoscaling.scale_down_stabilization_seconds}},
            },
            opts=k8s_opts(*scaler_deps),
        )
        self.service_monitor: k8s.apiextensions.CustomResource | None = None
        if s.monitoring.prometheus != "none":
            self.service_monitor = k8s.apiextensions.CustomResource(
                f"{name}-service-monitor",
                api_version="monitoring.coreos.com/v1",
                kind="ServiceMonitor",
                metadata={"name": NAME, "namespace": ns_name, "labels": labels_of(site, "inference-server")},
                spec={
                    "selector": {"matchLabels": labels_of(site, "inference-server")},
                    "namespaceSelector": {"matchNames": [ns_name]},
                    "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
                },
                opts=k8s_opts(self.service, *(args.monitoring.ready if args.monitoring else [])),
            )

        # --- cold starts: the image is on every GPU node before a pod needs it ---------------------------
        affinity, tolerations = gpu_placement(cluster)
        prepull_selector = selector_of("image-prepull")
        self.prepull = k8s.apps.v1.DaemonSet(
            f"{name}-image-prepull",
            metadata={"name": f"{NAME}-image-prepull", "namespace": ns_name, "labels": labels_of(site, "image-prepull")},
            spec={
                "selector": {"matchLabels": prepull_selector},
                "template": {
                    "metadata": {"labels": labels_of(site, "image-prepull")},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": restricted_pod(),
                        "affinity": affinity,
                        "tolerations": tolerations,
                        "terminationGracePeriodSeconds": 1,
                        # A container of the image keeps the image in use: the kubelet's image GC cannot drop it.
                        "containers": [{
                            "name": "triton-image",
                            "image": s.image,
                            "imagePullPolicy": "Always",
                            "command": ["sleep", "infinity"],
                            "resources": PREPULL_RESOURCES,
                            "securityContext": restricted_container(),
                            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 60},
                            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 60},
                        }],
                    },
                },
            },
            opts=k8s_opts(self.namespace),
        )

        # --- the smoke gate after the rollout ------------------------------------------------------------
        job_name = spec.apply(lambda d: f"{GATE_NAME}-{spec_hash(d, gate.spec, gate_digest, s.gate_image, command)[:10]}")
        gate_deps = [self.deployment, self.service, self.network_policy, self.gate_network_policy, self.gate_files]
        self.gate_job = k8s.batch.v1.Job(
            f"{name}-smoke-gate",
            metadata={
                "name": job_name,
                "namespace": ns_name,
                "labels": labels_of(site, "smoke-gate"),
                # Pulumi waits for the Job: a failed gate fails `pulumi up`.
                "annotations": {"pulumi.com/timeoutSeconds": str(s.gate.timeout_seconds + 120)},
            },
            spec={
                "backoffLimit": 0,  # a failed gate is a verdict, not a flake to retry
                "activeDeadlineSeconds": s.gate.timeout_seconds,
                "template": {
                    "metadata": {"labels": labels_of(site, "smoke-gate")},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": restricted_pod(),
                        "nodeSelector": dict(cluster.system_node_selector),
                        "containers": [gate_container(s, command, f"{internal}:{s.grpc_port}", f"{internal}:{s.metrics_port}", "tmp")],
                        "volumes": gate_volumes(self.gate_files.metadata.name, items, "tmp"),
                    },
                },
            },
            opts=k8s_opts(*gate_deps),
        )

        self.endpoint = {"grpc": f"{internal}:{s.grpc_port}", "http": f"http://{internal}:{s.http_port}", "metrics": f"http://{internal}:{s.metrics_port}/metrics"}
        self.verdict: pulumi.Output[str] = self.gate_job.status.apply(_verdict)
        self.candidate_verdict: pulumi.Output[str] = self.candidate_job.status.apply(_verdict)
        self.register_outputs({
            "endpoint": self.endpoint, "gate_job": self.gate_job.metadata.name, "verdict": self.verdict,
            "candidate_job": self.candidate_job.metadata.name, "candidate_verdict": self.candidate_verdict,
        })

    @staticmethod
    def _network_policy(args: TritonServiceArgs, selector: dict[str, str]) -> dict[str, Any]:
        s = args.serving
        inference = [{"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}]
        ingress: list[dict[str, Any]] = [
            # The smoke gate's pods, in this namespace.
            {"from": [{"podSelector": {"matchLabels": selector_of("smoke-gate")}}], "ports": [*inference, {"port": "metrics", "protocol": "TCP"}]},
            # The candidate gate's agreement step, in this namespace: the same inputs to the version serving now.
            {"from": [{"podSelector": {"matchLabels": selector_of("candidate-gate")}}], "ports": [{"port": "grpc", "protocol": "TCP"}]},
        ]
        if s.client_namespaces:
            ingress.append({
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": n}}} for n in s.client_namespaces],
                "ports": inference,
            })
        networks = list(dict.fromkeys([*args.peer_cidrs, *s.client_cidrs, *(args.lb_source_cidrs if s.expose == "internal" else [])]))
        if networks:
            ingress.append({"from": [{"ipBlock": {"cidr": c}} for c in networks], "ports": inference})
        if s.monitoring.prometheus != "none":
            ingress.append({
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": s.monitoring.namespace}}}],
                "ports": [{"port": "metrics", "protocol": "TCP"}],
            })
        return {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": TritonService._egress(args)}

    @staticmethod
    def _egress(args: TritonServiceArgs) -> list[dict[str, Any]]:
        """Where a Triton server connects: DNS and the object store's port."""
        s = args.serving
        store = (
            [{"ipBlock": {"cidr": c}} for c in s.object_store_cidrs]
            if s.object_store_cidrs is not None
            # Object stores answer from addresses that change (S3's are many): the port, anywhere but the
            # instance metadata service (pods use IRSA, never the node's role).
            else [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [METADATA_SERVICE]}}]
        )
        return [
            {"to": [DNS_PEERS], "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            {"to": store, "ports": [{"port": args.object_store_port, "protocol": "TCP"}]},
        ]


def _verdict(status: Any) -> str:
    """The gate Job's verdict from its status (Pulumi has awaited it: a failure stopped the update)."""
    if not status:
        return "not run"
    succeeded = status.get("succeeded") if isinstance(status, dict) else getattr(status, "succeeded", None)
    failed = status.get("failed") if isinstance(status, dict) else getattr(status, "failed", None)
    if succeeded:
        return "passed"
    return "failed" if failed else "running"

