"""`hybridserve smoke` (also `python -m smoke_tests`): the smoke gate's command line.

Only typer at import time; the gate's modules load when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

def smoke_command(
    url: str = typer.Option(
        "127.0.0.1:8001", "--url", "-u", envvar="HYBRIDSERVE_TRITON_URL",
        help="Triton endpoint: HOST:PORT, or grpc:// grpcs:// http:// https:// + HOST:PORT (a port-forward, a stack output).",
    ),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="grpc or http (default: from the URL scheme, else grpc)."),
    metrics_url: Optional[str] = typer.Option(
        None, "--metrics-url", help="Triton's metrics endpoint HOST:PORT (e.g. 127.0.0.1:8002): the server host's CPU per window, for the saturation verdict."),
    model: list[str] = typer.Option(
        [], "--model", "-m", help="Expected model NAME or NAME:VERSION (repeatable). Default: the stack's, else every model with a reference."),
    model_repo: Optional[Path] = typer.Option(
        None, "--model-repo", help="Built model repository with <model>/<version>/reference.npz (default: the kit's model_repo/ when built)."),
    stack: Optional[str] = typer.Option(None, "--stack", help="Read expected models and SLOs from stacks/Pulumi.<STACK>.yaml (hybridserve:serving)."),
    stacks_dir: Optional[Path] = typer.Option(None, "--stacks-dir", help="Where the stack files are (default: stacks/)."),
    min_throughput: list[str] = typer.Option(
        [], "--min-throughput", help="[MODEL=]N\\[@C]: at least N inferences/s at concurrency C (no @C: at the peak). No MODEL=: every model. "
        "Repeatable, e.g. --min-throughput text_encoder=200@4. Default: the stack's slo, else not checked."),
    max_p99_ms: list[str] = typer.Option(
        [], "--max-p99-ms", help="[MODEL=]N\\[@C]: p99 latency at most N ms at concurrency C (no @C: at the throughput concurrency, else at "
        "every level). Repeatable. Default: the stack's slo, else not checked."),
    max_error_rate: list[str] = typer.Option(
        [], "--max-error-rate", help="[MODEL=]R: failed/all requests at most R, a fraction from 0 to 1 (0.01 = 1 %). Repeatable. Default 0."),
    profile: str = typer.Option("default", "--profile", help="default (5 s windows, up to 10, concurrency 1..16) or quick (2 s windows, up to 4, 1..8)."),
    window: Optional[float] = typer.Option(None, "--window", help="Measurement window, seconds, above 0 (perf_analyzer --measurement-interval). Default: the profile's (5, quick 2)."),
    max_windows: Optional[int] = typer.Option(None, "--max-windows", help="Windows per concurrency before the result counts as unstable; at least --stability-windows. Default: the profile's (10, quick 4)."),
    stability_windows: Optional[int] = typer.Option(None, "--stability-windows", help="Consecutive windows that must agree for a stable result, at least 1 (default 3)."),
    stability_threshold: Optional[float] = typer.Option(None, "--stability-threshold", help="Allowed deviation of those windows from their mean, a fraction between 0 and 1 (default 0.10 = 10 %)."),
    stability_latency: Optional[str] = typer.Option(None, "--stability-latency", help="Latency the windows must agree on: avg (default) or p99."),
    max_concurrency: Optional[int] = typer.Option(None, "--max-concurrency", help="Highest concurrency of the sweep 1, 2, 4, ..., at least 1. Default: the profile's (16, quick 8)."),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", help="Explicit levels, comma-separated integers >= 1, e.g. 1,4,16 (replaces the doubling sweep)."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Rows per request, at least 1 (perf_analyzer -b)."),
    client_processes: Optional[int] = typer.Option(None, "--client-processes", help="Load generator processes, 1 to 64 (default min(CPUs, 4))."),
    request_timeout: float = typer.Option(10.0, "--request-timeout", help="Bound on each inference request, seconds."),
    call_timeout: float = typer.Option(5.0, "--call-timeout", help="Bound on each control call (health, metadata, statistics), seconds."),
    wait_ready: Optional[float] = typer.Option(
        None, "--wait-ready", help="Wait up to this many seconds for the server and models to be ready (default 0; the stack's wait_ready_seconds with --stack)."),
    correctness: bool = typer.Option(True, "--correctness/--no-correctness", help="Check outputs on the reference inputs."),
    throughput: bool = typer.Option(True, "--throughput/--no-throughput", help="Run the concurrency sweep."),
    fail_on_unstable: bool = typer.Option(False, "--fail-on-unstable", help="An unstable measurement is an SLO violation (exit 1)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON (schema: smoke_tests/report.schema.json)."),
    junit_path: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML for CI."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write CSV with perf_analyzer's columns (+ model columns)."),
    plot_path: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG: throughput and p99 against concurrency per model."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write all four (smoke.json, smoke.junit.xml, smoke.csv, smoke.png) here."),
) -> None:
    """The smoke gate: is this Triton fit to serve? Readiness, correctness on the reference set, and a throughput / latency sweep against each model's SLO.

    Exit codes: 0 passed, 1 SLO violation, 2 bad input, 3 endpoint unreachable or stopped answering, 4 unknown model or not ready, 5 wrong outputs, 6 interface mismatch.
    """
    from dataclasses import replace

    from rich.console import Console
    from hybridserve.console import make_console

    from hybridserve.errors import UserError
    from smoke_tests.errors import ExitCode, bad_input
    from smoke_tests.options import PROFILES, ModelTarget, SmokeOptions, parse_slo_flags, resolve_slos
    from smoke_tests.runner import run_smoke

    if profile not in PROFILES:
        raise bad_input(f"--profile {profile!r}: expected one of {', '.join(PROFILES)}")
    prof = PROFILES[profile]
    changes = {}
    for key, value in (("window_s", window), ("max_windows", max_windows), ("stability_windows", stability_windows),
                       ("stability_threshold", stability_threshold), ("stability_latency", stability_latency),
                       ("max_concurrency", max_concurrency)):
        if value is not None:
            changes[key] = value
    if concurrency is not None:
        try:
            levels = tuple(sorted({int(x) for x in concurrency.split(",") if x.strip()}))
        except ValueError:
            levels = ()
        if not levels:  # "" or "," used to fall back to the doubling sweep without a word
            raise bad_input(f"--concurrency {concurrency!r}: expected a comma-separated list of integers, e.g. 1,4,16")
        changes["concurrencies"] = levels
    prof = replace(prof, **changes)

    overrides = parse_slo_flags(min_throughput, max_p99_ms, max_error_rate)
    targets = [ModelTarget.parse(m) for m in model] or None
    base_slos = {}
    wait = wait_ready
    if stack:
        from smoke_tests.stack import slos_from_stack

        cfg = slos_from_stack(stack, stacks_dir)
        base_slos = cfg.slos
        if targets is None:
            targets = cfg.models
        if wait is None:
            wait = cfg.wait_ready_s
    if model_repo is None:
        model_repo = _default_model_repo()

    # SLOs per model are resolved once the model list is known (flags win over the stack).
    names = [t.name for t in targets] if targets else None
    if names is None and model_repo is not None:
        from smoke_tests.references import models_with_references

        names = models_with_references(model_repo)
    for key in overrides:
        if key != "*" and names is not None and key not in names:
            raise bad_input(f"an SLO flag names model {key!r}, which is not checked here (models: {', '.join(names) or 'none'})")
    slos = resolve_slos(names or [], base_slos, overrides)
    if not names:
        slos = {**base_slos, **overrides}

    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise bad_input(f"--out-dir {out_dir}: is a file, not a directory (it is created if missing)")
        json_path = json_path or out_dir / "smoke.json"
        junit_path = junit_path or out_dir / "smoke.junit.xml"
        csv_path = csv_path or out_dir / "smoke.csv"
        plot_path = plot_path or out_dir / "smoke.png"

    options = SmokeOptions(
        url=url, protocol=protocol, metrics_url=metrics_url, models=targets, model_repo=model_repo, slos=slos, profile=prof,
        batch_size=batch_size, client_processes=client_processes, correctness=correctness, throughput=throughput,
        fail_on_unstable=fail_on_unstable, request_timeout_s=request_timeout, call_timeout_s=call_timeout,
        wait_ready_s=wait or 0.0, json_path=json_path, junit_path=junit_path, csv_path=csv_path, plot_path=plot_path,
    )
    out = make_console()
    if not out.is_terminal:
        out = Console(width=max(out.width, 150))  # CI logs: room for the sweep tables
    err = make_console(stderr=True)
    report = run_smoke(options, console=err, show_progress=err.is_terminal)

    measured = any(m.ready or m.violations for m in report.models)
    if report.error is None or measured:
        out.print(report.render(include_violations=False))
    for p in (json_path, junit_path, csv_path, plot_path):
        if p is not None:
            err.print(f"[dim]wrote {p}[/]", highlight=False)
    code = report.exit_code
    if code != ExitCode.PASSED:
        if report.error is not None and not measured:
            raise UserError(report.error.message, exit_code=int(code))
        lines = [v.message for v in report.violations]
        raise UserError(
            f"smoke gate FAILED (exit code {int(code)}): {len(lines)} problem(s)",
            exit_code=int(code),
            details=lines,
        )


def _default_model_repo() -> Path | None:
    """The kit's model_repo/ when it holds at least one built reference, else None."""
    try:
        from hybridserve.paths import model_repo_dir
        from smoke_tests.references import models_with_references

        repo = model_repo_dir()
        return repo if repo.is_dir() and models_with_references(repo) else None
    except Exception:
        return None
