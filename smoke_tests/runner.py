"""`run_smoke`: readiness -> interface + correctness -> concurrency sweep -> saturation -> SLO, per model.

Bad input (options, SLO flags, model repository, references) raises `GateError` (exit 2) before the endpoint
is contacted. Everything the endpoint does wrong ends up in the returned `SmokeReport`: a fatal problem
(unreachable, stopped answering, server not ready) in `report.error`, per-model failures in
`report.models[i].violations`; `report.exit_code` is the gate's exit code.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from smoke_tests.errors import ExitCode, SmokeFatal, bad_input
from smoke_tests.options import PROFILES, MeasurementProfile, ModelTarget, SmokeOptions, resolve_slos
from smoke_tests.report import SmokeReport
from smoke_tests.results import Correctness, ModelReport, RunError, RunInfo, Violation
from smoke_tests.term import have_rich as _have_rich
from smoke_tests.term import is_rich, rich_console, say


def options_from_kwargs(**kwargs: Any) -> SmokeOptions:
    """SmokeOptions from keywords; also accepts `grpc_url` / `http_url` (gRPC preferred), `repo_dir`,
    `models` as names, and `profile` as "default" | "quick"."""
    kw = dict(kwargs)
    grpc_url, http_url = kw.pop("grpc_url", None), kw.pop("http_url", None)
    if "url" not in kw:
        if grpc_url:
            kw["url"], kw["protocol"] = grpc_url, kw.get("protocol") or "grpc"
        elif http_url:
            kw["url"], kw["protocol"] = http_url, kw.get("protocol") or "http"
    if "repo_dir" in kw:
        kw["model_repo"] = kw.pop("repo_dir")
    if kw.get("model_repo") is not None:
        kw["model_repo"] = Path(kw["model_repo"])
    if kw.get("models") is not None:
        kw["models"] = [m if isinstance(m, ModelTarget) else ModelTarget.parse(str(m)) for m in kw["models"]]
    profile = kw.get("profile")
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise bad_input(f"profile {profile!r}: expected one of {', '.join(PROFILES)}")
        kw["profile"] = PROFILES[profile]
    for key in ("json_path", "junit_path", "csv_path", "plot_path"):
        if kw.get(key) is not None:
            kw[key] = Path(kw[key])
    try:
        return SmokeOptions(**kw)
    except TypeError as exc:
        raise bad_input(f"run_smoke: {exc}") from None


def run_smoke(options: SmokeOptions | None = None, /, *, console=None, show_progress: bool | None = None,
              **kwargs: Any) -> SmokeReport:
    """Run the smoke gate against one Triton endpoint and return its report (files written when asked).

    `options` or keywords (see `options_from_kwargs`); `console`: a rich Console (or a
    `smoke_tests.term.PlainConsole`) for notes and the progress display (shown when `show_progress`, default:
    when the console is a terminal; never without rich). Raises GateError (exit 2) on bad input; never
    hangs: every wait is bounded by the options' timeouts and the profile.
    """
    if options is None:
        options = options_from_kwargs(**kwargs)
    elif kwargs:
        raise bad_input(f"run_smoke: pass either options or keywords, not both ({', '.join(kwargs)})")
    options.validate()
    protocol, address, ssl = options.endpoint()
    started = time.monotonic()
    targets, refs = _targets_and_references(options)
    slos = resolve_slos([t.name for t in targets], {}, options.slos)  # "*" first, then the model's own

    info = RunInfo(
        url=address,
        protocol=protocol + ("s" if ssl else ""),
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        profile=options.profile.to_dict(),
        load_generator={"kind": "grpc.aio" if protocol == "grpc" else "aiohttp", "processes": options.processes(),
                        "batch_size": options.batch_size, "request_timeout_s": options.request_timeout_s},
        model_repo=str(options.model_repo) if options.model_repo else None,
    )
    report = SmokeReport(info)
    model_refs = {}
    for t in targets:
        ref = refs.get(t)
        version = t.version or (ref.version if ref is not None else None)
        report.models.append(ModelReport(name=t.name, version=version, slo=slos[t.name]))
        model_refs[id(report.models[-1])] = ref

    from smoke_tests.endpoint import Endpoint

    endpoint = Endpoint(protocol, address, ssl=ssl, timeout=options.call_timeout_s,
                        infer_timeout=max(options.request_timeout_s, options.call_timeout_s))
    progress = _Progress(console, show_progress)
    gen = None
    try:
        if options.wait_ready_s > 0:
            say(console, f"waiting up to {options.wait_ready_s:g} s for {protocol}://{address} and "
                         f"{len(targets)} model(s) to be ready", style="dim")
        meta = endpoint.wait_server(options.wait_ready_s)
        info.server_version = str(meta.get("version")) if isinstance(meta, dict) else None
        deadline = started + options.wait_ready_s  # one budget for the server and its models
        served: dict[int, tuple[dict, dict]] = {}
        for m in report.models:
            found = _check_ready(endpoint, m, deadline)
            if found is not None:
                served[id(m)] = found
        for m in report.models:
            if id(m) not in served:
                continue
            metadata, config = served[id(m)]
            ref = model_refs[id(m)]
            if options.correctness and ref is not None:
                _check_correctness(endpoint, m, ref, metadata)
            elif not options.correctness:
                m.correctness = Correctness("skipped", message="--no-correctness")
        if options.throughput:
            with progress:
                for m in report.models:
                    if id(m) not in served:
                        m.sweep_note = "not ready: not measured"
                        continue
                    if m.correctness.status == "error":
                        m.sweep_note = "interface mismatch: not measured"
                        continue
                    metadata, config = served[id(m)]
                    if gen is None:
                        from smoke_tests.loadgen import LoadGenerator

                        gen = LoadGenerator(protocol, address, ssl=ssl, processes=options.processes(),
                                            request_timeout=options.request_timeout_s)
                        gen.start_processes()
                    _sweep(gen, endpoint, m, model_refs[id(m)], metadata, options, progress)
    except SmokeFatal as exc:
        report.error = RunError(exc.message, ExitCode(exc.exit_code), exc.model)
    finally:
        if gen is not None:
            gen.close()
        endpoint.close()

    _evaluate(report, options)
    if not options.throughput and any(not m.slo.is_empty() for m in report.models):
        info.warnings.append("--no-throughput: the throughput, latency and error-rate objectives were not checked")
    info.duration_s = time.monotonic() - started
    report.write_outputs(json_path=options.json_path, junit_path=options.junit_path,
                         csv_path=options.csv_path, plot_path=options.plot_path)
    return report


# --------------------------------------------------------------------------------------------- steps


def _targets_and_references(options: SmokeOptions):
    from smoke_tests.references import load_model_reference, models_with_references

    if options.models is not None:
        targets = list(options.models)
    else:
        if options.model_repo is None:
            raise bad_input("which models? pass --model NAME (repeatable) or --model-repo DIR")
        names = models_with_references(options.model_repo)
        if not names:
            raise bad_input(f"--model-repo {options.model_repo}: no model with a {'reference.npz'}; run `hybridserve models build`")
        targets = [ModelTarget(n) for n in names]
    seen = set()
    for t in targets:
        if (t.name, t.version) in seen:
            raise bad_input(f"model {t} is listed twice")
        seen.add((t.name, t.version))
    refs = {}
    for t in targets:
        if options.model_repo is None:
            continue
        if options.correctness:
            refs[t] = load_model_reference(options.model_repo, t.name, t.version)
        else:
            try:
                refs[t] = load_model_reference(options.model_repo, t.name, t.version)
            except Exception:
                pass  # load inputs then come from the served metadata
    for t in targets:
        ref = refs.get(t)
        if ref is not None and options.batch_size > 1 and 0 < ref.max_batch_size < options.batch_size:
            raise bad_input(f"--batch-size {options.batch_size}: model {t.name} takes at most {ref.max_batch_size} rows "
                            "per request (max_batch_size)")
    return targets, refs


def _check_ready(endpoint, m: ModelReport, deadline: float):
    """Metadata and config of a ready model, else None with a readiness violation on `m`."""
    from smoke_tests.endpoint import EndpointError

    version = m.version or ""
    while True:
        try:
            ready = endpoint.model_ready(m.name, version)
            if ready:
                metadata = endpoint.model_metadata(m.name, version)
                config = endpoint.model_config(m.name, version)
                m.ready, m.state = True, "READY"
                m.max_batch_size = int(config.get("max_batch_size", 0) or 0)
                m.instances = _instances(config)
                if not m.version:
                    versions = metadata.get("versions") or []
                    m.version = str(max(versions, key=int)) if versions else None
                return metadata, config
        except EndpointError as exc:
            if exc.code == ExitCode.UNREACHABLE:
                raise SmokeFatal(str(exc), ExitCode.UNREACHABLE, model=m.name) from None
            if exc.code != ExitCode.NOT_READY:
                raise SmokeFatal(str(exc), ExitCode.NOT_READY, model=m.name) from None
        if time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    m.ready = False
    message = _why_not_ready(endpoint, m)
    m.violations.append(Violation(m.name, "readiness", "ready", message, ExitCode.NOT_READY))
    m.sweep_note = "not ready"
    return None


def _why_not_ready(endpoint, m: ModelReport) -> str:
    from smoke_tests.endpoint import EndpointError

    want = f"{m.name}" + (f" version {m.version}" if m.version else "")
    try:
        index = endpoint.repository_index()
    except EndpointError as exc:
        return f"{want}: not ready (and the repository index is unavailable: {exc})"
    entries = [e for e in index if e.get("name") == m.name]
    if not entries:
        known = ", ".join(sorted({str(e.get('name')) for e in index})) or "none"
        m.state = "UNKNOWN"
        return f"{m.name}: unknown model on the server (its repository has: {known})"
    same = [e for e in entries if m.version and str(e.get("version", "")) == m.version]
    entry = same[0] if same else entries[0]
    m.state = str(entry.get("state") or "UNAVAILABLE")
    m.reason = str(entry.get("reason") or "")
    if m.version and not same:
        have = ", ".join(sorted({str(e.get('version')) for e in entries if e.get('version')})) or "none loaded"
        return f"{want}: not ready; the server has version(s) {have} of it"
    return f"{want}: not ready (state {m.state}{': ' + m.reason if m.reason else ''})"


def _instances(config: dict) -> int:
    groups = config.get("instance_group") or []
    total = 0
    for g in groups:
        count = int(g.get("count", 1) or 1)
        gpus = g.get("gpus") or []
        total += count * max(1, len(gpus))
    return max(1, total)


def _check_correctness(endpoint, m: ModelReport, ref, metadata: dict) -> None:
    from smoke_tests.correctness import check_correctness

    try:
        result, code = check_correctness(endpoint, ref, m.version or "", metadata, m.max_batch_size or 0)
    except SmokeFatal:
        raise
    m.correctness = result
    if code == ExitCode.UNREACHABLE:
        raise SmokeFatal(f"model {m.name}: {result.message}", ExitCode.UNREACHABLE, model=m.name)
    if code is not None:
        kind = "interface" if code == ExitCode.INTERFACE else "correctness"
        m.violations.append(Violation(m.name, kind, "outputs" if kind == "correctness" else "interface",
                                      f"{m.name}: {result.message}", code))


def _load_inputs(m: ModelReport, ref, metadata: dict, batch: int) -> dict:
    """The rows one load request carries: the first `batch` reference rows (repeated if fewer), else zeros."""
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    mbs = m.max_batch_size or 0
    if ref is not None:
        out = {}
        for k, v in ref.inputs.items():
            idx = np.arange(batch) % v.shape[0]
            rows = np.ascontiguousarray(v[idx])
            if mbs == 0 and batch == 1:
                served = next((t for t in metadata.get("inputs", []) if t["name"] == k), None)
                if served is not None and len(served.get("shape", [])) == v.ndim - 1:
                    rows = rows[0]
            out[k] = rows
        return out
    out = {}
    for t in metadata.get("inputs", []):
        dims = list(t.get("shape", []))
        if mbs > 0:
            dims = dims[1:]
        if any(d < 0 for d in dims):
            raise bad_input(f"model {m.name}: input {t['name']} has variable dims {t['shape']}; load inputs need the "
                            "reference set (--model-repo)")
        dtype = triton_to_np_dtype(t["datatype"])
        if dtype is None or t["datatype"] == "BYTES":
            raise bad_input(f"model {m.name}: input {t['name']} is {t['datatype']}; load inputs need the reference set")
        shape = ([batch] + dims) if mbs > 0 else dims
        out[t["name"]] = np.zeros(shape, dtype=dtype)
    return out


def _sweep(gen, endpoint, m: ModelReport, ref, metadata: dict, options: SmokeOptions, progress: "_Progress") -> None:
    from smoke_tests.loadgen import encode_payload
    from smoke_tests.measure import capacity, measure_level, next_concurrency

    batch = options.batch_size
    if m.max_batch_size is not None and 0 < m.max_batch_size < batch:
        m.sweep_note = f"--batch-size {batch} exceeds the model's max_batch_size {m.max_batch_size}: not measured"
        m.violations.append(Violation(m.name, "interface", "batch_size", f"{m.name}: {m.sweep_note}", ExitCode.INTERFACE))
        return
    if m.max_batch_size == 0 and batch > 1:
        m.sweep_note = f"--batch-size {batch}: the model does not batch (max_batch_size 0): not measured"
        m.violations.append(Violation(m.name, "interface", "batch_size", f"{m.name}: {m.sweep_note}", ExitCode.INTERFACE))
        return
    inputs = _load_inputs(m, ref, metadata, batch)
    outputs = [t["name"] for t in metadata.get("outputs", [])]
    gen.prepare(encode_payload(gen.protocol, m.name, m.version or "", inputs, outputs))
    profile: MeasurementProfile = options.profile
    p99_limit = m.slo.max_p99_ms
    max_error_rate = m.slo.max_error_rate or 0.0
    task = progress.add(m.name, None if profile.searching else len(profile.levels(m.slo.concurrencies())))

    def measure(c: int) -> bool:
        """Measure concurrency `c` into m.sweep; False when every request failed (higher levels are skipped)."""
        def on_window(i, w):
            progress.update(task, f"{m.name} c={c}: window {i}/{profile.max_windows}, {w.throughput(batch):,.0f} inf/s")

        progress.update(task, f"{m.name} c={c}: starting")
        try:
            lv = measure_level(gen, endpoint, m.name, m.version or "", c, batch=batch, profile=profile,
                               request_timeout=options.request_timeout_s, instances=m.instances or 1,
                               metrics_url=options.metrics_url, on_window=on_window)
        except SmokeFatal:
            m.sweep_note = f"stopped at concurrency {c}: the server stopped answering"
            progress.update(task, f"{m.name} c={c}: server stopped answering", advance=1)
            raise
        m.sweep.append(lv)
        progress.update(task, f"{m.name} c={c}: {lv.throughput:,.0f} inf/s", advance=1)
        if lv.requests == 0 and lv.total_errors > 0:
            m.sweep_note = f"every request failed at concurrency {c}; higher concurrencies skipped"
            return False
        return True

    stop = "levels"
    if profile.searching:
        # The capacity search: each next level follows from the ones measured (see next_concurrency).
        started = time.monotonic()
        while True:
            c, stop = next_concurrency(m.sweep, profile, p99_limit_ms=p99_limit, max_error_rate=max_error_rate,
                                       elapsed_s=time.monotonic() - started)
            if c is None:
                break
            if not measure(c):
                stop = "errors"
                break
        # The SLO's own concurrencies are always measured, also past where the search stopped.
        for c in sorted(m.slo.concurrencies() - {lv.concurrency for lv in m.sweep}):
            if not measure(c):
                break
    else:
        for c in profile.levels(m.slo.concurrencies()):
            if not measure(c):
                stop = "errors"
                break
    m.capacity = capacity(m.sweep, p99_limit_ms=p99_limit, max_error_rate=max_error_rate, stop=stop or "levels")
    progress.done(task, f"{m.name}: {m.capacity.describe()} inf/s")


def _evaluate(report: SmokeReport, options: SmokeOptions) -> None:
    from smoke_tests.measure import capacity, saturation
    from smoke_tests.slo import evaluate

    for m in report.models:
        if m.sweep:
            if m.capacity is None:  # the sweep was cut short (the server stopped answering)
                m.capacity = capacity(m.sweep, p99_limit_ms=m.slo.max_p99_ms, max_error_rate=m.slo.max_error_rate or 0.0,
                                      stop="errors")
            m.saturation = saturation(m.sweep, max_batch_size=m.max_batch_size, processes=options.processes(),
                                      cpus=os.cpu_count() or 1)
            if not m.saturation.saturated and not m.saturation.load_generator_bound and m.capacity.found:
                # No saturation rule fired, yet throughput stopped growing: more concurrency would not have helped.
                m.saturation.detail = m.saturation.detail.replace("raise --max-concurrency to find the capacity",
                                                                  "but throughput stopped growing (the capacity above)")
            m.violations.extend(evaluate(m, m.slo, fail_on_unstable=options.fail_on_unstable))
            unstable = [lv.concurrency for lv in m.sweep if not lv.stable]
            if unstable and not options.fail_on_unstable:
                report.info.warnings.append(
                    f"{m.name}: unstable measurement at concurrency {', '.join(map(str, unstable))} "
                    f"(the last {options.profile.stability_windows} windows differ by more than "
                    f"{options.profile.stability_threshold:.0%}); its figures are the last windows merged")
            if m.saturation.load_generator_bound:
                report.info.warnings.append(f"{m.name}: {m.saturation.detail}")


class _Progress:
    """A rich progress display, or nothing (no terminal, not wanted, or no rich: a plain console or none)."""

    def __init__(self, console, show: bool | None):
        self.console = console
        if show is None:
            show = bool(console is not None and console.is_terminal)
        # Without rich there is no progress bar: the plain report follows the run.
        self.show = show and (is_rich(console) or (console is None and _have_rich()))
        self._p = None

    def __enter__(self):
        if self.show:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._p = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), console=self.console or rich_console(stderr=True), transient=False)
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
            self._p = None

    def add(self, name: str, total: int):
        return self._p.add_task(name, total=total) if self._p else None

    def update(self, task, description: str, advance: int = 0) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, description=description, advance=advance)

    def done(self, task, description: str) -> None:
        if self._p is not None and task is not None:
            self._p.update(task, description=description)
