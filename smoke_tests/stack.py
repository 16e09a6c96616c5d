"""Expected models and SLOs from a stack's `hybridserve:serving` section (stacks/Pulumi.<team>-<env>.yaml).

Reads the file offline through `hybridserve.stackconfig` (pydantic, no Pulumi). `serving.models` lists the
models (and versions) Triton must serve, empty meaning "every model of the repository";
`serving.slo` / `serving.model_slos` map field by field onto `smoke_tests.options.SLO`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoke_tests.options import ALL_MODELS, SLO, ModelTarget


@dataclass
class StackSmokeConfig:
    stack: str
    models: list[ModelTarget] | None  # None: every model of the model repository
    slos: dict[str, SLO] = field(default_factory=dict)  # by model name; "*" for models without their own
    wait_ready_s: float | None = None


def slo_from_schema(slo: Any) -> SLO:
    """`hybridserve.stackconfig.schema.serving.Slo` (or SloOverride) -> smoke_tests SLO."""
    return SLO(
        min_throughput=slo.min_throughput,
        throughput_concurrency=slo.throughput_concurrency,
        max_p99_ms=slo.max_p99_ms,
        p99_concurrency=slo.p99_concurrency,
        max_error_rate=slo.max_error_rate,
    )


def slos_from_serving(stack: str, serving: Any) -> StackSmokeConfig:
    models: list[ModelTarget] | None = None
    if serving.models:
        models = []
        for spec in serving.models:
            if spec.versions:
                models.extend(ModelTarget(spec.name, str(v)) for v in spec.versions)
            else:
                models.append(ModelTarget(spec.name))
    slos = {ALL_MODELS: slo_from_schema(serving.slo)}
    for name in serving.model_slos:
        slos[name] = slo_from_schema(serving.slo_for(name))
    return StackSmokeConfig(stack, models, slos, float(serving.slo.wait_ready_seconds))


def slos_from_stack(stack: str, stacks_dir: Path | None = None) -> StackSmokeConfig:
    """Load stack `stack` (e.g. "vision-dev") and convert its serving section; UserError (exit 2) if invalid."""
    from hybridserve.stackconfig.loader import load_stack

    cfg = load_stack(stack, stacks_dir)
    return slos_from_serving(stack, cfg.serving)
