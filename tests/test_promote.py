"""`hybridserve models promote / rollback` on a real tritonserver serving from real SeaweedFS, under load.

One plane for the module (bench/bench_promote.py's: text_encoder version 1 published and served; version 2
built with other weights, version 3 broken: version 2's model against version 1's reference set).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cliutil import run_cli

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("bench_promote", ROOT / "bench" / "bench_promote.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

MODEL = bench.MODEL


@pytest.fixture(scope="module")
def served(tmp_path_factory, built_model_repo, seaweed):
    root = tmp_path_factory.mktemp("promote")
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    with bench.plane(root, built_model_repo, seaweed=seaweed, bucket=bucket) as (repo, ep, target, triton):
        yield repo, ep, target, triton


@pytest.fixture
def flags(served, monkeypatch):
    repo, ep, target, triton = served
    for k, v in ep.env().items():  # the store's key pair, as boto3's credential chain reads it
        monkeypatch.setenv(k, v)
    # The plane's state dir (no plane.json: the flags below say where to act), whose record of validated content
    # spares each publish step validating again what the plane's sync validated.
    state = bench.state_dir(repo.parent)
    return [
        "--state-dir", str(state), "--url", triton.http_url, "--grpc-url", triton.grpc_url, "--endpoint-url", ep.url, "--bucket", target.bucket,
        "--prefix", target.prefix, "--region", ep.region, "--sse", "AES256", "--compare-seconds", "0.5",
        # Correctness only: 8 helpers share 2 cores here, a sweep's figures would decide nothing (the bench sweeps).
        "--no-throughput",
    ]


def _index(triton) -> dict[tuple[str, str], str]:
    from hybridserve.local.triton import repository_index

    return {(e["name"], e.get("version", "")): e.get("state", "") for e in repository_index(triton.http_port)}


def _history(target):
    from hybridserve.promote import history
    from hybridserve.promote.store import Store

    store = Store(target)
    return history.read(store.s3, store.bucket, store.base, MODEL)


def _published(target) -> list[int]:
    from hybridserve.promote.store import Store

    return Store(target).served_versions(MODEL)


# --------------------------------------------------------------------------------------------- bad input


pytestmark = pytest.mark.servers


def test_no_plane_running_exits_2_naming_the_flags(tmp_path, capsys):
    code, out, err = run_cli(["models", "promote", MODEL, "--version", "2", "--state-dir", str(tmp_path / "none")], capsys)
    assert code == 2
    assert "no running local plane" in err and "--url" in err and "local up --keep" in err


def test_bad_slo_flag_exits_2(tmp_path, capsys):
    code, out, err = run_cli(["models", "promote", MODEL, "--version", "2", "--max-p99-ms", "fast"], capsys)
    assert code == 2 and "--max-p99-ms" in err


def test_unknown_model_exits_2(served, flags, capsys):
    repo = served[0]
    code, out, err = run_cli(["models", "promote", "nope", "--version", "2", "--repo", str(repo), *flags], capsys)
    assert code == 2
    assert "MODEL 'nope'" in err and "published models: " + MODEL in err


def test_version_without_directory_exits_2(served, flags, capsys):
    repo, _, target, triton = served
    code, out, err = run_cli(["models", "promote", MODEL, "--version", "7", "--repo", str(repo), *flags], capsys)
    assert code == 2
    assert "--version 7" in err and f"{MODEL}/7" in err and "1, 2, 3" in err
    assert _published(target) == [1]  # nothing touched


def test_unreachable_store_is_reported_without_traceback(served, flags, capsys):
    from hybridserve.local.process import free_ports

    repo = served[0]
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    args = [a if a != served[1].url else dead for a in flags]
    code, out, err = run_cli(["models", "promote", MODEL, "--version", "2", "--repo", str(repo), *args], capsys)
    assert code not in (0, 1) and dead in err, err  # run_cli asserts there is no traceback


# --------------------------------------------------------------------------------------------- acceptance


def test_promote_good_then_broken_then_rollback_under_load(served, flags, capsys):
    import numpy as np

    from smoke_tests.reference_file import read_reference

    repo, ep, target, triton = served
    earlier = len(_history(target).entries)  # other tests of the module (the bench) may have promoted already
    inputs, _ = read_reference(repo / MODEL / "1" / "reference.npz")
    probe_inputs = np.ascontiguousarray(inputs["input_ids"][:4])
    traffic = bench.Traffic(triton.grpc_url, triton.http_url, probe_inputs, bench.expected_outputs(repo, (1, 2), probe_inputs))
    try:
        assert traffic.wait_for("v1", 60)
        traffic.phase("promote good")
        code, out, err = run_cli(["models", "promote", MODEL, "--version", "2", "--repo", str(repo), *flags], capsys)
        assert code == 0, out + err
        assert "promote PASS" in out and "old vs new on the same inputs" in out and "side by side" in out
        # The plane's sync validated this repository with the same state dir: publishing does not validate it again.
        assert "validation skipped" in out, out
        assert traffic.wait_for("v2", 120), "unversioned requests never got version 2's outputs"
        index = _index(triton)
        assert index[(MODEL, "2")] == "READY" and index.get((MODEL, "1")) != "READY", index
        assert _published(target) == [2]
        good = traffic.phase("promote broken")

        code, out, err = run_cli(["models", "promote", MODEL, "--version", "3", "--repo", str(repo), *flags], capsys)
        assert code == 1, out + err
        assert "promote FAIL" in out and "gate report" in out and "correctness" in out.lower()
        index = _index(triton)
        assert index[(MODEL, "2")] == "READY" and index.get((MODEL, "3")) != "READY", index
        assert _published(target) == [2]  # config.pbtxt still serves 2 although version 3 is uploaded
        broken = traffic.phase("rollback")

        code, out, err = run_cli(["models", "rollback", MODEL, *flags], capsys)
        assert code == 0, out + err
        assert "rollback PASS" in out
        assert traffic.wait_for("v1", 120), "unversioned requests never got version 1's outputs back"
        index = _index(triton)
        assert index[(MODEL, "1")] == "READY" and index.get((MODEL, "2")) != "READY", index
        rollback = traffic.phase("after")
    finally:
        traffic.close()

    for name, counts in (("promote good", good), ("promote broken", broken), ("rollback", rollback)):
        assert counts["sent"] > 0, (name, counts)
        assert counts["failed"] == 0 and counts["probe"].get("failed", 0) == 0, (name, counts, dict(traffic.probe_errors))
        assert counts["probe"].get("neither", 0) == 0, (name, counts)  # never a third answer (e.g. the broken one)
    assert good["probe"].get("v1") and good["probe"].get("v2")  # old answered until the switch, then new
    assert "v2" in broken["probe"] and "v1" not in broken["probe"]
    assert rollback["probe"].get("v1")
    assert ("text_encoder__candidate", "") not in _index(triton)

    h = _history(target)
    ours = h.entries[earlier:]
    assert [(e["action"], e["version"], e["from_version"], e["verdict"]) for e in ours] == [
        ("promote", 2, 1, "pass"), ("promote", 3, 2, "fail"), ("rollback", 1, 2, "pass")]
    assert h.served == 1 and h.stack == [1]
    assert all(e["who"] and e["at"].endswith("+00:00") for e in h.entries)
    assert ours[1]["summary"]["gate"]["passed"] is False and ours[1]["summary"]["gate"]["violations"]

    # A later plain sync keeps serving what the rollback chose (the local policy would publish version 3).
    from hybridserve.sync.engine import sync_repository

    # As `hybridserve sync` runs it, with the state dir's hash cache: nothing of the repository changed, nothing validated.
    report = sync_repository(repo, target, show_progress=False, hash_cache=bench.state_dir(repo.parent) / "sync-hashes.json")
    assert report.published[MODEL] == [1] and report.validation.startswith("skipped"), report.validation
    assert any("served one as promoted" in n and "models promote" in n for n in report.notes), report.notes
    assert _published(target) == [1]

    # Nothing further to roll back to.
    code, out, err = run_cli(["models", "rollback", MODEL, *flags], capsys)
    assert code == 2 and "no earlier passing version" in err


def test_ctrl_c_during_the_gate_leaves_the_old_version_serving(served, flags, monkeypatch):
    import os
    import signal
    import time

    repo, ep, target, triton = served
    before = {v for (name, v), state in _index(triton).items() if name == MODEL and state == "READY"}
    version = "3" if "3" not in before else "2"
    published = _published(target)
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200", NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hybridserve", "models", "promote", MODEL, "--version", version, "--repo", str(repo), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
    )
    lines = []
    try:
        for line in proc.stdout:  # bounded by the load timeout: the step line comes or the process ends
            lines.append(line)
            if "load candidate" in line:
                time.sleep(1.0)  # inside the gate now
                proc.send_signal(signal.SIGINT)
                break
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + out
    assert proc.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    assert "unload candidate" in output
    assert {v for (name, v), state in _index(triton).items() if name == MODEL and state == "READY"} == before
    assert _published(target) == published
    assert _history(target).entries[-1]["verdict"] == "interrupted"


def test_a_step_that_times_out_leaves_the_old_version_serving(served, flags):
    import os

    repo, ep, target, triton = served
    before = {v for (name, v), state in _index(triton).items() if name == MODEL and state == "READY"}
    version = "2" if "2" not in before else "3"
    published = _published(target)
    # The gate's sweep (not --no-throughput) takes far longer than the 1 s allowed. A subprocess, as a user runs
    # it: the timed-out gate's thread ends with the process.
    args = [a for a in flags if a != "--no-throughput"]
    proc = subprocess.run(
        [sys.executable, "-m", "hybridserve", "models", "promote", MODEL, "--version", version, "--repo", str(repo),
         "--gate-timeout", "1", *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=dict(os.environ, COLUMNS="200", NO_COLOR="1"),
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "gate did not finish within 1 s" in out and "promote ERROR" in out and "Traceback" not in out
    assert {v for (name, v), state in _index(triton).items() if name == MODEL and state == "READY"} == before
    assert _published(target) == published
    from hybridserve.promote.serving import Triton

    assert not Triton(triton.http_url).is_ready(MODEL + "__candidate")
    last = _history(target).entries[-1]
    assert (last["version"], last["verdict"]) == (int(version), "error") and "gate" in last["summary"]["message"]


def test_bench_promote_quick_prints_the_counts(served):
    import os

    # The module's plane is the bench's own plane() (version 1 served, 2 and 3 built), and every test leaves version 1
    # serving: the bench runs on it instead of building and starting another one.
    repo, ep, target, triton = served
    assert _published(target) == [1]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_promote.py"), "--quick", "--endpoint-url", ep.url, "--bucket", target.bucket,
         "--prefix", target.prefix, "--url", triton.http_url, "--grpc-url", triton.grpc_url, "--repo", str(repo),
         "--state-dir", str(bench.state_dir(repo.parent))],
        capture_output=True, text=True, timeout=1800, cwd=ROOT, env=dict(os.environ, **ep.env()),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("phase "))
    rows = lines[head + 1 : lines.index("", head)]
    assert [r[:22].strip() for r in rows] == ["start", "promote v2 (good)", "promote v3 (broken)", "rollback"], proc.stdout
    for r in rows:
        sent, failed = (int(x) for x in r[22:].split()[:2])
        assert sent >= failed >= 0
    head = next(i for i, line in enumerate(lines) if line.startswith("promotion "))
    promos = {r[:22].strip(): r[22:].split() for r in lines[head + 1 : head + 4]}
    assert {k: v[0] for k, v in promos.items()} == {"promote v2 (good)": "pass", "promote v3 (broken)": "fail", "rollback": "pass"}
    assert {k: v[1] for k, v in promos.items()} == {"promote v2 (good)": "0", "promote v3 (broken)": "1", "rollback": "0"}
    assert "switch" in " ".join(promos["promote v2 (good)"]) and "switch" not in " ".join(promos["promote v3 (broken)"])
    assert any(line.startswith("failed requests in total: ") for line in lines), proc.stdout
    assert _published(target) == [1]  # rolled back: the module's other tests find version 1 serving
