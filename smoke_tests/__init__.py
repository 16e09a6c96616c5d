"""The smoke gate: is a deployed Triton fit to serve? Readiness, correctness, throughput/latency SLOs.

Library use (no Pulumi needed):

    from smoke_tests import run_smoke, SmokeOptions, SLO, PROFILES
    report = run_smoke(SmokeOptions(url="127.0.0.1:8001", model_repo=Path("model_repo"),
                                    slos={"text_encoder": SLO(min_throughput=200, throughput_concurrency=4)},
                                    profile=PROFILES["quick"]))
    report.passed, report.exit_code, report.violations      # verdict; one line per violation
    console.print(report)                                   # rich tables; print(report.to_text()) without rich
    report.write_json(p); report.write_junit(p); report.write_csv(p); report.write_plot(p)

CLI: `python -m smoke_tests --help` (argparse; the kit's `hybridserve smoke` is the same command plus
`--stack`). Exit codes: `smoke_tests.errors`. JSON schema of the report: `smoke_tests/report.schema.json`.

Needs numpy and tritonclient (grpc, http) only, as in NVIDIA's Triton SDK image; rich and matplotlib are
used when installed. Never imports the kit (`hybridserve`), Pulumi or `infra`: the kit imports the gate.
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
    "GateError": "smoke_tests.errors",
    "SmokeFatal": "smoke_tests.errors",
    "GateSpec": "smoke_tests.gatespec",
    "parse_gate_spec": "smoke_tests.gatespec",
    "read_gate_spec": "smoke_tests.gatespec",
    "REPORT_MARKER": "smoke_tests.report",
    "extract_report": "smoke_tests.report",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from smoke_tests.errors import ExitCode, GateError, SmokeFatal
    from smoke_tests.gatespec import GateSpec, parse_gate_spec, read_gate_spec
    from smoke_tests.options import PROFILES, SLO, MeasurementProfile, ModelTarget, SmokeOptions, parse_slo_flags
    from smoke_tests.report import REPORT_MARKER, SmokeReport, extract_report
    from smoke_tests.results import LevelResult, ModelReport, Violation
    from smoke_tests.runner import options_from_kwargs, run_smoke


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smoke_tests' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
