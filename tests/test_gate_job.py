"""The smoke gate Jobs as the program renders them, run for real: their own command lines, against a real tritonserver.

The test takes the Job and ConfigMap from the offline plan of a stack (as `hybridserve plan --manifests`
writes them), lays the ConfigMap's files out in a directory the way the volume's `items` mount them,
and runs the container's command there (its workingDir) in an interpreter shaped like NVIDIA's Triton
SDK image (tests/gateenv.py: the kit, Pulumi, typer, rich, pydantic, PyYAML, matplotlib blocked), with
the Job's environment pointing at a local tritonserver serving the built models. It passes with the
stack's SLOs and fails (exit 1) when the stack asks for an impossible throughput. The passing run's log
is then what `hybridserve smoke-report` reads through stand-ins of the two CLIs it drives (pulumi and
kubectl cannot run here).

The candidate gate Job (before the rollout) runs the same gate as its main container against Triton in the
same pod (a native sidecar) over the loopback interface: its command runs here against a local tritonserver
serving the built models (it passes) and one serving a copy whose text encoder gives other outputs (it
fails, exit 5, correctness): that Job would fail `pulumi up` before the Deployment changed. Its agreement
step (an init container between Triton and the gate) runs the same way: identical outputs against the same
server, a difference against the broken copy, a note (and exit 0) when nothing serves yet.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from gateenv import SITE_FAILED, blocked_env
from hybridserve.gateagreement import CANDIDATE_ENV, SERVED_ENV
from hybridserve.gateagreement import MARKER as AGREEMENT_MARKER
from hybridserve.gatejob import METRICS_URL_ENV, URL_ENV
from hybridserve.local.process import free_ports
from hybridserve.local.triton import TritonServer
from hybridserve.paths import repo_root
from infra.manifests import render
from infra.plan import plan_stack_file
from smoke_tests.report import extract_report

pytestmark = pytest.mark.servers

EXAMPLES = repo_root() / "stacks"


def _stack_variant(stacks: Path, min_throughput: float) -> Path:
    """vision-dev, gating text_encoder only over a short sweep (concurrency 1, 2; 1 s windows) at the given
    throughput SLO."""
    path = stacks / "Pulumi.vision-dev.yaml"
    doc = yaml.safe_load((EXAMPLES / "Pulumi.vision-dev.yaml").read_text())
    serving = doc["config"]["hybridserve:serving"]
    serving["models"] = [{"name": "text_encoder"}]
    serving["gate"] = {"max_concurrency": 2, "window_seconds": 1}
    serving["slo"] = {"min_throughput": min_throughput, "max_p99_ms": 2000, "max_error_rate": 0.0, "wait_ready_seconds": 60}
    path.write_text(yaml.safe_dump(doc))
    return path


_RENDERED: dict[tuple[str, str], object] = {}


def _rendered(path: Path):
    """The stack file's plan, rendered; planned once per content for this module (a plan costs seconds)."""
    key = (path.name, path.read_text())
    if key not in _RENDERED:
        _RENDERED[key] = render(plan_stack_file(path))
    return copy.deepcopy(_RENDERED[key])


def _job_and_files(path: Path, site: str = "aws", prefix: str = "triton-smoke-") -> tuple[dict, dict]:
    """The gate Job whose name starts with `prefix` (the post-rollout gate, or triton-candidate-) and its ConfigMap."""
    manifests = _rendered(path).clusters[site].manifests
    [job] = [m for m in manifests if m["kind"] == "Job" and m["metadata"]["name"].startswith(prefix)]
    [config_map] = [m for m in manifests if m["kind"] == "ConfigMap"]
    return job, config_map


def _lay_out(job: dict, config_map: dict, root: Path, container: dict | None = None) -> tuple[list[str], dict[str, str], Path]:
    """The container's (default: the main one) command, environment and working directory, with the ConfigMap
    mounted as its items say."""
    pod = job["spec"]["template"]["spec"]
    if container is None:
        [container] = pod["containers"]
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "gate")
    [volume] = [v for v in pod["volumes"] if v["name"] == "gate"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    workdir = root / mount.lstrip("/")
    for item in volume["configMap"]["items"]:
        key = item["key"]
        data = config_map.get("data", {}).get(key)
        content = data.encode() if data is not None else base64.b64decode(config_map["binaryData"][key])
        target = workdir / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    assert container["workingDir"] == mount
    env = {e["name"]: e["value"] for e in container["env"]}
    return container["command"], env, workdir


@pytest.fixture
def triton(kit_server) -> TritonServer:
    """The session's tritonserver serving the built models (tests/conftest.py `kit_server`): the Jobs only read it."""
    return kit_server.server


@contextmanager
def _started_meanwhile(server: TritonServer):
    """Start `server` in the background; yields a function that waits until it serves. Stopped on exit."""
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(server.start)
        try:
            yield starting.result
        finally:
            try:
                starting.result()
            finally:
                server.stop()


def _run_job(command: list[str], job_env: dict[str, str], workdir: Path, triton: TritonServer | None, tmp_path: Path,
             **endpoints: str) -> subprocess.CompletedProcess:
    # The Job's own environment, its two endpoints pointed at the local server instead of the Service (or
    # `endpoints`: other variables to point elsewhere).
    if triton is not None:
        endpoints = {URL_ENV: triton.grpc_url, METRICS_URL_ENV: triton.metrics_url, **endpoints}
    env = blocked_env(tmp_path / "site", **{**job_env, **endpoints, "HOME": str(tmp_path)})
    assert command[0] == "python3"
    argv = [sys.executable, *command[1:]]  # the image's python3 is this interpreter here
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert SITE_FAILED not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def test_the_jobs_command_passes_and_fails_on_an_impossible_slo(triton, tmp_path: Path, monkeypatch, capsys):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    job, config_map = _job_and_files(_stack_variant(stacks, min_throughput=1.0))
    command, job_env, workdir = _lay_out(job, config_map, tmp_path / "pass")
    assert not (workdir / "hybridserve").exists() and (workdir / "smoke_tests" / "__main__.py").is_file()
    assert command[command.index("--window") + 1] == "1"  # the stack's gate.window_seconds

    impossible = tmp_path / "impossible"
    impossible.mkdir()
    job2, config_map2 = _job_and_files(_stack_variant(impossible, min_throughput=1e6))
    assert job2["metadata"]["name"] != job["metadata"]["name"]  # another SLO: another Job, run again by `pulumi up`
    command2, job_env2, workdir2 = _lay_out(job2, config_map2, tmp_path / "fail")
    # Both Jobs at once against the one server (their sweeps are timed windows): the verdicts do not depend on it.
    with ThreadPoolExecutor(2) as pool:
        passing = pool.submit(_run_job, command, job_env, workdir, triton, tmp_path)
        failing = pool.submit(_run_job, command2, job_env2, workdir2, triton, impossible)  # its own site dir and HOME
        passed, failed = passing.result(), failing.result()

    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    report = extract_report(passed.stdout)
    assert report["passed"] is True and [m["name"] for m in report["models"]] == ["text_encoder"]
    [model] = report["models"]
    # checked against the reference set the ConfigMap carried, within the served (GPU) config's tolerances
    assert model["correctness"]["status"] == "passed" and model["correctness"]["samples"] > 0
    assert model["correctness"]["atol"] == 2e-3

    assert failed.returncode == 1, failed.stdout[-3000:] + failed.stderr[-3000:]
    report2 = extract_report(failed.stdout)
    assert report2["passed"] is False and any("throughput" in v["message"] for v in report2["violations"])

    _smoke_report_reads_the_log(passed.stdout, job, tmp_path, monkeypatch, capsys)


def _other_outputs(repo: Path, model: str) -> None:
    """A new version of `model` that loads and answers, with other weights: the outputs its reference set
    does not hold (a bad training run, a wrong checkpoint)."""
    import torch

    path = repo / model / "1" / "model.pt"
    module = torch.jit.load(str(path))
    generator = torch.Generator().manual_seed(13)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    torch.jit.save(module, str(path))


def test_the_candidate_gate_passes_a_good_version_and_fails_one_with_wrong_outputs(triton, built_model_repo, tmp_path: Path):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    path = _stack_variant(stacks, min_throughput=1.0)
    job, config_map = _job_and_files(path, prefix="triton-candidate-")
    post, _ = _job_and_files(path)
    pod = job["spec"]["template"]["spec"]
    [sidecar, agreement] = pod["initContainers"]
    assert sidecar["restartPolicy"] == "Always" and sidecar["command"] == ["tritonserver"]
    grpc = next(p["containerPort"] for p in sidecar["ports"] if p["name"] == "grpc")
    assert f"--grpc-port={grpc}" in sidecar["args"] and "--grpc-address=0.0.0.0" in sidecar["args"]
    command, job_env, workdir = _lay_out(job, config_map, tmp_path / "candidate")
    # the same gate as after the rollout, aimed at the sidecar in its own pod instead of the Service
    assert command == post["spec"]["template"]["spec"]["containers"][0]["command"]
    assert job_env[URL_ENV] == f"127.0.0.1:{grpc}"

    broken_repo = tmp_path / "broken_repo"
    shutil.copytree(built_model_repo, broken_repo, ignore=shutil.ignore_patterns("__pycache__"))
    _other_outputs(broken_repo, "text_encoder")
    root = tmp_path / "broken-triton"
    broken = TritonServer(broken_repo, ["text_encoder"], log_path=root / "triton.log", work_dir=root / "work", startup_timeout=240)
    # The broken copy loads while the good version is gated: its start is mostly waiting on the model load.
    with _started_meanwhile(broken) as broken_served:
        passed = _run_job(command, job_env, workdir, triton, tmp_path)
        assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
        assert extract_report(passed.stdout)["passed"] is True

        agree_command, agree_env, agree_dir = _lay_out(job, config_map, tmp_path / "agreement", agreement)
        assert agree_env[CANDIDATE_ENV] == f"127.0.0.1:{grpc}" and agree_env[SERVED_ENV].startswith("triton.triton.svc.cluster.local:")

        def agree(candidate: str, served: str) -> dict:
            proc = _run_job(agree_command, agree_env, agree_dir, None, tmp_path, **{CANDIDATE_ENV: candidate, SERVED_ENV: served})
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]  # it reports; it never stops a rollout
            [line] = [x for x in proc.stdout.splitlines() if x.startswith(AGREEMENT_MARKER)]
            return json.loads(line[len(AGREEMENT_MARKER):])

        same = agree(triton.grpc_url, triton.grpc_url)
        [model] = same["models"]
        [output] = model["outputs"]
        assert same["note"] is None and model["name"] == "text_encoder" and output["output"] == "embedding"
        assert output["rows"] > 0 and output["max_abs_diff"] == 0.0 and output["min_cosine"] > 0.999999
        first = agree(triton.grpc_url, f"127.0.0.1:{free_ports(1)[0]}")  # nothing serves yet: a first rollout
        assert first["models"] == [] and "no version to compare with" in first["note"]

        broken_served()
        differs = agree(broken.grpc_url, triton.grpc_url)
        failed = _run_job(command, job_env, workdir, broken, tmp_path)
        [output] = differs["models"][0]["outputs"]
        assert output["max_abs_diff"] > 2e-3 and output["mean_cosine"] < 0.999  # beyond the served config's tolerance
        assert failed.returncode == 5, failed.stdout[-3000:] + failed.stderr[-3000:]  # smoke_tests ExitCode.CORRECTNESS
        report = extract_report(failed.stdout)
        [model] = report["models"]
        assert report["passed"] is False and model["name"] == "text_encoder" and model["correctness"]["status"] == "failed"


def _fake_cli(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{script}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _smoke_report_reads_the_log(log: str, job: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    """`hybridserve smoke-report` finds the Job in the stack outputs and prints its log and verdict."""
    from hybridserve.cli import main

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    outputs = {
        "smokeGate": {"aws": {"job": job["metadata"]["name"], "namespace": job["metadata"]["namespace"], "verdict": "passed"}},
        "kubeconfigs": {"aws": json.dumps({"apiVersion": "v1", "kind": "Config"})},
    }
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    (tmp_path / "job.log").write_text(log)
    record = tmp_path / "calls.jsonl"
    _fake_cli(bin_dir, "pulumi", f"""import sys, json
open({str(record)!r}, "a").write(json.dumps(sys.argv[1:]) + "\\n")
sys.stdout.write(open({str(tmp_path / 'outputs.json')!r}).read())
""")
    _fake_cli(bin_dir, "kubectl", f"""import os, sys, json, stat
cfg = sys.argv[sys.argv.index("--kubeconfig") + 1]
open({str(record)!r}, "a").write(json.dumps(sys.argv[1:] + [oct(os.stat(cfg).st_mode & 0o777)]) + "\\n")
sys.stdout.write(open({str(tmp_path / 'job.log')!r}).read())
""")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out_file = tmp_path / "report.json"
    with pytest.raises(SystemExit) as info:
        main(["smoke-report", "--stack", "vision-dev", "--site", "aws", "--json", str(out_file)])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    assert (info.value.code or 0) == 0, err
    assert "text_encoder" in out and f"(Job triton/{job['metadata']['name']}): PASSED" in out
    assert "HYBRIDSERVE-SMOKE-REPORT" not in out
    assert json.loads(out_file.read_text())["passed"] is True
    pulumi_call, kubectl_call = [json.loads(line) for line in record.read_text().splitlines()]
    assert pulumi_call[:6] == ["stack", "output", "--stack", "vision-dev", "--json", "--show-secrets"]
    assert kubectl_call[2:] == ["logs", "--namespace", "triton", f"job/{job['metadata']['name']}", "0o600"]  # the kubeconfig stays private
    assert not Path(kubectl_call[1]).exists()  # and is gone afterwards

    # a stack without a gate on that site, a missing CLI: named, no traceback
    outputs["smokeGate"] = {}
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    with pytest.raises(SystemExit) as info:
        main(["smoke-report", "--stack", "vision-dev", "--site", "aws"])
    assert info.value.code == 2 and "has no smoke gate on site 'aws'" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SystemExit) as info:
        main(["smoke-report", "--stack", "vision-dev"])
    assert info.value.code == 2 and "`pulumi` is not on PATH" in capsys.readouterr().err
    shutil.rmtree(bin_dir)
