"""SLO evaluation: one `Violation` (one line naming the model and the figure) per missed objective."""

from __future__ import annotations

from smoke_tests.errors import ExitCode
from smoke_tests.options import SLO
from smoke_tests.results import ModelReport, Violation

# Applied when neither the stack nor a flag sets an error rate: a smoke load must not see failed requests.
DEFAULT_MAX_ERROR_RATE = 0.0


def _v(model: str, metric: str, message: str, measured=None, limit=None, concurrency=None) -> Violation:
    return Violation(model, "slo", metric, message, ExitCode.SLO_VIOLATION, measured, limit, concurrency)


def evaluate(model: ModelReport, slo: SLO, *, fail_on_unstable: bool) -> list[Violation]:
    """Violations of `slo` by the sweep of `model` (which must contain the SLO's concurrencies)."""
    name = model.name
    out: list[Violation] = []
    if not model.sweep:
        return out

    if slo.min_throughput is not None:
        if slo.throughput_concurrency is not None:
            lv = model.level(slo.throughput_concurrency)
            if lv is None:
                out.append(_v(name, "min_throughput", f"{name}: throughput at concurrency {slo.throughput_concurrency} "
                              f"was not measured ({model.sweep_note or 'sweep ended early'})",
                              None, slo.min_throughput, slo.throughput_concurrency))
            elif lv.throughput < slo.min_throughput:
                out.append(_v(name, "min_throughput",
                              f"{name}: throughput {lv.throughput:.1f} inf/s at concurrency {lv.concurrency} is below "
                              f"the minimum {slo.min_throughput:g} inf/s", lv.throughput, slo.min_throughput, lv.concurrency))
        else:
            peak = model.peak
            if peak.throughput < slo.min_throughput:
                out.append(_v(name, "min_throughput",
                              f"{name}: peak throughput {peak.throughput:.1f} inf/s (at concurrency {peak.concurrency}) is "
                              f"below the minimum {slo.min_throughput:g} inf/s", peak.throughput, slo.min_throughput,
                              peak.concurrency))

    if slo.max_p99_ms is not None:
        at = slo.p99_at
        levels = [model.level(at)] if at is not None else list(model.sweep)
        if at is not None and levels[0] is None:
            out.append(_v(name, "max_p99_ms", f"{name}: p99 latency at concurrency {at} was not measured "
                          f"({model.sweep_note or 'sweep ended early'})", None, slo.max_p99_ms, at))
        for lv in levels:
            if lv is None:
                continue
            if lv.p99_ms is None:
                out.append(_v(name, "max_p99_ms", f"{name}: no successful request at concurrency {lv.concurrency}, "
                              f"so no p99 latency (limit {slo.max_p99_ms:g} ms)", None, slo.max_p99_ms, lv.concurrency))
            elif lv.p99_ms > slo.max_p99_ms:
                out.append(_v(name, "max_p99_ms",
                              f"{name}: p99 latency {lv.p99_ms:.2f} ms at concurrency {lv.concurrency} exceeds the maximum "
                              f"{slo.max_p99_ms:g} ms", lv.p99_ms, slo.max_p99_ms, lv.concurrency))

    for lv in model.sweep:
        if lv.requests == 0:
            sample = next(iter(lv.error_samples), "")
            out.append(_v(name, "no_success", f"{name}: no successful request at concurrency {lv.concurrency} in "
                          f"{lv.windows} windows" + (f"; e.g. {sample}" if sample else ""), 0.0, None, lv.concurrency))

    limit = slo.max_error_rate if slo.max_error_rate is not None else DEFAULT_MAX_ERROR_RATE
    total = sum(lv.total_requests for lv in model.sweep)
    errors = sum(lv.total_errors for lv in model.sweep)
    rate = errors / total if total else 0.0
    if rate > limit:
        worst = max(model.sweep, key=lambda lv: lv.total_errors)
        sample = next(iter(worst.error_samples), "")
        out.append(_v(name, "max_error_rate",
                      f"{name}: error rate {rate:.2%} ({errors} of {total} requests) exceeds the maximum {limit:.2%}"
                      + (f"; e.g. {sample}" if sample else ""), rate, limit, None))

    if fail_on_unstable:
        for lv in model.sweep:
            if not lv.stable:
                out.append(_v(name, "stability",
                              f"{name}: measurement at concurrency {lv.concurrency} did not stabilise in {lv.windows} windows "
                              f"(throughput per window: {', '.join(f'{t:.0f}' for t in lv.window_throughputs)} inf/s)",
                              None, None, lv.concurrency))
    return out
