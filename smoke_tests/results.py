"""What a smoke run found: per concurrency level, per model, and the run as a whole (plain dataclasses).

The JSON form (`to_dict`) is documented by `smoke_tests/report.schema.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smoke_tests.errors import ExitCode, worst
from smoke_tests.options import SLO

SCHEMA_ID = "hybridserve.smoke/v1"


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass
class ServerSide:
    """Triton's own statistics of the model over the same windows (averages per request, like perf_analyzer)."""

    inference_count: int = 0
    execution_count: int = 0
    success_count: int = 0
    fail_count: int = 0
    avg_batch_size: float | None = None  # inferences per execution
    queue_us: float | None = None
    compute_input_us: float | None = None
    compute_infer_us: float | None = None
    compute_output_us: float | None = None
    request_us: float | None = None  # server-side end to end per request
    utilization: float | None = None  # instance busy time / (window x instances)
    instances: int = 1
    host_cpu: float | None = None  # Triton's nv_cpu_utilization (server host, 0..1), mean of window ends

    def to_dict(self) -> dict:
        return {
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "success_count": self.success_count,
            "fail_count": self.fail_count,
            "avg_batch_size": _r(self.avg_batch_size),
            "queue_us": _r(self.queue_us, 1),
            "compute_input_us": _r(self.compute_input_us, 1),
            "compute_infer_us": _r(self.compute_infer_us, 1),
            "compute_output_us": _r(self.compute_output_us, 1),
            "request_us": _r(self.request_us, 1),
            "utilization": _r(self.utilization, 4),
            "instances": self.instances,
            "host_cpu": _r(self.host_cpu, 4),
        }


@dataclass
class LevelResult:
    """One concurrency level: the merged last `stability_windows` windows (all of them when fewer)."""

    concurrency: int
    batch_size: int
    stable: bool
    windows: int  # windows measured at this level
    duration_s: float  # length of the reported windows together
    requests: int  # successful requests in the reported windows
    errors: int  # failed requests in the reported windows
    throughput: float  # inferences/s = requests x batch_size / duration
    latency_us: dict[str, float | None]  # p50 p90 p95 p99 avg min max (successful requests, client side)
    server: ServerSide
    client_cpu_cores: float  # load generator CPU time / wall time (all its processes)
    total_requests: int = 0  # every finished request in every window of the level (for the error rate)
    total_errors: int = 0
    error_samples: dict[str, int] = field(default_factory=dict)
    window_throughputs: list[float] = field(default_factory=list)
    window_latencies_us: list[float] = field(default_factory=list)  # the stability latency of each window
    note: str = ""

    @property
    def error_rate(self) -> float:
        return self.total_errors / self.total_requests if self.total_requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        p = self.latency_us.get("p99")
        return None if p is None else p / 1000.0

    def to_dict(self) -> dict:
        return {
            "concurrency": self.concurrency,
            "batch_size": self.batch_size,
            "stable": self.stable,
            "windows": self.windows,
            "duration_s": _r(self.duration_s),
            "requests": self.requests,
            "errors": self.errors,
            "throughput_infer_per_s": _r(self.throughput, 2),
            "latency_us": {k: _r(v, 1) for k, v in self.latency_us.items()},
            "total_requests": self.total_requests,
            "total_errors": self.total_errors,
            "error_rate": _r(self.error_rate, 6),
            "error_samples": dict(self.error_samples),
            "client_cpu_cores": _r(self.client_cpu_cores),
            "server": self.server.to_dict(),
            "window_throughputs": [_r(t, 2) for t in self.window_throughputs],
            "window_latencies_us": [_r(t, 1) for t in self.window_latencies_us],
            "note": self.note,
        }


@dataclass
class TensorCheck:
    name: str
    shape: list[int]
    elements: int
    mismatched: int
    max_abs_diff: float | None
    max_rel_diff: float | None
    first_mismatch: list[int] | None = None  # index of the first element out of tolerance
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": self.shape,
            "elements": self.elements,
            "mismatched": self.mismatched,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "first_mismatch": self.first_mismatch,
            "message": self.message,
        }


@dataclass
class Correctness:
    status: str  # "passed" | "failed" | "skipped" | "error"
    samples: int = 0
    atol: float | None = None
    rtol: float | None = None
    outputs: list[TensorCheck] = field(default_factory=list)
    message: str = ""

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "samples": self.samples,
            "atol": self.atol,
            "rtol": self.rtol,
            "outputs": [o.to_dict() for o in self.outputs],
            "message": self.message,
        }


@dataclass
class Saturation:
    """Whether the sweep drove the model to its capacity, the first concurrency where it did, and why."""

    saturated: bool
    concurrency: int | None = None
    rule: str = ""  # "utilization" | "batch_full" | "host_cpu" | "plateau" | "" (not saturated)
    detail: str = ""
    load_generator_bound: bool = False

    def to_dict(self) -> dict:
        return {
            "saturated": self.saturated,
            "concurrency": self.concurrency,
            "rule": self.rule,
            "detail": self.detail,
            "load_generator_bound": self.load_generator_bound,
        }


@dataclass
class Capacity:
    """The highest stable throughput the sweep measured before saturation or the p99 limit, and where.

    `found`: a higher concurrency was measured and did not beat it (throughput grew < 10 %, the p99 limit was
    passed, or requests failed), so this is the server's capacity; False: throughput was still growing at the
    sweep's last level, so it is a lower bound. `stop` says why the sweep went no further.
    """

    throughput: float | None = None  # inferences/s
    concurrency: int | None = None
    p99_ms: float | None = None
    stable: bool = True  # whether its level was stable (else its figure merges the last, disagreeing windows)
    found: bool = False
    stop: str = ""  # "plateau" | "p99_limit" | "errors" | "max_concurrency" | "time_budget" | "levels" | ""
    detail: str = ""

    def describe(self) -> str:
        """One cell: "1,290 @ c=32", or ">= 1,150 @ c=8" for a lower bound, "-" when nothing was measured."""
        if self.throughput is None:
            return "-"
        return f"{'' if self.found else '>= '}{self.throughput:,.0f} @ c={self.concurrency}"

    def to_dict(self) -> dict:
        return {
            "throughput_infer_per_s": _r(self.throughput, 2),
            "concurrency": self.concurrency,
            "p99_ms": _r(self.p99_ms, 3),
            "stable": self.stable,
            "found": self.found,
            "stop": self.stop,
            "detail": self.detail,
        }


@dataclass
class Violation:
    """One failed check, one line: `message` names the model and the figure."""

    model: str | None
    kind: str  # "endpoint" | "readiness" | "interface" | "correctness" | "slo"
    metric: str  # e.g. "min_throughput", "max_p99_ms", "max_error_rate", "stability", "ready", "outputs"
    message: str
    exit_code: ExitCode
    measured: float | None = None
    limit: float | None = None
    concurrency: int | None = None

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "kind": self.kind,
            "metric": self.metric,
            "measured": self.measured,
            "limit": self.limit,
            "concurrency": self.concurrency,
            "exit_code": int(self.exit_code),
            "message": self.message,
        }


@dataclass
class ModelReport:
    name: str
    version: str | None
    ready: bool = False
    state: str = ""
    reason: str = ""
    max_batch_size: int | None = None
    instances: int | None = None
    correctness: Correctness = field(default_factory=lambda: Correctness("skipped"))
    sweep: list[LevelResult] = field(default_factory=list)
    saturation: Saturation | None = None
    capacity: Capacity | None = None
    slo: SLO = field(default_factory=SLO)
    violations: list[Violation] = field(default_factory=list)
    sweep_note: str = ""

    # Convenience for callers that only want the headline figures (e.g. `hybridserve local up`).
    @property
    def correct(self) -> bool | None:
        return {"passed": True, "failed": False, "error": False}.get(self.correctness.status)

    @property
    def peak(self) -> LevelResult | None:
        return max(self.sweep, key=lambda lv: lv.throughput, default=None)

    @property
    def throughput(self) -> float | None:
        """Peak inferences/s over the sweep."""
        peak = self.peak
        return peak.throughput if peak else None

    def level(self, concurrency: int) -> LevelResult | None:
        return next((lv for lv in self.sweep if lv.concurrency == concurrency), None)

    @property
    def passed(self) -> bool:
        return self.ready and not self.violations

    @property
    def error_rate(self) -> float:
        total = sum(lv.total_requests for lv in self.sweep)
        return sum(lv.total_errors for lv in self.sweep) / total if total else 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "passed": self.passed,
            "ready": self.ready,
            "state": self.state,
            "reason": self.reason,
            "max_batch_size": self.max_batch_size,
            "instances": self.instances,
            "correctness": self.correctness.to_dict(),
            "slo": self.slo.to_dict(),
            "peak_throughput_infer_per_s": _r(self.throughput, 2),
            "error_rate": _r(self.error_rate, 6),
            "saturation": self.saturation.to_dict() if self.saturation else None,
            "capacity": self.capacity.to_dict() if self.capacity else None,
            "sweep": [lv.to_dict() for lv in self.sweep],
            "sweep_note": self.sweep_note,
            "violations": [v.to_dict() for v in self.violations],
        }


@dataclass
class RunError:
    message: str
    exit_code: ExitCode
    model: str | None = None

    def to_dict(self) -> dict:
        return {"message": self.message, "exit_code": int(self.exit_code), "model": self.model}


@dataclass
class RunInfo:
    url: str
    protocol: str
    server_version: str | None = None
    started_at: str = ""
    duration_s: float = 0.0
    profile: dict[str, Any] = field(default_factory=dict)
    load_generator: dict[str, Any] = field(default_factory=dict)
    model_repo: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "protocol": self.protocol,
            "server_version": self.server_version,
            "started_at": self.started_at,
            "duration_s": _r(self.duration_s, 2),
            "profile": self.profile,
            "load_generator": self.load_generator,
            "model_repo": self.model_repo,
            "warnings": list(self.warnings),
        }


def exit_code_of(models: list[ModelReport], error: RunError | None) -> ExitCode:
    codes = [v.exit_code for m in models for v in m.violations]
    if error is not None:
        codes.append(error.exit_code)
    return worst(codes)
