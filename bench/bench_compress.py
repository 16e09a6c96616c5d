"""The compressed text encoder against the original, in one run on one tritonserver.

    .venv/bin/python bench/bench_compress.py            # the smoke gate's quick profile (2 s windows, up to 8 concurrent)
    .venv/bin/python bench/bench_compress.py --quick    # 0.3 s windows at concurrency 1 and 2: proves the script works

On a built copy of model_repo/: `hybridserve models compress text_encoder --method int8-dynamic` adds
text_encoder_int8 (int8 dynamic quantization of the Linear layers, its accuracy against the full-precision
model measured and bounded by the build), then one tritonserver serves both and the smoke gate runs on both in
one run (each checked against its own reference, then swept one after the other on the same server). Prints
the table: size on disk, accuracy change, peak throughput and p99 (at the highest concurrency both reached),
each as variant / base. `--json` adds one line of JSON with the same figures. Figures depend on the machine
and its load; both models see the same server and the same load, so their ratio is what to read. Not a test
(tests/test_models_compress.py runs `--quick` once and checks the output's shape).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridserve.console import make_console  # noqa: E402
from hybridserve.models import compress as C  # noqa: E402
from hybridserve.models.build import build_models  # noqa: E402
from hybridserve.paths import model_repo_dir  # noqa: E402
from smoke_tests import PROFILES  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="0.3 s windows at concurrency 1 and 2 (a smoke run of the script)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one line of JSON")
    args = parser.parse_args()
    profile = PROFILES["quick"]
    if args.quick:
        profile = replace(profile, name="bench-quick", window_s=0.3, stability_windows=2, max_windows=3, concurrencies=(1, 2))

    console = make_console()
    with tempfile.TemporaryDirectory(prefix="bench-compress-") as tmp:
        root = Path(tmp)
        repo = root / "model_repo"
        # Only the two measured models on the server: the base copied and built, the variant made below.
        shutil.copytree(model_repo_dir() / "text_encoder", repo / "text_encoder", ignore=shutil.ignore_patterns("__pycache__"))
        build_models(repo, progress=False, models=["text_encoder"])
        made = C.compress(repo, "text_encoder", "int8-dynamic")
        c = C.measure(repo, "text_encoder", made.variant.name, profile=profile, work_dir=root)
    C.print_comparison(console, c)
    if args.json:

        def ratio(new, old):
            return None if new is None or not old else new / old

        print(json.dumps({
            "base": {"name": c.base.name, "bytes": c.base.model_bytes, "correctness": c.base.correctness,
                     "throughput": c.base.throughput, "p99_ms": c.base.p99_ms},
            "variant": {"name": c.variant.name, "bytes": c.variant.model_bytes, "correctness": c.variant.correctness,
                        "throughput": c.variant.throughput, "p99_ms": c.variant.p99_ms},
            "accuracy": c.variant_info.accuracy,
            "size_ratio": ratio(c.variant.model_bytes, c.base.model_bytes),
            "throughput_ratio": ratio(c.variant.throughput, c.base.throughput),
            "p99_ratio": ratio(c.variant.p99_ms, c.base.p99_ms),
        }))
    return c.exit_code


if __name__ == "__main__":
    sys.exit(main())
