"""The edge sites' hosts in the program (issue 15): per edge site, after its VPN links, the repository it
fills from, a read-only identity for it, and one `EdgeHosts` (infra/components/edge.py).

Per edge site:

    models-edge-<site>        ModelPublication: the model repository rendered for the edge (CPU configs as
                              written, variants included), published to the hub the site reads from, under
                              `<storage.prefix>/edge-<site>/<version>` (the cluster's rendering is for its GPU
                              nodes and its backend, which an edge host does not run).
    models-edge-<site>-gpu    with hosts declared nvidia-gpu: the GPU rendering for those hosts (EDGE_GPU_TARGET:
                              GPU instance groups, the models' own backend), under `.../edge-<site>/gpu/<version>`;
                              pinned by `serving.publication.edge_pins["<site>/gpu"]`. A rollback pins it with the
                              clusters: `serving.publication.edge_pins.<site>` (set by `hybridserve ci rollback`
                              with pin_version; validate refuses one without the other)
    edge-<site>-reader        AWS only: an IAM user with read on that prefix and kms:Decrypt through S3 (the
                              stack key's policy names it: storage.key_policy), its access key a Pulumi secret
    edge-hosts-<site>         EdgeHosts: the hosts of the schema, the variants the site chooses
                              (hybridserve.stackconfig.edgemodels), the gate SLOs of its per-model `slo`

The hub is AWS when the site is linked to it (S3, SSE-KMS), else OpenStack (Swift's S3 API, with the read-only
EC2 credential Triton reads with). That credential reads the whole container, not only the site's prefix: Swift's
read ACLs are per container and its S3 API has no prefix policies. Decided: no per-site container (it would need a
Keystone user per site, identity-admin rights the deployer may lack); validate warns per such site instead
(schema/sites.py edge_deploy_warnings), and linking the site to AWS gives it a reader limited to its prefix.

`hub_cidrs` are the linked hubs' networks: the hub's metrics scraping (and SSH) come from there; `ssh_cidrs` admit SSH besides: where `pulumi up` connects from (the site's `ssh_proxy` jump host, else
the runner's networks: schema/sites.py ssh_sources) and the site's `admin_cidrs`. The hosts' SSH host keys are
pinned in the connections (`host_key`). The hosts wait for the site's VPN links (they are reached over them).

The SSH deploy key is the secret `hybridserve:edge_ssh_private_key`; with an edge site and no key the program
stops before anything is created, naming the key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from hybridserve.errors import UserError
from hybridserve.publish import Target
from hybridserve.stackconfig.edgemodels import gate_slos, hub_kind, served_models, site_problems
from hybridserve.stackconfig.schema.sites import gpu_pin_key, ssh_sources
from hybridserve.stackconfig.schema.stack import EDGE_SSH_KEY, PROJECT
from infra.components.edge import EdgeHostArgs, EdgeHosts, EdgeHostsArgs, EdgeHubArgs, EdgeProxyArgs
from infra.components.edge_links import EdgeSiteHandle
from infra.components.policies import document, edge_reader_name, statement
from infra.components.publication import ModelPublication, ModelPublicationArgs
from infra.components.storage import StorageParts
from infra.config import secret
from infra.context import StackContext

# What an edge target renders: the configs as written (CPU instance groups, the Python backend of the kit's runtime).
EDGE_TARGET = Target("edge", gpu=False)
# What an edge GPU host reads: GPU instance groups, but each model's own backend (the edge runtime's Triton has the
# Python backend only, not the clusters' libtorch); CPU-only variants (int8-dynamic) keep their CPU instances.
EDGE_GPU_TARGET = Target("edge-gpu", gpu=True, keep_backend=True)


@dataclass
class EdgeSiteParts:
    handle: EdgeSiteHandle
    hub: str  # "aws" | "openstack"
    publication: ModelPublication
    hosts: EdgeHosts
    reader: aws.iam.User | None = None


def edge_prefix(storage_prefix: str, site: str) -> str:
    return f"{storage_prefix.strip('/')}/edge-{site}"


def reader_policy(bucket_arn: pulumi.Input[str], prefix: str, key_arn: pulumi.Input[str], region: str) -> pulumi.Output[str]:
    """Least privilege for an edge site's hosts: list and read their own prefix, decrypt with the stack key through S3."""
    return document(
        statement("ListTheSitePrefix", "Allow", "s3:ListBucket", bucket_arn, None, {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}),
        statement("ReadTheSitePrefix", "Allow", "s3:GetObject", pulumi.Output.concat(bucket_arn, f"/{prefix}/*")),
        statement("DecryptThroughS3", "Allow", "kms:Decrypt", key_arn, None, {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}),
    )


def build(ctx: StackContext, storage: StorageParts, handles: list[EdgeSiteHandle]) -> list[EdgeSiteParts]:
    """One EdgeHosts per edge site (none: the stack plans as before)."""
    if not handles:
        return []
    from infra.components.serving import model_repository

    cfg = ctx.config
    repo = model_repository()
    where = f"stacks/Pulumi.{cfg.stack_name}.yaml"
    problems = site_problems(cfg, repo, where)
    if problems:
        raise pulumi.RunError("the edge sites' models are not acceptable:\n  " + "\n  ".join(problems))
    key = secret(EDGE_SSH_KEY)
    if key is None:
        raise pulumi.RunError(
            f"{PROJECT}:{EDGE_SSH_KEY} is not set, and the stack has edge sites ({', '.join(h.name for h in handles)}) whose hosts "
            f"the program reaches over SSH; set the deploy key: pulumi config set --secret {PROJECT}:{EDGE_SSH_KEY} < ~/.ssh/edge_deploy_key"
        )
    s = cfg.serving
    parts: list[EdgeSiteParts] = []
    outputs: dict[str, object] = {}
    for handle in handles:
        site = handle.config
        kind = hub_kind(cfg, site)
        prefix = edge_prefix(storage.prefix, site.name)
        reader = None
        try:
            models = served_models(site, repo)
        except UserError as exc:
            raise pulumi.RunError(str(exc)) from None
        if kind == "aws":
            bucket = storage.bucket.bucket
            pub_args = ModelPublicationArgs(
                source=repo, target=EDGE_TARGET, bucket=bucket.bucket, prefix=prefix, region=cfg.aws.region, sse="aws:kms",
                kms_key_id=storage.key.arn, role_arn=storage.bucket.writer_role.arn, keep=s.publication.keep_versions,
                pin_version=s.publication.edge_pins.get(site.name),
            )
            pub_opts = pulumi.ResourceOptions(depends_on=[storage.bucket, storage.key])
            publication = ModelPublication(f"models-edge-{site.name}", pub_args, opts=pub_opts)
            opts = pulumi.ResourceOptions(provider=ctx.providers.aws)
            reader = aws.iam.User(f"edge-{site.name}-reader", name=edge_reader_name(ctx.name, site.name), force_destroy=True, opts=opts)
            policy = aws.iam.UserPolicy(
                f"edge-{site.name}-reader-policy", user=reader.name,
                policy=reader_policy(bucket.arn, prefix, storage.key.arn, cfg.aws.region), opts=opts,
            )
            access_key = aws.iam.AccessKey(f"edge-{site.name}-reader-key", user=reader.name, opts=opts)
            hub = EdgeHubArgs(
                bucket=bucket.bucket, prefix=pulumi.Output.concat(prefix, "/", publication.version), region=cfg.aws.region,
                access_key=pulumi.Output.secret(access_key.id), secret_key=pulumi.Output.secret(access_key.secret), sse="aws:kms",
            )
            waits: list[pulumi.Resource] = [policy, access_key, publication]
        else:
            swift = storage.swift
            pub_args = ModelPublicationArgs(
                source=repo, target=EDGE_TARGET, bucket=swift.container.name, prefix=prefix, region=cfg.storage.swift_s3_region,
                sse=cfg.storage.swift_sse, endpoint_url=swift.endpoint, access_key=swift.access_key, secret_key=swift.secret_key,
                keep=s.publication.keep_versions, pin_version=s.publication.edge_pins.get(site.name),
            )
            pub_opts = pulumi.ResourceOptions(depends_on=[swift])
            publication = ModelPublication(f"models-edge-{site.name}", pub_args, opts=pub_opts)
            # The read-only user's EC2 credential Triton reads with (the deployer's where storage says so).
            hub = EdgeHubArgs(
                bucket=swift.container.name, prefix=pulumi.Output.concat(prefix, "/", publication.version),
                region=cfg.storage.swift_s3_region, endpoint_url=swift.endpoint,
                access_key=swift.read_access_key, secret_key=swift.read_secret_key, sse=cfg.storage.swift_sse,
            )
            waits = [publication]
        # GPU hosts read the GPU rendering (GPU instance groups, each model's own backend), published under the site's
        # prefix (its reader reads it: <prefix>/gpu/<version>); the CPU hosts the configs as written. Per host: a store
        # often has one GPU box next to CPU ones, and they share the site's LAN and gateway, so one site.
        gpu_publication = None
        if any(h.accelerator == "nvidia-gpu" for h in site.hosts):
            gpu_publication = ModelPublication(
                f"models-edge-{site.name}-gpu",
                dataclasses.replace(pub_args, target=EDGE_GPU_TARGET, prefix=f"{prefix}/gpu",
                                    pin_version=s.publication.edge_pins.get(gpu_pin_key(site.name))),
                opts=pub_opts,
            )
            waits.append(gpu_publication)
        hub_cidrs = [*(handle.aws.peer_cidrs if handle.aws else []), *(handle.openstack.peer_cidrs if handle.openstack else [])]
        slos = gate_slos(site)
        hosts = EdgeHosts(
            f"edge-hosts-{site.name}",
            EdgeHostsArgs(
                site=site.name,
                hosts=[EdgeHostArgs(h.name, h.address, ssh_user=h.ssh_user, gpu=h.accelerator == "nvidia-gpu", disk_gb=h.disk_gb,
                                    host_key=h.host_key,
                                    hub_prefix=pulumi.Output.concat(prefix, "/gpu/", gpu_publication.version)
                                    if gpu_publication is not None and h.accelerator == "nvidia-gpu" else None)
                       for h in site.hosts],
                models=models,
                hub=hub,
                inference_cidrs=list(site.inference_cidrs),
                hub_cidrs=list(dict.fromkeys(hub_cidrs)),
                ssh_cidrs=[c for c in ssh_sources(cfg, site) if c not in hub_cidrs],
                proxy=None if site.ssh_proxy is None else EdgeProxyArgs(
                    site.ssh_proxy.address, site.ssh_proxy.user, site.ssh_proxy.port, site.ssh_proxy.host_key),
                ssh_private_key=key,
                runtime_version=site.runtime_version,
                http_port=site.http_port, grpc_port=site.grpc_port, metrics_port=site.metrics_port,
                depends_on=[*handle.links, *waits],
                **({"slos": slos} if slos else {}),
            ),
            opts=ctx.component_opts(),
        )
        parts.append(EdgeSiteParts(handle, kind, publication, hosts, reader))
        outputs[site.name] = {
            "hub": kind,
            "models": models,
            "publication": {"version": publication.version, "prefix": prefix},
            "runtimeVersion": hosts.bundle.version,  # what the hosts install: the declared version and the content digest
            "hosts": hosts.hosts,
            # How `pulumi up` reaches the hosts and who else may SSH to them (the host firewall's SSH sources).
            "ssh": {
                "proxy": None if site.ssh_proxy is None else f"{site.ssh_proxy.user}@{site.ssh_proxy.address}:{site.ssh_proxy.port}",
                "admitted": list(dict.fromkeys([*hub_cidrs, *ssh_sources(cfg, site)])),
                "hostKeys": {h.name: h.host_key for h in site.hosts},
            },
        }
        # kept: what `hybridserve ci rollback` may pin for the site (serving.publication.edge_pins), as the clusters' kept.
        outputs[site.name]["publication"].update(kept=publication.history, pinned=s.publication.edge_pins.get(site.name))
        outputs[site.name]["gpuPublication"] = None if gpu_publication is None else {
            "version": gpu_publication.version, "prefix": f"{prefix}/gpu", "kept": gpu_publication.history,
            "pinned": s.publication.edge_pins.get(gpu_pin_key(site.name)),
            "hosts": [h.name for h in site.hosts if h.accelerator == "nvidia-gpu"],
        }
    ctx.outputs.extra["edgeHosts"] = outputs
    return parts
