"""`hybridserve local up|down|status`: the local serving plane (SeaweedFS + tritonserver on loopback)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hybridserve.console import make_console

app = typer.Typer(
    help="The local serving plane: encrypted SeaweedFS store + real tritonserver on loopback, then a smoke test.",
    no_args_is_help=True,
)

_STATE_HELP = (
    "State directory: object store data, key-encryption key, logs, plane.json; created if missing. "
    "Default: $HYBRIDSERVE_STATE_DIR, else .state/ of the checkout."
)


def _exit(code: int) -> None:
    # Not typer.Exit: hybridserve.cli.main runs click with standalone_mode=False, which returns that code unused.
    raise SystemExit(code)


def _state_dir(path: Optional[Path]) -> Path:
    from hybridserve.paths import state_dir

    return (path or state_dir()).resolve()


@app.command("up")
def up_command(
    keep: bool = typer.Option(False, "--keep", help="Leave the plane running and print its endpoints; stop it with `local down`."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help=_STATE_HELP),
    repo: Optional[Path] = typer.Option(None, "--repo", help="Model repository to build, sync and serve. Default: model_repo/ of the checkout."),
    bucket: str = typer.Option("hybridserve-models", "--bucket", help="Bucket in the local store, created encrypted and versioned: 3-63 lowercase letters, digits, '.' or '-'."),
    prefix: str = typer.Option("models", "--prefix", help="Key prefix of the model repository inside the bucket (names separated by '/'; no '.' or '..')."),
    no_smoke: bool = typer.Option(False, "--no-smoke", help="Skip the smoke test (readiness is still checked)."),
    smoke_profile: str = typer.Option("quick", "--smoke-profile", help="Smoke measurement profile: quick (about a minute) or default (perf_analyzer's windows)."),
    smoke_window: Optional[float] = typer.Option(None, "--smoke-window", metavar="SECONDS", help="Smoke measurement window per concurrency level, seconds above 0 (as `hybridserve smoke --window`). Default: the profile's (quick 2, default 5); 1 halves the smoke test for a rougher figure."),
    startup_timeout: float = typer.Option(180.0, "--startup-timeout", min=10, help="Seconds tritonserver may take to load the models."),
    min_throughput: Optional[list[str]] = typer.Option(None, "--min-throughput", metavar="SLO", help="Smoke SLO, as for `hybridserve smoke`: N inferences/s for every model or MODEL=N, optionally @CONCURRENCY (e.g. text_encoder=200@4); repeatable."),
    max_p99_ms: Optional[list[str]] = typer.Option(None, "--max-p99-ms", metavar="SLO", help="Smoke SLO: p99 latency in ms, MS or MODEL=MS, optionally @CONCURRENCY; repeatable."),
    max_error_rate: Optional[list[str]] = typer.Option(None, "--max-error-rate", metavar="SLO", help="Smoke SLO: error rate R or MODEL=R, a fraction from 0 to 1; repeatable."),
    variants: bool = typer.Option(False, "--variants", help="Also serve the compressed variants (e.g. text_encoder_int8); by default only the base models, as the clusters do."),
) -> None:
    """Start the store, sync the models, serve them with tritonserver, smoke-test, then stop everything.

    Exits 1 when the smoke test fails. With --keep the servers stay up after a successful start.
    """
    from hybridserve.local.plane import PlaneOptions, endpoints_table, results_table, run_plane
    from hybridserve.local.process import install_signal_handlers
    from hybridserve.paths import model_repo_dir

    install_signal_handlers()  # SIGTERM/SIGHUP unwind through run_plane's finally like Ctrl-C
    console = make_console()
    sd = _state_dir(state_dir)
    options = PlaneOptions(
        state_dir=sd,
        repo_dir=(repo or model_repo_dir()).resolve(),
        bucket=bucket,
        prefix=prefix,
        keep=keep,
        smoke=not no_smoke,
        smoke_profile=smoke_profile,
        smoke_window=smoke_window,
        startup_timeout=startup_timeout,
        min_throughput=tuple(min_throughput or ()),
        max_p99_ms=tuple(max_p99_ms or ()),
        max_error_rate=tuple(max_error_rate or ()),
        variants=variants,
    )
    console.print(f"[bold]hybridserve local up[/]  state: {sd}  repository: {options.repo_dir}", highlight=False)
    try:
        result = run_plane(options, console)
    except KeyboardInterrupt:
        # Exit here: typer with standalone_mode=False turns KeyboardInterrupt into a return value main() drops.
        make_console(stderr=True).print("[yellow]interrupted[/]: the servers this run started are stopped")
        _exit(130)

    if result.smoke_rendering is not None:
        console.print(result.smoke_rendering)  # the smoke gate's own tables: sweeps, saturation, violations
        console.print(f"smoke report (JSON): {result.smoke_report_path}", highlight=False)
    if result.models:
        console.print(results_table(result))  # the headline, narrow enough for an 80-column terminal
    total = result.timings.get("total")
    if result.kept:
        console.print("\n[bold green]The plane is running.[/] Endpoints:")
        console.print(endpoints_table(result.endpoints))
        console.print(f"\nStop it with: [bold]hybridserve local down --state-dir {sd}[/]", highlight=False)
    else:
        console.print("\nEndpoints while it ran:")
        console.print(endpoints_table(result.endpoints))
    verdict = "passed" if result.passed else "[red]FAILED[/]"
    smoke = f"smoke test {verdict}" if result.smoke_ran else "smoke test skipped (--no-smoke)"
    console.print(f"{smoke}; total {total:.1f} s" if total else smoke, highlight=False)
    if result.failure:
        make_console(stderr=True).print(result.failure, highlight=False, markup=False, soft_wrap=True)
    if not result.passed:
        _exit(1)


@app.command("down")
def down_command(
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help=_STATE_HELP),
) -> None:
    """Stop a plane left running by `local up --keep` (or by an `up` that was killed) and remove its record."""
    from hybridserve.local.plane import record_path, stop_recorded

    console = make_console()
    sd = _state_dir(state_dir)
    lines = stop_recorded(sd)
    if not lines:
        console.print(f"No local plane recorded in {sd} ({record_path(sd).name} absent): nothing to stop.", highlight=False)
        return
    for line in lines:
        console.print(f"  {line}", highlight=False)
    if all(line.endswith(": not running") for line in lines):
        # A record left by a crashed or killed `up`: saying "stopped" would suggest something had been running.
        console.print(f"Nothing was running; removed the stale record {record_path(sd)}.", highlight=False)
        return
    console.print("Local plane stopped. Its data stays in the state directory for the next `local up`.")


@app.command("status")
def status_command(
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help=_STATE_HELP),
) -> None:
    """Show whether a plane is running from this state directory, its processes and endpoints.

    Exits 0 when it runs and answers, 1 otherwise.
    """
    from hybridserve.local.plane import endpoints_of, endpoints_table, plane_status

    console = make_console()
    sd = _state_dir(state_dir)
    status = plane_status(sd)
    if status is None:
        console.print(f"No local plane running from {sd}.", highlight=False)
        _exit(1)
    from rich.table import Table

    table = Table(title=f"local plane in {sd}", title_justify="left")
    table.add_column("process")
    table.add_column("pid", justify="right")
    table.add_column("state")
    for name, pid, running in status["processes"]:
        table.add_row(name, str(pid), "[green]running[/]" if running else "[red]gone[/]")
    for name, ok in status["probes"].items():
        table.add_row(name, "", "[green]answers[/]" if ok else "[red]no answer[/]")
    console.print(table)
    console.print(endpoints_table(endpoints_of(status["record"])))
    if not status["healthy"]:
        console.print(f"[yellow]The plane is not fully up.[/] Clean up with: hybridserve local down --state-dir {sd}", highlight=False)
        _exit(1)
