"""bench/bench_serving.py works: its quick mode, against the real tritonserver, prints each figure it promises.

Only the output's shape is asserted (a benchmark's figures are timings: they stay out of tests).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

ROOT = Path(__file__).resolve().parent.parent


def test_bench_serving_quick_prints_the_ratio_and_the_breakdown_for_both_variants(built_model_repo):
    # The session's built repository: the bench copies the model from it instead of building its own.
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_serving.py"), "--quick", "--before", "HEAD",
                           "--built-repo", str(built_model_repo)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "served / in-process" in out and "in-process rows/s" in out
    for variant in ("current", "before"):
        row = re.search(rf"^  {variant}\s+\d+ x \d+\s+[\d,]+\s+\d+\s+[\d,]+\s+\d+\.\d\d$", out, re.M)
        assert row, f"no result row for {variant}:\n{out}"
        assert f"{variant}: where one dynamic batch's time goes" in out
    for part in ("torch forward (in the stub)", "model.py around it", "stub <-> Triton", "Triton compute_input",
                 "Triton compute_output", "queue", "client sees"):
        assert out.count(part) >= 2, part
    assert re.search(r"current / before served: \d+\.\d\d", out)
    assert "Traceback" not in out
