"""Old against new on the same inputs, before the switch: the candidate gate's agreement step.

Runs in the candidate gate Job (infra/components/triton.py) as an init container after Triton's sidecar,
from the stock SDK image with the gate's files mounted (hybridserve/gatejob.py ships this file as
`agreement.py` next to `smoke_tests/`), so it imports only the standard library, numpy and the gate
(smoke_tests: its endpoint client and reference-file reader), never the kit. Run from that directory:

    python3 agreement.py --model-repo model_repo --wait-s 300

It sends each model's reference inputs to the candidate (CANDIDATE_ENV, the sidecar on loopback) and
to the version serving now (SERVED_ENV, the Triton Service), and reports per output the largest
absolute difference, the mean and lowest cosine similarity of the rows and, for outputs that are
predictions (logits, probabilities, scores, classes), the share of rows with the same argmax.

It judges nothing: a new version may rightly answer otherwise (its own reference set is what the gate
checks). It always exits 0, so a first rollout (no version serves yet), an unreachable Service or an
error here never blocks the deployment; the reason is in its report. The report is a human table and
one JSON line after MARKER (`kubectl logs job/<candidate> -c agreement`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

CANDIDATE_ENV = "HYBRIDSERVE_CANDIDATE_URL"
SERVED_ENV = "HYBRIDSERVE_SERVED_URL"
MARKER = "HYBRIDSERVE-AGREEMENT "
TOP1_WORDS = ("logit", "prob", "score", "class")  # outputs whose argmax is a prediction


def _reference(model_dir: Path) -> Path | None:
    versions = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / "reference.npz").is_file()]
    return max(versions, key=lambda p: int(p.name)) / "reference.npz" if versions else None


def agreement(name: str, old, new) -> dict:
    """One output's agreement: rows, max |old - new|, mean and lowest cosine of the rows, top-1 agreement."""
    import numpy as np

    a = np.asarray(old, dtype=np.float64).reshape(len(old), -1)
    b = np.asarray(new, dtype=np.float64).reshape(len(new), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cosine = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1), np.where((a == b).all(axis=1), 1.0, 0.0))
    out = {
        "output": name,
        "rows": int(a.shape[0]),
        "max_abs_diff": float(np.abs(a - b).max()) if a.size else 0.0,
        "mean_cosine": float(cosine.mean()) if cosine.size else 1.0,
        "min_cosine": float(cosine.min()) if cosine.size else 1.0,
        "top1_agreement": None,
    }
    if a.shape[1] > 1 and any(word in name.lower() for word in TOP1_WORDS):
        out["top1_agreement"] = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())
    return out


def _outputs(endpoint, model: str, inputs: dict, outputs: list[str]) -> dict:
    """The model's outputs on the reference inputs, in requests of at most max_batch_size rows."""
    import numpy as np

    batch = int(endpoint.model_config(model).get("max_batch_size", 0) or 0)
    rows = len(next(iter(inputs.values())))
    parts: dict[str, list] = {k: [] for k in outputs}
    for start in range(0, rows, batch or 1):
        if batch:
            chunk = {k: v[start:start + batch] for k, v in inputs.items()}
        else:  # no batching: each reference row is one request without a batch dimension
            chunk = {k: v[start] for k, v in inputs.items()}
        result = endpoint.infer(model, "", chunk, outputs)
        for k in outputs:
            parts[k].append(result[k] if batch else result[k][None])
    return {k: np.concatenate(v) for k, v in parts.items()}


def _wait_ready(endpoint, models: list[str], wait_s: float) -> list[str]:
    """Models not ready on `endpoint` once `wait_s` has passed (the candidate loads them first)."""
    deadline = time.monotonic() + wait_s
    pending = list(models)
    while pending:
        still = []
        for model in pending:
            try:
                ready = endpoint.model_ready(model)
            except Exception:
                ready = False
            if not ready:
                still.append(model)
        pending = still
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(1.0)
    return pending


def run(model_repo: Path, candidate_url: str, served_url: str, wait_s: float) -> dict:
    from smoke_tests.endpoint import Endpoint
    from smoke_tests.reference_file import read_reference

    report: dict = {"candidate": candidate_url, "served": served_url, "models": [], "note": None}
    models = sorted(p.name for p in model_repo.iterdir() if p.is_dir() and (p / "config.pbtxt").is_file())
    with Endpoint("grpc", candidate_url, timeout=5.0, infer_timeout=30.0) as new, Endpoint("grpc", served_url, timeout=5.0, infer_timeout=30.0) as old:
        not_ready = _wait_ready(new, models, wait_s)
        if not_ready:
            report["note"] = f"the candidate did not get {', '.join(not_ready)} ready within {wait_s:g} s; the gate reports why"
            return report
        try:
            serving = old.server_ready()
        except Exception as exc:  # no endpoint behind the Service (a first rollout) or not reachable
            serving, why = False, " ".join(str(exc).split())[:300]
        else:
            why = "the server is not ready"
        if not serving:
            report["note"] = f"no version to compare with at {served_url} ({why}); a first rollout has none"
            return report
        for model in models:
            ref = _reference(model_repo / model)
            if ref is None:
                continue
            inputs, expected = read_reference(ref)
            entry: dict = {"name": model, "outputs": [], "error": None}
            try:
                names = sorted(expected)
                got_new, got_old = _outputs(new, model, inputs, names), _outputs(old, model, inputs, names)
                entry["outputs"] = [agreement(k, got_old[k], got_new[k]) for k in names]
            except Exception as exc:  # e.g. the served version has no such model, or another interface
                entry["error"] = " ".join(str(exc).split())[:300]
            report["models"].append(entry)
    return report


def to_text(report: dict) -> str:
    lines = [f"Agreement of the candidate ({report['candidate']}) with the served version ({report['served']}), on the reference inputs:"]
    if report["note"]:
        lines.append(f"  not compared: {report['note']}")
    for m in report["models"]:
        if m["error"]:
            lines.append(f"  {m['name']}: not compared: {m['error']}")
        for o in m["outputs"]:
            top1 = f", top-1 agreement {o['top1_agreement']:.1%}" if o["top1_agreement"] is not None else ""
            lines.append(f"  {m['name']}.{o['output']}: {o['rows']} rows, max |diff| {o['max_abs_diff']:.3g}, "
                         f"cosine mean {o['mean_cosine']:.6f} min {o['min_cosine']:.6f}{top1}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agreement.py", description="Outputs of the candidate and the served version on the same inputs (reports; never fails).")
    parser.add_argument("--model-repo", type=Path, required=True, help="the gate's model repository (config.pbtxt, <v>/reference.npz)")
    parser.add_argument("--wait-s", type=float, default=300.0, help="how long the candidate may take to get every model ready")
    args = parser.parse_args(argv)
    candidate, served = os.environ.get(CANDIDATE_ENV, ""), os.environ.get(SERVED_ENV, "")
    try:
        report = run(args.model_repo, candidate, served, args.wait_s)
    except Exception as exc:  # informational: it must never be why a deployment stops
        report = {"candidate": candidate, "served": served, "models": [], "note": f"agreement failed: {' '.join(str(exc).split())[:300]}"}
    print(to_text(report))
    print(MARKER + json.dumps(report, sort_keys=True))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
