"""bench/bench_tune.py --quick runs end to end (its figures are timings: only the output's shape is checked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.servers
def test_bench_tune_quick_prints_current_and_tuned_side_by_side(built_model_repo):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_tune.py"), "--quick", "--repo", str(built_model_repo)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    row = r" +[0-9.]+ inf/s p99 +([0-9.]+|-) ms c=\S+ +[0-9.]+ inf/s p99 +([0-9.]+|-) ms c=\S+ +\d+x\d+ thr"
    assert re.search(r"^  current" + row, out, re.M), out
    assert re.search(r"^  tuned" + row, out, re.M), out
    assert re.search(r"ratio tuned / current \(throughput at the objective\) +([0-9.]+|n/a)", out), out
    assert re.search(r"ratio tuned / current \(peak throughput\) +([0-9.]+|n/a)", out), out
    assert "2 candidates searched" in out
