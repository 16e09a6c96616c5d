"""perf_analyzer's time-window measurement of one concurrency level, and the saturation rule of a sweep.

Per level: closed-loop load runs without pause while the coordinator cuts wall-clock windows of
`window_s`. A successful request counts (throughput, latency) in a window when it started and ended inside
it (perf_analyzer's rule; requests straddling a boundary count in neither). Failures, and the error rate's
denominator, count in the window they ended in: a timeout is longer than a short window. At each boundary Triton's statistics of the model are
read, so the server-side figures cover the same window. The level ends when the last
`stability_windows` windows each lie within `stability_threshold` of their mean in throughput and in
latency, or after `max_windows` windows (then marked unstable). The reported figures merge those last
windows: throughput = inferences / their total length; percentiles over all their requests.

Every wait is bounded: a window is a sleep; a statistics call has the control-call timeout; a worker
reply has its own timeout; in-flight requests have the request timeout.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smoke_tests.endpoint import Endpoint, EndpointError, ModelStats
from smoke_tests.errors import ExitCode, SmokeFatal
from smoke_tests.loadgen import LoadGenerator, Records
from smoke_tests.options import LEVEL_OVERHEAD_WINDOWS, MeasurementProfile
from smoke_tests.results import Capacity, LevelResult, Saturation, ServerSide

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass
class Window:
    start_ns: int
    end_ns: int
    latencies_ns: "np.ndarray"  # successful requests that started and ended in the window (perf_analyzer's rule)
    errors: int  # failed requests that ended in the window, whenever they started (a timeout spans windows)
    finished: int  # every request that ended in the window: is anything answering? (error-rate denominator)
    error_samples: Counter = field(default_factory=Counter)
    stats: ModelStats | None = None
    cpu_s: float = 0.0
    host_cpu: float | None = None  # Triton's nv_cpu_utilization at the window's end

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def requests(self) -> int:
        return int(self.latencies_ns.size)

    def throughput(self, batch: int) -> float:
        return self.requests * batch / self.duration_s if self.duration_s > 0 else 0.0

    def latency_us(self, kind: str) -> float:
        import numpy as np

        if self.latencies_ns.size == 0:
            return 0.0
        if kind == "p99":
            return float(percentile(self.latencies_ns, 99)) / 1e3
        return float(np.mean(self.latencies_ns)) / 1e3


def percentile(values: "np.ndarray", pct: float) -> float:
    """Nearest-rank percentile (perf_analyzer's): the value at rank ceil(pct/100 * n)."""
    import numpy as np

    return float(np.percentile(values, pct, method="inverted_cdf"))


def cut_window(pending: Records, start_ns: int, end_ns: int) -> tuple[Window, Records]:
    """Split finished requests into this window's (ended by `end_ns`) and those that ended after it."""
    import numpy as np

    ok_s = np.frombuffer(pending.ok_start, dtype=np.int64)
    ok_e = np.frombuffer(pending.ok_end, dtype=np.int64)
    er_s = np.frombuffer(pending.err_start, dtype=np.int64)
    er_e = np.frombuffer(pending.err_end, dtype=np.int64)
    ok_in = ok_e <= end_ns
    er_in = er_e <= end_ns
    valid = ok_in & (ok_s >= start_ns)
    window = Window(
        start_ns=start_ns,
        end_ns=end_ns,
        latencies_ns=(ok_e[valid] - ok_s[valid]).copy(),
        errors=int(np.count_nonzero(er_in)),
        finished=int(np.count_nonzero(ok_in) + np.count_nonzero(er_in)),
        error_samples=pending.errors,
    )
    from array import array

    carry = Records(
        ok_start=array("q", ok_s[~ok_in].tobytes()),
        ok_end=array("q", ok_e[~ok_in].tobytes()),
        err_start=array("q", er_s[~er_in].tobytes()),
        err_end=array("q", er_e[~er_in].tobytes()),
    )
    return window, carry


def is_stable(windows: list[Window], profile: MeasurementProfile, batch: int) -> bool:
    """perf_analyzer's rule: each of the last N windows within +-threshold of their mean, throughput and latency."""
    n = profile.stability_windows
    if len(windows) < n:
        return False
    last = windows[-n:]
    if any(w.requests == 0 for w in last):
        return False
    for values in ([w.throughput(batch) for w in last], [w.latency_us(profile.stability_latency) for w in last]):
        mean = sum(values) / n
        if mean <= 0:
            return False
        if any(abs(v / mean - 1.0) > profile.stability_threshold for v in values):
            return False
    return True


def server_side(stats: ModelStats | None, duration_s: float, instances: int) -> ServerSide:
    if stats is None:
        return ServerSide(instances=instances)

    def per_request(ns: int, count: int) -> float | None:
        return ns / count / 1e3 if count else None

    count = stats.compute_count
    return ServerSide(
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
        success_count=stats.success_count,
        fail_count=stats.fail_count,
        avg_batch_size=stats.inference_count / stats.execution_count if stats.execution_count else None,
        queue_us=per_request(stats.queue_ns, stats.queue_count),
        compute_input_us=per_request(stats.compute_input_ns, count),
        compute_infer_us=per_request(stats.compute_infer_ns, count),
        compute_output_us=per_request(stats.compute_output_ns, count),
        request_us=per_request(stats.success_ns, stats.success_count),
        utilization=stats.busy_ns / (duration_s * 1e9 * instances) if duration_s > 0 and instances else None,
        instances=instances,
    )


def summarize(concurrency: int, batch: int, windows: list[Window], profile: MeasurementProfile, *,
              stable: bool, instances: int, note: str = "") -> LevelResult:
    """The level's result: the last `stability_windows` windows merged (perf_analyzer's reported figures)."""
    import numpy as np

    last = windows[-profile.stability_windows:]
    lat = np.concatenate([w.latencies_ns for w in last]) if last else np.zeros(0, dtype=np.int64)
    duration = sum(w.duration_s for w in last)
    stats = None
    for w in last:
        if w.stats is not None:
            stats = w.stats if stats is None else stats + w.stats
    if lat.size:
        latency = {f"p{p}": percentile(lat, p) / 1e3 for p in PERCENTILES}
        latency.update(avg=float(lat.mean()) / 1e3, min=float(lat.min()) / 1e3, max=float(lat.max()) / 1e3)
    else:
        latency = {f"p{p}": None for p in PERCENTILES} | {"avg": None, "min": None, "max": None}
    samples: Counter = Counter()
    for w in windows:
        samples.update(w.error_samples)
    requests = int(lat.size)
    total_cpu = sum(w.cpu_s for w in last)
    host = [w.host_cpu for w in last if w.host_cpu is not None]
    server = server_side(stats, duration, instances)
    server.host_cpu = sum(host) / len(host) if host else None
    return LevelResult(
        concurrency=concurrency,
        batch_size=batch,
        stable=stable,
        windows=len(windows),
        duration_s=duration,
        requests=requests,
        errors=sum(w.errors for w in last),
        throughput=requests * batch / duration if duration > 0 else 0.0,
        latency_us=latency,
        server=server,
        client_cpu_cores=total_cpu / duration if duration > 0 else 0.0,
        total_requests=sum(w.finished for w in windows),
        total_errors=sum(w.errors for w in windows),
        error_samples=dict(samples.most_common(5)),
        window_throughputs=[w.throughput(batch) for w in windows],
        window_latencies_us=[w.latency_us(profile.stability_latency) for w in windows],
        note=note,
    )


def measure_level(
    gen: LoadGenerator,
    endpoint: Endpoint,
    model: str,
    version: str,
    concurrency: int,
    *,
    batch: int,
    profile: MeasurementProfile,
    request_timeout: float,
    instances: int,
    metrics_url: str | None = None,
    on_window: Callable[[int, Window], None] | None = None,
) -> LevelResult:
    """Measure one concurrency level. Raises SmokeFatal(UNREACHABLE) when the server stops answering."""
    window_ns = int(profile.window_s * 1e9)
    # A level is abandoned when nothing at all finished for this long: by then even timeouts would have.
    silence_limit_ns = int((request_timeout + profile.window_s) * 1e9)
    gen.start(concurrency)
    grace = request_timeout
    note = ""
    windows: list[Window] = []
    try:
        snap0 = _stats(endpoint, model, version, concurrency)
        t_ws = time.perf_counter_ns()
        carry = Records()
        silent_ns = 0
        dry = _DryStreak()
        while True:
            target = t_ws + window_ns
            while (left := target - time.perf_counter_ns()) > 0:
                time.sleep(min(left / 1e9, 0.5))
            t_we = time.perf_counter_ns()
            snap1 = _stats(endpoint, model, version, concurrency)
            fresh = gen.collect()
            cpu = fresh.cpu_s
            carry.extend(fresh)
            window, carry = cut_window(carry, t_ws, t_we)
            window.stats = snap1 - snap0 if snap0 is not None and snap1 is not None else None
            window.cpu_s = cpu
            window.host_cpu = endpoint.host_cpu(metrics_url)
            windows.append(window)
            if on_window is not None:
                on_window(len(windows), window)

            silent_ns = silent_ns + (t_we - t_ws) if window.finished == 0 else 0
            if silent_ns >= silence_limit_ns:
                grace = 0.0
                raise SmokeFatal(
                    f"model {model}: no request finished for {silent_ns / 1e9:.0f} s at concurrency {concurrency} "
                    f"(request timeout {request_timeout:g} s): the server stopped answering",
                    ExitCode.UNREACHABLE,
                    model=model,
                )
            dry.add(window)
            # Counted from the window in which the streak's first error ended: every request in flight then (and
            # the one sent in its place) ends within a request timeout, so a success was due by now (one window
            # more: a request may start a little after the timeout it replaces).
            if dry.timeouts_only and dry.ns_since_error >= silence_limit_ns + window_ns:
                grace = 0.0
                raise SmokeFatal(
                    f"model {model} stopped answering: every request at concurrency {concurrency} timed out "
                    f"(request timeout {request_timeout:g} s) in {dry.windows} windows in a row",
                    ExitCode.UNREACHABLE,
                    model=model,
                )
            if dry.error_windows >= 2 and not dry.timeouts_only:
                top = dry.error_samples.most_common(1)
                note = f"every request failed in {dry.windows} windows in a row: level abandoned" + (f" ({top[0][0]})" if top else "")
                break
            if is_stable(windows, profile, batch):
                return summarize(concurrency, batch, windows, profile, stable=True, instances=instances)
            # A level in which nothing succeeded yet is not over before its requests could time out (a short
            # profile's level is shorter than a request timeout): the rules above then decide, within a bound.
            undecided = dry.windows == len(windows) and dry.ns < 2 * silence_limit_ns + window_ns
            if len(windows) >= profile.max_windows and not undecided:
                note = f"unstable: the last {profile.stability_windows} of {len(windows)} windows differ by more than {profile.stability_threshold:.0%}"
                break
            t_ws, snap0 = t_we, snap1
        return summarize(concurrency, batch, windows, profile, stable=False, instances=instances, note=note)
    except SmokeFatal:
        grace = 0.0
        raise
    finally:
        gen.stop(grace)


class _DryStreak:
    """The windows in a row in which no request succeeded, and the errors that ended in them.

    Judged over the streak, not window by window: with requests that time out about once per window, a window
    may see none end (the timeout falls just past its end) and the next two; counting windows that each had
    an error let such a dead model run out the level and fail as an SLO miss instead of "stopped answering".
    """

    def __init__(self) -> None:
        self.windows = 0
        self.ns = 0
        self.ns_since_error = 0  # from the start of the first window in which an error ended
        self.error_windows = 0
        self.error_samples: Counter = Counter()

    def add(self, window: Window) -> None:
        if window.finished > window.errors:  # a success ended here (it may have started in an earlier window)
            self.__init__()
            return
        duration = window.end_ns - window.start_ns
        self.windows += 1
        self.ns += duration
        # error_samples also names errors collected after the window's end (counted in the next window).
        if window.errors or window.error_samples or self.error_samples:
            self.ns_since_error += duration
        if window.errors:
            self.error_windows += 1
        self.error_samples.update(window.error_samples)

    @property
    def timeouts_only(self) -> bool:
        """Errors ended in the streak, and each was a timeout."""
        return bool(self.error_samples) and all(_is_timeout(k) for k in self.error_samples)


def _is_timeout(error: str) -> bool:
    return error.startswith(("DEADLINE_EXCEEDED", "timeout", "TimeoutError"))


def _stats(endpoint: Endpoint, model: str, version: str, concurrency: int) -> ModelStats:
    """Triton's statistics now; a server that does not answer this (nor a liveness probe) has stopped answering."""
    try:
        return endpoint.statistics(model, version)
    except EndpointError as exc:
        if exc.code != ExitCode.UNREACHABLE:
            raise SmokeFatal(f"model {model}: {exc}", exc.code or ExitCode.NOT_READY, model=model) from None
        first = str(exc)
    try:
        endpoint.server_live()
    except EndpointError:
        raise SmokeFatal(
            f"the server stopped answering while measuring model {model} at concurrency {concurrency}: {first}",
            ExitCode.UNREACHABLE,
            model=model,
        ) from None
    try:
        return endpoint.statistics(model, version)
    except EndpointError as exc:
        raise SmokeFatal(
            f"the server stopped answering while measuring model {model} at concurrency {concurrency}: {exc}",
            ExitCode.UNREACHABLE,
            model=model,
        ) from None


# --------------------------------------------------------------------------------------------- saturation

UTILIZATION_SATURATED = 0.90
BATCH_FULL = 0.90
HOST_CPU_SATURATED = 0.90
PLATEAU_GAIN = 0.10
QUEUE_GROWTH = 1.5


def saturation(levels: list[LevelResult], *, max_batch_size: int | None, processes: int, cpus: int) -> Saturation:
    """Did the sweep drive the model to capacity? The first level where one of these holds:

    1. utilization: the model's instances were busy >= 90 % of the window (Triton's compute time of all
       executions / (window x instance count));
    2. batch_full: with batching, the average batch size reached >= 90 % of max_batch_size;
    3. host_cpu: (with a metrics URL) the server host's CPU was >= 90 % busy (Triton's nv_cpu_utilization;
       on a CPU-only host Triton's own request handling costs CPU the instances' compute time omits;
       when the client shares the host, its share is in this figure too);
    4. plateau: concurrency went up but throughput grew < 10 % while the server queue time per request
       grew >= 1.5x: requests wait for a busy instance instead of being served.

    Otherwise not saturated; then `load_generator_bound` tells whether the client processes used
    >= 90 % of the CPU they could get (min(processes, CPUs) cores), i.e. the client was the limit.
    """
    ordered = sorted((lv for lv in levels if lv.requests > 0), key=lambda lv: lv.concurrency)
    prev = None
    for lv in ordered:
        s = lv.server
        if s.utilization is not None and s.utilization >= UTILIZATION_SATURATED:
            return Saturation(True, lv.concurrency, "utilization",
                              f"instances busy {s.utilization:.0%} of the time at concurrency {lv.concurrency}")
        if max_batch_size and max_batch_size > 1 and s.avg_batch_size is not None and s.avg_batch_size >= BATCH_FULL * max_batch_size:
            return Saturation(True, lv.concurrency, "batch_full",
                              f"average batch {s.avg_batch_size:.1f} of max {max_batch_size} at concurrency {lv.concurrency}")
        if s.host_cpu is not None and s.host_cpu >= HOST_CPU_SATURATED:
            return Saturation(True, lv.concurrency, "host_cpu",
                              f"server host CPU {s.host_cpu:.0%} busy at concurrency {lv.concurrency} "
                              f"(load generator {lv.client_cpu_cores:.2f} cores of it if on the same host)")
        if prev is not None and lv.concurrency > prev.concurrency and prev.throughput > 0:
            gain = lv.throughput / prev.throughput - 1.0
            q0, q1 = prev.server.queue_us, s.queue_us
            if gain < PLATEAU_GAIN and q0 is not None and q1 is not None and q1 >= QUEUE_GROWTH * max(q0, 1.0):
                return Saturation(True, lv.concurrency, "plateau",
                                  f"throughput +{gain:.0%} from concurrency {prev.concurrency} to {lv.concurrency} while "
                                  f"queue time went {q0:.0f} -> {q1:.0f} us")
        prev = lv
    if not ordered:
        return Saturation(False, None, "", "no successful requests measured")
    top = max(ordered, key=lambda lv: lv.client_cpu_cores)
    cap = min(processes, cpus)
    bound = top.client_cpu_cores >= 0.9 * cap
    util = max((lv.server.utilization or 0.0) for lv in ordered)
    if bound:
        detail = (f"not saturated (max utilization {util:.0%}); the load generator used {top.client_cpu_cores:.2f} of "
                  f"{cap} cores at concurrency {top.concurrency}: it was the limit")
    else:
        detail = (f"not saturated (max utilization {util:.0%} up to concurrency {ordered[-1].concurrency}); "
                  "raise --max-concurrency to find the capacity")
    return Saturation(False, None, "", detail, load_generator_bound=bound)


# --------------------------------------------------------------------------------------------- capacity

LINEAR_SCALING = 0.75  # a step whose throughput grew >= 75 % of the concurrency ratio scales about linearly
BUSY_FOR_PLATEAU = 0.80  # a level that did not beat the best ends the search when the instances were this busy


def _stalled(levels: list[LevelResult], max_error_rate: float) -> bool:
    """Whether the last of `levels` did not beat the best level before it by PLATEAU_GAIN."""
    earlier = [lv for lv in levels[:-1] if not _failing(lv, max_error_rate)]
    best = max(earlier, key=lambda lv: lv.throughput, default=None)
    return best is not None and levels[-1].throughput < best.throughput * (1.0 + PLATEAU_GAIN)


def _over_limit(lv: LevelResult, p99_limit_ms: float | None) -> bool:
    return p99_limit_ms is not None and lv.p99_ms is not None and lv.p99_ms > p99_limit_ms


def _failing(lv: LevelResult, max_error_rate: float) -> bool:
    return lv.requests == 0 or lv.error_rate > max_error_rate


def next_concurrency(levels: list[LevelResult], profile: MeasurementProfile, *, p99_limit_ms: float | None = None,
                     max_error_rate: float = 0.0, elapsed_s: float = 0.0) -> tuple[int | None, str]:
    """The capacity search's next concurrency after `levels` (measured in order), or (None, why it stops).

    From 1: the first step doubles; a step whose throughput grew about linearly (>= 75 % of the concurrency
    ratio) is followed by x4, any other by x2 (the knee is near, so finer steps). It stops when the last level
    did not beat the best before it by 10 % while the instances were >= 80 % busy, or twice in a row
    ("plateau"), passed the p99 limit ("p99_limit"), had errors above
    `max_error_rate` ("errors"), reached `max_concurrency`, or when another level (as long as the longest so
    far) would pass `time_budget_s` ("time_budget").
    """
    if not levels:
        return 1, ""
    last = levels[-1]
    if _failing(last, max_error_rate):
        return None, "errors"
    if _over_limit(last, p99_limit_ms):
        return None, "p99_limit"
    if _stalled(levels, max_error_rate):
        # A dip while the instances idle is noise (another process took the CPU), not the capacity: the search
        # goes on unless the one before stalled too.
        s = last.server
        busy = s.utilization is None or s.utilization >= BUSY_FOR_PLATEAU or (s.host_cpu or 0.0) >= HOST_CPU_SATURATED
        if busy or _stalled(levels[:-1], max_error_rate):
            return None, "plateau"
    if last.concurrency >= profile.max_concurrency:
        return None, "max_concurrency"
    factor = 2
    if len(levels) >= 2:
        prev = levels[-2]
        ratio = last.concurrency / prev.concurrency if prev.concurrency else 0.0
        if prev.throughput > 0 and ratio > 1 and last.throughput / prev.throughput >= LINEAR_SCALING * ratio:
            factor = 4
    if profile.time_budget_s is not None:
        longest = max(lv.duration_s for lv in levels)
        # A level's wall time: its windows plus about a window of start, stop and statistics calls.
        per_level = (max(longest * profile.max_windows / max(1, profile.stability_windows), profile.window_s)
                     + LEVEL_OVERHEAD_WINDOWS * profile.window_s)
        if elapsed_s + per_level > profile.time_budget_s:
            return None, "time_budget"
    return min(last.concurrency * factor, profile.max_concurrency), ""


_STOPS = {
    "max_concurrency": "the sweep reached its highest concurrency (raise --max-concurrency)",
    "time_budget": "the search's time budget ran out",
    "levels": "the sweep ended",
}


def capacity(levels: list[LevelResult], *, p99_limit_ms: float | None = None, max_error_rate: float = 0.0,
             stop: str = "") -> Capacity:
    """The highest throughput of a level with no errors (above `max_error_rate`) and p99 within the limit
    (`stable` says whether that level was); `found` when a higher concurrency was measured and did not beat it by 10 %, passed
    the p99 limit or failed requests, or when it barely beat a lower one (the plateau). `stop`: why the sweep ended (the search's reason), for the detail."""
    ordered = sorted(levels, key=lambda lv: lv.concurrency)
    ok = [lv for lv in ordered if not _failing(lv, max_error_rate) and not _over_limit(lv, p99_limit_ms)]
    if not ok:
        why = "every level had errors or passed the p99 limit" if ordered else "nothing was measured"
        return Capacity(stop=stop or ("errors" if ordered else ""), detail=f"no capacity: {why}")
    # Unstable levels count too: their figure merges the last windows, and with the quick profile's 4 windows on
    # a busy host most levels near the capacity are unstable (stable-only picked a third of it in `make demo`).
    best = max(ok, key=lambda lv: lv.throughput)
    above = [lv for lv in ordered if lv.concurrency > best.concurrency]
    found, reason = False, ""
    below = max((lv for lv in ok if lv.concurrency < best.concurrency), key=lambda lv: lv.throughput, default=None)
    if below is not None and best.throughput < below.throughput * (1.0 + PLATEAU_GAIN):
        # Still the highest, but the plateau: it barely beat a lower concurrency.
        found, reason = True, f"throughput grew < {PLATEAU_GAIN:.0%} from concurrency {below.concurrency} to {best.concurrency}"
        stop = stop or "plateau"
    for lv in above if not found else ():
        if _failing(lv, max_error_rate):
            found, reason, stop = True, f"requests failed at concurrency {lv.concurrency}", stop or "errors"
        elif _over_limit(lv, p99_limit_ms):
            found, reason = True, f"p99 {lv.p99_ms:.1f} ms passed the limit {p99_limit_ms:g} ms at concurrency {lv.concurrency}"
            stop = stop or "p99_limit"
        elif lv.throughput < best.throughput * (1.0 + PLATEAU_GAIN):
            found, reason = True, f"throughput grew < {PLATEAU_GAIN:.0%} up to concurrency {lv.concurrency}"
            stop = stop or "plateau"
        if found:
            break
    p99 = f", p99 {best.p99_ms:.1f} ms" if best.p99_ms is not None else ""
    head = f"{best.throughput:,.1f} inf/s at concurrency {best.concurrency}{p99}"
    if not best.stable:
        head += " (unstable: its windows differed by more than the threshold)"
    if found:
        detail = f"capacity {head}: {reason}"
    else:
        stop = stop or "levels"
        detail = f"capacity at least {head}: throughput still grew when {_STOPS.get(stop, 'the sweep ended')}"
    return Capacity(throughput=best.throughput, concurrency=best.concurrency, p99_ms=best.p99_ms, stable=best.stable,
                    found=found, stop=stop, detail=detail)
