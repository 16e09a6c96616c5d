"""The smoke gate, run on the candidate alone: correctness against the version's own reference set (as
published in the store), then the concurrency sweep and the SLOs (`hybridserve smoke`'s flags).

The gate reads references from a model repository; a throw-away one is made holding the candidate's name,
the published config.pbtxt (tolerances, tensor declarations) and the version's reference.npz.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from smoke_tests.options import ALL_MODELS, ModelTarget, parse_slo_flags


def candidate_slos(model: str, candidate: str, min_throughput=(), max_p99_ms=(), max_error_rate=()) -> dict:
    """The SLO flags as `hybridserve smoke` takes them, with MODEL= applied to the candidate. Exit 2 on bad flags."""
    slos = parse_slo_flags(min_throughput, max_p99_ms, max_error_rate)
    out = {ALL_MODELS: slos[ALL_MODELS]} if ALL_MODELS in slos else {}
    if model in slos:
        out[candidate] = slos[model]
    return out


GATE_MAX_CONCURRENCY = 8


def run_gate(*, url: str, candidate: str, version: int, config_text: str, reference: bytes, slos: dict,
             profile: str, wait_ready_s: float, json_path: Path | None = None, console=None,
             throughput: bool = True):
    """The smoke report of `candidate` version `version` (raises GateError on bad input only)."""
    import dataclasses

    from smoke_tests import run_smoke
    from smoke_tests.options import PROFILES

    # The candidate shares the Triton that serves clients: no capacity search to saturation (the quick profile
    # searches up to concurrency 256), a fixed ladder up to GATE_MAX_CONCURRENCY, as the gate ran before.
    bounded = dataclasses.replace(PROFILES[profile], max_concurrency=min(PROFILES[profile].max_concurrency, GATE_MAX_CONCURRENCY),
                                  search=False, time_budget_s=None)
    with tempfile.TemporaryDirectory(prefix="hybridserve-gate-") as tmp:
        model_dir = Path(tmp) / candidate
        (model_dir / str(version)).mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(config_text)
        (model_dir / str(version) / "reference.npz").write_bytes(reference)
        return run_smoke(
            url=url,
            models=[ModelTarget(candidate, str(version))],
            model_repo=Path(tmp),
            profile=bounded,
            slos=slos,
            wait_ready_s=wait_ready_s,
            throughput=throughput,
            json_path=json_path,
            console=console,
            show_progress=False,
        )
