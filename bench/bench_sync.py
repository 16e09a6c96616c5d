"""Benchmark: `hybridserve sync` against `aws s3 sync` on the same local S3 endpoint, same encryption.

    .venv/bin/python bench/bench_sync.py                  # SeaweedFS, SSE-S3 (AES256), ~100 MiB and ~1 GiB
    .venv/bin/python bench/bench_sync.py --store moto     # moto_server, SSE-KMS under a fresh key
    .venv/bin/python bench/bench_sync.py --sizes 100 --repeat 5
    .venv/bin/python bench/bench_sync.py --quick          # tiny repositories (text_encoder alone), once: proves the script works
    .venv/bin/python bench/bench_sync.py --built-repo DIR # an already built model repository instead of building model_repo/
    .venv/bin/python bench/bench_sync.py --profile DIR    # also cProfile each hybridserve run into DIR (slower)
    .venv/bin/python bench/bench_sync.py --baseline ../main   # before/after: another checkout's sync alongside

It starts its own store on free loopback ports (stopped at the end, also on Ctrl-C or failure), copies the
built model repository into a temp dir per size and adds generated, incompressible files so that transfer
dominates. Both tools run as CLI processes (interpreter start-up included on both sides); `aws s3 sync` with
its documented defaults written out in its config file (10 concurrent requests, 8 MiB multipart threshold
and chunks), both with the same --sse. Scenarios, each into a fresh bucket (that took one write outside the
prefix first: new_bucket):

    full         nothing in the store; a fresh state dir, as on the first sync from a checkout, after
                 `hybridserve models validate` (untimed): the sync trusts that validation of these very bytes
                 (hybridserve/sync/validated.py), and validate hashed every file through the sync's hash cache,
                 so the sync reads none again. With --validate-in-sync, no `models validate` first: every cache
                 cold, the sync hashes and validates (loads and runs every artifact) itself
    full, warm   nothing in the store; the repository was synced before from this checkout (caches warm),
                 as when publishing to a second site
    unchanged    the same command again right after `full`

Both tools run from compiled bytecode (the checkouts are compiled first, PYTHONDONTWRITEBYTECODE is
dropped), as installed tools do. Runs alternate which tool goes first. Reported per scenario: the ratio
hybridserve / aws of the medians, and the range of the per-repeat ratios (the machine may be shared: load hits both sides of a repeat alike);
hybridserve's own phases (`sync --timings`, medians) show where its time goes, with "start-up" = the
process's wall time minus the sync's own.

Not like for like on purpose: `aws s3 sync` compares size and mtime only and publishes nothing. `hybridserve
sync` also validates the repository, hashes every file, verifies each upload and writes the configs last
(atomic publish); unchanged, it reads its manifest instead of listing (see hybridserve/sync/engine.py).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridserve.local.objectstore import MotoServer, S3Endpoint, SeaweedFS, venv_binary  # noqa: E402
from hybridserve.paths import model_repo_dir  # noqa: E402

MB = 1024 * 1024
SCENARIOS = ("full", "full, warm", "unchanged")
# The AWS CLI's documented S3 transfer defaults (docs.aws.amazon.com/cli/latest/topic/s3-config.html, read
# 2026-12-01), written out so the run does not depend on whatever ~/.aws/config holds.
AWS_DEFAULTS = {"max_concurrent_requests": "10", "multipart_threshold": "8MB", "multipart_chunksize": "8MB"}
# How a size is spread over generated files (like the weights of a few models).
SPREAD = (0.4, 0.4, 0.16, 0.04)


def build_repo(work: Path, source: Path | None, models: list[str] | None) -> Path:
    """A built copy of `source` (default: model_repo/ of the checkout), all models or only `models`."""
    from hybridserve.models.build import build_models

    repo = work / "built"
    source = source or model_repo_dir()
    names = models or [p.name for p in source.iterdir() if (p / "config.pbtxt").is_file()]
    for name in names:
        shutil.copytree(source / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    build_models(repo, force=False, progress=False)  # only what is missing or stale
    return repo


def prepare_repo(built: Path, work: Path, size_mb: float) -> tuple[Path, int, int]:
    """A copy of the built repository plus generated files adding up to size_mb; returns (path, files, bytes)."""
    from hybridserve.models.repository import ensure_valid

    repo = work / f"repo-{size_mb:g}MiB"
    shutil.copytree(built, repo)
    models = ensure_valid(repo).models
    for i, share in enumerate(SPREAD):
        size = int(size_mb * share * MB)
        target = models[i % len(models)].version_dir() / f"weights_{i:02d}.bin"
        with open(target, "wb") as f:
            while size > 0:
                f.write(os.urandom(min(size, MB)))
                size -= MB
    files = [p for p in repo.rglob("*") if p.is_file()]
    # Settled, as a repository built before its sync is: the hash cache does not keep files changed within
    # RACY_SECONDS of their hashing, so whichever tool ran first would otherwise hash them again in its timed runs.
    from hybridserve.sync.scan import RACY_SECONDS

    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in files)
    time.sleep(max(0.0, newest + RACY_SECONDS + 0.1 - time.time()))
    return repo, len(files), sum(p.stat().st_size for p in files)


def start_store(kind: str, work: Path):
    if kind == "seaweed":
        store = SeaweedFS(work / "weed" / "data", kek_path=work / "weed" / "kek", log_path=work / "weed" / "weed.log")
    else:
        store = MotoServer(log_path=work / "moto.log")
    return store.start()


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the client process, its output): CPU time is steadier on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} ... failed ({result.returncode}):\n{result.stdout[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result.stdout


def phases(output: str, wall: float) -> dict[str, float]:
    """hybridserve's `--timings` lines, plus start-up = wall time not spent in the sync itself."""
    found = {m[1]: float(m[2]) for m in re.finditer(r"^timing: (.+?): ([0-9.]+) s$", output, re.M)}
    total = re.search(r" in ([0-9.]+) s$", output, re.M)
    if total:
        found["start-up, imports, exit (outside the sync)"] = max(0.0, wall - float(total[1]))
    return found


def bench_size(args, repo: Path, endpoint: S3Endpoint, env: dict[str, str], work: Path, size_label: str, results, breakdown,
               timings: dict[str, bool]) -> None:
    s3 = endpoint.client()
    if args.store == "moto":
        key = endpoint.client("kms").create_key(Description="bench")["KeyMetadata"]["Arn"]
        hs_sse, aws_sse = ["--sse", "aws:kms", "--kms-key-id", key], ["--sse", "aws:kms", "--sse-kms-key-id", key]
    else:
        hs_sse, aws_sse = ["--sse", "AES256"], ["--sse", "AES256"]
    hybridserve, aws = venv_binary("hybridserve"), venv_binary("aws")
    checkouts = checkouts_of(args)

    def hs_argv(tool: str, bucket: str, run: int, scenario: str) -> list[str]:
        argv = [hybridserve, "sync", "--bucket", bucket, "--prefix", "models", "--endpoint-url", endpoint.url,
                "--repo", str(repo), "--no-progress", *(["--timings"] if timings[tool] else []), *hs_sse]
        if args.profile and tool == "hs":
            out = Path(args.profile) / f"{size_label}-{scenario.replace(', ', '-')}-{run}.prof"
            argv = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "hybridserve", *argv[1:]]
        return argv

    for run in range(args.repeat):
        tag = f"{os.getpid()}-{size_label.lower()}-{run}"
        order = [*checkouts, "aws"]
        order = order[run % len(order):] + order[: run % len(order)]  # who goes first rotates
        for tool in order:
            if tool != "aws":
                state = work / f"state-{tool}-{tag}"  # cold: a state dir of its own (hash cache, validation records)
                env_hs = dict(env, HYBRIDSERVE_STATE_DIR=str(state), PYTHONPATH=str(checkouts[tool]))
                if not args.validate_in_sync:  # the usual order: validate, then sync (untimed)
                    subprocess.run([hybridserve, "models", "validate", "--repo", str(repo)], env=env_hs, check=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for scenario, bucket in (("full", f"{tool}-{tag}"), ("unchanged", f"{tool}-{tag}"), ("full, warm", f"{tool}w-{tag}")):
                    if scenario != "unchanged":
                        new_bucket(s3, bucket)
                    wall, cpu, out = timed(hs_argv(tool, bucket, run, scenario), env_hs)
                    results[size_label][scenario][tool].append((wall, cpu))
                    if tool == "hs":
                        for phase, seconds in phases(out, wall).items():
                            breakdown[size_label][scenario][phase].append(seconds)
                shutil.rmtree(state, ignore_errors=True)
            else:
                bucket = f"aws-{tag}"
                new_bucket(s3, bucket)
                argv = [aws, "s3", "sync", str(repo), f"s3://{bucket}/models", "--endpoint-url", endpoint.url,
                        "--only-show-errors", "--no-progress", *aws_sse]
                full = timed(argv, env)[:2]
                unchanged = timed(argv, env)[:2]
                # aws has no caches: its full run stands for both full scenarios.
                results[size_label]["full"]["aws"].append(full)
                results[size_label]["full, warm"]["aws"].append(full)
                results[size_label]["unchanged"]["aws"].append(unchanged)
        _empty_buckets(s3, [f"{t}{w}-{tag}" for t in checkouts for w in ("", "w")] + [f"aws-{tag}"])
        print(f"  {size_label}: run {run + 1}/{args.repeat} done", flush=True)


def new_bucket(s3, bucket: str) -> None:
    """A bucket that has taken a write already (outside the synced prefix), as a stack's bucket has: SeaweedFS
    creates a bucket's volumes on its first write, which took 30-380 ms, a noise of up to 0.2x at 100 MiB that
    hit whichever tool wrote first to its new bucket."""
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="bench-warm-up", Body=b"first write")


def checkouts_of(args) -> dict[str, Path]:
    return {"hs": ROOT} | ({"before": Path(args.baseline).resolve()} if args.baseline else {})


def _has_timings(hybridserve: str, checkout: Path, env: dict[str, str]) -> bool:
    out = subprocess.run([hybridserve, "sync", "--help"], env=dict(env, PYTHONPATH=str(checkout), COLUMNS="200"),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return "--timings" in out.stdout


def _empty_buckets(s3, buckets: list[str]) -> None:
    """Free the store's disk between repeats (a 1 GiB repository is written several times per repeat)."""
    for bucket in buckets:
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", []) or []]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            s3.delete_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - only disk space is at stake
            print(f"  (could not empty {bucket}: {exc})")


def report(results, breakdown, sizes: dict[str, tuple[int, int]], args, label: str) -> None:
    print("\nfull: " + ("the sync validates the repository itself (--validate-in-sync)" if args.validate_in_sync
                         else "after `hybridserve models validate` (untimed); the sync trusts its record of these bytes"))
    print(f"store: {args.store}, encryption: {label}, aws s3 sync settings: "
          + ", ".join(f"{k} {v}" for k, v in AWS_DEFAULTS.items()) + f"; {args.repeat} repeat(s), medians")
    before = bool(args.baseline)
    print(f"{'size':<9} {'scenario':<11} {'hybridserve s':>13} {'aws s3 sync s':>13} {'ratio':>6} {'range':>11}"
          f" {'CPU ratio':>9}  {'goal':<14}" + (f" {'before: ratio':>13} {'range':>11}" if before else ""))
    goals = {"full": 0.9, "full, warm": 0.9, "unchanged": 0.5}

    def ratio(tool, by):
        runs, aws = by[tool], by["aws"]
        ratios = [h[0] / a[0] for h, a in zip(runs, aws)]
        median = statistics.median(h[0] for h in runs) / statistics.median(a[0] for a in aws)
        return median, min(ratios), max(ratios)

    for size_label, by_scenario in results.items():
        for scenario in SCENARIOS:
            by = by_scenario[scenario]
            wall_hs, wall_aws = statistics.median(h[0] for h in by["hs"]), statistics.median(a[0] for a in by["aws"])
            r, lo, hi = ratio("hs", by)
            cpu = statistics.median(h[1] for h in by["hs"]) / statistics.median(a[1] for a in by["aws"])
            goal = goals[scenario]
            line = (f"{size_label:<9} {scenario:<11} {wall_hs:>13.2f} {wall_aws:>13.2f} {r:>6.2f} "
                    f"{lo:>5.2f}-{hi:<5.2f} {cpu:>9.2f}  {'<= ' + str(goal) + (' met' if r <= goal else ' not met'):<14}")
            if before:
                b, blo, bhi = ratio("before", by)
                line += f" {b:>13.2f} {blo:>5.2f}-{bhi:<5.2f}"
            print(line)
    print("\nwhere hybridserve's time goes (median seconds per phase; 'alongside' overlaps the others):")
    for size_label, by_scenario in breakdown.items():
        files, n_bytes = sizes[size_label]
        print(f"  {size_label} ({files} files, {n_bytes / MB:.1f} MiB)")
        for scenario in SCENARIOS:
            parts = by_scenario[scenario]
            shown = ", ".join(f"{phase} {statistics.median(v):.2f}" for phase, v in parts.items())
            print(f"    {scenario:<11} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["seaweed", "moto"], default="seaweed")
    parser.add_argument("--sizes", default="100,1024", help="repository sizes in MiB of generated files, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="sizes 1 and 3 MiB, one repeat, text_encoder alone: proves the script works")
    parser.add_argument("--built-repo", type=Path, help="an already built model repository (default: build a copy of model_repo/)")
    parser.add_argument("--profile", metavar="DIR", help="also write a cProfile of each hybridserve run into DIR")
    parser.add_argument("--validate-in-sync", action="store_true", help="no `hybridserve models validate` before the "
                        "full sync: it validates the repository itself (the kit's extra safety, timed)")
    parser.add_argument("--baseline", metavar="CHECKOUT", help="also run the hybridserve of another checkout (e.g. the "
                        "main branch's) in the same repeats, for before/after ratios measured side by side")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeat = "1,3", 1
    size_list = [float(x) for x in args.sizes.split(",") if x.strip()]
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    store = None
    try:
        # Quick: one model, so the cold validation (it loads and runs every artifact) is short too.
        built = build_repo(work, args.built_repo, ["text_encoder"] if args.quick else None)
        store = start_store(args.store, work)
        endpoint: S3Endpoint = store.endpoint
        aws_config = work / "aws-config"
        aws_config.write_text("[default]\ns3 =\n" + "".join(f"  {k} = {v}\n" for k, v in AWS_DEFAULTS.items()))
        # A clean environment: nobody's ~/.aws profile or region changes either tool's behaviour. Bytecode is
        # written and used as by any installed tool (without it, every hybridserve run compiled its own modules).
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PYTHONDONTWRITEBYTECODE"}
        for checkout in [ROOT] + ([Path(args.baseline).resolve()] if args.baseline else []):
            subprocess.run([sys.executable, "-m", "compileall", "-q", "hybridserve", "smoke_tests"], cwd=checkout,
                           env=env, stdout=subprocess.DEVNULL, check=False)
        env.update(endpoint.env(), AWS_CONFIG_FILE=str(aws_config), AWS_SHARED_CREDENTIALS_FILE=str(work / "aws-creds"))
        label = "SSE-KMS" if args.store == "moto" else "SSE-S3 (AES256)"

        results = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        breakdown = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        sizes: dict[str, tuple[int, int]] = {}
        hybridserve = venv_binary("hybridserve")
        timings = {tool: _has_timings(hybridserve, path, env) for tool, path in checkouts_of(args).items()}
        for size_mb in size_list:
            repo, n_files, n_bytes = prepare_repo(built, work, size_mb)
            size_label = f"{n_bytes / MB:.0f}MiB" if n_bytes < 1000 * MB else f"{n_bytes / 1024 / MB:.1f}GiB"
            sizes[size_label] = (n_files, n_bytes)
            print(f"repository {size_label}: {n_files} files, {n_bytes / MB:.1f} MiB", flush=True)
            bench_size(args, repo, endpoint, env, work, size_label, results, breakdown, timings)
            shutil.rmtree(repo, ignore_errors=True)
        report(results, breakdown, sizes, args, label)
        if args.profile:
            import pstats

            for prof in sorted(Path(args.profile).glob("*.prof")):
                print(f"\n--- {prof.name}: top 12 by cumulative time")
                pstats.Stats(str(prof)).sort_stats("cumulative").print_stats(12)
    finally:
        if store is not None:
            store.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
