"""`hybridserve models tune MODEL`: what Triton's Model Analyzer does, for this kit.

Searches instance count, threads per instance, max queue delay and preferred batch sizes (hybridserve.tune.search),
measures each candidate on a running Triton (hybridserve.tune.measure), prints every candidate and the best
configuration that meets the p99 objective, and with --write puts it into the model's config.pbtxt.
Every flag is checked before a server starts or a file is written.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from hybridserve.errors import UserError

DEFAULT_BUDGET_S = 300.0


@dataclass
class TuneOptions:
    model: str
    repo_dir: Path
    url: str | None = None
    stack: str | None = None
    stacks_dir: Path | None = None
    max_p99_ms: float | None = None
    budget_s: float = DEFAULT_BUDGET_S
    max_candidates: int = 20
    max_concurrency: int = 32
    window_s: float = 1.0
    cpus: int | None = None
    results_path: Path | None = None
    state_dir: Path | None = None
    write: bool = False


def _bad(message: str) -> UserError:
    return UserError(message, exit_code=2)


def check_options(o: TuneOptions):
    """(objective, model info, results file, grpc address) or UserError exit 2 naming the flag."""
    from hybridserve.models.repository import describe_repository, display_path
    from hybridserve.tune.results import ResultsFile
    from hybridserve.tune.search import Objective

    if not o.budget_s > 0:
        raise _bad(f"--budget {o.budget_s:g}: the time budget must be above 0 seconds (default {DEFAULT_BUDGET_S:g})")
    if o.max_candidates < 1:
        raise _bad(f"--max-candidates {o.max_candidates}: must be at least 1")
    if o.max_concurrency < 1:
        raise _bad(f"--max-concurrency {o.max_concurrency}: must be at least 1")
    if not o.window_s > 0:
        raise _bad(f"--window {o.window_s:g}: the measurement window must be above 0 seconds")
    if o.cpus is not None and o.cpus < 1:
        raise _bad(f"--cpus {o.cpus}: must be at least 1")
    if o.max_p99_ms is not None and not o.max_p99_ms > 0:
        raise _bad(f"--max-p99-ms {o.max_p99_ms:g}: the p99 objective must be above 0 ms")
    if o.stacks_dir is not None and o.stack is None:
        raise _bad(f"--stacks-dir {o.stacks_dir}: only used with --stack NAME; add --stack or drop it")
    address = None
    if o.url is not None:
        from smoke_tests.options import SmokeOptions

        proto, address, ssl = SmokeOptions(url=o.url).endpoint()
        if proto != "grpc" or ssl:
            raise _bad(f"--url {o.url}: models tune talks gRPC without TLS (HOST:PORT or grpc://HOST:PORT, "
                       "Triton's gRPC port, 8001 by default)")
    repo = Path(o.repo_dir)
    if not repo.is_dir():
        what = "is a file, not a directory" if repo.exists() else "no such directory"
        raise _bad(f"--repo {display_path(repo)}: {what}; expected the Triton model repository (model_repo/)")
    info = describe_repository(repo)
    if o.model not in info.names:
        raise _bad(f"MODEL {o.model!r}: no such model in {display_path(repo)} (it has: {', '.join(info.names) or 'none'})")
    objective = Objective(o.max_p99_ms)
    if o.stack is not None:
        from hybridserve.stackconfig.loader import load_stack

        slo = load_stack(o.stack, o.stacks_dir).serving.slo_for(o.model)
        if o.max_p99_ms is None:
            objective = Objective(slo.max_p99_ms, slo.p99_concurrency)
    results = ResultsFile(o.results_path, o.model).check()
    return objective, info.model(o.model), results, address


# --------------------------------------------------------------------------------------------- targets


@contextmanager
def local_plane(o: TuneOptions, console):
    """A temporary local plane serving the repository: SeaweedFS, sync, tritonserver (stopped at the end)."""
    from hybridserve.local.plane import PlaneOptions, read_record, run_plane, stop_recorded

    state = Path(o.state_dir).resolve()
    result = None
    try:
        result = run_plane(PlaneOptions(state_dir=state, repo_dir=o.repo_dir, keep=True, smoke=False), console)
        triton = (read_record(state) or {}).get("triton", {})
        yield triton["grpc"], triton.get("metrics")
    finally:
        if result is not None:
            for line in stop_recorded(state):
                console.print(f"  [dim]{line}[/]", highlight=False)


# --------------------------------------------------------------------------------------------- run


def run_tune(o: TuneOptions, console) -> int:
    from hybridserve.local.process import install_signal_handlers
    from hybridserve.tune.measure import MeasureSettings, Measurer, baseline_of, usable_cpus
    from hybridserve.tune.search import build_space, coordinate_descent

    objective, model, results, address = check_options(o)
    install_signal_handlers()  # SIGTERM unwinds like Ctrl-C: the servers stop, the results file keeps what was measured
    cpus = o.cpus or usable_cpus()
    settings = MeasureSettings(window_s=o.window_s, max_concurrency=o.max_concurrency,
                               client_processes=max(1, min(cpus, 4)))
    console.print(f"[bold]models tune {o.model}[/]: {objective.describe()}; budget {o.budget_s:g} s, at most "
                  f"{o.max_candidates} candidates, {cpus} CPUs; results: {o.results_path}", highlight=False)
    if results.known:
        console.print(f"  {len(results.known)} candidate(s) already measured in {o.results_path}: reused", highlight=False)

    @contextmanager
    def target():
        if address is not None:
            yield address, None
        else:
            with local_plane(o, console) as endpoints:
                yield endpoints

    outcome = None
    with target() as (grpc_url, metrics_url):
        with Measurer(grpc_url, o.model, o.repo_dir, objective, settings, metrics_url=metrics_url,
                      url_flag="--url" if address else "the local plane", restore=address is not None) as measurer:
            baseline = baseline_of(measurer.base_config, cpus)
            space = build_space(baseline, cpus=cpus, max_batch_size=model.max_batch_size)
            results.open_for_append()
            with _Progress(console, o.budget_s) as progress:
                measurer.on_progress = progress.step

                def on_result(r):
                    results.append(r)
                    progress.done(r, objective)

                outcome = coordinate_descent(
                    baseline, space, measurer.measure, objective,
                    budget_s=o.budget_s, max_candidates=o.max_candidates, known=results.known,
                    on_result=on_result, on_start=progress.start,
                )
    console.print(results_table(outcome, baseline, objective))
    why = {"converged": "converged (a full pass changed nothing)", "budget": f"stopped: --budget {o.budget_s:g} s used",
           "max-candidates": f"stopped: --max-candidates {o.max_candidates} measured"}[outcome.stopped]
    console.print(f"search {why}; space: {space.size()} combinations", highlight=False)
    best = outcome.best
    if best is None:
        console.print(f"[red]no candidate meets {objective.describe()}[/]: config.pbtxt left as it is", highlight=False)
        return 1
    base_r = next((r for r in outcome.results if r.candidate == baseline), None)
    lv = best.best_level(objective)
    line = f"[bold green]best[/]: {best.candidate.describe()}: {lv.throughput:,.0f} inf/s at concurrency {lv.concurrency}, p99 {lv.p99_ms:.1f} ms"
    if base_r is not None and base_r.best_level(objective) is not None and base_r is not best:
        line += f" ({lv.throughput / base_r.best_level(objective).throughput:.2f}x the current config)"
    elif base_r is best:
        line += " (the current config)"
    console.print(line, highlight=False)
    if o.write:
        write_best(o, model, best.candidate, cpus, console)
    else:
        console.print("write it into config.pbtxt with --write", style="dim")
    return 0


def write_best(o: TuneOptions, model, c, cpus: int, console) -> None:
    """Put the candidate into the model's config.pbtxt (tuned fields only), validate, else put the original back."""
    from hybridserve.models.repository import CONFIG_FILE, display_path, validate_repository
    from hybridserve.tune.pbtxt import parse_config, tuned_text, write_atomically

    path = Path(model.path) / CONFIG_FILE
    shown = display_path(path)
    text = path.read_text(encoding="utf-8")
    config = parse_config(text, shown)
    # Threads are pinned only where the file already pins them or model.py's own rule would differ.
    from hybridserve.tune.measure import default_threads

    set_threads = "torch_num_threads" in config.parameters or c.threads != default_threads(cpus, c.instances)
    new = tuned_text(text, c, where=shown, set_threads=set_threads)
    if new == text:
        console.print(f"{shown} already holds this configuration: not rewritten", highlight=False)
        return
    write_atomically(path, new)
    problems = [p for p in validate_repository(Path(o.repo_dir)) if str(Path(p.file)).startswith(str(Path(display_path(model.path))))]
    if problems:
        write_atomically(path, text)
        raise UserError(f"{shown}: the tuned configuration does not validate; the original is back:", exit_code=1,
                        details=[str(p) for p in problems])
    console.print(f"[green]wrote[/] {shown}: {c.describe()} (validated)", highlight=False)


# --------------------------------------------------------------------------------------------- display


def results_table(outcome, baseline, objective):
    from rich.table import Table

    table = Table(title=f"candidates ({objective.describe()})")
    for col in ("#", "instances x threads", "queue delay us", "preferred", "inf/s", "p99 ms", "at c", "meets", "note"):
        table.add_column(col, no_wrap=col != "note", justify="right" if col in ("#", "inf/s", "p99 ms", "at c") else "left")
    for i, r in enumerate(outcome.results, 1):
        lv = r.shown_level(objective)
        notes = []
        if r.candidate == baseline:
            notes.append("current")
        if outcome.best is r:
            notes.append("[bold green]best[/]")
        if r.resumed:
            notes.append("from results file")
        if lv is not None and not lv.stable:
            notes.append("unstable")  # its last windows differed by more than 10 %: figures less certain
        if r.error:
            notes.append(f"[red]{r.error}[/]")
        c = r.candidate
        table.add_row(
            str(i), f"{c.instances} x {c.threads}", str(c.max_queue_delay_us), ",".join(map(str, c.preferred_batch_sizes)) or "-",
            f"{lv.throughput:,.0f}" if lv else "-", f"{lv.p99_ms:.1f}" if lv and lv.p99_ms is not None else "-",
            str(lv.concurrency) if lv else "-", "[green]yes[/]" if r.meets(objective) else "[red]no[/]", "; ".join(notes),
        )
    return table


class _Progress:
    """A rich progress line per candidate (a terminal), else one printed line per measured candidate."""

    def __init__(self, console, budget_s: float):
        self.console = console
        self.budget_s = budget_s
        self._p = None
        self._task = None
        self._t0 = time.monotonic()
        self._label = ""

    def __enter__(self):
        if self.console.is_terminal:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._p = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                               console=self.console, transient=True)
            self._p.__enter__()
            self._task = self._p.add_task("tuning", total=self.budget_s)
        return self

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)

    def start(self, c, n: int) -> None:
        self._label = f"candidate {n}: {c.describe()}"
        self.step("starting")

    def step(self, text: str) -> None:
        if self._p is not None:
            self._p.update(self._task, description=f"{self._label}: {text}",
                           completed=min(self.budget_s, time.monotonic() - self._t0))

    def done(self, r, objective) -> None:
        lv = r.shown_level(objective)
        figures = f"{lv.throughput:,.0f} inf/s, p99 {lv.p99_ms:.1f} ms at c={lv.concurrency}" if lv and lv.p99_ms is not None else "no figures"
        verdict = "meets" if r.meets(objective) else "does not meet"
        self.console.print(f"  {r.candidate.describe()}: {r.error or figures} ({verdict} the objective, {r.duration_s:.0f} s)",
                           highlight=False)


# --------------------------------------------------------------------------------------------- typer


def tune_command(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="The model to tune (a directory of the repository).", show_default=False)],
    repo: Annotated[Optional[Path], typer.Option("--repo", help="Model repository. Default: model_repo/ of the checkout.", show_default=False)] = None,
    url: Annotated[Optional[str], typer.Option("--url", help="Tune on this Triton (gRPC HOST:PORT; it must run with --model-control-mode=explicit). Default: a temporary local plane (SeaweedFS + tritonserver).", show_default=False)] = None,
    stack: Annotated[Optional[str], typer.Option("--stack", metavar="NAME", help="The p99 objective from stacks/Pulumi.<NAME>.yaml (hybridserve:serving, the model's SLO).", show_default=False)] = None,
    stacks_dir: Annotated[Optional[Path], typer.Option("--stacks-dir", help="Where the stack files are (default: stacks/ of the checkout).", show_default=False)] = None,
    max_p99_ms: Annotated[Optional[float], typer.Option("--max-p99-ms", help="The p99 objective in ms (overrides --stack's). Neither: the highest throughput wins.", show_default=False)] = None,
    budget: Annotated[float, typer.Option("--budget", metavar="SECONDS", help="Time for the search; no candidate starts that would not fit (the current config is always measured).")] = DEFAULT_BUDGET_S,
    max_candidates: Annotated[int, typer.Option("--max-candidates", help="At most this many candidates measured in this run.")] = 20,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", help="Highest concurrency of each candidate's sweep (1, 2, 4, ...).")] = 32,
    window: Annotated[float, typer.Option("--window", metavar="SECONDS", help="Measurement window (perf_analyzer's; 3 stable windows per level).")] = 1.0,
    cpus: Annotated[Optional[int], typer.Option("--cpus", help="CPUs the server may use: bounds instances x threads. Default: this machine's.", show_default=False)] = None,
    results: Annotated[Optional[Path], typer.Option("--results", help="Resumable results file (JSON lines). Default: .state/tune/<MODEL>.jsonl; a rerun skips what it holds.", show_default=False)] = None,
    state_dir: Annotated[Optional[Path], typer.Option("--state-dir", help="State of the temporary local plane. Default: .state/tune/plane.", show_default=False)] = None,
    write: Annotated[bool, typer.Option("--write", help="Write the best configuration into the model's config.pbtxt (only the tuned fields; validated).")] = False,
) -> None:
    """Search instance count, threads, max queue delay and preferred batch sizes for MODEL against the p99 objective.

    Each candidate is loaded with Triton's repository API (a config override), checked against the reference outputs, and measured with the smoke gate's load generator over rising concurrency. Prints every candidate and the best that meets the objective; exits 1 when none does.
    """
    from hybridserve.console import make_console
    from hybridserve.paths import model_repo_dir, state_dir as default_state

    options = TuneOptions(
        model=model, repo_dir=(repo or model_repo_dir()), url=url, stack=stack, stacks_dir=stacks_dir,
        max_p99_ms=max_p99_ms, budget_s=budget, max_candidates=max_candidates, max_concurrency=max_concurrency,
        window_s=window, cpus=cpus, results_path=results or default_state() / "tune" / f"{model}.jsonl",
        state_dir=state_dir or default_state() / "tune" / "plane", write=write,
    )
    code = run_tune(options, make_console())
    if code:
        raise SystemExit(code)
