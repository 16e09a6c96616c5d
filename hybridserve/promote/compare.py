"""Old against new on the same inputs, before the switch: agreement of outputs, then latency and throughput
measured side by side (alternating short windows, so load on the machine affects both alike).

The inputs are the new version's reference inputs. Old is the served model addressed by its version number
(never the unversioned name, which is what clients use), new is the candidate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

TOP1_OUTPUT_WORDS = ("logit", "prob", "score", "class")  # outputs where an argmax is a prediction


@dataclass
class Agreement:
    output: str
    rows: int
    max_abs_diff: float
    mean_cosine: float
    min_cosine: float
    top1_agreement: float | None = None  # fraction of rows with the same argmax; None where it does not fit


@dataclass
class Side:
    label: str
    requests: int
    failed: int
    throughput: float  # inferences per second
    p50_ms: float
    p99_ms: float


@dataclass
class Comparison:
    agreement: list[Agreement] = field(default_factory=list)
    sides: list[Side] = field(default_factory=list)
    concurrency: int = 0
    seconds_per_side: float = 0.0

    def summary(self) -> dict:
        return {"agreement": [asdict(a) for a in self.agreement], "perf": [asdict(s) for s in self.sides],
                "concurrency": self.concurrency, "seconds_per_side": self.seconds_per_side}


def infer_all(url: str, model: str, version: str, inputs: dict, output_names: list[str], max_batch: int, timeout: float) -> dict:
    """Outputs of `model` (explicit `version`) for every row of `inputs`, in chunks the model accepts."""
    import numpy as np
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    rows = next(iter(inputs.values())).shape[0]
    step = max(1, min(max_batch or rows, rows))
    client = httpclient.InferenceServerClient(url, connection_timeout=timeout, network_timeout=timeout)
    parts: dict[str, list] = {n: [] for n in output_names}
    try:
        for start in range(0, rows, step):
            tensors = []
            for name, value in inputs.items():
                chunk = np.ascontiguousarray(value[start : start + step])
                t = httpclient.InferInput(name, list(chunk.shape), np_to_triton_dtype(chunk.dtype))
                t.set_data_from_numpy(chunk, binary_data=True)
                tensors.append(t)
            result = client.infer(model, tensors, model_version=version,
                                  outputs=[httpclient.InferRequestedOutput(n, binary_data=True) for n in output_names])
            for n in output_names:
                parts[n].append(result.as_numpy(n))
    finally:
        client.close()
    return {n: np.concatenate(p) for n, p in parts.items()}


def agreement(old: dict, new: dict) -> list[Agreement]:
    import numpy as np

    out = []
    for name in old:
        a = old[name].reshape(old[name].shape[0], -1).astype(np.float64)
        b = new[name].reshape(new[name].shape[0], -1).astype(np.float64)
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(denom > 0, (a * b).sum(axis=1) / np.where(denom > 0, denom, 1), 1.0)
        top1 = None
        if a.shape[1] > 1 and any(w in name.lower() for w in TOP1_OUTPUT_WORDS):
            top1 = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())
        out.append(Agreement(name, int(a.shape[0]), float(np.abs(a - b).max()), float(cos.mean()), float(cos.min()), top1))
    return out


def side_by_side(grpc_url: str, sides: list[tuple[str, str, str]], inputs: dict, output_names: list[str], *,
                 concurrency: int = 4, seconds: float = 2.0, rounds: int = 2, request_timeout: float = 10.0) -> list[Side]:
    """Closed-loop load of one-row requests on each (label, model, version) in turn, `rounds` times."""
    import numpy as np

    from smoke_tests.loadgen import LoadGenerator, Records, encode_payload

    one_row = {k: np.ascontiguousarray(v[:1]) for k, v in inputs.items()}
    records = {label: Records() for label, _, _ in sides}
    busy = {label: 0.0 for label, _, _ in sides}
    with LoadGenerator("grpc", grpc_url, processes=min(2, concurrency), request_timeout=request_timeout) as gen:
        for _ in range(rounds):
            for label, model, version in sides:
                gen.prepare(encode_payload("grpc", model, version, one_row, output_names))
                t0 = time.monotonic()
                gen.start(concurrency)
                time.sleep(seconds)
                r = gen.collect()
                r.extend(gen.stop(grace=request_timeout))
                busy[label] += time.monotonic() - t0
                records[label].extend(r)
    out = []
    for label, _, _ in sides:
        r = records[label]
        lat = (np.frombuffer(r.ok_end, dtype=np.int64) - np.frombuffer(r.ok_start, dtype=np.int64)) / 1e6
        ok = len(r.ok_end)
        out.append(Side(
            label=label, requests=len(r), failed=len(r.err_end),
            throughput=ok / busy[label] if busy[label] else 0.0,
            p50_ms=float(np.percentile(lat, 50)) if ok else float("nan"),
            p99_ms=float(np.percentile(lat, 99)) if ok else float("nan"),
        ))
    return out
