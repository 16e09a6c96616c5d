"""`models promote` and `models rollback`: the steps, each bounded in time, and what undoes them.

Promote MODEL to version N (rollback: to the version served before, from the promotion history):

1. publish   the sync engine uploads and verifies N's files next to the served version; the model's
             config.pbtxt stays pinned to what serves now (`pins`), so a Triton restart or reload meanwhile
             still loads the old version. (Rollback: the target's files must already be in the store.)
2. fetch     N's files and reference set are read back from the store, each checked against its sha256.
3. load      the candidate: a model named MODEL__candidate, loaded through the repository API with the
             published config (its name and `version_policy {specific {N}}`) and N's files as
             `file:N/<name>` load parameters. Why not N as a second version of MODEL: Triton sends an
             unversioned request to the highest loaded version, so with the policy {old, N} and N > old,
             clients would reach N before its gate (and with N < old a rollback would be ungated the other
             way round). Under its own name nothing reaches N but the gate.
4. gate      the smoke gate on the candidate alone: correctness against N's reference set, the SLOs.
5. compare   old (addressed by version) against the candidate on N's reference inputs: agreement of the
             outputs, then latency and throughput side by side.
6. switch    (gate passed) config.pbtxt publishes N alone; MODEL is reloaded: Triton loads N, swaps it in
             once ready, then unloads old when its in-flight requests are done. Waits until N alone is
             READY. Ctrl-C is held back during this step; on any failure config.pbtxt is restored and MODEL
             reloaded, so old serves again.
7. unload    the candidate, always (also after a failure or Ctrl-C).

The history record gets an entry for every outcome (pass, fail, error, interrupted). A failed gate exits 1
with the gate's report, a failed or timed-out step 3, Ctrl-C 130; in each case the old version still serves.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hybridserve.errors import UserError
from hybridserve.promote import history as hist
from hybridserve.promote.serving import StepFailed, Triton, candidate_name
from hybridserve.promote.store import REFERENCE_FILE, Store
from hybridserve.sync.engine import SyncTarget

EXIT_GATE_FAILED = 1
EXIT_STEP_FAILED = 3
EXIT_INTERRUPTED = 130


@dataclass
class Timeouts:
    publish: float = 300.0
    load: float = 300.0
    gate: float = 600.0
    compare: float = 120.0
    switch: float = 300.0
    drain: float = 120.0  # old version's in-flight requests finishing after the switch


@dataclass
class PromoteOptions:
    model: str
    version: int | None  # None: rollback
    triton_url: str  # HTTP host:port (repository API)
    store: SyncTarget
    repo_dir: Path | None = None  # promote publishes from it
    grpc_url: str | None = None  # gate and comparison load; default: HTTP
    metrics_url: str | None = None
    min_throughput: tuple[str, ...] = ()
    max_p99_ms: tuple[str, ...] = ()
    max_error_rate: tuple[str, ...] = ()
    profile: str = "quick"
    throughput: bool = True  # False: the gate checks correctness only (the SLOs are then not checked)
    timeouts: Timeouts = field(default_factory=Timeouts)
    compare_seconds: float = 2.0
    compare_concurrency: int = 4
    json_path: Path | None = None
    # The sync's hash cache (the CLI: the state dir's, as `hybridserve sync` and `local up` keep it): publish then
    # skips hashing unchanged files and validating content that validated before (hybridserve/sync/validated.py).
    hash_cache: Path | None = None

    @property
    def action(self) -> str:
        return "rollback" if self.version is None else "promote"


@dataclass
class Step:
    name: str
    status: str  # ok | failed | timeout | skipped | interrupted
    seconds: float
    detail: str = ""


@dataclass
class PromoteResult:
    model: str
    action: str
    version: int | None = None
    from_versions: list[int] = field(default_factory=list)
    verdict: str = "error"  # pass | fail | error | interrupted
    steps: list[Step] = field(default_factory=list)
    gate: Any = None  # smoke_tests SmokeReport
    comparison: Any = None  # compare.Comparison
    message: str = ""
    notes: list[str] = field(default_factory=list)
    history_key: str | None = None

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "fail": EXIT_GATE_FAILED, "interrupted": EXIT_INTERRUPTED}.get(self.verdict, EXIT_STEP_FAILED)

    def summary(self) -> dict:
        out: dict[str, Any] = {"message": self.message, "steps": {s.name: [s.status, round(s.seconds, 2)] for s in self.steps}}
        if self.gate is not None:
            out["gate"] = {"passed": bool(self.gate.passed), "violations": [v.message for v in self.gate.violations]}
        if self.comparison is not None:
            out["comparison"] = self.comparison.summary()
        if self.notes:
            out["notes"] = self.notes
        return out


class _Timeout(Exception):
    def __init__(self, message: str, thread: threading.Thread):
        super().__init__(message)
        self.thread = thread  # still running: whoever undoes its work must wait for it first


# A switch (or its undo) step's bound beyond its parts' own: the config write and the model's repository calls.
STEP_SLACK_S = 30.0
# How long an undo waits for the timed-out step it undoes (its parts have their own, shorter, bounds).
LATE_STEP_GRACE_S = 60.0


def bounded(what: str, timeout: float, fn: Callable[[], Any]) -> Any:
    """fn() in a daemon thread, waited for at most `timeout` s (Ctrl-C still interrupts the wait)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"promote-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _Timeout(f"{what} did not finish within {timeout:g} s", thread)
    if "error" in box:
        raise box["error"]
    return box.get("value")


class _Run:
    def __init__(self, options: PromoteOptions, say: Callable[[Step], None]):
        self.o = options
        self.say = say
        self.result = PromoteResult(model=options.model, action=options.action, version=options.version)
        self.store = Store(options.store)
        self.triton = Triton(options.triton_url)
        self.candidate = candidate_name(options.model)
        self.candidate_loaded = False
        self.timed_out: threading.Thread | None = None  # the thread of the last step that timed out, if any

    def step(self, name: str, timeout: float | None, fn: Callable[[], Any], detail: Callable[[Any], str] | str = "") -> Any:
        t0 = time.monotonic()
        try:
            value = bounded(name, timeout, fn) if timeout is not None else fn()
        except _Timeout as exc:
            self.timed_out = exc.thread
            self._record(Step(name, "timeout", time.monotonic() - t0, str(exc)))
            raise StepFailed(f"step '{name}': {exc}") from None
        except KeyboardInterrupt:
            self._record(Step(name, "interrupted", time.monotonic() - t0, "Ctrl-C"))
            raise
        except Exception as exc:
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            self._record(Step(name, "failed", time.monotonic() - t0, message))
            if isinstance(exc, StepFailed):
                raise
            raise StepFailed(f"step '{name}': {message}", details=getattr(exc, "details", None)) from None
        self._record(Step(name, "ok", time.monotonic() - t0, detail(value) if callable(detail) else detail))
        return value

    def _record(self, step: Step) -> None:
        self.result.steps.append(step)
        self.say(step)

    # ---- checks before anything is touched (UserError exit 2)

    def check(self) -> tuple[list[int], int]:
        o = self.o
        if not self.triton.reachable():
            raise UserError(f"--url {o.triton_url}: no Triton answers there (HTTP /v2/health/live)", exit_code=2)
        self.store.read_config(o.model)  # exit 2 naming MODEL when it is not published
        loaded = sorted(self.triton.ready_versions(o.model))
        if not loaded:
            raise UserError(
                f"MODEL {o.model!r}: Triton at {o.triton_url} serves no version of it; promote replaces a served "
                "version (load it first: `hybridserve local up` loads every model of the repository)", exit_code=2)
        if o.version is None:
            history = hist.read(self.store.s3, self.store.bucket, self.store.base, o.model)
            target = history.previous(max(loaded))
            if target is None:
                raise UserError(
                    f"MODEL {o.model!r}: no earlier passing version to roll back to (history "
                    f"{self.store.url(hist.history_key(self.store.base, o.model))}: served versions {history.stack or 'none recorded'})",
                    exit_code=2)
            if target not in self.store.versions(o.model):
                raise UserError(f"MODEL {o.model!r}: version {target}, the one to roll back to, is no longer in the store", exit_code=2)
            return loaded, target
        if o.version < 1:
            raise UserError(f"--version {o.version}: a model version is a positive integer", exit_code=2)
        if o.version in loaded:
            raise UserError(f"--version {o.version}: {o.model} already serves version {o.version}", exit_code=2)
        if o.repo_dir is None or not (Path(o.repo_dir) / o.model / str(o.version)).is_dir():
            have = sorted(p.name for p in (Path(o.repo_dir) / o.model).iterdir() if p.is_dir() and p.name.isdigit()) \
                if o.repo_dir is not None and (Path(o.repo_dir) / o.model).is_dir() else []
            raise UserError(
                f"--version {o.version}: no directory {Path(o.repo_dir or '.') / o.model / str(o.version)} in the model "
                f"repository (--repo); {o.model} has versions: {', '.join(have) or 'none'}", exit_code=2)
        return loaded, o.version

    # ---- the steps

    def publish(self, old: list[int]) -> None:
        from hybridserve.sync.engine import sync_repository

        o = self.o
        pins = {o.model: old}
        for name in self.store.models():  # other models keep what they serve, whatever this repository says
            if name != o.model and (Path(o.repo_dir) / name).is_dir():
                pins[name] = self.store.served_versions(name)
        report = self.step("publish", o.timeouts.publish, lambda: sync_repository(
            Path(o.repo_dir), o.store, pins=pins, show_progress=False, hash_cache=o.hash_cache),
            lambda r: f"{len(r.uploaded)} objects uploaded, {len(r.skipped)} unchanged; {o.model} still publishes {old}; "
                      f"validation {r.validation}")
        self.result.notes.extend(n for n in report.notes if "publishing version" not in n)

    def run(self) -> PromoteResult:
        from botocore.exceptions import BotoCoreError, ClientError

        from hybridserve.sync.errors import translate

        o, r = self.o, self.result
        try:
            loaded, version = self.check()
        except (ClientError, BotoCoreError) as exc:  # the store, before anything is touched: no traceback
            raise translate(exc, where=o.store.where, bucket=o.store.bucket, what="reading the published repository",
                            sse=o.store.sse) from None
        r.version, r.from_versions = version, loaded
        try:
            try:
                self._steps(loaded, version)
            finally:
                self._unload_candidate()
        except KeyboardInterrupt:
            r.verdict, r.message = "interrupted", f"interrupted; {o.model} still serves {loaded}"
        except StepFailed as exc:
            r.verdict = "error"
            r.message = exc.message + (" - " + "; ".join(exc.details) if exc.details else "") + f"; {o.model} still serves {self._serving(loaded)}"
        self._write_history()
        return r

    def _serving(self, fallback) -> list[int]:
        try:
            return sorted(self.triton.ready_versions(self.o.model))
        except StepFailed:
            return fallback

    def _steps(self, loaded: list[int], version: int) -> None:
        from google.protobuf import json_format

        from hybridserve.promote.compare import Comparison, agreement, infer_all, side_by_side
        from hybridserve.promote.gate import candidate_slos, run_gate

        o, r = self.o, self.result
        slos = candidate_slos(o.model, self.candidate, o.min_throughput, o.max_p99_ms, o.max_error_rate)
        if o.version is not None:
            self.publish(loaded)
        files = self.step("fetch", o.timeouts.publish, lambda: self.store.download_version(o.model, version),
                          lambda f: f"{len(f)} files of {o.model}/{version}, sha256 verified")
        reference = files.pop(REFERENCE_FILE, None)
        if reference is None:
            raise StepFailed(f"{self.store.url(self.store.base)}{o.model}/{version}/ has no {REFERENCE_FILE}: the gate "
                             "has nothing to check correctness against (`hybridserve models build` makes it)")
        config, config_text, _ = self.store.read_config(o.model)
        cfg = json_format.MessageToDict(config, preserving_proto_field_name=True)
        cfg["name"] = self.candidate
        cfg["version_policy"] = {"specific": {"versions": [version]}}

        if self.triton.is_ready(self.candidate):
            self.triton.unload(self.candidate, timeout=o.timeouts.load)
            r.notes.append(f"unloaded {self.candidate} left behind by an earlier, interrupted promotion")

        def load():
            self.candidate_loaded = True
            self.triton.load(self.candidate, timeout=o.timeouts.load, config=cfg,
                             files={f"file:{version}/{name}": data for name, data in files.items()})
            if not self.triton.is_ready(self.candidate, str(version)):
                raise StepFailed(f"{self.candidate} version {version} is not ready after its load")

        self.step("load candidate", o.timeouts.load + 5, load, f"{self.candidate} version {version} (only the gate reaches it)")

        gate_url = f"grpc://{o.grpc_url}" if o.grpc_url else f"http://{o.triton_url}"
        r.gate = self.step("gate", o.timeouts.gate, lambda: run_gate(
            url=gate_url, candidate=self.candidate, version=version, config_text=config_text, reference=reference,
            slos=slos, profile=o.profile, wait_ready_s=10, json_path=o.json_path, throughput=o.throughput),
            lambda g: "passed" if g.passed else "FAILED: " + "; ".join(v.message for v in g.violations))

        def compare() -> Comparison:
            import io

            from smoke_tests.reference_file import read_reference

            inputs, outputs = read_reference(io.BytesIO(reference))
            names = sorted(outputs)
            mbs = int(config.max_batch_size)
            old_v = str(max(loaded))
            c = Comparison(concurrency=o.compare_concurrency, seconds_per_side=o.compare_seconds)
            old_out = infer_all(o.triton_url, o.model, old_v, inputs, names, mbs, o.timeouts.compare)
            new_out = infer_all(o.triton_url, self.candidate, str(version), inputs, names, mbs, o.timeouts.compare)
            c.agreement = agreement(old_out, new_out)
            if o.grpc_url and o.compare_seconds > 0:
                c.sides = side_by_side(o.grpc_url, [(f"old (v{old_v})", o.model, old_v), (f"new (v{version})", self.candidate, str(version))],
                                       inputs, names, concurrency=o.compare_concurrency, seconds=o.compare_seconds)
            return c

        if any(m.ready for m in r.gate.models):
            r.comparison = self.step("compare", o.timeouts.compare, compare, lambda c: _describe(c))
        if not r.gate.passed:
            r.verdict = "fail"
            r.message = f"the gate failed for {o.model} version {version}; {o.model} still serves {loaded}"
            return
        self.switch(loaded, version)
        r.verdict = "pass"
        r.message = f"{o.model} now serves version {version} (was {loaded})"

    def switch(self, loaded: list[int], version: int) -> None:
        from hybridserve.local.process import signals_deferred

        o = self.o
        cancelled = threading.Event()
        self.timed_out = None

        def do() -> None:
            # Checked between the parts: once the step timed out, a late part must not land after the undo
            # (a config publishing N written after the undo restored the old one).
            for part in (lambda: self.store.publish_versions(o.model, [version], o.action),
                         lambda: self.triton.load(o.model, timeout=o.timeouts.switch),
                         lambda: self.triton.wait_versions(o.model, {version}, timeout=o.timeouts.drain)):
                if cancelled.is_set():
                    return
                part()

        # Held back, a Ctrl-C lands after the switch or its undo: never between the config and the reload.
        with signals_deferred():
            try:
                self.step("switch", o.timeouts.switch + o.timeouts.drain + STEP_SLACK_S, do,
                          f"config.pbtxt publishes {version}; {o.model} reloaded; {loaded} drained and unloaded")
            except StepFailed:
                cancelled.set()
                self._wait_for_timed_out_step()
                self._undo_switch(loaded)
                raise

    def _wait_for_timed_out_step(self) -> None:
        """Join the timed-out step's thread (its parts are bounded themselves) before undoing what it did."""
        late, self.timed_out = self.timed_out, None
        if late is None:
            return
        late.join(LATE_STEP_GRACE_S)
        if late.is_alive():
            self.result.notes.append(
                f"the timed-out step was still running {LATE_STEP_GRACE_S:g} s later; undone all the same: "
                "check the model's config.pbtxt in the store and what Triton serves")

    def _undo_switch(self, loaded: list[int]) -> None:
        o = self.o

        def undo() -> None:
            self.store.publish_versions(o.model, loaded, f"{o.action} (undone)")
            self.triton.load(o.model, timeout=o.timeouts.switch)
            self.triton.wait_versions(o.model, set(loaded), timeout=o.timeouts.drain)

        try:
            self.step("undo switch", o.timeouts.switch + o.timeouts.drain + STEP_SLACK_S, undo, f"config.pbtxt publishes {loaded} again; reloaded")
        except StepFailed as exc:
            self.result.notes.append(f"could not restore {loaded}: {exc.message}")

    def _unload_candidate(self) -> None:
        from hybridserve.local.process import signals_deferred

        if not self.candidate_loaded:
            return
        with signals_deferred():
            try:
                self.step("unload candidate", self.o.timeouts.load + 5, lambda: self.triton.unload(self.candidate, timeout=self.o.timeouts.load),
                          self.candidate)
            except StepFailed as exc:
                self.result.notes.append(f"{self.candidate} may still be loaded: {exc.message}")

    def _write_history(self) -> None:
        from hybridserve.local.process import signals_deferred

        r = self.result
        entry = {
            "at": hist.now(), "who": hist.who(), "action": r.action, "version": r.version,
            "from_version": max(r.from_versions) if r.from_versions else None, "verdict": r.verdict, "summary": r.summary(),
        }
        with signals_deferred():
            try:
                hist.append(self.store.s3, self.store.bucket, self.store.base, r.model, entry, sse=self.store.sse_args(r.model))
                r.history_key = self.store.url(hist.history_key(self.store.base, r.model))
            except Exception as exc:  # noqa: BLE001 - the outcome stands; the user must know the record lacks it
                why = getattr(exc, "message", None) or exc
                r.notes.append(f"the promotion history was NOT updated: {why}")
                if r.verdict == "pass":
                    # Triton serves the new version, but the next plain sync pins what the history says was served
                    # and would silently undo it: not a success (exit 3), and the user is told how to set it right.
                    r.verdict = "error"
                    key = self.store.url(hist.history_key(self.store.base, r.model))
                    r.message = (f"{r.model} now serves version {r.version}, but the promotion history {key} could not record it "
                                 f"({why}); a later `hybridserve sync` would publish the version the history names again. Once the "
                                 f"store accepts writes, gate it again (`hybridserve models rollback {r.model}`, then promote)")


def _describe(c) -> str:
    parts = [f"{a.output}: max |diff| {a.max_abs_diff:.3g}, cosine mean {a.mean_cosine:.4f}"
             + (f", top-1 agree {a.top1_agreement:.0%}" if a.top1_agreement is not None else "") for a in c.agreement]
    parts += [f"{s.label} {s.throughput:,.0f} inf/s p99 {s.p99_ms:.1f} ms" for s in c.sides]
    return "; ".join(parts)


def run_promotion(options: PromoteOptions, say: Callable[[Step], None] = lambda step: None) -> PromoteResult:
    """Promote (options.version) or roll back (None); UserError (exit 2) for bad input before anything is touched."""
    return _Run(options, say).run()
