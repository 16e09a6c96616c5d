"""Measuring one candidate on a running Triton, as Model Analyzer does: load the model with the candidate's
configuration (the repository API's `load` with a `config` override; needs explicit model control), check
its answers against the reference set, then sweep concurrency with the smoke gate's load generator and
perf_analyzer-style windows (smoke_tests.measure.measure_level) until the p99 objective breaks or the
throughput stops growing.

The served configuration of the model (as Triton reports it) is the base every candidate edits, so a
cluster's PyTorch-backend config stays a PyTorch-backend config; at the end the model is loaded again
with the configuration it was served with.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridserve.errors import UserError
from hybridserve.tune.search import Candidate, Level, Objective, Result

# How each backend takes its intra-op thread count (Triton's PyTorch backend: its README's INTRA_OP_THREAD_COUNT;
# the kit's Python backend model.py: torch_num_threads).
THREADS_PARAMETERS = {"python": "torch_num_threads", "pytorch": "INTRA_OP_THREAD_COUNT"}
PLATEAU_GAIN = 0.05  # a doubled concurrency that adds less throughput than this ends the sweep
LOAD_TIMEOUT_S = 300.0
NOT_EXPLICIT = ("polling is enabled", "explicit model load / unload is not allowed")


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(cpus: int, instances: int) -> int:
    """model.py's own rule when the config sets no thread count: the CPUs but one, split across instances
    (model_repo/*/1/model.py `_intra_op_threads`; keep the two equal)."""
    return max(1, (cpus - 1) // max(1, instances))


def threads_parameter(config: dict) -> str:
    return THREADS_PARAMETERS.get(str(config.get("backend") or ""), THREADS_PARAMETERS["python"])


def baseline_of(config: dict, cpus: int) -> Candidate:
    """The served configuration as a candidate (threads: the parameter, else model.py's rule, default_threads)."""
    groups = config.get("instance_group") or []
    instances = sum(int(g.get("count", 1) or 1) for g in groups) or 1
    explicit = (config.get("parameters") or {}).get(threads_parameter(config), {}).get("string_value")
    try:
        threads = max(1, int(explicit)) if explicit else default_threads(cpus, instances)
    except ValueError:
        threads = default_threads(cpus, instances)
    db = config.get("dynamic_batching") or {}
    return Candidate(
        instances=instances,
        threads=threads,
        max_queue_delay_us=int(db.get("max_queue_delay_microseconds", 0) or 0),
        preferred_batch_sizes=tuple(int(b) for b in db.get("preferred_batch_size", []) or []),
    )


def candidate_config(base: dict, c: Candidate) -> dict:
    """`base` (Triton's JSON form of the model config) with the candidate's fields set."""
    cfg = copy.deepcopy(base)
    groups = cfg.get("instance_group") or [{"kind": "KIND_CPU"}]
    groups = [dict(groups[0])]  # one group: the count is the candidate's
    groups[0]["count"] = c.instances
    groups[0].pop("name", None)  # Triton names the group again from the model name
    cfg["instance_group"] = groups
    params = dict(cfg.get("parameters") or {})
    params[threads_parameter(cfg)] = {"string_value": str(c.threads)}
    cfg["parameters"] = params
    if int(cfg.get("max_batch_size", 0) or 0) > 0:
        db = dict(cfg.get("dynamic_batching") or {})
        db["max_queue_delay_microseconds"] = str(c.max_queue_delay_us)
        db["preferred_batch_size"] = list(c.preferred_batch_sizes)
        cfg["dynamic_batching"] = db
    return cfg


def sweep_levels(max_concurrency: int, objective: Objective) -> list[int]:
    """1, 2, 4, ... up to max_concurrency, and the objective's p99 concurrency."""
    levels, c = set(), 1
    while c < max_concurrency:
        levels.add(c)
        c *= 2
    levels.add(max_concurrency)
    if objective.p99_concurrency:
        levels.add(objective.p99_concurrency)
    return sorted(levels)


def keep_sweeping(levels: list[Level], objective: Objective, remaining: list[int]) -> bool:
    """After a level: go on while the objective holds and throughput still grows (the objective's own
    concurrency, when it has one, is always measured)."""
    if not remaining:
        return False
    last = levels[-1]
    if objective.p99_concurrency and any(c == objective.p99_concurrency for c in remaining):
        return not last.errors
    if last.errors or (objective.max_p99_ms is not None and last.p99_ms is not None and last.p99_ms > objective.max_p99_ms):
        return False
    if len(levels) >= 2:
        best_before = max(lv.throughput for lv in levels[:-1])
        if last.throughput < best_before * (1 + PLATEAU_GAIN):
            return False
    return True


@dataclass
class MeasureSettings:
    window_s: float = 1.0
    max_concurrency: int = 32
    client_processes: int = 2
    request_timeout_s: float = 10.0


class Measurer:
    """Measures candidates of `model` on the Triton at `grpc_url`. Use as a context manager."""

    def __init__(self, grpc_url: str, model: str, repo_dir: Path, objective: Objective, settings: MeasureSettings,
                 *, metrics_url: str | None = None, url_flag: str = "--url", restore: bool = True):
        self.grpc_url = grpc_url
        self.metrics_url = metrics_url
        self.model = model
        self.repo_dir = Path(repo_dir)
        self.objective = objective
        self.settings = settings
        self.url_flag = url_flag
        self.restore = restore  # leave the model as it was served (not needed on a plane about to stop)
        self.on_progress: Callable[[str], None] = lambda text: None
        self._endpoint = None
        self._gen = None
        self._client = None
        self.base_config: dict[str, Any] = {}
        self._reference = None

    # -- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> "Measurer":
        import tritonclient.grpc as grpcclient

        from smoke_tests.endpoint import Endpoint, EndpointError
        from smoke_tests.references import load_model_reference

        self._endpoint = Endpoint("grpc", self.grpc_url, timeout=5.0, infer_timeout=self.settings.request_timeout_s)
        try:
            try:
                self._endpoint.server_live()
            except EndpointError as exc:
                raise UserError(f"{self.url_flag} {self.grpc_url}: no Triton server answers there ({exc})", exit_code=2) from None
            try:
                ready = self._endpoint.model_ready(self.model)
            except EndpointError as exc:
                ready, why = False, str(exc)
            else:
                why = "not ready"
            if not ready:
                raise UserError(f"{self.url_flag} {self.grpc_url}: model {self.model} is not served there ({why}); "
                                "load it first (the server must run with --model-control-mode=explicit)", exit_code=2)
            self.base_config = self._endpoint.model_config(self.model)
            self._reference = load_model_reference(self.repo_dir, self.model)
            self._client = grpcclient.InferenceServerClient(self.grpc_url)
            from smoke_tests.loadgen import LoadGenerator

            self._gen = LoadGenerator("grpc", self.grpc_url, processes=self.settings.client_processes,
                                      request_timeout=self.settings.request_timeout_s)
            self._gen.start_processes()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None and self.base_config and self.restore:
            # Back to the configuration it was served with. A plain `load` would not do: Triton keeps serving
            # the last override until the model's repository files change.
            try:
                self._client.load_model(self.model, config=json.dumps(self.base_config), client_timeout=LOAD_TIMEOUT_S)
            except Exception:
                pass
        for thing in (self._gen, self._endpoint, self._client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:
                    pass
        self._gen = self._endpoint = self._client = None

    # -- one candidate ----------------------------------------------------------------------------

    def measure(self, c: Candidate) -> Result:
        from tritonclient.utils import InferenceServerException

        from smoke_tests.correctness import check_correctness
        from smoke_tests.errors import SmokeFatal
        from smoke_tests.loadgen import encode_payload
        from smoke_tests.measure import measure_level
        from smoke_tests.options import MeasurementProfile

        result = Result(c)
        self.on_progress("loading")
        try:
            self._client.load_model(self.model, config=json.dumps(candidate_config(self.base_config, c)),
                                    client_timeout=LOAD_TIMEOUT_S)
        except InferenceServerException as exc:
            text = str(exc.message() if hasattr(exc, "message") else exc)
            if any(s in text for s in NOT_EXPLICIT):
                raise UserError(f"{self.url_flag} {self.grpc_url}: the server does not take model loads ({text}); "
                                "models tune needs --model-control-mode=explicit", exit_code=2) from None
            result.error = f"load failed: {text}"
            return result
        ep = self._endpoint
        try:
            metadata = ep.model_metadata(self.model)
            config = ep.model_config(self.model)
            mbs = int(config.get("max_batch_size", 0) or 0)
            self.on_progress("checking answers")
            check, code = check_correctness(ep, self._reference, "", metadata, mbs)
            if code is not None:
                result.error = f"answers: {check.message}"
                return result
            ref = self._reference
            inputs = {k: v[:1] for k, v in ref.inputs.items()}  # one row per request, as the smoke gate sends
            outputs = [t["name"] for t in metadata.get("outputs", [])]
            self._gen.prepare(encode_payload("grpc", self.model, "", inputs, outputs))
            profile = MeasurementProfile(name="tune", window_s=self.settings.window_s, stability_windows=3,
                                         stability_threshold=0.10, max_windows=6)
            remaining = sweep_levels(self.settings.max_concurrency, self.objective)
            # A freshly loaded instance pays for its thread pools and allocator on the first batches: one
            # discarded window of load first, so the first level measures serving, not start-up.
            self.on_progress("warming up")
            warm = MeasurementProfile(name="warm-up", window_s=self.settings.window_s, stability_windows=1, max_windows=1)
            measure_level(self._gen, ep, self.model, "", min(4, self.settings.max_concurrency), batch=1, profile=warm,
                          request_timeout=self.settings.request_timeout_s, instances=c.instances)
            while remaining:
                conc = remaining.pop(0)

                def on_window(i, w, conc=conc):
                    self.on_progress(f"c={conc} window {i}: {w.throughput(1):,.0f} inf/s")

                lv = measure_level(self._gen, ep, self.model, "", conc, batch=1, profile=profile,
                                   request_timeout=self.settings.request_timeout_s, instances=c.instances,
                                   metrics_url=self.metrics_url, on_window=on_window)
                result.levels.append(Level(conc, lv.throughput, lv.p99_ms, lv.total_errors, lv.stable))
                if not keep_sweeping(result.levels, self.objective, remaining):
                    break
        except SmokeFatal as exc:
            result.error = exc.message
        except Exception as exc:  # the endpoint's own errors: this candidate failed, the search goes on
            from smoke_tests.endpoint import EndpointError
            from smoke_tests.loadgen import LoadGeneratorError

            if not isinstance(exc, (EndpointError, LoadGeneratorError)):
                raise
            result.error = str(exc)
        return result
