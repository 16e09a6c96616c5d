"""bench/bench_sync.py --quick runs end to end (its own SeaweedFS, the suite's built repository) and prints every
ratio and the phases.

Only the shape of the output is checked: timing belongs to the benchmark, never to a test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers
ROOT = Path(__file__).resolve().parent.parent


def test_the_sync_benchmark_prints_each_ratio_and_where_the_time_goes(built_model_repo):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_sync.py"), "--quick", "--built-repo", str(built_model_repo)],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "max_concurrent_requests 10, multipart_threshold 8MB, multipart_chunksize 8MB" in text
    rows = re.findall(r"^(\d+MiB)\s+(full, warm|full|unchanged)\s+[\d.]+\s+[\d.]+\s+([\d.]+)\s+[\d.]+-[\d.]+\s+[\d.]+\s+<= ", text, re.M)
    assert {(size, scenario) for size, scenario, _ in rows} == {
        (size, scenario) for size in {r[0] for r in rows} for scenario in ("full", "full, warm", "unchanged")
    }
    assert len({r[0] for r in rows}) == 2  # the two quick sizes
    assert "where hybridserve's time goes" in text
    assert re.search(r"unchanged\s+scan and hash [\d.]+, connect and read manifest [\d.]+", text)
    assert re.search(r"full\s+scan and hash [\d.]+.*upload and verify", text)
