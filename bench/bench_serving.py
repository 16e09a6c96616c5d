"""Benchmark: served throughput against the same TorchScript in-process, and where the server's time goes.

    .venv/bin/python bench/bench_serving.py                         # text_encoder, 3 rounds
    .venv/bin/python bench/bench_serving.py --before e684605        # and that commit's model.py + config.pbtxt
    .venv/bin/python bench/bench_serving.py --model image_classifier --rounds 2
    .venv/bin/python bench/bench_serving.py --quick                 # one short round, 1 thread in-process (what the test runs)
    .venv/bin/python bench/bench_serving.py --built-repo DIR        # an already built model repository instead of building one

One run, on this machine. Each variant (the working tree's model.py and config.pbtxt; with `--before REV` also
those of REV) gets its own tritonserver, all started up front and idle while another is measured. In each
round, for each variant in turn (the order alternates between rounds, so a busier minute on the machine
falls on both sides alike):

1. served: the smoke gate's capacity search (the quick profile: highest stable inferences/s before the
   throughput stops growing, at batch size 1 per request, its own asyncio gRPC load generator);
2. breakdown: one more gate level at that concurrency, bracketed by Triton's statistics
   (`/v2/models/NAME/stats`: queue, compute_input, compute_infer, compute_output, executions per batch
   size) and by timers inside the Python backend's stub (a copy of model.py with `execute()` and the
   forward pass timed; both variants carry the same few clock reads per batch);
3. in-process: the same model.pt run here in a loop at the batch size Triton formed in (2), with 1 and with
   all CPUs' intra-op threads (--quick: 1 only); the better of the two is the denominator (what the model alone
   can do here).

Printed: per variant the median over rounds of served inf/s, in-process rows/s and their ratio, then the
per-batch breakdown of the last round: where one dynamic batch's time goes between the client, Triton, the
stub and torch. Figures vary with other work on the machine; the ratios, measured side by side, vary less.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridserve.local.triton import TritonServer  # noqa: E402
from hybridserve.paths import model_repo_dir  # noqa: E402
from smoke_tests import PROFILES, SmokeOptions, run_smoke  # noqa: E402
from smoke_tests.endpoint import Endpoint, ModelStats  # noqa: E402
from smoke_tests.options import ModelTarget  # noqa: E402
from smoke_tests.references import load_model_reference  # noqa: E402

# Appended to each variant's model.py: times execute() and the forward pass inside the stub, and writes the
# totals next to model.py at most every 0.1 s (a file write per batch would be a cost of its own).
PROFILE_SUFFIX = '''

# ---- appended by bench/bench_serving.py ----
import time as _bench_time

_BenchModel = TritonPythonModel


class _BenchTimed:
    def __init__(self, model):
        self.model, self.ns = model, 0

    def __call__(self, *args):
        t = _bench_time.perf_counter_ns()
        try:
            return self.model(*args)
        finally:
            self.ns += _bench_time.perf_counter_ns() - t


class TritonPythonModel(_BenchModel):  # noqa: F811
    def initialize(self, args):
        super().initialize(args)
        self.model = _BenchTimed(self.model)
        name = args.get("model_instance_name", "instance").replace("/", "_")
        self._bench_path = os.path.join(args["model_repository"], args["model_version"], f"bench-{name}.json")
        self._bench = {"executes": 0, "requests": 0, "execute_ns": 0, "forward_ns": 0}
        self._bench_dumped = 0

    def execute(self, requests):
        t0 = _bench_time.perf_counter_ns()
        try:
            return super().execute(requests)
        finally:
            t1 = _bench_time.perf_counter_ns()
            b = self._bench
            b["executes"] += 1
            b["requests"] += len(requests)
            b["execute_ns"] += t1 - t0
            b["forward_ns"] = self.model.ns
            if t1 - self._bench_dumped > 100_000_000:
                self._bench_dumped = t1
                with open(self._bench_path + ".tmp", "w") as f:
                    json.dump(b, f)
                os.replace(self._bench_path + ".tmp", self._bench_path)
'''


@dataclass
class Variant:
    name: str
    repo: Path
    threads: int  # the backend's intra-op threads per instance (for the label)
    instances: int
    server: TritonServer | None = None
    served: list[float] = field(default_factory=list)
    in_process: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    capacity_c: list[int] = field(default_factory=list)
    breakdown: dict | None = None


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def build_repo(work: Path, model: str) -> Path:
    """A built copy of model_repo/`model` (artifacts built only when missing or stale; other models are not served)."""
    from hybridserve.models.build import build_models

    repo = work / "built"
    shutil.copytree(model_repo_dir() / model, repo / model, ignore=shutil.ignore_patterns("__pycache__"))
    build_models(repo, force=False, progress=False, models=[model])
    return repo


def make_variant(work: Path, built: Path, model: str, name: str, rev: str | None) -> Variant:
    """`model` alone in a repository of its own, with REV's model.py and config.pbtxt when `rev` is given."""
    repo = work / name
    shutil.copytree(built / model, repo / model)
    if rev is not None:
        for rel in ("config.pbtxt", "1/model.py"):
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:model_repo/{model}/{rel}"],
                                  capture_output=True, text=True, check=True).stdout
            (repo / model / rel).write_text(text)
    source = repo / model / "1" / "model.py"
    source.write_text(source.read_text() + PROFILE_SUFFIX)
    config = (repo / model / "config.pbtxt").read_text()
    instances, threads = _threads_of(config, source)
    return Variant(name, repo, threads, instances)


def _threads_of(config_text: str, model_py: Path) -> tuple[int, int]:
    """(instances, intra-op threads per instance) the variant's model.py picks for its config.pbtxt."""
    import re

    count = sum(int(n) for n in re.findall(r"count:\s*(\d+)", config_text)) or 1
    explicit = re.search(r'key:\s*"torch_num_threads"\s*value:\s*{\s*string_value:\s*"(\d+)"', config_text)
    if explicit:
        return count, int(explicit.group(1))
    # Run the variant's own rule, so the label is right for old and new model.py alike.
    namespace: dict = {}
    source = model_py.read_text()
    rule = source[source.index("def _intra_op_threads"):source.index("class TritonPythonModel")]
    exec("import os\n" + rule, namespace)  # noqa: S102 - our own file
    return count, namespace["_intra_op_threads"]({"instance_group": [{"count": count}]})


def stub_totals(repo: Path, model: str) -> dict:
    out = {"executes": 0, "requests": 0, "execute_ns": 0, "forward_ns": 0}
    for path in glob.glob(str(repo / model / "1" / "bench-*.json")):
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        for k in out:
            out[k] += int(data.get(k, 0))
    return out


def served_capacity(v: Variant, model: str, profile) -> tuple[float, int, float]:
    """The gate's capacity search: (inferences/s, concurrency, average batch Triton formed there)."""
    report = run_smoke(SmokeOptions(url=v.server.grpc_url, models=[ModelTarget(model)], model_repo=v.repo,
                                    profile=profile, request_timeout_s=60))
    m = report.models[0]
    if report.error is not None or m.capacity is None or m.capacity.throughput is None:
        raise SystemExit(f"{v.name}: the gate failed: {report.error.message if report.error else m.sweep_note}")
    if m.correctness.status != "passed":
        raise SystemExit(f"{v.name}: outputs differ from the reference: {m.correctness.message}")
    level = m.level(m.capacity.concurrency)
    return m.capacity.throughput, m.capacity.concurrency, level.server.avg_batch_size or 1.0


def breakdown(v: Variant, model: str, concurrency: int, profile) -> dict:
    """One gate level at `concurrency` bracketed by Triton's statistics and the stub's timers."""
    endpoint = Endpoint("grpc", v.server.grpc_url)
    try:
        s0, t0 = endpoint.statistics(model), stub_totals(v.repo, model)
        time.sleep(0.15)  # the stub's file is at most 0.1 s old
        level_profile = replace(profile, search=False, concurrencies=(concurrency,))
        report = run_smoke(SmokeOptions(url=v.server.grpc_url, models=[ModelTarget(model)], model_repo=v.repo,
                                        profile=level_profile, correctness=False, request_timeout_s=60))
        time.sleep(0.15)
        s1, t1 = endpoint.statistics(model), stub_totals(v.repo, model)
    finally:
        endpoint.close()
    lv = report.models[0].sweep[0]
    s: ModelStats = s1 - s0
    stub = {k: t1[k] - t0[k] for k in t0}
    per_exec = (lambda ns: ns / s.compute_count / 1e3) if s.compute_count else (lambda ns: 0.0)
    executes = max(1, stub["executes"])
    execute_us = stub["execute_ns"] / executes / 1e3
    forward_us = stub["forward_ns"] / executes / 1e3
    infer_us = per_exec(s.compute_infer_ns)
    return {
        "concurrency": concurrency,
        "throughput": lv.throughput,
        "p50_ms": lv.latency_us["p50"] / 1e3,
        "p99_ms": lv.latency_us["p99"] / 1e3,
        "client_avg_us": lv.latency_us["avg"],
        "client_cores": lv.client_cpu_cores,
        "avg_batch": s.inference_count / s.execution_count if s.execution_count else 0.0,
        "batches": dict(sorted(s.batches.items(), key=lambda kv: -kv[1])[:6]),
        "utilization": lv.server.utilization,
        "request_us": s.success_ns / s.success_count / 1e3 if s.success_count else 0.0,
        "queue_us": s.queue_ns / s.queue_count / 1e3 if s.queue_count else 0.0,
        "compute_input_us": per_exec(s.compute_input_ns),
        "compute_infer_us": infer_us,
        "compute_output_us": per_exec(s.compute_output_ns),
        "forward_us": forward_us,
        "handling_us": execute_us - forward_us,
        "stub_ipc_us": infer_us - execute_us,
        "executions_per_s": s.execution_count / lv.duration_s if lv.duration_s else 0.0,
    }


def in_process(repo: Path, model: str, batch: int, seconds: float, thread_counts: set[int]) -> dict[int, float]:
    """rows/s of model.pt in a fresh interpreter (its own thread settings) at each of `thread_counts`."""
    out = {}
    for threads in sorted(thread_counts):
        code = _IN_PROCESS.format(repo=str(repo), model=model, batch=batch, seconds=seconds, threads=threads)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode != 0:
            raise SystemExit(f"in-process torch failed: {done.stderr[-2000:]}")
        out[threads] = float(done.stdout.strip().splitlines()[-1])
    return out


# A fresh interpreter per thread count: torch's thread pool is fixed once used.
_IN_PROCESS = """
import statistics, time
import numpy as np, torch
from pathlib import Path
from smoke_tests.references import load_model_reference
torch.set_num_threads({threads})
torch.set_num_interop_threads(1)
ref = load_model_reference(Path({repo!r}), {model!r})
net = torch.jit.load(str(Path({repo!r}) / {model!r} / ref.version / "model.pt"), map_location="cpu").eval()
xs = [torch.from_numpy(np.ascontiguousarray(v[np.arange({batch}) % v.shape[0]])) for v in ref.inputs.values()]
rates = []
with torch.inference_mode():
    for _ in range(20):
        net(*xs)
    for _ in range(5):  # the median of 5 rounds: one slow round (another process took the CPU) does not decide
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < {seconds} / 5:
            net(*xs)
            n += 1
        rates.append(n * {batch} / elapsed)
print(statistics.median(rates))
"""


def print_results(variants: list[Variant], model: str, rounds: int) -> None:
    print()
    print(f"model {model}, request batch size 1, {_cpus()} CPUs, {rounds} round(s), medians")
    print(f"  {'variant':<10} {'instances x threads':>19} {'served inf/s':>13} {'at c':>5} {'in-process rows/s':>18} "
          f"{'served / in-process':>20}")
    for v in variants:
        print(f"  {v.name:<10} {f'{v.instances} x {v.threads}':>19} {statistics.median(v.served):13,.0f} "
              f"{int(statistics.median(v.capacity_c)):5d} {statistics.median(v.in_process):18,.0f} "
              f"{statistics.median(v.ratios):20.2f}")
    if len(variants) > 1:
        base, new = variants[-1], variants[0]
        print(f"  {new.name} / {base.name} served: {statistics.median(new.served) / statistics.median(base.served):.2f}")
    for v in variants:
        b = v.breakdown
        if not b:
            continue
        batch = b["avg_batch"]
        print()
        print(f"  {v.name}: where one dynamic batch's time goes (last round, concurrency {b['concurrency']}, "
              f"{b['throughput']:,.0f} inf/s, p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms)")
        print(f"    batches: average {batch:.1f} requests; most frequent sizes (size: executions) {b['batches']}")
        print(f"    instance busy {b['utilization'] or 0:.0%}; {b['executions_per_s']:,.0f} executions/s; "
              f"load generator {b['client_cores']:.2f} cores")
        total = b["compute_input_us"] + b["compute_infer_us"] + b["compute_output_us"]
        rows = [
            ("torch forward (in the stub)", b["forward_us"]),
            ("model.py around it (inputs, responses)", b["handling_us"]),
            ("stub <-> Triton (messages, shm)", b["stub_ipc_us"]),
            ("Triton compute_input", b["compute_input_us"]),
            ("Triton compute_output", b["compute_output_us"]),
        ]
        for label, us in rows:
            # The stub's totals are read from a file it rewrites every 0.1 s, Triton's at the same instants: with
            # few, long executions the two windows differ by one, and a difference of the two can dip below 0.
            us = max(0.0, us)
            print(f"    {label:<42} {us:9.0f} us per batch  {us / total if total else 0:6.1%}")
        print(f"    {'instance time per batch':<42} {total:9.0f} us")
        print(f"    per request: queue {b['queue_us']:,.0f} us, server end to end {b['request_us']:,.0f} us, "
              f"client sees {b['client_avg_us']:,.0f} us (gRPC + client {max(0.0, b['client_avg_us'] - b['request_us']):,.0f} us)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="text_encoder")
    parser.add_argument("--before", metavar="REV", default=None,
                        help="also serve REV's model.py and config.pbtxt (e.g. the commit before a change)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one round, 0.3 s windows, concurrency up to 4, in-process at 1 thread only")
    parser.add_argument("--built-repo", type=Path, help="an already built model repository holding the model "
                        "(default: build a copy of model_repo/'s)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    profile = PROFILES["quick"]
    if args.quick:
        profile = replace(profile, window_s=0.3, max_windows=3, max_concurrency=4, time_budget_s=8.0)
    seconds = 1.0 if args.quick else 5.0
    # Each thread count is a fresh interpreter importing torch: quick measures one.
    thread_counts = {1} if args.quick else {1, _cpus()}

    with tempfile.TemporaryDirectory(prefix="bench_serving_") as tmp:
        work = Path(tmp)
        built = args.built_repo.resolve() if args.built_repo else build_repo(work, args.model)
        load_model_reference(built, args.model)  # a clear error for a model without a reference
        variants = [make_variant(work, built, args.model, "current", None)]
        if args.before:
            variants.append(make_variant(work, built, args.model, "before", args.before))
        try:
            for v in variants:
                print(f"starting tritonserver for {v.name} ...", flush=True)
                v.server = TritonServer(v.repo, [args.model], log_path=work / f"{v.name}.log", work_dir=work / f"{v.name}-triton")
            # Started side by side (each start waits mostly on its stub's imports); all are stopped below.
            with ThreadPoolExecutor(len(variants)) as pool:
                for f in [pool.submit(v.server.start) for v in variants]:
                    f.result()
            for r in range(rounds):
                for v in (variants if r % 2 == 0 else variants[::-1]):
                    print(f"round {r + 1}/{rounds}: {v.name}: capacity search ...", flush=True)
                    served, c, batch = served_capacity(v, args.model, profile)
                    print(f"round {r + 1}/{rounds}: {v.name}: {served:,.0f} inf/s at c={c}, breakdown ...", flush=True)
                    v.breakdown = breakdown(v, args.model, c, profile)
                    rows = round(v.breakdown["avg_batch"] or batch) or 1
                    best = in_process(v.repo, args.model, rows, seconds, thread_counts)
                    print(f"round {r + 1}/{rounds}: {v.name}: in-process at batch {rows}: "
                          + ", ".join(f"{t} thread(s) {x:,.0f} rows/s" for t, x in best.items()), flush=True)
                    v.served.append(served)
                    v.capacity_c.append(c)
                    v.in_process.append(max(best.values()))
                    v.ratios.append(served / max(best.values()))
        finally:
            for v in variants:
                if v.server is not None:
                    v.server.stop()
    print_results(variants, args.model, rounds)


if __name__ == "__main__":
    main()
