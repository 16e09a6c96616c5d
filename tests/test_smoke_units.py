"""The smoke gate's parts that need no server: flags, SLOs, stability, window cutting, saturation, report files.

The server-facing behaviour (readiness, correctness, sweeps, failures) is in test_smoke_servers.py.
"""

from __future__ import annotations

import csv
import json
import socket
import xml.etree.ElementTree as ET
from array import array
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from smoke_tests.errors import ExitCode, GateError, worst
from smoke_tests.loadgen import Records
from smoke_tests.measure import Window, capacity, cut_window, is_stable, next_concurrency, percentile, saturation
from smoke_tests.options import PROFILES, SLO, MeasurementProfile, ModelTarget, SmokeOptions, parse_slo_flags, resolve_slos
from smoke_tests.report import CSV_COLUMNS, PERF_ANALYZER_COLUMNS, SmokeReport
from smoke_tests.results import Correctness, LevelResult, ModelReport, RunInfo, ServerSide
from smoke_tests.slo import evaluate

SCHEMA = Path(__file__).resolve().parent.parent / "smoke_tests" / "report.schema.json"


# --------------------------------------------------------------------------------------------- flags and SLOs


def test_slo_flags_parse_per_model_and_for_all():
    slos = parse_slo_flags(["text_encoder=200@4", "50"], ["text_encoder=25.5", "image_classifier=10@2"], ["0.01"])
    assert slos["text_encoder"] == SLO(min_throughput=200, throughput_concurrency=4, max_p99_ms=25.5)
    assert slos["image_classifier"] == SLO(max_p99_ms=10, p99_concurrency=2)
    assert slos["*"] == SLO(min_throughput=50, max_error_rate=0.01)
    resolved = resolve_slos(["text_encoder", "image_classifier"], {}, slos)
    # The model's own flags win; the all-model flags fill the rest.
    assert resolved["text_encoder"].min_throughput == 200 and resolved["text_encoder"].max_error_rate == 0.01
    assert resolved["image_classifier"].min_throughput == 50 and resolved["image_classifier"].p99_at == 2
    # p99 without its own concurrency is checked where the throughput is.
    assert resolved["text_encoder"].p99_at == 4


@pytest.mark.parametrize(
    "flags",
    [
        {"min_throughput": ["text_encoder=fast"]},
        {"min_throughput": ["m=10@0"]},
        {"min_throughput": ["m=0"]},
        {"max_p99_ms": ["m=-3"]},
        {"max_error_rate": ["m=1.5"]},
        {"max_error_rate": ["m=0.1@4"]},
    ],
)
def test_bad_slo_flags_are_bad_input(flags):
    with pytest.raises(GateError) as info:
        parse_slo_flags(**flags)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "--" in str(info.value)  # names the flag


def test_stack_slos_override_field_by_field():
    base = {"*": SLO(min_throughput=20, max_p99_ms=500, max_error_rate=0.0)}
    flags = parse_slo_flags(["m=100@8"], [], [])
    slo = resolve_slos(["m"], base, flags)["m"]
    assert slo == SLO(min_throughput=100, throughput_concurrency=8, max_p99_ms=500, max_error_rate=0.0)


def test_stack_schema_converts_to_the_gate_spec():
    from hybridserve.smokegate import gate_spec, gate_spec_json
    from hybridserve.stackconfig.schema.serving import ModelSpec, ServingConfig, SloOverride
    from smoke_tests.gatespec import parse_gate_spec, read_gate_spec

    serving = ServingConfig(
        models=[ModelSpec(name="text_encoder", versions=[1, 2]), ModelSpec(name="image_classifier")],
        model_slos={"text_encoder": SloOverride(min_throughput=150, throughput_concurrency=4)},
    )
    spec = gate_spec(serving)
    assert spec["models"] == ["text_encoder:1", "text_encoder:2", "image_classifier"]
    assert spec["wait_ready_s"] == serving.slo.wait_ready_seconds and sorted(spec["slos"]) == ["*", "text_encoder"]
    # What the gate makes of it (the JSON on a Job's command line): the same objectives.
    cfg = read_gate_spec(gate_spec_json(serving))
    assert cfg == parse_gate_spec(spec)
    assert cfg.models == [ModelTarget("text_encoder", "1"), ModelTarget("text_encoder", "2"), ModelTarget("image_classifier")]
    assert cfg.slos["text_encoder"].min_throughput == 150 and cfg.slos["text_encoder"].throughput_concurrency == 4
    assert cfg.slos["text_encoder"].max_p99_ms == serving.slo.max_p99_ms  # the stack-wide value stays
    assert cfg.slos["*"] == SLO(min_throughput=serving.slo.min_throughput, max_p99_ms=serving.slo.max_p99_ms,
                                max_error_rate=serving.slo.max_error_rate)
    assert cfg.wait_ready_s == serving.slo.wait_ready_seconds
    # Empty serving.models: every model of the repository.
    assert gate_spec(ServingConfig())["models"] is None and read_gate_spec(gate_spec_json(ServingConfig())).models is None


def test_every_example_stack_gives_a_valid_deterministic_gate_spec():
    from hybridserve.paths import stacks_dir
    from hybridserve.smokegate import gate_spec, gate_spec_json
    from hybridserve.stackconfig.loader import load_stack, stack_files
    from smoke_tests.gatespec import SLO_FIELDS, read_gate_spec

    names = list(stack_files(stacks_dir()))
    assert names
    for name in names:
        serving = load_stack(name).serving
        text = gate_spec_json(serving)
        assert text == gate_spec_json(load_stack(name).serving) == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        assert all(sorted(slo) == sorted(SLO_FIELDS) for slo in gate_spec(serving)["slos"].values())
        read_gate_spec(text)  # the gate accepts what the kit writes


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ('{"model": ["m"]}', "unknown key 'model'; valid keys: models, slos, wait_ready_s"),
        ('{"slos": {"*": {"min_troughput": 5}}}', "unknown key 'min_troughput' in slos.*"),
        ('{"slos": {"m": {"min_throughput": -5}}}', "slos.m.min_throughput = -5: expected a number above 0"),
        ('{"slos": {"m": {"max_p99_ms": 0}}}', "slos.m.max_p99_ms = 0: expected a number above 0"),
        ('{"slos": {"m": {"max_error_rate": 1.5}}}', "slos.m.max_error_rate = 1.5: expected a fraction from 0 to 1"),
        ('{"slos": {"m": {"p99_concurrency": 0}}}', "slos.m.p99_concurrency = 0: expected an integer concurrency"),
        ('{"slos": {"m": {"throughput_concurrency": "4"}}}', 'slos.m.throughput_concurrency = "4": expected an integer'),
        ('{"slos": {"m": {"min_throughput": true}}}', "slos.m.min_throughput = true"),
        ('{"slos": {"m": 5}}', "slos.m: expected an object"),
        ('{"slos": ["m"]}', "slos: expected an object"),
        ('{"models": "m"}', "models: expected a non-empty list"),
        ('{"models": []}', "models: expected a non-empty list"),
        ('{"models": ["m:x"]}', 'models[0] = "m:x": expected NAME or NAME:VERSION'),
        ('{"wait_ready_s": -1}', "wait_ready_s = -1: expected seconds"),
        ('{"wait_ready_s": "600"}', 'wait_ready_s = "600"'),
        ("[]", "expected a JSON object"),
        ("{models: 1}", "not valid JSON"),
    ],
)
def test_bad_gate_specs_name_the_flag_and_the_key(spec, needle):
    from smoke_tests.gatespec import read_gate_spec

    with pytest.raises(GateError) as info:
        read_gate_spec(spec)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert str(info.value).startswith("--slos: ") and needle in str(info.value)


def test_gate_spec_from_a_file(tmp_path):
    from smoke_tests.gatespec import read_gate_spec

    path = tmp_path / "slos.json"
    path.write_text('{"models": ["m:2"], "slos": {"*": {"max_p99_ms": 50}}, "wait_ready_s": 30}')
    spec = read_gate_spec(f"@{path}")
    assert spec.models == [ModelTarget("m", "2")] and spec.slos == {"*": SLO(max_p99_ms=50.0)} and spec.wait_ready_s == 30
    path.write_text('{"slos": {"*": {"max_p99_ms": 50, "min_throughput": 9}, "m": {"max_p99_ms": 20, "min_throughput": null}}}')
    assert read_gate_spec(f"@{path}").slos["m"] == SLO(max_p99_ms=20.0)  # null: not checked, even if "*" checks it
    path.write_text('{"slos": {"*": {"max_p99_ms": -1}}}')
    with pytest.raises(GateError, match=rf"^--slos @{path}: slos.\*.max_p99_ms = -1"):
        read_gate_spec(f"@{path}")
    for missing, needle in ((tmp_path / "nope.json", "no such file"), (tmp_path, "is a directory")):
        with pytest.raises(GateError, match=needle) as info:
            read_gate_spec(f"@{missing}")
        assert info.value.exit_code == 2


def test_profile_levels_double_up_to_the_cap_and_include_slo_concurrencies():
    assert PROFILES["default"].levels() == [1, 2, 4, 8, 16]
    assert MeasurementProfile(max_concurrency=8).levels({3, 32}) == [1, 2, 3, 4, 8, 32]
    assert MeasurementProfile(concurrencies=(1, 6)).levels() == [1, 6]
    assert PROFILES["default"].window_s == 5.0 and PROFILES["default"].stability_threshold == 0.10
    with pytest.raises(GateError):
        MeasurementProfile(max_windows=2, stability_windows=3).validate()


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("127.0.0.1:8001", None, ("grpc", "127.0.0.1:8001", False)),
        ("http://triton.internal:8000/", None, ("http", "triton.internal:8000", False)),
        ("grpcs://triton.example.com:443", None, ("grpc", "triton.example.com:443", True)),
        ("localhost:8000", "http", ("http", "localhost:8000", False)),
    ],
)
def test_endpoint_urls(url, protocol, expected):
    assert SmokeOptions(url=url, protocol=protocol).endpoint() == expected


@pytest.mark.parametrize("url", ["ftp://host:1", "host", "http://host:8000/v2", "grpc://host:port"])
def test_bad_endpoint_urls_are_bad_input(url):
    with pytest.raises(GateError) as info:
        SmokeOptions(url=url).endpoint()
    assert info.value.exit_code == ExitCode.BAD_INPUT


def test_exit_code_of_several_failures_is_the_most_fundamental():
    assert worst([]) == ExitCode.PASSED
    assert worst([ExitCode.SLO_VIOLATION, ExitCode.CORRECTNESS]) == ExitCode.CORRECTNESS
    assert worst([ExitCode.CORRECTNESS, ExitCode.INTERFACE, ExitCode.NOT_READY]) == ExitCode.NOT_READY
    assert worst([ExitCode.NOT_READY, ExitCode.UNREACHABLE]) == ExitCode.UNREACHABLE


# --------------------------------------------------------------------------------------------- windows


def _records(ok: list[tuple[int, int]], err: list[tuple[int, int]] = ()) -> Records:
    r = Records()
    for s, e in ok:
        r.ok_start.append(s)
        r.ok_end.append(e)
    for s, e in err:
        r.err_start.append(s)
        r.err_end.append(e)
    return r


def test_a_window_counts_requests_that_started_and_ended_inside_it():
    recs = _records(
        ok=[(100, 150), (90, 120), (180, 260), (110, 130)],  # inside, straddles start, ends after, inside
        err=[(120, 170), (150, 250)],
    )
    window, carry = cut_window(recs, 100, 200)
    assert sorted(window.latencies_ns.tolist()) == [20, 50]
    assert window.errors == 1
    assert window.finished == 4  # also the straddling one: something answered
    assert list(carry.ok_start) == [180] and list(carry.err_end) == [250]
    nxt, carry = cut_window(carry, 200, 300)
    assert nxt.requests == 0  # started before 200: perf_analyzer drops it from throughput and latency
    assert nxt.errors == 1 and nxt.finished == 2  # a failure counts where it ended (timeouts span windows)
    assert len(carry) == 0


def _window(requests: int, latency_ns: int, seconds: float = 1.0) -> Window:
    return Window(0, int(seconds * 1e9), np.full(requests, latency_ns, dtype=np.int64), 0, requests)


def test_stability_needs_the_last_three_windows_within_ten_percent():
    profile = MeasurementProfile(window_s=1.0)
    steady = [_window(1000, 2_000_000), _window(1040, 2_050_000), _window(980, 1_950_000)]
    assert is_stable(steady, profile, batch=1)
    assert not is_stable(steady[:2], profile, batch=1)
    assert not is_stable([_window(1000, 2_000_000), _window(1300, 2_000_000), _window(1000, 2_000_000)], profile, 1)
    # Throughput agrees, latency does not.
    assert not is_stable([_window(1000, 2_000_000), _window(1000, 2_600_000), _window(1000, 2_000_000)], profile, 1)
    # An earlier outlier does not matter: only the last three count.
    assert is_stable([_window(10, 90_000_000)] + steady, profile, batch=1)
    assert not is_stable([_window(0, 1), _window(0, 1), _window(0, 1)], profile, 1)


class _Clock:
    """measure_level's clock: sleeping moves it, so a level's windows are exact and the test takes no time."""

    def __init__(self) -> None:
        self.now = 0

    def perf_counter_ns(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


class _ScriptedRequests:
    """A load generator whose requests end at scripted times: (end_s, error message or None, latency_s)."""

    def __init__(self, clock: _Clock, script: list[tuple[float, str | None, float]]) -> None:
        self.clock, self.script = clock, sorted(script)

    def start(self, concurrency: int) -> None:
        pass

    def collect(self) -> Records:
        out = Records()
        while self.script and self.script[0][0] * 1e9 <= self.clock.now:
            end_s, error, latency_s = self.script.pop(0)
            start, end = int((end_s - latency_s) * 1e9), int(end_s * 1e9)
            if error is None:
                out.ok_start.append(start)
                out.ok_end.append(end)
            else:
                out.err_start.append(start)
                out.err_end.append(end)
                out.errors[error] += 1
        return out

    def stop(self, grace: float) -> None:
        pass


class _NoStats:
    def statistics(self, model, version):
        return None

    def host_cpu(self, url):
        return None


def _measure(monkeypatch, script, *, window_s=0.5, max_windows=8, request_timeout=0.5):
    from smoke_tests import measure

    clock = _Clock()
    monkeypatch.setattr(measure, "time", clock)
    profile = replace(PROFILES["quick"], window_s=window_s, max_windows=max_windows)
    return measure.measure_level(_ScriptedRequests(clock, script), _NoStats(), "m", "1", 1, batch=1, profile=profile,
                                 request_timeout=request_timeout, instances=1)


def test_a_model_whose_requests_all_time_out_stopped_answering_even_when_windows_alternate(monkeypatch):
    """One timeout per second with 0.5 s windows: windows with a timeout and windows with none alternate. The
    streak without a success decides (CI once saw this run out the level and fail as an SLO miss, exit 1)."""
    from smoke_tests.errors import SmokeFatal

    timeouts = [(0.4 + k, "DEADLINE_EXCEEDED: Deadline Exceeded", 0.5) for k in range(8)]
    with pytest.raises(SmokeFatal) as info:
        _measure(monkeypatch, timeouts)
    assert info.value.exit_code == ExitCode.UNREACHABLE
    # The first timeout ended in window 1: judged after a request timeout plus two windows from its start.
    assert "every request at concurrency 1 timed out (request timeout 0.5 s) in 3 windows in a row" in str(info.value)


def test_a_level_shorter_than_the_request_timeout_waits_for_the_timeouts_of_a_dead_model(monkeypatch):
    """The quick profile's level (4 windows of 2 s) is shorter than a 10 s request timeout: a model that answers
    nothing is still judged "stopped answering" (exit 3), not measured as a level without requests (exit 1)."""
    from smoke_tests.errors import SmokeFatal

    timeouts = [(10.0 * k, "DEADLINE_EXCEEDED: Deadline Exceeded", 10.0) for k in range(1, 6)]
    with pytest.raises(SmokeFatal) as info:
        _measure(monkeypatch, timeouts, window_s=2.0, max_windows=4, request_timeout=10.0)
    assert info.value.exit_code == ExitCode.UNREACHABLE and "timed out (request timeout 10 s)" in str(info.value)


def test_a_slow_model_with_one_timeout_is_measured_not_declared_dead(monkeypatch):
    """Requests of 1.2 s (longer than a 0.5 s window) at concurrency 1, one of which times out at 1.5 s: the next
    success comes 1.2 s after that timeout. A review found the streak rule declaring this model dead just before."""
    script, t = [], 0.0
    for k in range(12):
        if k == 3:
            t += 1.5
            script.append((t, "DEADLINE_EXCEEDED: Deadline Exceeded", 1.5))
        else:
            t += 1.2
            script.append((t, None, 1.2))
    level = _measure(monkeypatch, script, max_windows=24, request_timeout=1.5)
    assert level.total_errors == 1


def test_timeouts_beside_successes_and_requests_longer_than_a_window_are_measured_not_fatal(monkeypatch):
    # Requests of 0.8 s end in every other 0.5 s window (none starts and ends inside one); one of them times out.
    slow = [(0.8 * k, None, 0.8) for k in range(1, 8)]
    slow[2] = (slow[2][0], "DEADLINE_EXCEEDED: Deadline Exceeded", 0.9)
    level = _measure(monkeypatch, slow, max_windows=8, request_timeout=0.9)
    assert level.total_errors == 1


def test_a_model_that_fails_every_request_abandons_the_level(monkeypatch):
    failures = [(0.1 * k, "INVALID_ARG: bad input", 0.01) for k in range(1, 80)]
    level = _measure(monkeypatch, failures)
    assert "every request failed in 2 windows in a row: level abandoned (INVALID_ARG: bad input)" in level.note


def test_percentiles_are_nearest_rank():
    values = np.arange(1, 101, dtype=np.int64)
    assert percentile(values, 99) == 99 and percentile(values, 50) == 50
    assert percentile(np.array([5, 1, 3]), 99) == 5


# --------------------------------------------------------------------------------------------- saturation, SLOs


def _level(c: int, tp: float, *, util=0.3, batch=1.0, queue=100.0, p99_ms=5.0, cpu=0.2, errors=0, stable=True) -> LevelResult:
    server = ServerSide(avg_batch_size=batch, queue_us=queue, utilization=util, instances=1)
    lat = {"p50": p99_ms * 500, "p90": p99_ms * 800, "p95": p99_ms * 900, "p99": p99_ms * 1000, "avg": p99_ms * 600,
           "min": 100.0, "max": p99_ms * 1200}
    return LevelResult(c, 1, stable, 3, 3.0, int(tp * 3), errors, tp, lat, server, cpu,
                       total_requests=int(tp * 3) + errors, total_errors=errors, window_throughputs=[tp, tp, tp])


def test_saturation_rules():
    by_util = saturation([_level(1, 100, util=0.5), _level(2, 180, util=0.95)], max_batch_size=0, processes=2, cpus=2)
    assert (by_util.saturated, by_util.concurrency, by_util.rule) == (True, 2, "utilization")
    by_batch = saturation([_level(1, 100), _level(8, 500, batch=7.5)], max_batch_size=8, processes=2, cpus=2)
    assert (by_batch.saturated, by_batch.rule) == (True, "batch_full")
    plateau = saturation([_level(4, 1000, queue=200), _level(8, 1050, queue=900)], max_batch_size=0, processes=2, cpus=2)
    assert (plateau.saturated, plateau.concurrency, plateau.rule) == (True, 8, "plateau")
    # Flat throughput without growing queues is not saturation of the server.
    flat = saturation([_level(4, 1000, queue=200), _level(8, 1050, queue=210)], max_batch_size=0, processes=2, cpus=2)
    assert not flat.saturated and not flat.load_generator_bound
    host = [_level(1, 100), _level(2, 180)]
    host[1].server.host_cpu = 0.97
    by_host = saturation(host, max_batch_size=0, processes=2, cpus=2)
    assert (by_host.saturated, by_host.concurrency, by_host.rule) == (True, 2, "host_cpu")
    client_bound = saturation([_level(1, 100, cpu=1.9), _level(2, 110, cpu=1.95)], max_batch_size=0, processes=2, cpus=2)
    assert not client_bound.saturated and client_bound.load_generator_bound


# --------------------------------------------------------------------------------------------- capacity


def _search(throughput_at, profile, *, p99_at=lambda c: 5.0, errors_at=lambda c: 0, util_at=lambda c: 0.95, level_s=3.0,
            p99_limit=None):
    """Run the capacity search against a synthetic server: throughput_at(c) inf/s, p99_at(c) ms, errors_at(c),
    instances busy util_at(c)."""
    levels, elapsed = [], 0.0
    while True:
        c, stop = next_concurrency(levels, profile, p99_limit_ms=p99_limit, elapsed_s=elapsed)
        if c is None:
            return levels, stop
        lv = _level(c, throughput_at(c), p99_ms=p99_at(c), errors=errors_at(c), util=util_at(c))
        lv.duration_s = level_s
        levels.append(lv)
        elapsed += level_s + 1.0


def test_capacity_search_stops_where_throughput_stops_growing():
    # A server whose throughput grows linearly to 1,000 inf/s at concurrency 16, then stays there.
    profile = replace(PROFILES["quick"], time_budget_s=None)
    levels, stop = _search(lambda c: min(c, 16) * 62.5, profile)
    # x2 first, x4 while scaling linearly (2 -> 8), x2 after a sub-linear step (8 -> 32 -> 64); no gain at 64 ends it.
    assert [lv.concurrency for lv in levels] == [1, 2, 8, 32, 64] and stop == "plateau"
    cap = capacity(levels, stop=stop)
    assert (cap.throughput, cap.concurrency, cap.found, cap.stop) == (1000.0, 32, True, "plateau")
    assert "capacity 1,000.0 inf/s at concurrency 32" in cap.detail and "grew < 10%" in cap.detail
    assert cap.describe() == "1,000 @ c=32"


def test_capacity_search_steps_by_two_near_the_knee_and_keeps_the_best_level():
    # Sub-linear growth: x2 steps; the level past the knee is lower, so the capacity is the one before it.
    tp = {1: 100, 2: 140, 4: 200, 8: 260, 16: 250}
    levels, stop = _search(lambda c: tp[c], replace(PROFILES["quick"], time_budget_s=None))
    assert [lv.concurrency for lv in levels] == [1, 2, 4, 8, 16]
    cap = capacity(levels, stop=stop)
    assert (cap.concurrency, cap.found, stop) == (8, True, "plateau") and cap.throughput == 260


def test_capacity_search_goes_past_a_dip_while_the_instances_idle():
    # 2 -> 8 dips (another process took the CPU) while the instance was 40 % busy: noise, so the search goes on;
    # a second stall in a row ends it even at low utilization.
    tp = {1: 100, 2: 200, 8: 150, 16: 700, 64: 720, 128: 710}
    levels, stop = _search(lambda c: tp[c], replace(PROFILES["quick"], time_budget_s=None), util_at=lambda c: 0.4)
    assert [lv.concurrency for lv in levels] == [1, 2, 8, 16, 64, 128] and stop == "plateau"
    assert capacity(levels, stop=stop).concurrency == 64
    # The same dip with the instance busy is the plateau.
    levels, stop = _search(lambda c: tp[c], replace(PROFILES["quick"], time_budget_s=None))
    assert [lv.concurrency for lv in levels] == [1, 2, 8] and stop == "plateau"
    cap = capacity(levels, stop=stop)
    assert (cap.concurrency, cap.found) == (2, True)


def test_capacity_stops_at_the_p99_limit_and_at_errors():
    profile = replace(PROFILES["quick"], time_budget_s=None)
    levels, stop = _search(lambda c: c * 100.0, profile, p99_at=lambda c: c * 2.0, p99_limit=10.0)
    assert stop == "p99_limit" and levels[-1].p99_ms > 10.0
    cap = capacity(levels, p99_limit_ms=10.0, stop=stop)
    # The level over the limit does not count, however fast it was.
    assert cap.found and cap.concurrency < levels[-1].concurrency and cap.p99_ms <= 10.0 and "passed the limit" in cap.detail
    levels, stop = _search(lambda c: c * 100.0, profile, errors_at=lambda c: 5 if c >= 8 else 0)
    assert stop == "errors" and levels[-1].concurrency == 8
    cap = capacity(levels, stop=stop)
    assert cap.found and cap.concurrency == 2 and "requests failed at concurrency 8" in cap.detail


def test_capacity_is_a_lower_bound_when_the_search_runs_out_of_concurrency_or_time():
    capped = replace(PROFILES["quick"], max_concurrency=8, time_budget_s=None)
    levels, stop = _search(lambda c: c * 100.0, capped)
    assert levels[-1].concurrency == 8 and stop == "max_concurrency"
    cap = capacity(levels, stop=stop)
    assert not cap.found and cap.concurrency == 8 and cap.describe() == ">= 800 @ c=8"
    assert "at least" in cap.detail and "raise --max-concurrency" in cap.detail
    # 3 s levels (4 s with overhead) against a 20 s budget: no level starts that would end past it.
    budget = replace(PROFILES["quick"], time_budget_s=20.0)
    levels, stop = _search(lambda c: c * 100.0, budget)
    assert stop == "time_budget" and len(levels) * 4.0 <= 20.0
    assert not capacity(levels, stop=stop).found


def test_capacity_of_a_fixed_ladder_counts_unstable_levels_and_says_so():
    levels = [_level(1, 100), _level(2, 200), _level(4, 390), _level(8, 900, stable=False), _level(16, 380)]
    cap = capacity(levels)
    # The unstable 900 is a measured throughput (its last windows merged): the capacity, found since 16 fell back.
    assert (cap.throughput, cap.concurrency, cap.found, cap.stable) == (900, 8, True, False)
    assert "unstable" in cap.detail and "concurrency 16" in cap.detail
    # Levels with errors or over the p99 limit never count, however fast.
    faulty = [_level(1, 100), _level(2, 190), _level(4, 500, errors=2), _level(8, 600, p99_ms=50.0)]
    cap = capacity(faulty, p99_limit_ms=20.0)
    assert (cap.throughput, cap.concurrency, cap.found) == (190, 2, True)
    assert capacity([]).throughput is None and capacity([]).describe() == "-"
    assert capacity([_level(1, 0, errors=3)]).throughput is None


def test_the_quick_profile_searches_and_explicit_levels_turn_the_search_off():
    quick = PROFILES["quick"]
    assert quick.searching and quick.max_concurrency > 8 and quick.time_budget_s
    assert not replace(quick, concurrencies=(1, 4)).searching and not PROFILES["default"].searching
    assert quick.to_dict()["search"] is True
    with pytest.raises(GateError, match="time budget"):
        replace(quick, time_budget_s=0).validate()


def _model(levels, slo=SLO()) -> ModelReport:
    return ModelReport(name="m", version="1", ready=True, correctness=Correctness("passed"), sweep=levels, slo=slo)


def test_slo_evaluation_names_the_model_and_the_figure():
    levels = [_level(1, 300, p99_ms=4), _level(2, 550, p99_ms=6), _level(4, 600, p99_ms=12)]
    ok = evaluate(_model(levels), SLO(min_throughput=500, throughput_concurrency=2, max_p99_ms=8), fail_on_unstable=False)
    assert ok == []
    low = evaluate(_model(levels), SLO(min_throughput=700), fail_on_unstable=False)
    assert [v.metric for v in low] == ["min_throughput"]
    assert low[0].message.startswith("m: peak throughput 600.0 inf/s") and "700" in low[0].message
    slow = evaluate(_model(levels), SLO(max_p99_ms=5), fail_on_unstable=False)  # no concurrency: every level
    assert [v.concurrency for v in slow] == [2, 4] and "p99 latency 12.00 ms at concurrency 4" in slow[1].message
    missing = evaluate(_model(levels), SLO(min_throughput=1, throughput_concurrency=16), fail_on_unstable=False)
    assert "not measured" in missing[0].message
    errs = evaluate(_model([_level(1, 300, errors=9)]), SLO(), fail_on_unstable=False)
    assert [v.metric for v in errs] == ["max_error_rate"] and "error rate 0.99%" in errs[0].message
    assert evaluate(_model([_level(1, 300, errors=9)]), SLO(max_error_rate=0.05), fail_on_unstable=False) == []
    dead = _level(2, 0, errors=40)
    dead.requests = 0
    assert [v.metric for v in evaluate(_model([dead]), SLO(max_error_rate=1.0), fail_on_unstable=False)] == ["no_success"]
    unstable = [_level(1, 300, stable=False)]
    assert evaluate(_model(unstable), SLO(), fail_on_unstable=False) == []
    assert [v.metric for v in evaluate(_model(unstable), SLO(), fail_on_unstable=True)] == ["stability"]


def test_correctness_compare_uses_the_tolerance():
    from smoke_tests.correctness import compare

    want = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    assert compare("y", want + 5e-5, want, atol=1e-4, rtol=0).mismatched == 0
    bad = compare("y", want + np.array([[0, 0], [0, 0.01]], dtype=np.float32), want, atol=1e-4, rtol=0)
    assert bad.mismatched == 1 and bad.first_mismatch == [1, 1] and bad.max_abs_diff == pytest.approx(0.01, rel=1e-3)
    assert compare("y", want[:1], want, 1e-4, 1e-4).message.startswith("shape [1, 2]")
    ints = np.array([[1, 2]], dtype=np.int64)
    assert compare("ids", ints, ints, 0.5, 0.5).mismatched == 0
    assert compare("ids", ints + 1, ints, 5, 5).mismatched == 2  # integers must match exactly


# --------------------------------------------------------------------------------------------- references


def _write_model(repo: Path, name: str, *, atol: str = "1e-3", config_extra: str = "") -> Path:
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 3 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 3 ] } ]\n'
        f'parameters {{ key: "reference_atol" value {{ string_value: "{atol}" }} }}\n' + config_extra
    )
    x = np.ones((5, 3), dtype=np.float32)
    np.savez(repo / name / "1" / "reference.npz", **{"input/X": x, "output/Y": x * 2})
    return repo / name


def test_references_follow_the_build_contract(tmp_path):
    from smoke_tests.references import load_model_reference, models_with_references

    _write_model(tmp_path, "good")
    (tmp_path / "unbuilt" / "1").mkdir(parents=True)
    (tmp_path / "unbuilt" / "config.pbtxt").write_text('name: "unbuilt"\n')
    assert models_with_references(tmp_path) == ["good"]
    ref = load_model_reference(tmp_path, "good")
    assert (ref.version, ref.max_batch_size, ref.atol, ref.rtol, ref.rows) == ("1", 4, 1e-3, 1e-4, 5)
    assert list(ref.inputs) == ["X"] and ref.outputs["Y"].shape == (5, 3)
    assert ref.declared_inputs[0].datatype == "FP32" and ref.declared_inputs[0].dims == (3,)


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda repo: _write_model(repo, "m", atol="loose"), "reference_atol"),
        (lambda repo: (_write_model(repo, "m"), (repo / "m" / "config.pbtxt").write_text("max_batch_size: [")), "config.pbtxt"),
        (lambda repo: (_write_model(repo, "m"), (repo / "m" / "1" / "reference.npz").unlink()), "models build"),
        (lambda repo: (_write_model(repo, "m"), np.savez(repo / "m" / "1" / "reference.npz", X=np.ones(3))), "input/<NAME>"),
        (lambda repo: None, "no "),
    ],
)
def test_bad_references_are_bad_input(tmp_path, setup, needle):
    from smoke_tests.references import load_model_reference

    setup(tmp_path)
    with pytest.raises(GateError) as info:
        load_model_reference(tmp_path, "m")
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert needle in str(info.value)


# --------------------------------------------------------------------------------------------- report files


def _report() -> SmokeReport:
    from smoke_tests.measure import saturation as sat

    info = RunInfo(url="127.0.0.1:8001", protocol="grpc", server_version="2.51.0", started_at="2026-01-01T00:00:00+00:00",
                   duration_s=12.5, profile=PROFILES["quick"].to_dict(),
                   load_generator={"kind": "grpc.aio", "processes": 2, "batch_size": 1, "request_timeout_s": 10.0})
    good = _model([_level(1, 300), _level(2, 550), _level(4, 600, util=0.93)], SLO(min_throughput=100, max_p99_ms=50))
    good.name = "good"
    bad = _model([_level(1, 30, stable=False)], SLO(min_throughput=100, throughput_concurrency=1))
    bad.name = "slow"
    for m in (good, bad):
        m.saturation = sat(m.sweep, max_batch_size=8, processes=2, cpus=2)
        m.violations = evaluate(m, m.slo, fail_on_unstable=False)
    return SmokeReport(info, [good, bad])


def test_report_files_parse(tmp_path):
    import jsonschema
    import matplotlib.image

    report = _report()
    assert not report.passed and report.exit_code == ExitCode.SLO_VIOLATION
    assert [v.message for v in report.violations] == [
        "slow: throughput 30.0 inf/s at concurrency 1 is below the minimum 100 inf/s"
    ]
    paths = report.write_outputs(json_path=tmp_path / "r.json", junit_path=tmp_path / "r.xml",
                                 csv_path=tmp_path / "r.csv", plot_path=tmp_path / "r.png")
    assert len(paths) == 4

    data = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert data["exit_code"] == 1 and data["models"][0]["saturation"]["rule"] == "utilization"

    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.tag == "testsuites" and root.get("failures") == "1"
    failed = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("smoke.slow", "slo throughput")]

    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == CSV_COLUMNS and CSV_COLUMNS[: len(PERF_ANALYZER_COLUMNS)] == PERF_ANALYZER_COLUMNS
    assert [(r["Model"], r["Concurrency"]) for r in rows] == [("good", "1"), ("good", "2"), ("good", "4"), ("slow", "1")]
    assert rows[0]["p99 latency"] == "5000" and rows[3]["Stable"] == "false"

    image = matplotlib.image.imread(tmp_path / "r.png")
    assert image.ndim == 3 and image.shape[0] > 300


def test_report_renders_on_a_console():
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(_report())
    text = console.export_text()
    assert "good" in text and "FAIL [slo] slow: throughput 30.0 inf/s" in text and "exit code 1" in text


def test_report_renders_as_plain_text_with_the_same_figures():
    # Where rich is not installed (the Triton SDK image): the same tables, as text.
    text = _report().to_text()
    assert text == str(_report())
    lines = text.splitlines()
    assert lines[0] == "Smoke gate: grpc://127.0.0.1:8001" and lines[1].split()[:3] == ["model", "ready", "correct"]
    assert "good:1" in text and "yes (c=4, utilization)" in text and "PASS" in text
    assert "good: concurrency sweep" in text and "3 unstable" in text
    assert "FAIL [slo] slow: throughput 30.0 inf/s at concurrency 1 is below the minimum 100 inf/s" in text
    assert lines[-1] == "smoke gate FAILED (exit code 1) in 12.5 s"
    assert "FAIL [slo]" not in _report().to_text(include_violations=False)


def test_the_report_line_is_found_in_a_log():
    from smoke_tests.report import REPORT_MARKER, extract_report, report_line

    report = _report()
    line = report_line(report)
    assert line.startswith(REPORT_MARKER) and "\n" not in line
    log = f"some table\n2026-01-01T00:00:00.000000000Z {line}\nwrote r.xml\n"  # kubectl logs --timestamps
    assert extract_report(log) == json.loads(json.dumps(report.to_dict()))
    assert extract_report("no report here\n") is None
    with pytest.raises(ValueError, match="not valid JSON"):
        extract_report(line[:-20])  # a truncated log
    with pytest.raises(ValueError, match="hybridserve.smoke/v1"):
        extract_report(REPORT_MARKER + '{"schema": "other"}')


# --------------------------------------------------------------------------------------------- CLI without a server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(args: list[str], capsys) -> tuple[int, str]:
    from smoke_tests.__main__ import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_bad_flags_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_ROOT", str(tmp_path))  # no built model_repo/ to fall back on
    code, out = _cli(["--url", "127.0.0.1:1", "--model", "m", "--no-correctness", "--min-throughput", "m=lots"], capsys)
    assert code == 2 and "--min-throughput 'm=lots'" in out
    code, out = _cli(["--url", "127.0.0.1:1", "--model", "m"], capsys)  # correctness needs references
    assert code == 2 and "--model-repo" in out
    _write_model(tmp_path / "repo", "good")
    code, out = _cli(["--url", "127.0.0.1:1", "--model-repo", str(tmp_path / "repo"), "--model", "nope"], capsys)
    assert code == 2 and "'nope'" in out and "good" in out  # names the models that have references
    code, out = _cli(["--url", "127.0.0.1:1", "--model-repo", str(tmp_path / "repo"), "--max-p99-ms", "other=5"], capsys)
    assert code == 2 and "'other'" in out
    code, out = _cli(["--url", "127.0.0.1:1", "--model-repo", str(tmp_path / "repo"), "--concurrency", "1,x"], capsys)
    assert code == 2 and "--concurrency" in out


def test_cli_slos_give_models_and_base_slos_and_the_flags_override_them(capsys, tmp_path):
    from smoke_tests.report import extract_report

    port = _free_port()  # nothing listens: the run ends at once, with the resolved SLOs in its report
    spec = {"models": ["a", "b:2"], "slos": {"*": {"min_throughput": 20, "max_p99_ms": 500, "max_error_rate": 0.01},
                                               "b": {"min_throughput": 5, "throughput_concurrency": 2}},
            "wait_ready_s": 0.5}
    code, out = _cli(["--url", f"127.0.0.1:{port}", "--slos", json.dumps(spec), "--no-correctness",
                      "--max-p99-ms", "a=50@4", "--max-error-rate", "0", "--json", "-"], capsys)
    assert code == 3 and "waiting up to 0.5 s" in out  # wait_ready_s is the --wait-ready default
    report = extract_report(out)
    slos = {m["name"]: m["slo"] for m in report["models"]}
    assert [(m["name"], m["version"]) for m in report["models"]] == [("a", None), ("b", "2")]
    assert slos["a"] == {"min_throughput": 20.0, "throughput_concurrency": None, "max_p99_ms": 50.0, "p99_concurrency": 4,
                         "max_error_rate": 0.0}
    # b's own entry overrides "*" field by field; the flag without MODEL= overrides both.
    assert slos["b"] == {"min_throughput": 5.0, "throughput_concurrency": 2, "max_p99_ms": 500.0, "p99_concurrency": 2,
                         "max_error_rate": 0.0}
    # --model replaces the spec's models; --wait-ready its wait.
    code, out = _cli(["--url", f"127.0.0.1:{port}", "--slos", json.dumps(spec), "--no-correctness", "--model", "c",
                      "--wait-ready", "0", "--json", "-"], capsys)
    report = extract_report(out)
    assert code == 3 and [m["name"] for m in report["models"]] == ["c"] and "waiting" not in out
    assert report["models"][0]["slo"]["min_throughput"] == 20.0  # "*" of the spec


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--slos", '{"slos": {"*": {"max_p99_ms": "fast"}}}'], '--slos: slos.*.max_p99_ms = "fast": expected a number above 0'),
        (["--slos", "@nope.json"], "--slos @nope.json: no such file"),
        (["--slos", "text_encoder=5"], "--slos: not valid JSON"),
        (["--json", "-", "--slos", "{}", "--max-p99-ms", "other=5"], "an SLO flag names model 'other'"),
    ],
)
def test_cli_bad_slos_exit_2_naming_the_flag(capsys, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    code, out = _cli(["--url", "127.0.0.1:1", "--model", "m", "--no-correctness", *args], capsys)
    assert code == 2 and needle in out and "HYBRIDSERVE-SMOKE-REPORT" not in out and "Traceback" not in out


def test_kit_smoke_stack_and_slos_are_one_or_the_other(capsys):
    from hybridserve.smokegate import smoke_main

    assert smoke_main(["--stack", "vision-dev", "--slos", "{}", "--model", "m", "--no-correctness"]) == 2
    assert "--stack and --slos both give the expected models and SLOs" in capsys.readouterr().err
    assert smoke_main(["--stacks-dir", "stacks", "--model", "m", "--no-correctness"]) == 2
    assert "--stacks-dir stacks: only used with --stack NAME" in capsys.readouterr().err


def test_kit_smoke_help_is_the_gates_help_plus_the_stack_options(capsys, monkeypatch):
    from hybridserve.cli import main

    monkeypatch.setenv("COLUMNS", "200")
    main(["smoke", "--help"])  # exits (SystemExit) only with a non-zero code
    kit = " ".join(capsys.readouterr().out.split())
    code, gate = _cli(["--help"], capsys)
    gate = " ".join(gate.split())
    assert code == 0
    assert kit.startswith("usage: hybridserve smoke") and gate.startswith("usage: python -m smoke_tests")
    assert "--stack NAME" in kit and "--stacks-dir DIR" in kit and "--stack NAME" not in gate
    for option in ("--slos JSON|@FILE", "--min-throughput [MODEL=]N[@C]", "--no-correctness", "--json FILE|-", "--out-dir DIR"):
        assert option in kit and option in gate


def test_the_kits_errors_are_gate_errors_and_the_kit_prints_both():
    import typer
    from rich.console import Console

    from hybridserve.clirun import run_app
    from hybridserve.errors import UserError
    from smoke_tests.errors import bad_input

    assert issubclass(UserError, GateError) and str(UserError("m", details=["d"])) == "m\n  - d"
    app = typer.Typer()

    @app.command()
    def boom(kind: str) -> None:
        raise (bad_input("--window 0: bad") if kind == "gate" else UserError("no stack", exit_code=4))

    err = Console(record=True, width=200)
    assert run_app(app, ["gate"], err=err) == 2 and run_app(app, ["kit"], err=err) == 4
    printed = err.export_text()  # export_text empties the record
    assert "error: --window 0: bad" in printed and "error: no stack" in printed


def test_cli_endpoint_down_fails_fast_with_exit_3(capsys, tmp_path):
    port = _free_port()  # nothing listens there
    code, out = _cli(["--url", f"127.0.0.1:{port}", "--model", "m", "--no-correctness", "--json", str(tmp_path / "r.json"),
                      "--junit", str(tmp_path / "r.xml")], capsys)
    assert code == 3
    assert f"127.0.0.1:{port}" in out and ("cannot reach" in out)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["error"]["exit_code"] == 3 and data["passed"] is False
    root = ET.parse(tmp_path / "r.xml").getroot()
    assert root.get("errors") == "1"


def test_http_endpoint_down_fails_with_exit_3(capsys):
    port = _free_port()
    code, out = _cli(["--url", f"http://127.0.0.1:{port}", "--model", "m", "--no-correctness"], capsys)
    assert code == 3 and "Connection refused" in out


def test_load_requests_are_encoded_once_as_triton_would_receive_them():
    from tritonclient.grpc import service_pb2

    from smoke_tests.loadgen import encode_payload

    ids = np.arange(64, dtype=np.int64).reshape(2, 32)
    words = np.array([[b"a", b"bc"]], dtype=np.object_)
    grpc_payload = encode_payload("grpc", "text_encoder", "1", {"input_ids": ids, "words": words}, ["embedding"])
    request = service_pb2.ModelInferRequest.FromString(grpc_payload.body)
    assert (request.model_name, request.model_version, grpc_payload.rows) == ("text_encoder", "1", 2)
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [("input_ids", "INT64", [2, 32]), ("words", "BYTES", [1, 2])]
    assert np.array_equal(np.frombuffer(request.raw_input_contents[0], dtype=np.int64).reshape(2, 32), ids)
    assert request.raw_input_contents[1] == b"\x01\x00\x00\x00a\x02\x00\x00\x00bc"  # Triton's length-prefixed BYTES
    assert [o.name for o in request.outputs] == ["embedding"]

    http_payload = encode_payload("http", "text_encoder", "", {"input_ids": ids}, ["embedding"])
    headers = dict(http_payload.headers)
    header_len = int(headers["Inference-Header-Content-Length"])
    header = json.loads(http_payload.body[:header_len])
    assert http_payload.path == "/v2/models/text_encoder/infer"
    assert header["inputs"][0]["shape"] == [2, 32] and header["inputs"][0]["parameters"]["binary_data_size"] == ids.nbytes
    assert http_payload.body[header_len:] == ids.tobytes()


def test_a_longer_window_gets_a_longer_search_budget_so_the_search_goes_as_far():
    # A gate given 5 s windows (serving.gate.window_seconds, smoke --window) kept the quick profile's 40 s budget:
    # its first level alone took most of it, so it stopped at concurrency 1 and judged the p99 there only.
    linear = lambda c: min(c, 16) * 62.5  # noqa: E731
    quick = PROFILES["quick"]
    base, base_stop = _search(linear, quick, level_s=3 * quick.window_s)
    longer, stop = _search(linear, quick.with_window(5.0), level_s=3 * 5.0)
    assert len(base) > 2 and stop == base_stop
    assert [lv.concurrency for lv in longer] == [lv.concurrency for lv in base]
    cut, cut_stop = _search(linear, replace(quick, window_s=5.0), level_s=3 * 5.0)  # the budget left as it was
    assert [lv.concurrency for lv in cut] == [1] and cut_stop == "time_budget"
    # A shorter window keeps the budget (the search may go further, never less far).
    assert quick.with_window(0.5).time_budget_s == quick.time_budget_s
    assert quick.with_window(5.0).window_s == 5.0 and quick.with_window(5.0).time_budget_s == 100.0


@pytest.mark.parametrize("window", [2.0, 5.0, 30.0, 60.0])
@pytest.mark.parametrize("max_concurrency", [8, 256])
def test_the_sweep_time_bound_holds_for_the_search_run_to_its_worst(window, max_concurrency):
    # What the kit checks a gate's deadline with (the Job's, edge status --gate-timeout): every level to its last
    # window plus the overhead the search itself assumes, a server that scales linearly so the search never stops early.
    from smoke_tests.options import LEVEL_OVERHEAD_WINDOWS, profile_of

    profile = profile_of("quick", window_s=window, max_concurrency=max_concurrency)
    least, most = profile.sweep_seconds()
    level_least, level_most = profile.level_seconds()
    assert level_most == (profile.max_windows + LEVEL_OVERHEAD_WINDOWS) * window and level_least == 3 * window
    levels, elapsed = [], 0.0
    while True:
        c, _ = next_concurrency(levels, profile, elapsed_s=elapsed)
        if c is None:
            break
        lv = _level(c, c * 100.0)
        lv.duration_s = profile.max_windows * window
        levels.append(lv)
        elapsed += level_most
    assert most - level_most <= elapsed <= most  # a bound, and not a loose one
    assert least == level_least  # concurrency 1, stable at once
    # The SLO's concurrencies are measured on top; concurrency 1 is the search's first level anyway.
    assert profile.sweep_seconds({1}) == (least, most)
    assert profile.sweep_seconds({1, 4}) == (least + level_least, most + level_most)
    # A budget shorter than one level: the first level still runs, alone.
    short = replace(profile, time_budget_s=1.0)
    assert short.sweep_seconds()[1] == level_most
    first, _ = next_concurrency([], short)
    lv = _level(first, 100.0)
    lv.duration_s = profile.max_windows * window
    assert next_concurrency([lv], short, elapsed_s=level_most) == (None, "time_budget")


def test_the_run_time_of_fixed_levels_counts_each_level_and_the_readiness_wait():
    from smoke_tests.options import profile_of, run_seconds

    profile = profile_of("quick", window_s=5.0, concurrencies=(1,))  # as `edge status` runs the gate
    assert not profile.searching
    least, most = run_seconds(profile, [SLO(max_p99_ms=250, p99_concurrency=1), SLO(min_throughput=5, throughput_concurrency=4)],
                              wait_ready_s=5)
    # Three levels (1; 1 and 4): at least 3 windows each, at most 4 plus one; the wait only in the worst case.
    assert (least, most) == (3 * 3 * 5.0, 5 + 3 * 5 * 5.0)
