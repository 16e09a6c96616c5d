"""Benchmark: `hybridserve sync` against `aws s3 sync` on the same local S3 endpoint, same encryption.

    .venv/bin/python bench/bench_sync.py                  # SeaweedFS, SSE-S3 (AES256)
    .venv/bin/python bench/bench_sync.py --store moto     # moto_server, SSE-KMS under a fresh key
    .venv/bin/python bench/bench_sync.py --extra-mb 64,64,16 --repeat 3

It starts its own store on free loopback ports (stopped at the end, also on Ctrl-C or failure), copies the
built model repository into a temp dir and adds a few generated, incompressible files so that transfer
dominates. Both tools run as CLI processes (interpreter start-up included on both sides), each into its own
fresh bucket for the full sync and then again for the unchanged repository. Reported: medians over
--repeat runs of wall time and of the client process's CPU time (steadier when other work shares the
machine); ratio = hybridserve / aws.

Not like for like on purpose: `aws s3 sync` compares size and mtime only and publishes nothing. `hybridserve
sync` also validates the repository, hashes every file, verifies each upload with a HEAD and writes the
configs last (atomic publish). The unchanged case shows what that costs when nothing has to move.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridserve.local.objectstore import MotoServer, S3Endpoint, SeaweedFS, venv_binary  # noqa: E402
from hybridserve.paths import model_repo_dir  # noqa: E402

MB = 1024 * 1024


def prepare_repo(work: Path, extra_mb: list[int]) -> tuple[Path, int, int]:
    """A built copy of model_repo/ plus generated files; returns (path, files, bytes)."""
    from hybridserve.models.build import build_models
    from hybridserve.models.repository import ensure_valid

    repo = work / "model_repo"
    shutil.copytree(model_repo_dir(), repo, ignore=shutil.ignore_patterns("__pycache__"))
    build_models(repo, force=False, progress=False)
    models = ensure_valid(repo).models
    # Spread over the models' latest versions, like larger weights would be.
    for i, size in enumerate(extra_mb):
        target = models[i % len(models)].version_dir() / f"weights_{i:02d}.bin"
        with open(target, "wb") as f:
            for _ in range(size):
                f.write(os.urandom(MB))
    files = [p for p in repo.rglob("*") if p.is_file()]
    return repo, len(files), sum(p.stat().st_size for p in files)


def start_store(kind: str, work: Path):
    if kind == "seaweed":
        store = SeaweedFS(work / "weed" / "data", kek_path=work / "weed" / "kek", log_path=work / "weed" / "weed.log")
    else:
        store = MotoServer(log_path=work / "moto.log")
    return store.start()


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the client process): CPU time is steadier on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... failed ({result.returncode}):\n{result.stdout[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["seaweed", "moto"], default="seaweed")
    parser.add_argument("--extra-mb", default="48,48,16,4", help="sizes in MiB of generated files added to the repository")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    extra_mb = [int(x) for x in args.extra_mb.split(",") if x.strip()]

    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    store = None
    try:
        repo, n_files, n_bytes = prepare_repo(work, extra_mb)
        print(f"repository: {n_files} files, {n_bytes / MB:.1f} MiB ({repo})")
        store = start_store(args.store, work)
        endpoint: S3Endpoint = store.endpoint
        s3 = endpoint.client()
        # A clean environment: nobody's ~/.aws profile or region changes either tool's behaviour.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            endpoint.env(),
            AWS_CONFIG_FILE=str(work / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(work / "aws-creds"),
            HYBRIDSERVE_STATE_DIR=str(work / "state"),  # hybridserve's hash cache: not the checkout's .state/
        )

        if args.store == "moto":
            key = endpoint.client("kms").create_key(Description="bench")["KeyMetadata"]["Arn"]
            hs_sse = ["--sse", "aws:kms", "--kms-key-id", key]
            aws_sse = ["--sse", "aws:kms", "--sse-kms-key-id", key]
            label = "SSE-KMS"
        else:
            hs_sse, aws_sse, label = ["--sse", "AES256"], ["--sse", "AES256"], "SSE-S3 (AES256)"

        hybridserve, aws = venv_binary("hybridserve"), venv_binary("aws")
        results: dict[str, dict[str, list[tuple[float, float]]]] = {
            "full": {"hs": [], "aws": []},
            "unchanged": {"hs": [], "aws": []},
        }
        for run in range(args.repeat):
            for tool in ("hs", "aws") if run % 2 == 0 else ("aws", "hs"):  # alternate who goes first
                bucket = f"bench-{tool}-{run}-{os.getpid()}"
                s3.create_bucket(Bucket=bucket)
                if tool == "hs":
                    argv = [hybridserve, "sync", "--bucket", bucket, "--prefix", "models", "--endpoint-url", endpoint.url,
                            "--repo", str(repo), "--no-progress", *hs_sse]
                else:
                    argv = [aws, "s3", "sync", str(repo), f"s3://{bucket}/models", "--endpoint-url", endpoint.url,
                            "--only-show-errors", "--no-progress", *aws_sse]
                results["full"][tool].append(timed(argv, env))
                results["unchanged"][tool].append(timed(argv, env))
            print(f"run {run + 1}/{args.repeat} done")

        print(f"\nstore: {args.store}, encryption: {label}, repository: {n_files} files, {n_bytes / MB:.1f} MiB, "
              f"median of {args.repeat}")
        print(f"{'scenario':<11} {'':<12} {'hybridserve':>12} {'aws s3 sync':>12} {'ratio':>7}")
        for scenario, times in results.items():
            for i, what in enumerate(("wall s", "client CPU s")):
                hs = statistics.median(t[i] for t in times["hs"])
                aw = statistics.median(t[i] for t in times["aws"])
                print(f"{scenario if i == 0 else '':<11} {what:<12} {hs:>12.2f} {aw:>12.2f} {hs / aw:>7.2f}")
    finally:
        if store is not None:
            store.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
