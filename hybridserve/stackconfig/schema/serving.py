"""Triton serving (`hybridserve:serving`): image, models, replicas, resources, publication, autoscaling,
monitoring, network exposure and the smoke gate with its SLOs.

`Slo` is what the smoke gate enforces inside every `pulumi up` (a Kubernetes Job per site) and what
`hybridserve smoke --stack` enforces from a terminal; importable without Pulumi: `load_stack(...).serving.slo`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, Field

from smoke_tests.options import longest_window

from hybridserve.stackconfig.catalog import TRITON_RELEASES, brief
from hybridserve.stackconfig.schema.common import Cidr, ConfigModel, Issue, Label

_QUANTITY = re.compile(r"^(\d+(\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def parse_quantity(value: str) -> float:
    """A Kubernetes resource quantity ("500m", "2", "16Gi") as a number; ValueError if malformed."""
    match = _QUANTITY.match(str(value))
    if not match:
        raise ValueError(value)
    return float(match.group(1)) * _FACTORS[match.group(3)]


class ModelSpec(ConfigModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    # Empty: the version policy in the model's config.pbtxt decides (Triton's default: latest).
    versions: list[int] = Field(default_factory=list)

    def issues(self) -> Iterator[Issue]:
        for i, v in enumerate(self.versions):
            if v < 1:
                yield Issue(("versions", i), f"{v} is not a model version; Triton versions are integers ≥ 1")
        if len(set(self.versions)) != len(self.versions):
            yield Issue(("versions",), f"{self.versions} lists a version twice")


class Replicas(ConfigModel):
    min: int = Field(default=1, ge=1, le=100)
    max: int = Field(default=2, ge=1, le=100)

    def issues(self) -> Iterator[Issue]:
        if self.min > self.max:
            yield Issue(("min",), f"{self.min} is greater than max ({self.max}); min ≤ max")


class ContainerResources(ConfigModel):
    """Per Triton pod. `gpus` whole GPUs (nvidia.com/gpu)."""

    cpu_request: str = "2"
    cpu_limit: str = "4"
    memory_request: str = "8Gi"
    memory_limit: str = "16Gi"
    gpus: int = Field(default=1, ge=0, le=8)

    def issues(self) -> Iterator[Issue]:
        values: dict[str, float] = {}
        for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            try:
                values[key] = parse_quantity(getattr(self, key))
            except ValueError:
                yield Issue((key,), f"{getattr(self, key)!r} is not a Kubernetes quantity; e.g. '500m', '2' (CPU) or '16Gi' (memory)")
        for kind in ("cpu", "memory"):
            req, lim = values.get(f"{kind}_request"), values.get(f"{kind}_limit")
            if req is not None and lim is not None and req > lim:
                yield Issue((f"{kind}_request",), f"{getattr(self, kind + '_request')} is greater than {kind}_limit ({getattr(self, kind + '_limit')}); request ≤ limit")


def bounded(high: float, unit: str):
    """Finite (YAML's .inf and .nan read as floats, and pass a lone `gt`/`ge`) and at most `high`;
    the lower bound stays a Field constraint."""

    def check(value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value <= high):
            raise ValueError(f"{value} is not valid; give a finite number of {unit}, at most {high:,.0f}")
        return value

    return AfterValidator(check)


# The smoke gate bounds each inference request by 10 s (smoke_tests/cli.py --request-timeout, which the gate
# Job leaves at its default): a slower request counts as an error, so no p99 above it can be measured.
GATE_REQUEST_TIMEOUT_MS = 10_000.0
# More than this many inferences/s is beyond what the gate's one client (≤ 256 in flight) can drive.
MAX_MEASURABLE_THROUGHPUT = 1_000_000.0


class SloOverride(ConfigModel):
    """Objectives for one model; fields left unset keep the stack-wide `serving.slo` value."""

    # Inferences/s the model must reach, at `throughput_concurrency` in-flight requests (None: at its peak).
    min_throughput: Annotated[float | None, bounded(MAX_MEASURABLE_THROUGHPUT, "inferences/s")] = Field(default=None, gt=0)
    throughput_concurrency: int | None = Field(default=None, ge=1, le=1024)
    # Client-side p99 latency, ms, at `p99_concurrency` (None: at throughput_concurrency, else at every level).
    max_p99_ms: Annotated[float | None, bounded(GATE_REQUEST_TIMEOUT_MS, "ms (the gate's request timeout)")] = Field(default=None, gt=0)
    p99_concurrency: int | None = Field(default=None, ge=1, le=1024)
    # Failed / all requests over the model's whole load (0.0: none may fail).
    # (NaN and infinities fail these bounds already.)
    max_error_rate: float | None = Field(default=None, ge=0, lt=1)


class Slo(SloOverride):
    """Service-level objectives of the smoke gate (`hybridserve smoke`); a miss fails the stack update."""

    min_throughput: Annotated[float | None, bounded(MAX_MEASURABLE_THROUGHPUT, "inferences/s")] = Field(default=20.0, gt=0)
    max_p99_ms: Annotated[float | None, bounded(GATE_REQUEST_TIMEOUT_MS, "ms (the gate's request timeout)")] = Field(default=500.0, gt=0)
    max_error_rate: float | None = Field(default=0.0, ge=0, lt=1)
    # How long the gate waits for the server and every model to become ready.
    wait_ready_seconds: int = Field(default=600, ge=10, le=7200)

    def merged(self, override: SloOverride) -> "Slo":
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})

    def issues(self) -> Iterator[Issue]:
        if self.min_throughput is None and self.max_p99_ms is None and self.max_error_rate is None:
            yield Issue(("min_throughput",), "null, and so are max_p99_ms and max_error_rate; the smoke gate would check nothing, set at least one")
        if self.max_p99_ms is not None and self.max_p99_ms > self.wait_ready_seconds * 1000:
            yield Issue(("max_p99_ms",), f"{self.max_p99_ms} ms exceeds wait_ready_seconds ({self.wait_ready_seconds} s); a latency objective that long is not meaningful")


class Publication(ConfigModel):
    """The model repository published by `pulumi up`: one immutable version prefix per content hash."""

    # Published versions kept in each bucket for rollback (the current one included; at least 2, so
    # pods of the previous rollout still read theirs while they drain).
    keep_versions: int = Field(default=3, ge=2, le=100)
    # Rollback: serve this already published version (v + 16 hex digits, one of the stack output
    # modelPublications.<site>.kept) instead of model_repo/'s content. `hybridserve ci rollback` sets it.
    pin_version: str | None = Field(default=None, pattern=r"^v[0-9a-f]{16}$")
    # With pin_version, per edge site: the version of its edge publication published with the pinned one (its own
    # rendering, so its own name: stack output edgeHosts.<site>.publication.kept). `hybridserve ci rollback` sets it.
    edge_pins: dict[str, Annotated[str, Field(pattern=r"^v[0-9a-f]{16}$")]] = Field(default_factory=dict, max_length=50)

    def warnings(self) -> Iterator[Issue]:
        if self.pin_version:
            yield Issue(("pin_version",), f"{self.pin_version}: the clusters serve this pinned version, not model_repo/; remove the pin once a fixed model is merged")
        for site, version in self.edge_pins.items():
            yield Issue(("edge_pins", site), f"{version}: edge site {site!r} serves this pinned version, not model_repo/; remove it with pin_version")


class Autoscaling(ConfigModel):
    """The HorizontalPodAutoscaler of each site's Triton Deployment, between `replicas.min` and `replicas.max`.

    queue_time: average time a request waits in Triton's queue, per pod, from Triton's metrics through
    the Prometheus adapter (needs `monitoring.prometheus` install or existing). cpu: the pods' CPU
    utilisation (metrics-server), the fallback when no Prometheus is wanted.
    """

    metric: Literal["queue_time", "cpu"] = "queue_time"
    target_queue_time_ms: float = Field(default=50.0, gt=0, le=60000)
    target_cpu_utilization: int = Field(default=70, ge=10, le=100)
    # Wait this long after the load drops before removing pods (GPU pods are slow to come back).
    scale_down_stabilization_seconds: int = Field(default=300, ge=0, le=3600)


class Monitoring(ConfigModel):
    """Prometheus for Triton's metrics (ServiceMonitor, the queue-time HPA) and the GPUs (DCGM exporter).

    install: the kit installs kube-prometheus-stack and prometheus-adapter (pinned charts) on each cluster.
    existing: the cluster already runs the Prometheus operator (its CRDs) and a Prometheus at
    `prometheus_url`; the kit installs only prometheus-adapter, pointed at it.
    none: no ServiceMonitor; `autoscaling.metric` must be cpu.
    """

    prometheus: Literal["install", "existing", "none"] = "install"
    # Where Prometheus runs (install: created there); Triton's NetworkPolicy admits its scrapes from it.
    namespace: Label = "monitoring"
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._/-]*)?$")
    # NVIDIA DCGM exporter on the GPU nodes (GPU utilisation, memory, temperature), scraped by Prometheus.
    dcgm_exporter: bool = True

    def issues(self) -> Iterator[Issue]:
        if self.prometheus == "existing" and not self.prometheus_url:
            yield Issue(("prometheus_url",), "is not set, but prometheus is existing; give the in-cluster URL, e.g. http://prometheus-operated.monitoring.svc:9090")
        if self.prometheus != "existing" and self.prometheus_url:
            yield Issue(("prometheus_url",), f"is only used with prometheus: existing (prometheus is {self.prometheus})")


# The bounds of gate.window_seconds and gate.timeout_seconds (the suggestions of the gate's time check stay inside).
MAX_GATE_WINDOW_S = 60
MAX_GATE_TIMEOUT_S = 14400


class SmokeGate(ConfigModel):
    """The smoke gate Job each `pulumi up` runs per site after the rollout."""

    # None: the Triton SDK image of the serving release (<triton_image>:<release>-py3-sdk), which has
    # the Triton client; the gate's code is mounted from a ConfigMap.
    image: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    # Pin the image by digest too (sha256:<64 hex>): every node then runs the same bytes for the tag.
    image_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    # quick: 2 s windows, a capacity search up to max_concurrency (about 40 s per model); default: 5 s windows 1..16.
    profile: Literal["quick", "default"] = "quick"
    # Highest concurrency of the gate's sweep (1, 2, 4, ...); at least the SLOs' *_concurrency.
    max_concurrency: int = Field(default=8, ge=1, le=256)
    # Measurement window per concurrency level, seconds (the gate's --window); None: the profile's (quick 2, default 5).
    # Longer windows steady the figures on a busy cluster; shorter ones shorten every rollout's gate.
    window_seconds: float | None = Field(default=None, gt=0, le=MAX_GATE_WINDOW_S)
    # Bound on the whole Job (readiness wait + measurement); `pulumi up` fails when it is exceeded. Checked against
    # the gate's run with these windows (ServingConfig.gate_seconds): too short for any run is an error, for the worst
    # case a warning.
    timeout_seconds: int = Field(default=1800, ge=120, le=MAX_GATE_TIMEOUT_S)


class GateTime(NamedTuple):
    """The smoke gate's run with `profile` (ServingConfig.gate_seconds), seconds: `least` (every model's levels stable
    at once, no readiness wait) and `most` (every level to its last window, the whole readiness `wait`);
    `models`: what it measures, `source`: "listed" (serving.models), "repository" (the repository's models, given),
    "unknown" (serving.models empty, the repository not read: one model stands for them)."""

    profile: Any
    least: float
    most: float
    wait: float
    models: tuple[str, ...]
    source: Literal["listed", "repository", "unknown"]


class ServingConfig(ConfigModel):
    triton_image: str = Field(default="nvcr.io/nvidia/tritonserver", pattern=r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+$")
    # An NGC release tag "<yy.mm>-py3" (the image with the PyTorch backend; catalog.TRITON_RELEASES).
    triton_version: str = Field(default="26.11-py3", pattern=r"^\d{2}\.\d{2}-py3$")
    # Pin the image by digest too (sha256:<64 hex>, from the registry): every node runs the same bytes.
    triton_digest: str | None = Field(default=None, pattern=r"^sha256:[0-9a-f]{64}$")
    namespace: Label = "triton"
    # Which clusters run Triton.
    targets: list[Literal["aws", "openstack"]] = Field(default_factory=lambda: ["aws", "openstack"], min_length=1)
    # Empty: every model in the repository. Otherwise Triton runs with explicit model control and loads these.
    models: list[ModelSpec] = Field(default_factory=list)
    replicas: Replicas = Replicas()
    resources: ContainerResources = ContainerResources()
    # Model instances per GPU (Triton's instance_group count on the clusters).
    instances_per_gpu: int = Field(default=1, ge=1, le=16)
    # /dev/shm of a Triton pod (memory-backed; counts against memory_limit).
    shm_size: str = "1Gi"
    # Model loading budget: the startup probe allows this long before the pod counts as failed.
    startup_seconds: int = Field(default=600, ge=30, le=7200)
    # In-flight requests get this long to finish when a pod stops (rollout, scale-in, node drain).
    drain_seconds: int = Field(default=30, ge=5, le=600)
    # "internal": an internal load balancer, reachable over the VPN; "cluster": ClusterIP only.
    expose: Literal["internal", "cluster"] = "internal"
    http_port: int = Field(default=8000, ge=1, le=65535)
    grpc_port: int = Field(default=8001, ge=1, le=65535)
    metrics_port: int = Field(default=8002, ge=1, le=65535)
    # Who may send inference requests, besides the peer site's networks (always allowed, over the VPN):
    # pods of these namespaces, and these networks.
    client_namespaces: list[Label] = Field(default_factory=list)
    client_cidrs: list[Cidr] = Field(default_factory=list)
    # Where Triton's pods may connect besides DNS: the object store. None: any address on the store's
    # port (object stores sit behind changing addresses); a list narrows it to those networks.
    object_store_cidrs: list[Cidr] | None = None
    publication: Publication = Publication()
    autoscaling: Autoscaling = Autoscaling()
    monitoring: Monitoring = Monitoring()
    gate: SmokeGate = SmokeGate()
    slo: Slo = Slo()
    # Per-model objectives over `slo`, by model name.
    model_slos: dict[str, SloOverride] = Field(default_factory=dict)

    def slo_for(self, model: str) -> Slo:
        """The objectives of `model`: the stack-wide ones with the model's overrides."""
        override = self.model_slos.get(model)
        return self.slo.merged(override) if override is not None else self.slo

    @property
    def image(self) -> str:
        pinned = f"@{self.triton_digest}" if self.triton_digest else ""
        return f"{self.triton_image}:{self.triton_version}{pinned}"

    @property
    def release(self) -> str:
        """The NGC release, e.g. "26.11"."""
        return self.triton_version.split("-", 1)[0]

    @property
    def gate_image(self) -> str:
        pinned = f"@{self.gate.image_digest}" if self.gate.image_digest else ""
        return (self.gate.image or f"{self.triton_image}:{self.release}-py3-sdk") + pinned

    def gate_seconds(self, window_s: float | None = None, repository: Sequence[str] = ()) -> GateTime:
        """How long the smoke gate Job's run takes with `window_s` s windows (None: gate.window_seconds, else the
        profile's), from the code the Job runs (smoke_tests.options.run_seconds, the profile built as its command
        line builds it): its models (serving.models, one per listed version) each with its SLO, and the readiness
        wait. With serving.models empty the gate measures the models the program publishes (`repository`: their
        names, from `hybridserve validate`, which reads it); without them one model stands for them all (the least
        of the SLOs a model may get, for `least`; the most, for `most`)."""
        from smoke_tests.gatespec import parse_gate_spec
        from smoke_tests.options import profile_of, resolve_slos, run_seconds

        from hybridserve.smokegate import gate_spec

        spec = parse_gate_spec(gate_spec(self))
        profile = profile_of(self.gate.profile, window_s=window_s if window_s is not None else self.gate.window_seconds,
                             max_concurrency=self.gate.max_concurrency)
        wait = float(self.slo.wait_ready_seconds)
        names = [str(m) for m in spec.models] if spec.models is not None else list(repository)
        if names:  # as the gate resolves them: the model's own SLO, else "*"
            slos = [resolve_slos([n], spec.slos, {})[n] for n in (m.partition(":")[0] for m in names)]
            least, most = run_seconds(profile, slos, wait)
            return GateTime(profile, least, most, wait, tuple(names), "listed" if spec.models is not None else "repository")
        runs = [run_seconds(profile, [slo], wait) for slo in spec.slos.values()]
        return GateTime(profile, min(r[0] for r in runs), max(r[1] for r in runs), wait, (), "unknown")

    def gate_time_issues(self, repository: Sequence[str] = ()) -> tuple[Issue | None, Issue | None]:
        """(error, warning) of the gate's run against gate.timeout_seconds (`gate_seconds`; `repository`: its models
        when serving.models is empty): an error when no run that can pass finishes in time, else a warning when the
        worst case may not."""
        error = self._gate_time_issue(worst=False, repository=repository)
        return error, (self._gate_time_issue(worst=True, repository=repository) if error is None else None)

    def _gate_time_issue(self, *, worst: bool, repository: Sequence[str] = ()) -> Issue | None:
        """The gate's run against gate.timeout_seconds: `least` (no run can pass in time: an error) or, with
        `worst`, `most` (the worst case may not: a warning). Names the keys, the figures and what would fit."""
        g = self.gate
        timeout = g.timeout_seconds
        t = self.gate_seconds(repository=repository)
        needed = t.most if worst else t.least
        if needed <= timeout:
            return None
        w = t.profile.window_s
        if g.window_seconds is not None:
            loc, head = ("gate", "window_seconds"), f"{w:g}"
        else:
            loc, head = ("gate", "timeout_seconds"), f"{timeout} (with the {g.profile} profile's {w:g} s windows)"
        fits = longest_window(lambda x: getattr(self.gate_seconds(x, repository), "most" if worst else "least") <= timeout,
                              MAX_GATE_WINDOW_S)
        longer = math.ceil(needed)
        fixes = [f"window_seconds at most {fits:g}"] if fits is not None else []
        if longer <= MAX_GATE_TIMEOUT_S:
            fixes.append(f"timeout_seconds at least {longer}")
        measuring = t.most - t.wait
        if worst and fits is None and timeout - measuring >= 10:  # the readiness wait is what does not fit
            fixes.append(f"slo.wait_ready_seconds at most {math.floor(timeout - measuring)}")
        models = {
            "listed": f"{len(t.models)} model(s)",
            "repository": f"{len(t.models)} model(s) (serving.models is empty: the repository's {', '.join(t.models)})",
            "unknown": "one model, and as much again per further model (serving.models is empty: the gate measures every model of the repository)",
        }[t.source]
        per_level = (f"{t.profile.stability_windows} windows of {w:g} s per concurrency level it must measure" if not worst else
                     f"up to {t.profile.max_windows} windows of {w:g} s per concurrency level plus about one to start and stop it"
                     + (f", the capacity search's budget {t.profile.time_budget_s:g} s per model" if t.profile.searching and t.profile.time_budget_s else ""))
        if worst:
            what = (f"the gate's worst case may not fit timeout_seconds ({timeout} s): up to {t.wait:.0f} s readiness wait "
                    f"(slo.wait_ready_seconds) and {measuring:.0f} s measuring {models}, with the {g.profile} profile's {per_level}; "
                    f"{t.most:.0f} s in all; Kubernetes stops the Job at its deadline and `pulumi up` fails")
        else:
            what = (f"even the shortest gate run that can pass takes {t.least:.0f} s, more than timeout_seconds ({timeout} s): "
                    f"measuring {models}, with the {g.profile} profile's at least {per_level}; Kubernetes would stop every gate Job before its "
                    "verdict and `pulumi up` would fail")
        return Issue(loc, f"{head}: {what}; give {' or '.join(fixes)}")

    def warnings(self) -> Iterator[Issue]:
        _, warning = self.gate_time_issues()
        if warning is not None:
            yield warning

    def issues(self) -> Iterator[Issue]:
        error, _ = self.gate_time_issues()
        if error is not None:
            yield error
        if len(set(self.targets)) != len(self.targets):
            yield Issue(("targets",), f"{self.targets} lists a target twice")
        if self.release not in TRITON_RELEASES:
            yield Issue(
                ("triton_version",),
                f"{self.triton_version!r} is not a Triton release the kit knows; known: "
                f"{brief([f'{r}-py3' for r in sorted(TRITON_RELEASES, reverse=True)])} (hybridserve/stackconfig/catalog.py)",
            )
        names = [m.name for m in self.models]
        for i, name in enumerate(names):
            if name in names[:i]:
                yield Issue(("models", i, "name"), f"{name!r} is listed twice; merge the versions into one entry")
        listed = {m.name for m in self.models}
        for name in self.model_slos:
            if listed and name not in listed:
                yield Issue(("model_slos", name), f"{name!r} is not one of the models to load ({', '.join(sorted(listed))})")
        ports = {"http_port": self.http_port, "grpc_port": self.grpc_port, "metrics_port": self.metrics_port}
        if len(set(ports.values())) != 3:
            yield Issue(("grpc_port",), f"http/grpc/metrics ports {list(ports.values())} must be distinct")
        try:
            shm = parse_quantity(self.shm_size)
        except ValueError:
            yield Issue(("shm_size",), f"{self.shm_size!r} is not a Kubernetes quantity; e.g. '1Gi'")
        else:
            try:
                limit = parse_quantity(self.resources.memory_limit)
            except ValueError:
                limit = None
            if limit is not None and shm >= limit:
                yield Issue(("shm_size",), f"{self.shm_size} is not below resources.memory_limit ({self.resources.memory_limit}); /dev/shm is memory of the pod")
        for key in ("throughput_concurrency", "p99_concurrency"):
            wanted = [c for c in (getattr(self.slo_for(m), key) for m in [None, *self.model_slos]) if c]
            if wanted and max(wanted) > self.gate.max_concurrency:
                yield Issue(("gate", "max_concurrency"), f"{self.gate.max_concurrency} is below an SLO's {key} ({max(wanted)}); the gate could not measure it")
        if self.autoscaling.metric == "queue_time" and self.monitoring.prometheus == "none":
            yield Issue(("autoscaling", "metric"), "queue_time needs Triton's metrics in Prometheus, but monitoring.prometheus is none; use cpu or a Prometheus")
        if self.resources.gpus == 0:
            yield Issue(
                ("resources", "gpus"),
                "0, but Triton on the clusters serves from the GPU pools (the models run on the PyTorch backend on a GPU); "
                "give each pod at least 1",
            )
        if len(set(self.client_namespaces)) != len(self.client_namespaces):
            yield Issue(("client_namespaces",), f"{self.client_namespaces} lists a namespace twice")
        if self.namespace in self.client_namespaces:
            yield Issue(("client_namespaces",), f"{self.namespace!r} is Triton's own namespace (serving.namespace); list client namespaces only")
