"""What a smoke run checks and how it measures: `SmokeOptions`, `SLO`, `MeasurementProfile`, flag parsing.

Plain dataclasses and the standard library only: the CLI imports this for `--help`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from smoke_tests.errors import bad_input


def have_module(name: str) -> bool:
    """Whether `name` can be imported, without importing it (matplotlib takes a second to load)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a half-imported module
        return False


# --------------------------------------------------------------------------------------------- SLO


@dataclass(frozen=True)
class SLO:
    """One model's service-level objective. Every field is optional; None means "not checked".

    - `min_throughput`: inferences/s that must be reached at `throughput_concurrency`; with no concurrency
      stated, the peak over the sweep must reach it (the capacity).
    - `max_p99_ms`: p99 request latency (client side, ms) allowed at `p99_concurrency`; when that is not
      stated it falls back to `throughput_concurrency`, and with neither, every measured concurrency must meet it.
    - `max_error_rate`: failed / all requests over the whole sweep of the model (0.0 = no error allowed).

    The sweep always measures the stated concurrencies, also above the profile's cap.
    """

    min_throughput: float | None = None
    throughput_concurrency: int | None = None
    max_p99_ms: float | None = None
    p99_concurrency: int | None = None
    max_error_rate: float | None = None

    @property
    def p99_at(self) -> int | None:
        return self.p99_concurrency if self.p99_concurrency is not None else self.throughput_concurrency

    def is_empty(self) -> bool:
        return self.min_throughput is None and self.max_p99_ms is None and self.max_error_rate is None

    def concurrencies(self) -> set[int]:
        return {c for c in (self.throughput_concurrency, self.p99_at) if c is not None}

    def merged(self, override: "SLO") -> "SLO":
        """This SLO with every field `override` sets replaced (flags over stack config)."""
        changes = {}
        if override.min_throughput is not None:
            changes["min_throughput"] = override.min_throughput
            changes["throughput_concurrency"] = override.throughput_concurrency
        elif override.throughput_concurrency is not None:
            changes["throughput_concurrency"] = override.throughput_concurrency
        if override.max_p99_ms is not None:
            changes["max_p99_ms"] = override.max_p99_ms
            changes["p99_concurrency"] = override.p99_concurrency
        if override.max_error_rate is not None:
            changes["max_error_rate"] = override.max_error_rate
        return replace(self, **changes)

    def describe(self) -> str:
        parts = []
        if self.min_throughput is not None:
            at = f" @ c={self.throughput_concurrency}" if self.throughput_concurrency else " (peak)"
            parts.append(f">= {self.min_throughput:g} inf/s{at}")
        if self.max_p99_ms is not None:
            at = f" @ c={self.p99_at}" if self.p99_at else " (every c)"
            parts.append(f"p99 <= {self.max_p99_ms:g} ms{at}")
        if self.max_error_rate is not None and self.max_error_rate > 0:
            parts.append(f"errors <= {self.max_error_rate:.2%}")
        else:
            parts.append("no errors")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {
            "min_throughput": self.min_throughput,
            "throughput_concurrency": self.throughput_concurrency,
            "max_p99_ms": self.max_p99_ms,
            "p99_concurrency": self.p99_at,
            "max_error_rate": self.max_error_rate,
        }


ALL_MODELS = "*"

_NUM = r"[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?"
_SLO_FLAG = re.compile(rf"^(?:(?P<model>[A-Za-z0-9_.\-*]+)=)?(?P<value>{_NUM})(?:@(?P<conc>[0-9]+))?$")


def _parse_slo_flag(flag: str, text: str, *, allow_concurrency: bool) -> tuple[str, float, int | None]:
    m = _SLO_FLAG.match(text.strip())
    if not m or (m.group("conc") and not allow_concurrency):
        form = "[MODEL=]N[@CONCURRENCY]" if allow_concurrency else "[MODEL=]N"
        raise bad_input(f"{flag} {text!r}: expected {form}, e.g. {flag} text_encoder=" + ("200@4" if allow_concurrency else "0.01"))
    value = float(m.group("value"))
    if not math.isfinite(value):
        raise bad_input(f"{flag} {text!r}: the value must be a finite number")
    conc = int(m.group("conc")) if m.group("conc") else None
    if conc is not None and conc < 1:
        raise bad_input(f"{flag} {text!r}: the concurrency after @ must be at least 1")
    return m.group("model") or ALL_MODELS, value, conc


def parse_slo_flags(
    min_throughput: Iterable[str] = (),
    max_p99_ms: Iterable[str] = (),
    max_error_rate: Iterable[str] = (),
) -> dict[str, SLO]:
    """`--min-throughput [MODEL=]N[@C]`, `--max-p99-ms [MODEL=]N[@C]`, `--max-error-rate [MODEL=]R` -> SLO per model.

    Without `MODEL=` a flag applies to every model (key `"*"`); a model's own flag wins over it.
    """
    out: dict[str, SLO] = {}

    def put(model: str, **fields) -> None:
        out[model] = replace(out.get(model, SLO()), **fields)

    for text in min_throughput:
        model, value, conc = _parse_slo_flag("--min-throughput", text, allow_concurrency=True)
        if value <= 0:
            raise bad_input(f"--min-throughput {text!r}: the minimum must be above 0 inferences/s")
        put(model, min_throughput=value, throughput_concurrency=conc)
    for text in max_p99_ms:
        model, value, conc = _parse_slo_flag("--max-p99-ms", text, allow_concurrency=True)
        if value <= 0:
            raise bad_input(f"--max-p99-ms {text!r}: the maximum must be above 0 ms")
        put(model, max_p99_ms=value, p99_concurrency=conc)
    for text in max_error_rate:
        model, value, _ = _parse_slo_flag("--max-error-rate", text, allow_concurrency=False)
        if not 0.0 <= value <= 1.0:
            raise bad_input(f"--max-error-rate {text!r}: a rate is a fraction from 0 to 1 (0.01 = 1 %)")
        put(model, max_error_rate=value)
    return out


def resolve_slos(models: Iterable[str], base: Mapping[str, SLO], overrides: Mapping[str, SLO]) -> dict[str, SLO]:
    """Each model's SLO: stack config (`base`), then flags for all models, then flags for that model."""
    resolved = {}
    for name in models:
        slo = base.get(name, base.get(ALL_MODELS, SLO()))
        if ALL_MODELS in overrides:
            slo = slo.merged(overrides[ALL_MODELS])
        if name in overrides:
            slo = slo.merged(overrides[name])
        resolved[name] = slo
    return resolved


# --------------------------------------------------------------------------------------------- measurement


# A level's wall time besides its windows: starting and stopping the load, the statistics calls; about one window
# (the capacity search's own estimate: smoke_tests.measure.next_concurrency).
LEVEL_OVERHEAD_WINDOWS = 1


@dataclass(frozen=True)
class MeasurementProfile:
    """perf_analyzer's time-window measurement.

    Per concurrency, back-to-back windows of `window_s` seconds of closed-loop load; a result counts once the
    last `stability_windows` windows each lie within `stability_threshold` of their mean, in throughput and
    in latency (`stability_latency`: "avg" as perf_analyzer by default, or "p99"). After `max_windows`
    windows without that, the last windows are reported as the result, marked unstable.

    Levels: `concurrencies` when given; else with `search` the capacity search (`smoke_tests.measure.next_concurrency`:
    from 1, doubling, or x4 while throughput grows about linearly, until throughput stops growing, the p99 limit
    or an error, `max_concurrency`, or `time_budget_s` per model); else the ladder 1, 2, 4, ... `max_concurrency`.
    """

    name: str = "default"
    window_s: float = 5.0
    stability_windows: int = 3
    stability_threshold: float = 0.10
    max_windows: int = 10
    max_concurrency: int = 16
    concurrencies: tuple[int, ...] | None = None  # None: 1, 2, 4, ... up to max_concurrency
    stability_latency: str = "avg"
    search: bool = False  # the capacity search instead of the fixed ladder (when `concurrencies` is not given)
    time_budget_s: float | None = None  # the search's budget per model: no level starts that would pass it

    def with_window(self, window_s: float) -> "MeasurementProfile":
        """This profile measuring in `window_s` windows. A longer window gets a search budget longer by the same
        factor, so the search still reaches as many levels: a gate given 5 s windows for steadier figures must not
        stop at concurrency 1 and judge the p99 there alone. A shorter window keeps the budget."""
        budget = self.time_budget_s
        if budget is not None and window_s > self.window_s:
            budget = budget * window_s / self.window_s
        return replace(self, window_s=window_s, time_budget_s=budget)

    @property
    def searching(self) -> bool:
        return self.search and not self.concurrencies

    def level_seconds(self) -> tuple[float, float]:
        """(least, most) seconds one concurrency level takes: a result after `stability_windows` windows (stable),
        at most `max_windows` (unstable) and about a window of starting, stopping and statistics calls."""
        return self.stability_windows * self.window_s, (self.max_windows + LEVEL_OVERHEAD_WINDOWS) * self.window_s

    def sweep_seconds(self, extra: Iterable[int] = ()) -> tuple[float, float]:
        """(least, most) seconds one model's sweep takes; `extra`: its SLO's concurrencies, which are always measured.

        The fixed levels (`levels(extra)`): every one. The capacity search: at least concurrency 1 and the SLO's;
        at most its time budget (no level starts that would pass it; the first always starts) or every level of
        the doubling ladder, whichever is shorter, then the SLO's levels it did not reach."""
        least, most = self.level_seconds()
        if not self.searching:
            n = len(self.levels(extra))
            return n * least, n * most
        others = len(set(extra) - {1})
        search = len(self.levels()) * most
        if self.time_budget_s is not None:
            search = min(search, max(self.time_budget_s, most))
        return (1 + others) * least, search + others * most

    def levels(self, extra: Iterable[int] = ()) -> list[int]:
        if self.concurrencies:
            base = set(self.concurrencies)
        else:
            base, c = set(), 1
            while c < self.max_concurrency:
                base.add(c)
                c *= 2
            base.add(self.max_concurrency)
        return sorted(base | set(extra))

    def validate(self) -> None:
        # Each message names the smoke command's flag for the field (the profile's own value when not given).
        if not self.window_s > 0:
            raise bad_input(f"--window {self.window_s:g}: the measurement window must be above 0 seconds")
        if self.stability_windows < 1:
            raise bad_input(f"--stability-windows {self.stability_windows}: must be at least 1 (default 3)")
        if self.max_windows < self.stability_windows:
            raise bad_input(
                f"--max-windows {self.max_windows} is below the {self.stability_windows} windows a stable result needs "
                "(--stability-windows)"
            )
        if not 0 < self.stability_threshold < 1:
            raise bad_input(f"--stability-threshold {self.stability_threshold:g}: a fraction between 0 and 1 (0.1 = 10 %)")
        if self.max_concurrency < 1:
            raise bad_input(f"--max-concurrency {self.max_concurrency}: must be at least 1")
        if any(c < 1 for c in self.concurrencies or ()):
            levels = ",".join(map(str, self.concurrencies or ()))
            raise bad_input(f"--concurrency {levels}: every level must be at least 1, e.g. 1,4,16")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise bad_input(f"time budget {self.time_budget_s:g} s: must be above 0 seconds")
        if self.stability_latency not in ("avg", "p99"):
            raise bad_input(f"--stability-latency {self.stability_latency!r}: expected avg or p99")

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "window_s": self.window_s,
            "stability_windows": self.stability_windows,
            "stability_threshold": self.stability_threshold,
            "stability_latency": self.stability_latency,
            "max_windows": self.max_windows,
            "max_concurrency": self.max_concurrency,
            "search": self.searching,
            "time_budget_s": self.time_budget_s,
        }


PROFILES: dict[str, MeasurementProfile] = {
    # perf_analyzer's defaults: 5 s windows, 3 windows within 10 %, at most 10 windows.
    "default": MeasurementProfile(),
    # The local demo (`make demo`): the capacity search, 2 s windows, about 40 s per model (five or six levels;
    # the fixed ladder 1..8 it replaced took about 30 s and stopped at a third of the capacity).
    "quick": MeasurementProfile(name="quick", window_s=2.0, max_windows=4, max_concurrency=256, search=True,
                                time_budget_s=40.0),
}


def profile_of(name: str, *, window_s: float | None = None, **changes) -> MeasurementProfile:
    """PROFILES[name] as the CLI applies its flags: `--window` (`with_window`: a longer window lengthens the search's
    budget), then the other fields; None leaves the profile's. KeyError for an unknown name."""
    profile = PROFILES[name]
    if window_s is not None:
        profile = profile.with_window(window_s)
    return replace(profile, **{k: v for k, v in changes.items() if v is not None})


def run_seconds(profile: MeasurementProfile, slos: Iterable[SLO], wait_ready_s: float = 0.0) -> tuple[float, float]:
    """(least, most) seconds a smoke run spends measuring one model per SLO in `slos` (each model's resolved SLO),
    from its start: up to `wait_ready_s` for readiness (none when all is ready at once), then every model's sweep
    (`MeasurementProfile.sweep_seconds`). The correctness checks (a few requests per model) are not counted.
    What an outer timeout (the gate Job's deadline, `edge status --gate-timeout`) must leave room for."""
    least = most = 0.0
    for slo in slos:
        low, high = profile.sweep_seconds(slo.concurrencies())
        least, most = least + low, most + high
    return least, wait_ready_s + most


def longest_window(fits, high: float) -> float | None:
    """The longest window (0.1 s steps, at most `high`) for which `fits(window_s)` holds, or None when not even
    0.1 s does: what to suggest for a window too long for a deadline. A run only grows with its window
    (`run_seconds`), so a bisection finds it."""
    low_steps, high_steps = 1, int(high * 10)
    if not fits(low_steps / 10):
        return None
    if fits(high_steps / 10):
        return high_steps / 10
    while high_steps - low_steps > 1:
        mid = (low_steps + high_steps) // 2
        low_steps, high_steps = (mid, high_steps) if fits(mid / 10) else (low_steps, mid)
    return low_steps / 10


# --------------------------------------------------------------------------------------------- targets / options


@dataclass(frozen=True)
class ModelTarget:
    """An expected model; `version` None means the version the reference comes from (else the server's default)."""

    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ModelTarget":
        name, _, version = text.strip().partition(":")
        if not name or not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or (version and not version.isdigit()):
            raise bad_input(f"--model {text!r}: expected NAME or NAME:VERSION, e.g. text_encoder:1")
        return cls(name, version or None)

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


@dataclass
class SmokeOptions:
    """Everything one smoke run needs. `url` is "host:port", or "grpc://", "grpcs://", "http://", "https://" + host:port.

    - `models`: the expected models; None = every model of `model_repo` that has a reference.
    - `model_repo`: Triton model repository holding `<model>/<version>/reference.npz` and `config.pbtxt`
      (tolerances); required for correctness and used for load inputs.
    - `slos`: per model name, or "*" for all (see `resolve_slos`).
    - `batch_size`: rows per request of the load (perf_analyzer's -b); taken from the reference inputs.
    - `client_processes`: load generator processes (each an asyncio gRPC/HTTP client); None = min(CPUs, 4).
    - `request_timeout_s`: bound on every inference request; `call_timeout_s`: on every control call.
    - `wait_ready_s`: how long to wait for the server and models to become ready (0 = check once).
    - `metrics_url`: Triton's metrics port ("host:port" or "http://host:port"); when set, its
      `nv_cpu_utilization` (the server host's CPU) is sampled at every window end.
    - output paths: written by `run_smoke` when set.
    """

    url: str = "127.0.0.1:8001"
    protocol: str | None = None  # "grpc" | "http"; None: from the URL scheme, else grpc
    metrics_url: str | None = None  # Triton's metrics endpoint host:port: host CPU per window (optional)
    models: list[ModelTarget] | None = None
    model_repo: Path | None = None
    slos: dict[str, SLO] = field(default_factory=dict)
    profile: MeasurementProfile = field(default_factory=lambda: PROFILES["default"])
    batch_size: int = 1
    client_processes: int | None = None
    correctness: bool = True
    throughput: bool = True
    fail_on_unstable: bool = False
    request_timeout_s: float = 10.0
    call_timeout_s: float = 5.0
    wait_ready_s: float = 0.0
    json_path: Path | None = None
    junit_path: Path | None = None
    csv_path: Path | None = None
    plot_path: Path | None = None

    # -- derived -------------------------------------------------------------------------------------

    def endpoint(self) -> tuple[str, str, bool]:
        """(protocol, host:port, ssl) from `url` and `protocol`."""
        url = self.url.strip()
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "", url
        scheme = scheme.lower()
        schemes = {"grpc": ("grpc", False), "grpcs": ("grpc", True), "http": ("http", False), "https": ("http", True), "": (None, False)}
        if scheme not in schemes:
            raise bad_input(f"--url {self.url!r}: unknown scheme {scheme!r}; use host:port or grpc://, grpcs://, http://, https://")
        proto, ssl = schemes[scheme]
        if self.protocol is not None:
            if self.protocol not in ("grpc", "http"):
                raise bad_input(f"--protocol {self.protocol!r}: expected grpc or http")
            if proto is not None and proto != self.protocol:
                raise bad_input(f"--url {self.url!r} says {proto} but --protocol says {self.protocol}")
            proto = self.protocol
        proto = proto or "grpc"
        rest = rest.rstrip("/")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+:[0-9]{1,5}|\[[0-9A-Fa-f:]+\]:[0-9]{1,5}", rest):
            raise bad_input(f"--url {self.url!r}: expected HOST:PORT (e.g. 127.0.0.1:8001), optionally with a scheme")
        if not 1 <= int(rest.rsplit(":", 1)[1]) <= 65535:  # gRPC wraps 99999 into some other port
            raise bad_input(f"--url {self.url!r}: the port must be from 1 to 65535 (Triton: gRPC 8001, HTTP 8000)")
        return proto, rest, ssl

    def processes(self) -> int:
        if self.client_processes is not None:
            return self.client_processes
        return max(1, min(os.cpu_count() or 1, 4))

    def validate(self) -> None:
        self.endpoint()
        self.profile.validate()
        if self.batch_size < 1:
            raise bad_input(f"--batch-size {self.batch_size}: must be at least 1")
        if self.client_processes is not None and not 1 <= self.client_processes <= 64:
            raise bad_input(f"--client-processes {self.client_processes}: must be 1..64")
        for name, value in (("--request-timeout", self.request_timeout_s), ("--call-timeout", self.call_timeout_s)):
            if not value > 0:
                raise bad_input(f"{name} {value}: must be above 0 seconds")
        if self.metrics_url is not None and (
            not re.fullmatch(r"(https?://)?[A-Za-z0-9_.\-]+:[0-9]{1,5}/?", self.metrics_url.strip())
            or not 1 <= int(self.metrics_url.strip().rstrip("/").rsplit(":", 1)[1]) <= 65535
        ):
            raise bad_input(f"--metrics-url {self.metrics_url!r}: expected HOST:PORT of Triton's metrics endpoint, e.g. 127.0.0.1:8002")
        if self.wait_ready_s < 0:
            raise bad_input(f"--wait-ready {self.wait_ready_s}: must be 0 or more seconds")
        if self.models is not None and not self.models:
            raise bad_input("no models to check: pass --model NAME or a model repository with references")
        if self.correctness and self.model_repo is None:
            raise bad_input(
                "correctness needs the reference outputs: pass --model-repo DIR (the built model repository), "
                "or --no-correctness"
            )
        if self.model_repo is not None and not Path(self.model_repo).is_dir():
            what = "is a file, not a directory" if Path(self.model_repo).exists() else "no such directory"
            raise bad_input(f"--model-repo {self.model_repo}: {what}; expected the built model repository (model_repo/)")
        from smoke_tests.paths import output_path_problem

        if self.plot_path is not None and not have_module("matplotlib"):
            # Found now, not after the sweep; the Triton SDK image, where in-cluster gates run, has no matplotlib.
            raise bad_input(f"--plot {self.plot_path}: writing the PNG needs matplotlib, which is not installed here; "
                            "drop --plot (JSON, JUnit and CSV need nothing extra) or `pip install matplotlib`")
        for flag, path in (("--json", self.json_path), ("--junit", self.junit_path), ("--csv", self.csv_path), ("--plot", self.plot_path)):
            problem = output_path_problem(path) if path is not None else None
            if problem:  # found now, not after a sweep of several minutes
                raise bad_input(f"{flag} {path}: {problem}")
