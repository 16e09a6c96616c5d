"""Hot update under load: promote a good version, a broken one, then roll back, with the counts.

A throw-away plane (SeaweedFS + tritonserver serving text_encoder version 1 from it), version 2 built with
other weights (another seed; its reference set from its own outputs) and version 3 broken (version 2's
model with version 1's reference set: its outputs do not match). Throughout, a smoke load generator sends
unversioned requests, and a probe tells which version answered each of its own requests.

    python bench/bench_promote.py [--quick] [--built-repo DIR] [--endpoint-url URL]
    python bench/bench_promote.py [--quick] --endpoint-url URL --bucket B --url HOST:PORT --grpc-url HOST:PORT --repo DIR --state-dir DIR

Prints, per phase: requests sent by the load, failed ones, probe answers from old/new/neither; and the time
of each promotion step. --quick: the gate checks correctness only (no sweep) and old and new are compared on
their outputs only (no side-by-side load windows): what the test runs; without it the gate sweeps with the
quick profile and the comparison measures 3 s windows. --endpoint-url: use that running S3 store (SeaweedFS;
its key pair from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) with a fresh bucket instead of starting one.
--url (with --grpc-url, --bucket, --prefix, --repo, --state-dir): run on a plane already set up as plane() sets
it up (Triton serving version 1 from that bucket, the repository holding versions 1-3) instead of starting one,
as tests/test_promote.py does with its module's plane.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "text_encoder"
BUCKET = "bench-promote"
PREFIX = "models"


# --------------------------------------------------------------------------------------------- versions


def build_version(repo: Path, version: int, seed: int) -> Path:
    """MODEL/<version>/ with the same code and other weights (seed), its reference set from its own outputs."""
    from hybridserve.models.build import _build_one, fingerprint
    from hybridserve.models.definitions import MODEL_SPECS

    spec = replace(MODEL_SPECS[MODEL], seed=seed)
    vdir = repo / MODEL / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / MODEL / "1" / "model.py", vdir / "model.py")
    _build_one(spec, vdir, fingerprint(spec))
    return vdir


def build_broken(repo: Path, version: int, weights_from: int) -> Path:
    """MODEL/<version>/: version `weights_from`'s model with version 1's reference set (outputs differ)."""
    vdir = repo / MODEL / str(version)
    vdir.mkdir(parents=True, exist_ok=True)
    for name in ("model.py", "model.pt"):
        shutil.copy(repo / MODEL / str(weights_from) / name, vdir / name)
    shutil.copy(repo / MODEL / "1" / "reference.npz", vdir / "reference.npz")
    return vdir


def expected_outputs(repo: Path, versions, inputs) -> dict[int, "np.ndarray"]:
    """What each version's model.pt answers for `inputs` (to tell versions apart by their answers)."""
    import torch

    out = {}
    for v in versions:
        model = torch.jit.load(str(repo / MODEL / str(v) / "model.pt"), map_location="cpu").eval()
        with torch.inference_mode():
            out[v] = model(torch.from_numpy(inputs)).numpy()
    return out


# --------------------------------------------------------------------------------------------- the plane


def state_dir(root: Path) -> Path:
    """The plane's state dir under `root`: the sync's hash cache and its record of validated content, so the
    promotions' publish steps (`hash_cache`, as `models promote --state-dir` passes it) do not validate again the
    repository the plane's sync validated."""
    return root / "state"


@contextmanager
def plane(root: Path, source_repo: Path, seaweed=None, bucket: str = BUCKET, endpoint=None):
    """(repo, endpoint, triton) with MODEL version 1 published and served; versions 2 (good), 3 (broken) local only.
    The store: `seaweed` (a running SeaweedFS) or `endpoint` (an S3Endpoint of a running store), else one of its own.
    Its state dir: `state_dir(root)`."""
    from hybridserve.local.objectstore import SeaweedFS, ensure_bucket
    from hybridserve.local.plane import HASH_CACHE_NAME, _credentials_env
    from hybridserve.local.triton import TritonServer
    from hybridserve.sync.engine import SyncTarget, sync_repository

    repo = root / "model_repo"
    shutil.copytree(source_repo / MODEL, repo / MODEL, ignore=shutil.ignore_patterns("__pycache__", "[2-9]*"))
    build_version(repo, 2, seed=99)
    build_broken(repo, 3, weights_from=2)
    own = seaweed is None and endpoint is None
    store = seaweed
    if own:
        store = SeaweedFS(root / "data", kek_path=root / "kek", identity_path=root / "s3.json", log_path=root / "weed.log")
        store.start()
    triton = None
    try:
        ep = endpoint or store.endpoint
        ensure_bucket(ep, bucket, sse="AES256")
        target = SyncTarget(bucket=bucket, prefix=PREFIX, endpoint_url=ep.url, region=ep.region,
                            access_key=ep.access_key, secret_key=ep.secret_key, sse="AES256")
        sync_repository(repo, target, pins={MODEL: [1]}, show_progress=False, hash_cache=state_dir(root) / HASH_CACHE_NAME)
        triton = TritonServer(ep.triton_uri(bucket, PREFIX), [MODEL], log_path=root / "triton.log",
                              env=_credentials_env(ep, root), work_dir=root / "triton")
        triton.start()
        yield repo, ep, target, triton
    finally:
        if triton is not None:
            triton.stop()
        if own:
            store.stop()


# --------------------------------------------------------------------------------------------- traffic


class Traffic:
    """Unversioned requests all along: the smoke load generator (counts sent and failed) and a probe thread
    whose answers are matched against each version's expected output. Counts are kept per phase."""

    def __init__(self, grpc_url: str, http_url: str, inputs, expected: dict[int, "np.ndarray"], concurrency: int = 2):
        import numpy as np

        from smoke_tests.loadgen import LoadGenerator, encode_payload

        self.http_url = http_url
        self.grpc_url = grpc_url
        self.inputs = np.ascontiguousarray(inputs)
        self.expected = expected
        self.gen = LoadGenerator("grpc", grpc_url, processes=1, request_timeout=30.0)
        self.gen.start_processes()
        self.gen.prepare(encode_payload("grpc", MODEL, "", {"input_ids": self.inputs[:1]}, ["embedding"]))
        self.gen.start(concurrency)
        self.current = "start"
        self.phases: dict[str, dict] = {}
        self._probe = Counter()
        self.probe_errors: Counter = Counter()
        self.last = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_probe, daemon=True)
        self._thread.start()

    def _run_probe(self) -> None:
        import numpy as np
        import tritonclient.grpc as grpcclient

        # gRPC, not tritonclient.http: geventhttpclient's hub is per thread and this one shares the process.
        client = grpcclient.InferenceServerClient(self.grpc_url)
        x = grpcclient.InferInput("input_ids", list(self.inputs.shape), "INT64")
        x.set_data_from_numpy(self.inputs)
        while not self._stop.is_set():
            try:
                got = client.infer(MODEL, [x], client_timeout=30.0).as_numpy("embedding")
                label = next((f"v{v}" for v, want in self.expected.items() if np.allclose(got, want, atol=1e-3)), "neither")
            except Exception as exc:  # noqa: BLE001 - a failed request is what we count
                label = "failed"
                with self._lock:
                    self.probe_errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
            with self._lock:
                self._probe[label] += 1
                self.last = label
            self._stop.wait(0.02)
        client.close()

    def wait_for(self, label: str, timeout: float = 120.0) -> bool:
        """Wait (bounded) until the probe's latest answer came from `label` (e.g. "v2")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.last == label:
                    return True
            time.sleep(0.1)
        return False

    def phase(self, name: str) -> dict:
        """End the current phase (its counts are returned) and start `name`."""
        records = self.gen.collect()
        with self._lock:
            probe, self._probe = self._probe, Counter()
        counts = {"sent": len(records), "failed": len(records.err_end), "errors": dict(records.errors),
                  "probe": dict(probe)}
        self.phases[self.current] = counts
        self.current = name
        return counts

    def close(self) -> dict:
        counts = self.phase("end")
        self._stop.set()
        self._thread.join(35)
        rest = self.gen.stop(grace=10.0)
        counts["sent"] += len(rest)
        counts["failed"] += len(rest.err_end)
        self.gen.close()
        return counts


# --------------------------------------------------------------------------------------------- main


def promotion(triton, target, repo: Path, version, *, quick: bool, state: Path):
    from hybridserve.local.plane import HASH_CACHE_NAME
    from hybridserve.promote.flow import PromoteOptions, Timeouts, run_promotion

    options = PromoteOptions(
        model=MODEL, version=version, triton_url=triton.http_url, store=target, repo_dir=repo,
        grpc_url=triton.grpc_url, profile="quick", compare_seconds=0.0 if quick else 3.0, throughput=not quick,
        timeouts=Timeouts(gate=600), hash_cache=state / HASH_CACHE_NAME,
    )
    return run_promotion(options)


def main() -> int:
    from hybridserve.models.build import build_models
    from hybridserve.paths import model_repo_dir
    from smoke_tests.reference_file import read_reference

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="gate and comparison on correctness only (the test runs this)")
    parser.add_argument("--built-repo", type=Path, help="an already built model repository (default: build a copy of model_repo/)")
    parser.add_argument("--endpoint-url", help="a running S3 store to use (key pair from AWS_ACCESS_KEY_ID / "
                        "AWS_SECRET_ACCESS_KEY); default: start a SeaweedFS of its own")
    parser.add_argument("--url", help="Triton HTTP HOST:PORT of a running plane as plane() sets one up (version 1 served "
                        "from --bucket/--prefix of --endpoint-url, versions 1-3 in --repo): promote there instead of starting one")
    parser.add_argument("--grpc-url", help="with --url: that Triton's gRPC HOST:PORT")
    parser.add_argument("--bucket", help="with --url: the bucket Triton serves from")
    parser.add_argument("--prefix", default=PREFIX, help=f"with --url: the key prefix in --bucket (default {PREFIX})")
    parser.add_argument("--repo", type=Path, help="with --url: the plane's repository (plane()'s model_repo)")
    parser.add_argument("--state-dir", type=Path, help="with --url: the plane's state dir (its sync's hash cache)")
    args = parser.parse_args()
    if args.url and not (args.grpc_url and args.bucket and args.repo and args.state_dir and args.endpoint_url):
        parser.error("--url needs --grpc-url, --bucket, --repo, --state-dir and --endpoint-url")
    endpoint, bucket = None, BUCKET
    if args.endpoint_url:
        import os
        import uuid

        from hybridserve.local.objectstore import DEFAULT_REGION, S3Endpoint

        keys = [os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
        if not all(keys):
            parser.error("--endpoint-url needs the store's key pair in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        endpoint = S3Endpoint(args.endpoint_url, *keys, region=os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION)
        bucket = args.bucket or f"{BUCKET}-{uuid.uuid4().hex[:8]}"  # a store shared with others: a bucket of this run's own

    @contextmanager
    def running(root: Path):
        """(repo, endpoint, target, triton, state dir): the given plane, else one of this run's own."""
        if args.url:
            from types import SimpleNamespace

            from hybridserve.sync.engine import SyncTarget

            target = SyncTarget(bucket=bucket, prefix=args.prefix, endpoint_url=endpoint.url, region=endpoint.region,
                                access_key=endpoint.access_key, secret_key=endpoint.secret_key, sse="AES256")
            yield args.repo, endpoint, target, SimpleNamespace(http_url=args.url, grpc_url=args.grpc_url), args.state_dir
            return
        source = args.built_repo
        if source is None:
            source = root / "source"
            shutil.copytree(model_repo_dir() / MODEL, source / MODEL, ignore=shutil.ignore_patterns("__pycache__"))
            build_models(source, progress=False, models=[MODEL])
        with plane(root / "plane", source, bucket=bucket, endpoint=endpoint) as (repo, ep, target, triton):
            yield repo, ep, target, triton, state_dir(root / "plane")

    with tempfile.TemporaryDirectory(prefix="bench-promote-") as tmp:
        t0 = time.monotonic()
        with running(Path(tmp)) as (repo, ep, target, triton, state):
            print(f"plane up in {time.monotonic() - t0:.1f} s: {MODEL} v1 served, v2 (good) and v3 (broken) built")
            inputs, _ = read_reference(repo / MODEL / "1" / "reference.npz")
            probe_inputs = inputs["input_ids"][:4]
            traffic = Traffic(triton.grpc_url, triton.http_url, probe_inputs, expected_outputs(repo, (1, 2), probe_inputs))
            results = []
            try:
                traffic.wait_for("v1", 60)  # the probe has its first answer: the load runs
                for label, version, serves in (("promote v2 (good)", 2, "v2"), ("promote v3 (broken)", 3, "v2"), ("rollback", None, "v1")):
                    traffic.phase(label)
                    results.append((label, promotion(triton, target, repo, version, quick=args.quick, state=state)))
                    traffic.wait_for(serves)  # the probe's answers after the step, in this phase
            finally:
                traffic.close()
            phases = traffic.phases
    print(f"{'phase':22s} {'sent':>7s} {'failed':>7s}  probe answers (v1 = old, v2 = new)")
    for name, c in phases.items():
        probe = ", ".join(f"{k} {v}" for k, v in sorted(c["probe"].items())) or "-"
        print(f"{name:22s} {c['sent']:7d} {c['failed']:7d}  {probe}")
    print()
    print(f"{'promotion':22s} {'verdict':>8s} {'exit':>5s}  steps (s)")
    for label, r in results:
        steps = ", ".join(f"{s.name} {s.seconds:.1f}" for s in r.steps)
        print(f"{label:22s} {r.verdict:>8s} {r.exit_code:5d}  {steps}")
    total_failed = sum(c["failed"] + c["probe"].get("failed", 0) for c in phases.values())
    print(f"\nfailed requests in total: {total_failed}")
    for message, n in traffic.probe_errors.items():
        print(f"  probe error x{n}: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
