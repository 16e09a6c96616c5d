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
    breakdown = re.findall(r"^ {4}(full, warm|full|unchanged) +(.+)$", text, re.M)
    assert len(breakdown) == 6, breakdown  # each scenario of both sizes
    for scenario, line in breakdown:
        found = dict(part.rsplit(" ", 1) for part in re.split(r"(?<=\d), ", line))  # names hold commas too
        assert "scan and hash" in found and "start-up, imports, exit (outside the sync)" in found, line
        assert ("connect and read manifest" if scenario == "unchanged" else "upload and verify (configs of complete models included)") in found, line
