"""Time `hybridserve plan` of one stack: cold (a fresh process, imports included) and warm (in process).

    .venv/bin/python bench/bench_plan.py [--stack vision-prod] [--runs 5]

Prints seconds; the target is under 5 s for one stack. Exit status 1 when the cold median misses it.
Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 5.0


def cold(stack: str) -> float:
    """The whole command as a user runs it: interpreter start, imports, validation, plan, output."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "hybridserve", "plan", "--stack", stack],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def warm(stack: str, runs: int) -> list[float]:
    """Planning again in the same process (as `plan --all` does after the first stack)."""
    sys.path.insert(0, str(ROOT))
    from hybridserve.stackconfig import resolve_stack
    from infra.plan import plan_stack_file

    path = resolve_stack(stack, ROOT / "stacks")
    plan_stack_file(path)  # first run pays the imports
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        plan_stack_file(path)
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", default="vision-prod")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    cold_times = [cold(args.stack) for _ in range(args.runs)]
    warm_times = warm(args.stack, args.runs)
    for label, times in (("cold (new process)", cold_times), ("warm (in process)", warm_times)):
        print(f"{label:20s} median {statistics.median(times):6.2f} s   min {min(times):6.2f} s   max {max(times):6.2f} s   ({len(times)} runs)")
    ok = statistics.median(cold_times) < TARGET_S
    print(f"target: one stack under {TARGET_S:.0f} s -> {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
