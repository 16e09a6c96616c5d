"""Edge hosts of one edge site, provisioned over SSH by `pulumi-command` remote resources (issue 15, part 2).

Per host, in this order:

    <site>-<host>-bundle    CopyToRemote   the runtime bundle (hybridserve.edge.bundle) to /var/tmp/hybridserve-edge/
    <site>-<host>-runtime   Command        create/update: render.apply_script (install, switch, start, health,
                                           rollback), the host's config.json on stdin (a secret: it holds the
                                           hub's read key); delete: render.uninstall_script
    <site>-<host>-gate      Command        render.gate_script: the smoke gate against the host's own Triton with
                                           the site's SLOs; a failed gate rolls that host back to the version and
                                           configuration it served before (the runtime's `rollback`), then fails
                                           the update naming the host and the SLO missed

Rolling: host N's bundle copy and runtime depend on host N-1's gate, so a version change restarts one host at a
time and a host that fails its gate stops the rollout before the next one is touched. The cluster gates before
traffic; an edge host serves its clients as soon as its apply is healthy, so a failed gate undoes the change on
that host instead. The gate also checks that the host serves the gated runtime version and config: after such a
rollback the next `pulumi up` fails that gate again (instead of passing on the old version) until a new runtime
or configuration re-runs the apply.

Why the runtime Command has no `triggers`: in pulumi-command a trigger change *replaces* the resource, and a
replacement runs the old resource's delete (the uninstall script) after the new create. The bundle digest and the
runtime version are in the script text instead (the sha256 check and `--version`), and a changed script runs
`update` in place. The gate's text carries the same stamp plus the config's digest, so it runs again on each change.

The scripts are rendered by hybridserve.edge.render, the functions tests/test_edge_runtime.py runs for real
under a temporary root; this module only decides where and in which order they run.

The connection goes to the host's VPN-reachable address with the site's SSH key, a Pulumi secret from end to
end (the SDK also marks the whole `connection` secret). The SSH user needs passwordless sudo (or is root).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command

from hybridserve.edge import render
from hybridserve.edge.bundle import Bundle, build_bundle
from hybridserve.edge.config import DEFAULT_CACHE_PORTS, EdgeConfig, HubSource
from infra.components import type_token

REMOTE_BUNDLE_DIR = "/var/tmp/hybridserve-edge"
# Edge SLOs are mostly p99 latency at low concurrency (one camera, one line): the default when the site sets none.
DEFAULT_EDGE_SLOS: dict[str, Any] = {"slos": {"*": {"max_p99_ms": 250, "p99_concurrency": 1, "max_error_rate": 0}}}


@dataclass(frozen=True)
class EdgeHostArgs:
    """One operator-owned host."""

    name: str  # unique within the site, e.g. "edge-1" (lowercase letters, digits, '-')
    address: pulumi.Input[str]  # reachable over the site's VPN link
    ssh_user: str = "hybridserve"
    ssh_port: int = 22
    gpu: bool = False  # NVIDIA GPU present (the service joins the video/render groups; GPU metrics on)
    disk_gb: int | None = None  # informational (plan); the cache lives in /var/lib/hybridserve-edge
    host_key: str | None = None  # the host's SSH public key, pinned (recommended)
    hub_prefix: pulumi.Input[str] | None = None  # this host's rendering in the hub bucket (GPU hosts); None: the site's hub.prefix


@dataclass(frozen=True)
class EdgeProxyArgs:
    """A jump host the connections go through (pulumi-command's `proxy`), with the site's deploy key."""

    address: str
    user: str
    port: int = 22
    host_key: str | None = None


@dataclass(frozen=True)
class EdgeHubArgs:
    """Where the site's published repository is (the hub bucket) and a read-only key for it."""

    bucket: pulumi.Input[str]
    prefix: pulumi.Input[str] = "models"  # an Output too: the published version's prefix
    region: str = "us-east-1"
    endpoint_url: pulumi.Input[str] | None = None  # None: AWS S3
    access_key: pulumi.Input[str] | None = None
    secret_key: pulumi.Input[str] | None = None  # made a secret here whatever it arrives as
    sse: str = "aws:kms"


@dataclass(frozen=True)
class EdgeHostsArgs:
    """One edge site: its hosts, what they serve, who may reach them, and how they are reached."""

    site: str
    hosts: Sequence[EdgeHostArgs]
    models: Sequence[str]  # the site's variants as published in the hub prefix
    hub: EdgeHubArgs
    inference_cidrs: Sequence[str]  # clients admitted to Triton's HTTP/gRPC ports
    hub_cidrs: Sequence[str]  # the hub side of the VPN: SSH (this program) and metrics scraping
    ssh_private_key: pulumi.Input[str]  # the site's deploy key (secret config)
    slos: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_EDGE_SLOS))  # smoke_tests --slos spec
    runtime_version: str | None = None  # None: derived from the bundle's content
    fill_interval_minutes: int = 15
    bandwidth_limit_mbps: float | None = None
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    gate: bool = True
    bundle_dir: Path | None = None  # where the bundle is built on this machine (default: a temp dir)
    depends_on: Sequence[pulumi.Resource] = ()  # what every host waits for (the site's VPN links, its hub repository)
    ssh_cidrs: Sequence[str] = ()  # SSH only: where this program connects from (runner or jump host), the site's admins
    proxy: EdgeProxyArgs | None = None  # reach the hosts through this jump host


@dataclass(frozen=True)
class EdgeHostResources:
    name: str
    bundle: command.remote.CopyToRemote
    runtime: command.remote.Command
    gate: command.remote.Command | None


def host_config(args: EdgeHostsArgs, host: EdgeHostArgs, hub: HubSource) -> EdgeConfig:
    """The host's config.json (hybridserve.edge.config): what the runtime reads on the host."""
    return EdgeConfig(
        site=args.site, host=host.name, models=tuple(args.models), hub=hub,
        inference_cidrs=tuple(args.inference_cidrs), hub_cidrs=tuple(args.hub_cidrs), ssh_cidrs=tuple(args.ssh_cidrs),
        http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port, ssh_port=host.ssh_port,
        cache_ports=dict(DEFAULT_CACHE_PORTS), fill_interval_minutes=args.fill_interval_minutes,
        bandwidth_limit_mbps=args.bandwidth_limit_mbps, gpu=host.gpu, slos=dict(args.slos),
    )


def check_args(args: EdgeHostsArgs) -> list[str]:
    """What the runtime would refuse on the host, found at program time (known values; the hub bucket may be an Output)."""
    names = [h.name for h in args.hosts]
    problems = [] if args.hosts else [f"edge site {args.site!r}: no hosts"]
    problems += [f"edge site {args.site!r}: host {n!r} is listed twice" for n in sorted({n for n in names if names.count(n) > 1})]
    placeholder = HubSource(bucket="placeholder")
    for host in args.hosts:
        # Host problems name the host themselves ("host 'x': ..."); site-wide ones then appear once, not per host.
        problems += [f"edge site {args.site!r}: {p}" for p in host_config(args, host, placeholder).problems()]
    return list(dict.fromkeys(problems))


class EdgeHosts(pulumi.ComponentResource):
    """The hosts of one edge site, provisioned one at a time. Outputs: `hosts` (per host: address, runtime
    version, gate verdict and the command that re-runs the gate)."""

    def __init__(self, name: str, args: EdgeHostsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("edge", "EdgeHosts"), name, None, opts)
        problems = check_args(args)
        if problems:
            raise pulumi.RunError("the edge site is not acceptable:\n  " + "\n  ".join(problems))
        self.bundle: Bundle = build_bundle(args.bundle_dir or Path(tempfile.gettempdir()) / "hybridserve-edge-bundles",
                                           version=args.runtime_version)
        provider = command.Provider(f"{name}-command", opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        key = pulumi.Output.secret(args.ssh_private_key)
        secret_key = pulumi.Output.secret(args.hub.secret_key) if args.hub.secret_key is not None else None
        remote_bundle = f"{REMOTE_BUNDLE_DIR}/{self.bundle.path.name}"
        apply = render.apply_script(remote_bundle, self.bundle.version, self.bundle.digest)

        self.host_resources: list[EdgeHostResources] = []
        outputs = []
        previous: pulumi.Resource | None = None
        for host in args.hosts:
            prefix = f"{name}-{host.name}"
            connection = command.remote.ConnectionArgs(
                host=host.address, user=host.ssh_user, port=host.ssh_port, private_key=key, host_key=host.host_key,
                dial_error_limit=10, per_dial_timeout=15,
                proxy=None if args.proxy is None else command.remote.ProxyConnectionArgs(
                    host=args.proxy.address, user=args.proxy.user, port=args.proxy.port, private_key=key,
                    host_key=args.proxy.host_key, dial_error_limit=10, per_dial_timeout=15),
            )
            config_json = pulumi.Output.secret(pulumi.Output.all(
                args.hub.bucket, args.hub.access_key, secret_key, args.hub.prefix if host.hub_prefix is None else host.hub_prefix,
                args.hub.endpoint_url).apply(
                lambda v, host=host: host_config(args, host, HubSource(
                    bucket=v[0], prefix=v[3], region=args.hub.region, endpoint_url=v[4],
                    access_key=v[1], secret_key=v[2], sse=args.hub.sse)).to_json()))
            # The site's VPN links (and the hub repository) first: the children do not inherit the component's depends_on.
            after = [*args.depends_on, *([previous] if previous is not None else [])]
            copy = command.remote.CopyToRemote(
                f"{prefix}-bundle", connection=connection, source=pulumi.FileAsset(str(self.bundle.path)),
                remote_path=remote_bundle, triggers=[self.bundle.digest],  # replacing a copy deletes nothing remote
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=after)),
            )
            runtime = command.remote.Command(
                f"{prefix}-runtime", connection=connection, create=apply, update=apply, delete=render.uninstall_script(),
                stdin=config_json, add_previous_output_in_env=False,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[copy, *after])),
            )
            gate = None
            if args.gate:
                # A digest prefix of the config is no secret (the key in it has 160+ bits): plain, so diffs show the gate re-running.
                gate_text = pulumi.Output.unsecret(config_json.apply(lambda text: render.gate_script(
                    stamp=f"runtime {self.bundle.version} bundle {self.bundle.digest[:16]} config {_config_sha(text)}",
                    version=self.bundle.version, config_sha=_config_sha(text))))
                gate = command.remote.Command(
                    f"{prefix}-gate", connection=connection, create=gate_text, update=gate_text,
                    opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[runtime])),
                )
            self.host_resources.append(EdgeHostResources(host.name, copy, runtime, gate))
            previous = gate or runtime
            outputs.append({
                "host": host.name,
                "address": host.address,
                "runtimeVersion": self.bundle.version,
                "gateVerdict": gate.stdout.apply(_verdict) if gate is not None else "gate disabled",
                "gateCommand": pulumi.Output.concat(
                    "ssh -p ", str(host.ssh_port), " ", host.ssh_user, "@", host.address,
                    " sudo -n /opt/hybridserve-edge/current/bin/hybridserve-edge gate --root /"),  # config and cache key are root's
            })
        self.hosts = outputs
        self.register_outputs({"site": args.site, "runtimeVersion": self.bundle.version, "hosts": outputs})


def _config_sha(text: str) -> str:
    """What the gate expects the host's config.json to hash to (the installer writes the JSON it reads on stdin)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _verdict(stdout: str | None) -> str:
    """The gate's last line: `hybridserve-edge gate: PASS|FAIL <site>/<host> (exit N)`."""
    lines = [line for line in (stdout or "").splitlines() if line.startswith("hybridserve-edge gate:")]
    return lines[-1] if lines else "no verdict"
