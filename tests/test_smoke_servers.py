"""The smoke gate against the real tritonserver: pass, SLO miss, wrong outputs, unknown model, interface
mismatch, HTTP, a server that stops answering, stack SLOs, the standalone gate without the kit (as in the
Triton SDK image), and the kit's own models served from the real S3 store (SeaweedFS) like the local plane
serves them.

Test models (tests/smoke_models, Python backend, numpy only): `smoke_add` returns INPUT0 * 2 + 1, as its
reference says; `smoke_wrong` returns INPUT0 * 2 + 1.01 against the same reference. Windows are short
(0.5-1 s) to keep the shared 2-core machine free; the figures are asserted for presence, never for speed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hybridserve.local.triton import TritonServer, live_group_members
from smoke_tests import PROFILES, SmokeOptions, run_smoke
from smoke_tests.errors import ExitCode
from smoke_tests.options import ModelTarget

pytestmark = pytest.mark.servers

HERE = Path(__file__).resolve().parent
SCHEMA = HERE.parent / "smoke_tests" / "report.schema.json"
FAST = ["--window", "0.5", "--max-windows", "4", "--request-timeout", "30"]


def write_references(repo: Path, rows: int = 20, *, dims: int = 16, dtype=np.float32) -> None:
    """reference.npz for the test models: what smoke_add computes (smoke_wrong misses it by 0.01)."""
    x = np.random.default_rng(7).standard_normal((rows, dims)).astype(dtype)
    for name in ("smoke_add", "smoke_wrong", "smoke_slow"):
        if not (repo / name).is_dir():
            continue
        np.savez(repo / name / "1" / "reference.npz", **{"input/INPUT0": x, "output/OUTPUT0": (x * 2 + 1).astype(dtype)})


def start_server(root: Path, repo: Path, models: list[str]) -> TritonServer:
    server = TritonServer(repo, models, log_path=root / "triton.log", work_dir=root / "work", startup_timeout=240)
    server.start()
    return server


def stop_server(server: TritonServer) -> None:
    pid = server.last_pid
    server.stop()
    assert not server.running()
    assert live_group_members(pid) == []  # nor its Python backend stubs


@pytest.fixture(scope="module")
def test_models(tmp_path_factory):
    """tritonserver serving smoke_add and smoke_wrong, and a reference repository for them."""
    root = tmp_path_factory.mktemp("smoke_srv")
    repo = root / "repo"
    shutil.copytree(HERE / "smoke_models", repo, ignore=shutil.ignore_patterns("__pycache__"))
    # smoke_slow: smoke_add taking 2 s per execution, longer than the request timeout its test gives.
    shutil.copytree(repo / "smoke_add", repo / "smoke_slow")
    config = (repo / "smoke_add" / "config.pbtxt").read_text().replace('"smoke_add"', '"smoke_slow"')
    (repo / "smoke_slow" / "config.pbtxt").write_text(config + 'parameters { key: "delay_ms" value { string_value: "2000" } }\n')
    write_references(repo)
    server = start_server(root, repo, ["smoke_add", "smoke_wrong", "smoke_slow"])
    try:
        yield server, repo
    finally:
        stop_server(server)


def cli(args: list[str], capsys) -> tuple[int, str]:
    """`python -m smoke_tests ARGS` in this process; (exit code, stdout + stderr with line wraps undone)."""
    from smoke_tests.__main__ import main

    code = main(args)
    captured = capsys.readouterr()
    return code, " ".join((captured.out + captured.err).split())


def test_reachable_slo_passes_and_writes_every_report(test_models, tmp_path, capsys):
    import jsonschema
    import matplotlib.image

    server, repo = test_models
    out = tmp_path / "out"
    code, text = cli(["--url", server.grpc_url, "--model-repo", str(repo), "--model", "smoke_add", *FAST,
                      "--concurrency", "1,2", "--min-throughput", "smoke_add=1@2", "--max-p99-ms", "smoke_add=10000@1",
                      "--max-error-rate", "smoke_add=0", "--out-dir", str(out)], capsys)
    assert code == 0, text
    assert "smoke gate PASSED (exit code 0)" in text

    data = json.loads((out / "smoke.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    (model,) = data["models"]
    assert model["name"] == "smoke_add" and model["version"] == "1" and model["ready"]
    assert model["correctness"]["status"] == "passed" and model["correctness"]["samples"] == 20
    assert [lv["concurrency"] for lv in model["sweep"]] == [1, 2]
    for lv in model["sweep"]:
        assert lv["requests"] > 0 and lv["errors"] == 0 and lv["throughput_infer_per_s"] > 0
        assert lv["latency_us"]["p50"] <= lv["latency_us"]["p99"]
        # Triton's own figures over the same windows.
        assert lv["server"]["inference_count"] > 0 and lv["server"]["compute_infer_us"] > 0
        assert lv["server"]["avg_batch_size"] >= 1
    assert model["slo"] == {"min_throughput": 1.0, "throughput_concurrency": 2, "max_p99_ms": 10000.0,
                            "p99_concurrency": 1, "max_error_rate": 0.0}
    assert model["saturation"] is not None and data["run"]["load_generator"]["kind"] == "grpc.aio"

    suites = ET.parse(out / "smoke.junit.xml").getroot()
    assert suites.get("failures") == "0" and suites.get("errors") == "0"
    names = {c.get("name") for c in suites.iter("testcase") if c.get("classname") == "smoke.smoke_add"}
    assert {"ready", "correctness", "slo throughput", "slo p99 latency", "slo error rate"} <= names

    with open(out / "smoke.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Concurrency"] for r in rows] == ["1", "2"] and float(rows[1]["Inferences/Second"]) > 0
    assert int(rows[0]["p99 latency"]) >= int(rows[0]["p50 latency"]) > 0

    assert matplotlib.image.imread(out / "smoke.png").shape[2] in (3, 4)


def test_slo_above_capacity_fails_naming_the_model_and_the_figure(test_models, tmp_path, capsys):
    server, repo = test_models
    code, text = cli(["--url", server.grpc_url, "--model-repo", str(repo), "--model", "smoke_add", *FAST,
                      "--concurrency", "1,2", "--min-throughput", "smoke_add=10000000@2", "--max-p99-ms", "smoke_add=0.001@1",
                      "--json", str(tmp_path / "r.json")], capsys)
    assert code == ExitCode.SLO_VIOLATION == 1
    assert "smoke_add: throughput" in text and "at concurrency 2 is below the minimum 1e+07 inf/s" in text
    assert "smoke_add: p99 latency" in text and "at concurrency 1 exceeds the maximum 0.001 ms" in text
    data = json.loads((tmp_path / "r.json").read_text())
    assert sorted(v["metric"] for v in data["violations"]) == ["max_p99_ms", "min_throughput"]
    measured = {v["metric"]: v["measured"] for v in data["violations"]}
    assert 0 < measured["min_throughput"] < 10_000_000 and measured["max_p99_ms"] > 0.001


def test_a_model_with_wrong_outputs_fails_correctness(test_models, tmp_path, capsys):
    server, repo = test_models
    code, text = cli(["--url", server.grpc_url, "--model-repo", str(repo), "--model", "smoke_wrong", "--model", "smoke_add",
                      "--no-throughput", "--junit", str(tmp_path / "r.xml"), "--json", str(tmp_path / "r.json")], capsys)
    assert code == ExitCode.CORRECTNESS == 5
    assert "smoke_wrong: OUTPUT0: 320 of 320 values out of tolerance" in text and "max |diff| 0.01" in text
    data = json.loads((tmp_path / "r.json").read_text())
    by_name = {m["name"]: m for m in data["models"]}
    assert by_name["smoke_add"]["correctness"]["status"] == "passed"
    check = by_name["smoke_wrong"]["correctness"]
    assert check["status"] == "failed" and check["outputs"][0]["mismatched"] == 320
    assert check["outputs"][0]["max_abs_diff"] == pytest.approx(0.01, rel=1e-3)
    failed = [c.get("classname") for c in ET.parse(tmp_path / "r.xml").getroot().iter("testcase") if c.find("failure") is not None]
    assert failed == ["smoke.smoke_wrong"]


def test_unknown_model_or_version_exits_4(test_models, capsys):
    server, _ = test_models
    code, text = cli(["--url", server.grpc_url, "--model", "no_such_model", "--no-correctness"], capsys)
    assert code == ExitCode.NOT_READY == 4
    assert "no_such_model: unknown model on the server" in text and "smoke_add" in text
    code, text = cli(["--url", server.http_url, "--protocol", "http", "--model", "smoke_add:7", "--no-correctness"], capsys)
    assert code == 4 and "smoke_add version 7: not ready; the server has version(s) 1" in text


@pytest.mark.parametrize(
    ("dims", "dtype", "needle"),
    [(8, np.float32, "the server declares shape [-1, 16], the reference has [20, 8]"),
     (16, np.float64, "the server declares FP32, the reference is FP64")],
)
def test_wrong_input_shape_or_dtype_exits_6(test_models, tmp_path, capsys, dims, dtype, needle):
    server, repo = test_models
    refs = tmp_path / "refs"
    shutil.copytree(repo, refs)
    write_references(refs, dims=dims, dtype=dtype)
    code, text = cli(["--url", server.grpc_url, "--model-repo", str(refs), "--model", "smoke_add"], capsys)
    assert code == ExitCode.INTERFACE == 6
    assert "smoke_add: interface mismatch: input 'INPUT0'" in text and needle in text


def test_http_endpoint_through_the_library(test_models, tmp_path):
    """The call `hybridserve local up` makes (keywords), over HTTP; the report renders and has the headline figures."""
    from rich.console import Console

    server, repo = test_models
    profile = replace(PROFILES["quick"], window_s=0.5, concurrencies=(1, 4))
    report = run_smoke(http_url=server.http_url, grpc_url=None, metrics_url=server.metrics_url, repo_dir=repo,
                       models=["smoke_add"], profile=profile)
    assert report.passed and report.exit_code == 0, [str(v) for v in report.violations]
    (m,) = report.models
    assert m.ready and m.correct is True and m.throughput > 0
    assert report.info.protocol == "http" and report.info.load_generator["kind"] == "aiohttp"
    assert [lv.concurrency for lv in m.sweep] == [1, 4] and all(lv.server.inference_count > 0 for lv in m.sweep)
    assert all(0 <= lv.server.host_cpu <= 1 for lv in m.sweep)  # Triton's nv_cpu_utilization, per window
    console = Console(width=160, record=True)
    console.print(report)
    assert "smoke_add" in console.export_text()


def test_the_capacity_search_reports_each_models_capacity(test_models, tmp_path):
    """The quick profile's capacity search on a real server: levels from 1 upwards chosen by what was measured, and
    the capacity (a measured level's figures) in the report, its tables and its JSON. No speed is asserted."""
    import jsonschema

    server, repo = test_models
    profile = replace(PROFILES["quick"], window_s=0.5, max_concurrency=8)
    report = run_smoke(grpc_url=server.grpc_url, repo_dir=repo, models=["smoke_add"], profile=profile,
                       json_path=tmp_path / "r.json")
    assert report.exit_code == 0, [str(v) for v in report.violations]
    (m,) = report.models
    measured = [lv.concurrency for lv in m.sweep]
    assert measured[0] == 1 and measured == sorted(set(measured)) and measured[-1] <= 8
    cap = m.capacity
    assert cap is not None and cap.stop in ("plateau", "p99_limit", "errors", "max_concurrency", "time_budget")
    level = m.level(cap.concurrency)
    assert level is not None and cap.throughput == level.throughput > 0
    assert cap.describe().startswith(">= ") is (not cap.found)  # a lower bound says so
    data = json.loads((tmp_path / "r.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert data["run"]["profile"]["search"] is True
    assert data["models"][0]["capacity"]["concurrency"] == cap.concurrency
    assert data["models"][0]["capacity"]["throughput_infer_per_s"] > 0
    text = report.to_text()
    assert "capacity inf/s" in text and cap.describe() in text and "smoke_add: capacity" in text


def test_a_server_that_stops_answering_fails_with_exit_3(tmp_path):
    """SIGSTOP tritonserver during the sweep: the gate ends on its own bounded waits with exit code 3."""
    import tritonclient.http as httpclient

    repo = tmp_path / "repo"
    shutil.copytree(HERE / "smoke_models", repo, ignore=shutil.ignore_patterns("__pycache__"))
    write_references(repo)
    server = start_server(tmp_path, repo, ["smoke_add"])
    stopped = False
    try:
        options = SmokeOptions(url=server.grpc_url, models=[ModelTarget("smoke_add")], model_repo=repo,
                               profile=replace(PROFILES["quick"], window_s=1.0, max_windows=1000, concurrencies=(2,)),
                               request_timeout_s=3.0, call_timeout_s=2.0, json_path=tmp_path / "r.json")
        result = {}
        runner = threading.Thread(target=lambda: result.update(report=run_smoke(options)), daemon=True)
        runner.start()
        client = httpclient.InferenceServerClient(server.http_url, connection_timeout=10, network_timeout=10)
        try:
            # Wait for the sweep itself (the correctness check sends only 20 inferences).
            for _ in range(600):
                stats = client.get_inference_statistics("smoke_add")["model_stats"][0]
                if int(stats["inference_count"]) > 200 or not runner.is_alive():
                    break
                threading.Event().wait(0.1)
        finally:
            client.close()
        assert runner.is_alive(), "the sweep ended before the server was stopped"
        os.kill(server.pid, signal.SIGSTOP)
        stopped = True
        runner.join(timeout=180)  # a hang guard, not a speed check: every wait inside is bounded
        assert not runner.is_alive(), "the smoke gate hung on a server that stopped answering"
        report = result["report"]
        assert report.exit_code == ExitCode.UNREACHABLE == 3
        assert "stopped answering" in report.error.message and "smoke_add" in report.error.message
        assert json.loads((tmp_path / "r.json").read_text())["error"]["exit_code"] == 3
    finally:
        if stopped:
            os.kill(server.pid, signal.SIGCONT)
        stop_server(server)


def test_a_model_whose_every_request_times_out_fails_with_exit_3(test_models, capsys):
    server, repo = test_models
    code, text = cli(["--url", server.grpc_url, "--model-repo", str(repo), "--model", "smoke_slow", "--window", "0.5",
                      "--concurrency", "1", "--request-timeout", "0.5", "--call-timeout", "5", "--no-correctness"], capsys)
    assert code == ExitCode.UNREACHABLE == 3
    assert "model smoke_slow stopped answering: every request at concurrency 1 timed out (request timeout 0.5 s)" in text


def test_the_kits_models_pass_as_a_standalone_command(built_model_repo, kit_server, tmp_path):
    """The kit's built models as the clusters serve them: text_encoder and image_classifier synced (SSE-KMS) to
    an S3 store, tritonserver loading them from s3:// (the session's `kit_server`, tests/conftest.py), and
    `python -m smoke_tests` as a CI step would run it. (The local plane's tests run the same gate on SeaweedFS.)"""
    import jsonschema

    server = kit_server.server
    assert server.model_repository.startswith("s3://")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "smoke_tests", "--url", server.grpc_url, "--metrics-url", server.metrics_url,
         "--model-repo", str(built_model_repo), "--profile", "quick", "--window", "0.5", "--max-windows", "3",
         "--concurrency", "1,4", "--request-timeout", "60", "--out-dir", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "smoke.json").read_text())
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
    assert sorted(m["name"] for m in data["models"]) == ["image_classifier", "text_encoder"]
    for m in data["models"]:
        assert m["correctness"]["status"] == "passed" and m["correctness"]["samples"] > 0
        assert [lv["concurrency"] for lv in m["sweep"]] == [1, 4]
        assert m["sweep"][1]["server"]["avg_batch_size"] >= 1 and m["peak_throughput_infer_per_s"] > 0
        assert m["sweep"][1]["server"]["host_cpu"] is not None
    assert (out / "smoke.png").stat().st_size > 0 and (out / "smoke.csv").read_text().startswith("Concurrency,")

def test_slos_come_from_the_stack_config(test_models, tmp_path, capsys):
    """`hybridserve smoke --stack NAME`: the stack's serving SLO (stack-wide, merged with a per-model override) is what
    is enforced; the kit hands it to the gate as --slos."""
    from hybridserve.cli import main
    from hybridserve.stackconfig.loader import load_stack

    server, repo = test_models
    with pytest.raises(SystemExit) as info:
        main(["smoke", "--url", server.grpc_url, "--model-repo", str(repo), "--model", "smoke_add", "--stack", "vision-dev",
              *FAST, "--concurrency", "1", "--wait-ready", "5", "--max-p99-ms", "smoke_add=0.001@1",
              "--json", str(tmp_path / "r.json")])
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    expected = load_stack("vision-dev").serving.slo_for("smoke_add")
    data = json.loads((tmp_path / "r.json").read_text())
    slo = data["models"][0]["slo"]
    # The flag overrides the p99 figure; everything else is the stack's.
    assert slo["min_throughput"] == expected.min_throughput and slo["max_error_rate"] == expected.max_error_rate
    assert (slo["max_p99_ms"], slo["p99_concurrency"]) == (0.001, 1)
    assert info.value.code == 1 and "smoke_add: p99 latency" in text


@pytest.mark.parametrize("verdict", ["pass", "fail"])
def test_the_standalone_gate_without_the_kit_with_slos_and_json_on_stdout(test_models, tmp_path, verdict):
    """What an in-cluster Job runs from the Triton SDK image: `python -m smoke_tests --slos JSON --json -` in an
    interpreter without the kit, rich, typer, pydantic, yaml or matplotlib (load processes included), against the
    real server; the JSON report is read back from stdout as from `kubectl logs`."""
    from gateenv import SITE_FAILED, blocked_env

    from smoke_tests.report import extract_report

    server, repo = test_models
    floor = 1.0 if verdict == "pass" else 1e9  # inferences/s: one any server reaches, one none does
    spec = {"models": ["smoke_add"], "slos": {"*": {"max_error_rate": 0.0},
                                               "smoke_add": {"min_throughput": floor, "throughput_concurrency": 2,
                                                             "max_p99_ms": 10000}},
            "wait_ready_s": 30}
    (tmp_path / "slos.json").write_text(json.dumps(spec))
    slos = json.dumps(spec) if verdict == "pass" else f"@{tmp_path / 'slos.json'}"
    proc = subprocess.run(
        [sys.executable, "-m", "smoke_tests", "--url", server.grpc_url, "--model-repo", str(repo), "--slos", slos,
         *FAST, "--concurrency", "1,2", "--json", "-", "--junit", str(tmp_path / "r.xml")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, stdin=subprocess.DEVNULL,
        env=blocked_env(tmp_path / "site", HYBRIDSERVE_ROOT=str(tmp_path)),
    )
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "blocked" not in text and SITE_FAILED not in text, text
    report = extract_report(proc.stdout)
    assert report is not None, text
    (model,) = report["models"]
    assert model["name"] == "smoke_add" and model["ready"] and model["correctness"]["status"] == "passed"
    assert [lv["concurrency"] for lv in model["sweep"]] == [1, 2] and model["sweep"][1]["requests"] > 0
    assert model["slo"]["min_throughput"] == floor and model["slo"]["max_p99_ms"] == 10000
    # The plain-text report (no rich) comes first, with the same tables.
    human = proc.stdout.split("HYBRIDSERVE-SMOKE-REPORT ", 1)[0]
    assert "Smoke gate: grpc://" in human and "smoke_add: concurrency sweep" in human and "p99 ms" in human
    if verdict == "pass":
        assert proc.returncode == 0 and report["passed"] and report["exit_code"] == 0, text
        assert "smoke gate PASSED (exit code 0)" in human
    else:
        assert proc.returncode == 1 and not report["passed"] and report["exit_code"] == 1, text
        assert [v["metric"] for v in report["violations"]] == ["min_throughput"]
        assert "error: smoke gate FAILED (exit code 1): 1 problem(s)" in proc.stderr
        assert "smoke_add: throughput" in proc.stderr and "below the minimum 1e+09 inf/s" in proc.stderr
    assert ET.parse(tmp_path / "r.xml").getroot().get("failures") == ("0" if verdict == "pass" else "1")
