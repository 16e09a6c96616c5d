"""Benchmark: what `hybridserve models tune` gains over the model's current config.pbtxt, side by side in one run.

    .venv/bin/python bench/bench_tune.py                       # text_encoder, p99 <= 100 ms, 4-minute search
    .venv/bin/python bench/bench_tune.py --model image_classifier --budget 600 --max-p99-ms 50
    .venv/bin/python bench/bench_tune.py --quick               # 2 candidates, short windows: proves the script works

One tritonserver (free loopback ports, stopped at the end, also on failure) serves the built model from the
repository (explicit model control, so each configuration is loaded with a config override, as the tuner does):

1. the tuner's search (hybridserve.tune: coordinate descent from the current config, bounded by --budget);
2. the current and the tuned configuration measured again, alternately (current, tuned, current, tuned, ...
   for --rounds), with the same sweep: each one's throughput is the highest that meets the p99 objective;
   -> ratio tuned / current (throughput at the objective), and both p99s.

Alternating rounds on the same server let other work on the machine weigh on both sides alike; the figures
still move from run to run on a shared machine: compare the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridserve.local.triton import TritonServer  # noqa: E402
from hybridserve.paths import model_repo_dir  # noqa: E402
from hybridserve.tune.measure import MeasureSettings, Measurer, baseline_of, usable_cpus  # noqa: E402
from hybridserve.tune.search import Objective, build_space, coordinate_descent  # noqa: E402


def built_repo(repo: Path | None) -> Path:
    """The given built repository, else model_repo/ of the checkout (artifacts built when missing or stale)."""
    from hybridserve.models.build import build_models

    repo = repo or model_repo_dir()
    if repo == model_repo_dir():
        build_models(repo, force=False, progress=False)
    return repo


def figures(results, objective: Objective) -> dict:
    """Over the rounds of one configuration, means of: throughput and p99 at the objective (the credited level)
    and at the peak (the highest-throughput level measured, whatever its p99)."""
    out = {}
    for kind, pick in (("slo", lambda r: r.best_level(objective)),
                       ("peak", lambda r: max(r.levels, key=lambda lv: lv.throughput) if r.levels else None)):
        ok = [lv for lv in map(pick, results) if lv is not None and lv.p99_ms is not None]
        out[kind] = (statistics.fmean(lv.throughput for lv in ok) if ok else 0.0,
                     statistics.fmean(lv.p99_ms for lv in ok) if ok else None,
                     ",".join(str(lv.concurrency) for lv in ok) or "-")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="text_encoder")
    parser.add_argument("--repo", type=Path, default=None, help="a built model repository (default: model_repo/)")
    parser.add_argument("--max-p99-ms", type=float, default=100.0)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for the search")
    parser.add_argument("--max-candidates", type=int, default=20)
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2, help="alternating re-measurements of each configuration")
    parser.add_argument("--quick", action="store_true", help="2 candidates, 0.3 s windows, concurrency <= 2, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.max_candidates, args.window, args.max_concurrency, args.rounds = 2, 0.3, 2, 1

    repo = built_repo(args.repo)
    objective = Objective(args.max_p99_ms)
    cpus = usable_cpus()
    settings = MeasureSettings(window_s=args.window, max_concurrency=args.max_concurrency,
                               client_processes=max(1, min(cpus, 4)))
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_tune_") as tmp:
        work = Path(tmp)
        print(f"starting tritonserver with {args.model} ...", flush=True)
        with TritonServer(repo, [args.model], log_path=work / "triton.log", work_dir=work / "triton") as server:
            # restore=False: the server stops right after; loading the original config back would only cost time.
            with Measurer(server.grpc_url, args.model, repo, objective, settings, metrics_url=server.metrics_url,
                          restore=False) as m:
                current = baseline_of(m.base_config, cpus)
                space = build_space(current, cpus=cpus, max_batch_size=int(m.base_config.get("max_batch_size", 0) or 0))
                print(f"search: {objective.describe()}, budget {args.budget:g} s, at most {args.max_candidates} candidates ...",
                      flush=True)
                outcome = coordinate_descent(
                    current, space, m.measure, objective, budget_s=args.budget, max_candidates=args.max_candidates,
                    on_result=lambda r: print(f"  {r.candidate.describe()}: "
                                              f"{(r.best_level(objective).throughput if r.best_level(objective) else 0):,.0f} inf/s"
                                              f"{' (' + r.error + ')' if r.error else ''}", flush=True),
                )
                tuned = outcome.best.candidate if outcome.best is not None else current
                print(f"side by side: {args.rounds} alternating round(s) of current and tuned ...", flush=True)
                runs: dict[str, list] = {"current": [], "tuned": []}
                for _ in range(args.rounds):
                    runs["current"].append(m.measure(current))
                    runs["tuned"].append(m.measure(tuned))

    figs = {name: figures(runs[name], objective) for name in ("current", "tuned")}
    print()
    print(f"model {args.model}, {cpus} CPUs, {objective.describe()}, {len(outcome.results)} candidates searched "
          f"({outcome.stopped}), {time.monotonic() - t0:.0f} s in all")
    print(f"  {'':<8} {'at the objective':>36}   {'peak (any p99)':>36}")
    for name, c in (("current", current), ("tuned", tuned)):
        cells = []
        for kind in ("slo", "peak"):
            tp, p99, at = figs[name][kind]
            p99_text = f"{p99:7.1f} ms" if p99 is not None else "      - ms"
            cells.append(f"{tp:9.1f} inf/s p99 {p99_text} c={at:<5}")
        print(f"  {name:<8} {cells[0]}   {cells[1]}   {c.describe()}")

    def ratio(kind: str) -> str:
        cur, tun = figs["current"][kind][0], figs["tuned"][kind][0]
        return f"{tun / cur:.2f}" if cur > 0 else "n/a (the current config served no level within it)"

    print(f"  ratio tuned / current (throughput at the objective)   {ratio('slo')}")
    print(f"  ratio tuned / current (peak throughput)               {ratio('peak')}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
