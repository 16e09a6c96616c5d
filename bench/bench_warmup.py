"""Cold start with and without `model_warmup`: the first request after a model is ready, against the steady state.

    .venv/bin/python bench/bench_warmup.py [--model text_encoder] [--requests 50]

Starts the real tritonserver twice on a built copy of model_repo/: once with the configs as they are
(model_warmup: one row and a batch of 16), once with model_warmup removed. For each it sends one
request right after the model is ready, then `--requests` more, and prints the first request's latency,
the median of the rest and their ratio. With warmup, the first request should cost about what the
others do. Not a test: timings depend on the machine and its load (tests/test_warmup.py checks that
the warmup runs).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridserve.local.triton import TritonServer  # noqa: E402
from hybridserve.models.build import build_models  # noqa: E402
from hybridserve.models.repository import load_reference  # noqa: E402
from hybridserve.paths import model_repo_dir  # noqa: E402


def strip_warmup(config: Path) -> None:
    text = config.read_text()
    start = text.find("model_warmup [")
    if start < 0:
        return
    depth, end = 0, start
    for i in range(text.index("[", start), len(text)):
        depth += {"[": 1, "]": -1}.get(text[i], 0)
        if depth == 0:
            end = i + 1
            break
    config.write_text(text[:start] + text[end:])


def measure(repo: Path, model: str, requests: int, work: Path) -> tuple[float, float]:
    import numpy as np
    import tritonclient.grpc as grpcclient

    inputs, _ = load_reference(repo / model / "1")
    with TritonServer(repo, [model], log_path=work / "triton.log", work_dir=work / "triton") as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        meta = client.get_model_metadata(model)
        tensors = []
        for spec in meta.inputs:
            data = np.ascontiguousarray(inputs[spec.name][:1])
            t = grpcclient.InferInput(spec.name, list(data.shape), spec.datatype)
            t.set_data_from_numpy(data)
            tensors.append(t)
        times = []
        for _ in range(requests + 1):
            start = time.perf_counter()
            client.infer(model, tensors)
            times.append(time.perf_counter() - start)
        client.close()
    return times[0] * 1000, statistics.median(times[1:]) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="text_encoder")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.model):
        parser.error(f"--model {args.model!r}: a model directory name of model_repo/")

    with tempfile.TemporaryDirectory(prefix="bench-warmup-") as tmp:
        root = Path(tmp)
        warm = root / "with-warmup"
        shutil.copytree(model_repo_dir(), warm, ignore=shutil.ignore_patterns("__pycache__"))
        build_models(warm, progress=False)
        cold = root / "without-warmup"
        shutil.copytree(warm, cold)
        for config in cold.glob("*/config.pbtxt"):
            strip_warmup(config)
        rows = []
        for label, repo in (("with model_warmup", warm), ("without model_warmup", cold)):
            first, median = measure(repo, args.model, args.requests, root / label.replace(" ", "-"))
            rows.append((label, first, median))
    print(f"{args.model}: first request after ready vs the median of the next {args.requests}")
    for label, first, median in rows:
        print(f"  {label:22s} first {first:8.2f} ms   median {median:7.2f} ms   first/median {first / median:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
