"""Triton serving (`hybridserve:serving`): image, models, replicas, resources and the smoke gate's SLOs.

`Slo` is what `hybridserve smoke` enforces after every stack update; it is importable without
Pulumi: `load_stack(...).serving.slo`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from hybridserve.stackconfig.schema.common import ConfigModel, Issue, Label

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


class SloOverride(ConfigModel):
    """Objectives for one model; fields left unset keep the stack-wide `serving.slo` value."""

    # Inferences/s the model must reach, at `throughput_concurrency` in-flight requests (None: at its peak).
    min_throughput: float | None = Field(default=None, gt=0)
    throughput_concurrency: int | None = Field(default=None, ge=1, le=1024)
    # Client-side p99 latency, ms, at `p99_concurrency` (None: at throughput_concurrency, else at every level).
    max_p99_ms: float | None = Field(default=None, gt=0)
    p99_concurrency: int | None = Field(default=None, ge=1, le=1024)
    # Failed / all requests over the model's whole load (0.0: none may fail).
    max_error_rate: float | None = Field(default=None, ge=0, lt=1)


class Slo(SloOverride):
    """Service-level objectives of the smoke gate (`hybridserve smoke`); a miss fails the stack update."""

    min_throughput: float | None = Field(default=20.0, gt=0)
    max_p99_ms: float | None = Field(default=500.0, gt=0)
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


class ServingConfig(ConfigModel):
    triton_image: str = Field(default="nvcr.io/nvidia/tritonserver", pattern=r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+$")
    triton_version: str = Field(default="24.12-py3", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
    namespace: Label = "triton"
    # Which clusters run Triton.
    targets: list[Literal["aws", "openstack"]] = Field(default_factory=lambda: ["aws", "openstack"], min_length=1)
    # Empty: every model in the repository. Otherwise Triton runs with explicit model control and loads these.
    models: list[ModelSpec] = Field(default_factory=list)
    replicas: Replicas = Replicas()
    resources: ContainerResources = ContainerResources()
    # "internal": an internal load balancer, reachable over the VPN; "cluster": ClusterIP only.
    expose: Literal["internal", "cluster"] = "internal"
    http_port: int = Field(default=8000, ge=1, le=65535)
    grpc_port: int = Field(default=8001, ge=1, le=65535)
    metrics_port: int = Field(default=8002, ge=1, le=65535)
    slo: Slo = Slo()
    # Per-model objectives over `slo`, by model name.
    model_slos: dict[str, SloOverride] = Field(default_factory=dict)

    def slo_for(self, model: str) -> Slo:
        """The objectives of `model`: the stack-wide ones with the model's overrides."""
        override = self.model_slos.get(model)
        return self.slo.merged(override) if override is not None else self.slo

    @property
    def image(self) -> str:
        return f"{self.triton_image}:{self.triton_version}"

    def issues(self) -> Iterator[Issue]:
        if len(set(self.targets)) != len(self.targets):
            yield Issue(("targets",), f"{self.targets} lists a target twice")
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
