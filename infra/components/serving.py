"""Triton on both clusters: per site in `serving.targets`, the model publication, the monitoring it stands
on, and the Triton service with its smoke gate (issue "Triton on both clusters").

`build(ctx, network, storage, clusters)` takes the typed parts of the earlier components. Per site:

1. `ModelPublication` (infra/components/publication.py): the validated model repository rendered for
   the site's GPU nodes and published to its bucket (S3 SSE-KMS under the model-writer role on AWS,
   Swift's S3 API on OpenStack) at an immutable version prefix named after its content hash;
2. `ClusterMonitoring` (infra/components/monitoring.py): Prometheus, the adapter behind the queue-time
   autoscaler, the DCGM exporter, as `serving.monitoring` says;
3. `TritonService` (infra/components/triton.py): namespace, identity, Deployment loading the published
   URI, Services, PDB, NetworkPolicy, HPA, ServiceMonitor, image pre-pull, the candidate gate Job that
   checks a new version alone before the Deployment changes, and the smoke gate Job after the rollout;
   either fails `pulumi up` when a reference output or an SLO is missed.

The model repository is `model_repo/` of the checkout (`HYBRIDSERVE_MODEL_REPO` names another one). The
program builds its kit models when they are missing or stale (`hybridserve models build`: deterministic,
seconds when up to date): the gate's Job carries their reference sets.

Stack outputs per site: `tritonEndpoints` (in-cluster gRPC/HTTP/metrics, and the internal load
balancer's address), `modelPublications` (URI, version, digest, kept versions, the pinned version if
any: `serving.publication.pin_version`), `smokeGate` (the Job,
its namespace, the verdict, and how to read its report; `candidate`: the same for the pre-traffic gate),
`promotions` (the promotion record: the version, and per gate its Job, verdict, start and completion).

The promotion record is a stack output, not an object written next to the published versions: the gates
run with Triton's read-only identity and cannot write to the bucket, and a failed gate stops `pulumi up`
before anything after it could. Pulumi keeps each update's outputs (`pulumi stack history`, `pulumi
stack export --version`); a failed candidate stays in the cluster as its Job (status and log).
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from hybridserve.errors import UserError
from hybridserve.gatejob import gate_files
from hybridserve.publish import Target
from hybridserve.publish.render import render_config
from hybridserve.smokegate import gate_spec
from hybridserve.stackconfig.edgemodels import MODEL_REPO_ENV, model_repository  # the repository validate reads
from hybridserve.stackconfig.schema.storage import endpoint_host_port
from infra.components.cluster import ClusterParts
from infra.components.monitoring import ClusterMonitoring, ClusterMonitoringArgs
from infra.components.network import NetworkParts
from infra.components.publication import ModelPublication, ModelPublicationArgs
from infra.components.storage import StorageParts
from infra.components.triton import GateSpec, IrsaIdentity, S3KeyIdentity, TritonService, TritonServiceArgs
from infra.context import StackContext


def _prepare(repo: Path, listed: list[str]) -> list[str]:
    """Build what is stale, validate, and return the models Triton loads (the listed ones, else every model that
    is not a compressed variant: variants are published with the repository, and each site loads what it chooses)."""
    from hybridserve.models.build import build_models
    from hybridserve.models.repository import describe_repository, display_path

    from hybridserve.models.build import built_fingerprints
    from hybridserve.models.variants import base_models

    if not repo.is_dir():
        raise UserError(f"the model repository {repo} does not exist (set {MODEL_REPO_ENV} or run from the checkout)")
    if built_fingerprints(repo):  # the kit's models and their compressed variants
        build_models(repo, progress=False)  # the kit's own models: artifacts are built from code, never committed
    info = describe_repository(repo)
    missing = [name for name in listed if name not in info.names]
    if missing:
        raise UserError(
            f"hybridserve:serving.models names {', '.join(missing)}, which {display_path(repo)} does not hold "
            f"(it has: {', '.join(info.names)})"
        )
    return listed or base_models(repo, info.names)


def check_gate_time(cfg) -> None:
    """With serving.models empty the schema judged the smoke gate's time on one model (it does not read the
    repository); judged here on the models the program publishes (`_prepare`), before any resource is registered:
    a gate that cannot pass before its Job's deadline would fail every update after the rollout."""
    from hybridserve.stackconfig.edgemodels import repository_gate_time_issues
    from hybridserve.stackconfig.schema.stack import format_loc

    error, _ = repository_gate_time_issues(cfg, model_repository()) or (None, None)
    if error is not None:
        raise pulumi.RunError(f"{format_loc(('serving', *error.loc))}: {error.message}")


def libtorch_compatibility(release: str, torch_version: str) -> tuple[str, str] | None:
    """("error" | "warning", why) when the release's PyTorch backend may not load TorchScript saved by
    `torch_version` (TorchScript loads in the same or a newer runtime; an older one may lack an operator)."""
    from hybridserve.stackconfig.catalog import TRITON_RELEASES

    def minor(version: str) -> tuple[int, int]:
        major, minor_, *_ = version.split(".")
        return int(major), int("".join(ch for ch in minor_ if ch.isdigit()) or 0)

    known = TRITON_RELEASES[release].pytorch
    if known is None:
        return "warning", (
            f"serving.triton_version {release}: no source states the PyTorch version of its PyTorch backend "
            f"(hybridserve/stackconfig/catalog.py); the models are TorchScript saved by torch {torch_version}. "
            "If that backend is older it may not load them: the pods then never become ready and the update fails "
            "with the previous version serving"
        )
    if minor(known) < minor(torch_version):
        return "error", (
            f"serving.triton_version {release} runs PyTorch {known}, older than torch {torch_version} that saves the "
            "models (TorchScript loads in the same or a newer runtime); pick a newer release or pin an older torch"
        )
    return None


def build(ctx: StackContext, network: NetworkParts, storage: StorageParts, clusters: ClusterParts) -> dict[str, TritonService]:
    from importlib import metadata

    cfg = ctx.config
    s = cfg.serving
    repo = model_repository()
    try:
        models = _prepare(repo, [m.name for m in s.models])
    except UserError as exc:
        raise pulumi.RunError(str(exc)) from None
    verdict = libtorch_compatibility(s.release, metadata.version("torch"))
    if verdict is not None:
        kind, why = verdict
        if kind == "error":
            raise pulumi.RunError(why)
        pulumi.log.warn(why)
    spec = gate_spec(s)
    services: dict[str, TritonService] = {}
    endpoints: dict[str, object] = {}
    publications: dict[str, object] = {}
    gates: dict[str, object] = {}
    promotions: dict[str, object] = {}

    for site in s.targets:
        cluster = clusters.site(site)
        gpu = s.resources.gpus > 0
        target = Target(site, gpu=gpu, instances_per_gpu=s.instances_per_gpu if gpu else 1)
        if site == "aws":
            publication = ModelPublication(
                f"models-{site}",
                ModelPublicationArgs(
                    source=repo, target=target, bucket=storage.bucket.bucket.bucket, prefix=storage.prefix, region=cfg.aws.region,
                    sse="aws:kms", kms_key_id=storage.key.arn, role_arn=storage.bucket.writer_role.arn, keep=s.publication.keep_versions,
                    pin_version=s.publication.pin_version,
                ),
                # The bucket's policy and encryption, the writer role's policy and the key policy first.
                opts=pulumi.ResourceOptions(depends_on=[storage.bucket, storage.key]),
            )
            identity: IrsaIdentity | S3KeyIdentity = IrsaIdentity(role_arn=clusters.eks.model_reader_role.arn, region=cfg.aws.region)
            store_port: pulumi.Input[int] = 443
            peers, lb_sources = network.openstack_site_cidrs, []  # the NLB keeps client addresses
        else:
            swift = storage.swift
            publication = ModelPublication(
                f"models-{site}",
                ModelPublicationArgs(
                    source=repo, target=target, bucket=swift.container.name, prefix=storage.prefix, region=cfg.storage.swift_s3_region,
                    sse=cfg.storage.swift_sse, endpoint_url=swift.endpoint, access_key=swift.access_key, secret_key=swift.secret_key,
                    keep=s.publication.keep_versions, pin_version=s.publication.pin_version,
                ),
                opts=pulumi.ResourceOptions(depends_on=[swift]),
            )
            # Triton reads with the read-only user's credential; the publication above keeps the deployer's.
            identity = S3KeyIdentity(access_key=swift.read_access_key, secret_key=swift.read_secret_key, region=cfg.storage.swift_s3_region)
            store_port = swift.endpoint.apply(lambda e: endpoint_host_port(e)[2])
            # Octavia's amphorae proxy load-balanced traffic from the tenant network.
            peers, lb_sources = network.aws_site_cidrs, [cfg.openstack.network.cidr]

        monitoring = None
        dcgm_here = site == "aws"  # EKS runs the exporter chart; Magnum's GPU operator runs its own (cluster component)
        if s.monitoring.prometheus != "none" or (s.monitoring.dcgm_exporter and dcgm_here):
            monitoring = ClusterMonitoring(
                f"monitoring-{site}", ClusterMonitoringArgs(cluster=cluster, cfg=s.monitoring, install_dcgm_exporter=dcgm_here),
                opts=ctx.component_opts(),
            )

        def config_of(model: str, _target: Target = target) -> bytes:
            rel = f"{model}/config.pbtxt"
            return render_config((repo / rel).read_bytes(), rel, _target)

        try:
            files = gate_files(repo, models, config_of)
        except UserError as exc:
            raise pulumi.RunError(str(exc)) from None
        triton = TritonService(
            f"triton-{site}",
            TritonServiceArgs(
                cluster=cluster,
                serving=s,
                model_repository=publication.uri,
                model_version=publication.version,
                models=models,
                identity=identity,
                service_account=cfg.aws.eks.triton_service_account,
                peer_cidrs=list(peers),
                lb_source_cidrs=lb_sources,
                object_store_port=store_port,
                gate=GateSpec(files=files, spec=spec),
                monitoring=monitoring,
                depends_on=[publication],
            ),
            opts=ctx.component_opts(),
        )
        services[site] = triton
        external = None
        if triton.load_balancer is not None:
            external = triton.load_balancer.status.apply(_lb_address)
        endpoints[site] = {**triton.endpoint, "internalLoadBalancer": external}
        publications[site] = {"uri": publication.uri, "version": publication.version, "digest": publication.digest, "kept": publication.history,
                               "pinned": s.publication.pin_version}
        gates[site] = {
            "job": triton.gate_job.metadata.name,
            "namespace": s.namespace,
            "verdict": triton.verdict,
            "report": triton.gate_job.metadata.name.apply(lambda job, site=site: f"hybridserve smoke-report --stack {cfg.stack_name} --site {site}  (or: kubectl logs -n {s.namespace} job/{job})"),
            "candidate": {
                "job": triton.candidate_job.metadata.name,
                "version": publication.version,
                "verdict": triton.candidate_verdict,
                "report": triton.candidate_job.metadata.name.apply(
                    lambda job: f"kubectl logs -n {s.namespace} job/{job} -c smoke-gate  (Triton's log: -c triton)"
                ),
            },
        }
        promotions[site] = {
            "version": publication.version,
            "uri": publication.uri,
            "candidateGate": _record(triton.candidate_job, triton.candidate_verdict),
            "rolloutGate": _record(triton.gate_job, triton.verdict),
        }

    ctx.outputs.triton_endpoints.update(endpoints)
    ctx.outputs.extra["modelPublications"] = publications
    ctx.outputs.extra["smokeGate"] = gates
    ctx.outputs.extra["promotions"] = promotions
    return services


def _record(job, verdict: pulumi.Output[str]) -> dict[str, object]:
    """One gate's line of the promotion record: its Job, verdict and when it ran (the Job's status, RFC 3339)."""
    def when(attribute: str, key: str):
        return job.status.apply(lambda st: (st.get(key) if isinstance(st, dict) else getattr(st, attribute, None)) if st else None)

    # completionTime: set when the Job succeeded (a failed one stopped the update; its Job keeps the status)
    return {"job": job.metadata.name, "verdict": verdict, "started": when("start_time", "startTime"),
            "completed": when("completion_time", "completionTime")}


def _lb_address(status) -> str | None:
    """The internal load balancer's hostname (AWS) or address (OpenStack), once the cloud has assigned it."""
    lb = getattr(status, "load_balancer", None) if status is not None else None
    ingress = getattr(lb, "ingress", None) if lb is not None else None
    if not ingress:
        return None
    return getattr(ingress[0], "hostname", None) or getattr(ingress[0], "ip", None)
