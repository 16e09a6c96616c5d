"""Benchmark: is the smoke gate's load generator able to drive Triton to capacity, and what does serving cost?

    .venv/bin/python bench/bench_smoke.py                          # text_encoder, concurrency 16, 5 s windows
    .venv/bin/python bench/bench_smoke.py --model image_classifier --concurrency 32 --window 3

One run, on one tritonserver started here (free loopback ports, stopped at the end, also on failure),
serving the built model from a copy of model_repo/:

1. the gate: `run_smoke` at one concurrency C (perf_analyzer windows: stable when the last 3 agree
   within 10 %), its load generator as shipped (asyncio gRPC, encoded once, several processes);
2. a plain reference client on the same server: C threads, each with its own tritonclient gRPC client,
   building the request and decoding the answer per call, as user code usually does; counted over the
   same total time as the gate's reported windows;
   -> ratio gate / reference (> 1: the gate's client gets more out of the same server);
3. in-process torch: the same TorchScript artifact, same thread settings as the Python backend, no server,
   at batch size 1 (the size of each request the gate sends) and at the average batch size Triton's
   dynamic batcher formed during the gate's measurement;
   -> ratio served / in-process (what the server path costs or, through batching, gains).

The server is stopped before step 3 so torch gets the machine to itself. Figures vary with other work on
the machine (torch with 2 intra-op threads on 2 CPUs suffers most when another process takes a core:
`--torch-threads 2` shows it); the client CPU columns show what each load generator needed.
bench/bench_serving.py compares served and in-process at the capacity, with a breakdown of the server's time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridserve.local.triton import TritonServer  # noqa: E402
from hybridserve.paths import model_repo_dir  # noqa: E402
from smoke_tests import PROFILES, SmokeOptions, run_smoke  # noqa: E402
from smoke_tests.options import ModelTarget  # noqa: E402
from smoke_tests.references import load_model_reference  # noqa: E402


def prepare_repo(work: Path) -> Path:
    """A built copy of model_repo/ (builds the artifacts only when missing or stale)."""
    from hybridserve.models.build import build_models

    repo = work / "model_repo"
    shutil.copytree(model_repo_dir(), repo, ignore=shutil.ignore_patterns("__pycache__"))
    build_models(repo, force=False, progress=False)
    return repo


def gate(server: TritonServer, repo: Path, model: str, concurrency: int, window: float, processes: int | None):
    profile = replace(PROFILES["default"], window_s=window, concurrencies=(concurrency,))
    options = SmokeOptions(url=server.grpc_url, models=[ModelTarget(model)], model_repo=repo, profile=profile,
                           client_processes=processes, request_timeout_s=60)
    report = run_smoke(options)
    if report.error is not None or not report.models[0].sweep:
        raise SystemExit(f"the gate failed: {report.error or report.models[0].sweep_note}")
    return report.models[0].sweep[0], report.info.load_generator["processes"]


def reference_client(server: TritonServer, ref, model: str, threads: int, seconds: float, warmup: float = 2.0):
    """`threads` plain tritonclient threads, one request (batch 1) in flight each; returns (inf/s, CPU cores)."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    rows = {k: np.ascontiguousarray(v[:1]) for k, v in ref.inputs.items()}
    outputs = list(ref.outputs)
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds
    counts = [0] * threads
    errors: list[str] = []

    def worker(i: int) -> None:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            while True:
                now = time.monotonic()
                if now >= stop_at:
                    break
                inputs = []
                for name, value in rows.items():
                    t = grpcclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
                    t.set_data_from_numpy(value)
                    inputs.append(t)
                result = client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs],
                                      client_timeout=60)
                for o in outputs:
                    result.as_numpy(o)
                if time.monotonic() >= start_at and now >= start_at:
                    counts[i] += 1
        except Exception as exc:  # reported, not hidden
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    while time.monotonic() < start_at:
        time.sleep(0.05)
    cpu0 = _cpu()
    for t in pool:
        t.join(timeout=seconds + 120)
    cpu = _cpu() - cpu0
    if errors:
        raise SystemExit(f"reference client failed: {errors[0]}")
    return sum(counts) / seconds, cpu / seconds


def torch_in_process(ref, model_dir: Path, batch: int, seconds: float, rounds: int = 5, threads: int | None = None) -> float:
    """Inferences/s of model.pt run here, with the Python backend's thread settings (1 instance).

    The median of `rounds` rounds of `seconds / rounds` each, after a warm-up long enough for TorchScript's
    profiling executor: one slow round (another process took the CPU) does not decide the figure.
    """
    import statistics

    import numpy as np
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads or max(1, cpus - 1))  # the backend's rule for one instance: the CPUs but one
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    net = torch.jit.load(str(model_dir / ref.version / "model.pt"), map_location="cpu").eval()
    tensors = []
    for value in ref.inputs.values():
        idx = np.arange(batch) % value.shape[0]
        tensors.append(torch.from_numpy(np.ascontiguousarray(value[idx])))
    results = []
    with torch.inference_mode():
        for _ in range(20):
            net(*tensors)
        for _ in range(rounds):
            n, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / rounds:
                net(*tensors)
                n += 1
            results.append(n * batch / elapsed)
    return statistics.median(results)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="text_encoder")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--window", type=float, default=5.0, help="the gate's window, seconds")
    parser.add_argument("--client-processes", type=int, default=None)
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="intra-op threads of the in-process torch run (default: the Python backend's: the CPUs but one)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_smoke_") as tmp:
        work = Path(tmp)
        repo = prepare_repo(work)
        ref = load_model_reference(repo, args.model)
        server = TritonServer(repo, [args.model], log_path=work / "triton.log", work_dir=work / "triton")
        print(f"starting tritonserver with {args.model} ...", flush=True)
        server.start()
        try:
            print(f"gate: concurrency {args.concurrency}, {args.window:g} s windows ...", flush=True)
            level, processes = gate(server, repo, args.model, args.concurrency, args.window, args.client_processes)
            seconds = level.duration_s
            print(f"reference client: {args.concurrency} threads for {seconds:.0f} s ...", flush=True)
            ref_tp, ref_cpu = reference_client(server, ref, args.model, args.concurrency, seconds)
        finally:
            server.stop()
        avg_batch = max(1, round(level.server.avg_batch_size or 1))
        print("in-process torch ...", flush=True)
        torch_1 = torch_in_process(ref, repo / args.model, 1, 5.0, threads=args.torch_threads)
        torch_b = torch_in_process(ref, repo / args.model, avg_batch, 5.0, threads=args.torch_threads) if avg_batch > 1 else torch_1

    s = level.server
    server = (f"server busy {s.utilization:.0%}, avg batch {s.avg_batch_size:.1f}"
              if s.utilization is not None and s.avg_batch_size is not None else "no server statistics")
    print()
    print(f"model {args.model}, concurrency {args.concurrency}, request batch size 1, {os.cpu_count()} CPUs")
    print(f"  gate            {level.throughput:10.1f} inf/s  p99 {level.latency_us['p99'] / 1e3:7.2f} ms  "
          f"client CPU {level.client_cpu_cores:.2f} cores ({processes} processes), "
          f"{'stable' if level.stable else 'UNSTABLE'} after {level.windows} windows; {server}")
    print(f"  reference       {ref_tp:10.1f} inf/s  ({args.concurrency} threads of tritonclient.grpc, "
          f"client CPU {ref_cpu:.2f} cores)")
    print(f"  ratio gate / reference client          {level.throughput / ref_tp:6.2f}")
    print(f"  in-process torch, batch 1     {torch_1:10.1f} inf/s  (median of 5 one-second rounds)")
    print(f"  in-process torch, batch {avg_batch:<3}   {torch_b:10.1f} inf/s  (Triton's average batch)")
    print(f"  ratio served / in-process torch, batch 1          {level.throughput / torch_1:6.2f}")
    print(f"  ratio served / in-process torch, batch {avg_batch:<3}        {level.throughput / torch_b:6.2f}")


if __name__ == "__main__":
    main()
