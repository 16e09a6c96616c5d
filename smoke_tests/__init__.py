"""The smoke gate: is a deployed Triton fit to serve? Readiness, correctness, throughput/latency SLOs.

Library use (no Pulumi needed):

    from smoke_tests import run_smoke, SmokeOptions, SLO, PROFILES
    report = run_smoke(SmokeOptions(url="127.0.0.1:8001", model_repo=Path("model_repo"),
                                    slos={"text_encoder": SLO(min_throughput=200, throughput_concurrency=4)},
                                    profile=PROFILES["quick"]))
    report.passed, report.exit_code, report.violations      # verdict; one line per violation
    console.print(report)                                   # rich tables (report.summary_table() alone)
    report.write_json(p); report.write_junit(p); report.write_csv(p); report.write_plot(p)

CLI: `hybridserve smoke --help` or `python -m smoke_tests --help`. Exit codes: `smoke_tests.errors`.
JSON schema of the report: `smoke_tests/report.schema.json`.

Exports are resolved lazily so `import smoke_tests` (and the CLI's --help) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "run_smoke": "smoke_tests.runner",
    "options_from_kwargs": "smoke_tests.runner",
    "SmokeOptions": "smoke_tests.options",
    "SLO": "smoke_tests.options",
    "MeasurementProfile": "smoke_tests.options",
    "ModelTarget": "smoke_tests.options",
    "PROFILES": "smoke_tests.options",
    "parse_slo_flags": "smoke_tests.options",
    "SmokeReport": "smoke_tests.report",
    "ModelReport": "smoke_tests.results",
    "LevelResult": "smoke_tests.results",
    "Violation": "smoke_tests.results",
    "ExitCode": "smoke_tests.errors",
    "SmokeFatal": "smoke_tests.errors",
    "slos_from_stack": "smoke_tests.stack",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from smoke_tests.errors import ExitCode, SmokeFatal
    from smoke_tests.options import PROFILES, SLO, MeasurementProfile, ModelTarget, SmokeOptions, parse_slo_flags
    from smoke_tests.report import SmokeReport
    from smoke_tests.results import LevelResult, ModelReport, Violation
    from smoke_tests.runner import options_from_kwargs, run_smoke
    from smoke_tests.stack import slos_from_stack


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smoke_tests' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
