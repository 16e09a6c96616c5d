"""`hybridserve ci ...`: the CI stages (issue 12).

The decisions are pure functions (hybridserve/ci/decide.py), tested on their own: a diff -> stacks, the
deploy order, a failed update -> rollback or not, drift, one deployment per stack. The commands run the
real git (`ci changed` on a real repository in a temporary directory) and a fake `pulumi` and `kubectl`
(the CLIs cannot be installed here): small Python scripts on an otherwise empty PATH that answer what
the real ones print, record their arguments, and write the event log `pulumi up --event-log` writes.
The pinning that rollback relies on is tested on the provider against a real SeaweedFS, and in the
program under the mock engine.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from hybridserve.ci import decide
from hybridserve.ci.decide import KnownGood
from hybridserve.paths import repo_root
from smoke_tests.report import REPORT_MARKER
from smoke_tests.results import SCHEMA_ID
from tests.cliutil import run_cli

STACK = "vision-dev"
GOOD, BAD = "v" + "1" * 16, "v" + "2" * 16
ENVS = {"search-dev": "dev", "vision-dev": "dev", "search-prod": "prod", "vision-prod": "prod"}


# --------------------------------------------------------------------------------------------- a diff -> stacks


@pytest.mark.parametrize(("changed", "stacks"), [
    (["stacks/Pulumi.vision-prod.yaml"], ["vision-prod"]),
    (["stacks/Pulumi.vision-prod.yaml", "stacks/Pulumi.vision-dev.yaml"], ["vision-dev", "vision-prod"]),
    (["infra/components/vpn.py"], ["search-dev", "vision-dev", "search-prod", "vision-prod"]),
    (["model_repo/text_encoder/config.pbtxt"], ["search-dev", "vision-dev", "search-prod", "vision-prod"]),
    (["hybridserve/publish/store.py"], ["search-dev", "vision-dev", "search-prod", "vision-prod"]),
    (["smoke_tests/slo.py"], ["search-dev", "vision-dev", "search-prod", "vision-prod"]),
    (["Pulumi.yaml"], ["search-dev", "vision-dev", "search-prod", "vision-prod"]),
    (["constraints.txt"], ["search-dev", "vision-dev", "search-prod", "vision-prod"]),
    (["infra/requirements.txt"], ["search-dev", "vision-dev", "search-prod", "vision-prod"]),
    (["README.md", "docs/ops.md", "tests/test_vpn.py", ".github/workflows/deploy.yml", "Jenkinsfile"], []),
    # Not stack files, though under stacks/ or named like one.
    (["stacks/README.md", "stacks/old/Pulumi.vision-dev.yaml", "Pulumi.vision-dev.yaml"], []),
    ([], []),
])
def test_a_change_touches_these_stacks_dev_first(changed, stacks):
    touched = decide.touched_stacks(changed, ENVS)
    assert touched.stacks == stacks
    assert set(touched.reasons) == set(stacks)
    assert touched.as_json()["matrix"] == {"stack": stacks}


def test_a_removed_stack_file_is_reported_never_deployed():
    touched = decide.touched_stacks(["stacks/Pulumi.old-dev.yaml", "stacks/Pulumi.vision-dev.yaml"], ENVS)
    assert touched.stacks == ["vision-dev"] and touched.removed == ["old-dev"]
    # A program change deploys what exists; the removed one is still only reported.
    touched = decide.touched_stacks(["stacks/Pulumi.old-dev.yaml", "infra/program.py"], ENVS)
    assert "old-dev" not in touched.stacks and touched.removed == ["old-dev"]
    assert touched.reasons["vision-prod"] == "the program changed (infra/program.py)"


def test_environment_order_dev_test_staging_unknown_prod_ties_by_name():
    stacks = {"z-prod": "prod", "a-prod": "production", "m-sandbox": "sandbox", "b-staging": "staging", "c-test": "test", "y-dev": "dev", "x-dev": "dev"}
    assert decide.order_stacks(stacks) == ["x-dev", "y-dev", "c-test", "b-staging", "m-sandbox", "a-prod", "z-prod"]
    # An environment the kit does not know goes after every known pre-production one and before prod.
    assert decide.environment_rank("dev") < decide.environment_rank("staging") < decide.environment_rank("sandbox") < decide.environment_rank("prod")
    assert decide.environment_rank("PROD") == decide.PROD_RANK


def test_waves_put_each_stack_once_and_prod_last():
    stacks = {"search-prod": "prod", "vision-dev": "dev", "search-dev": "dev", "vision-staging": "staging"}
    assert decide.waves(stacks) == [["search-dev", "vision-dev"], ["vision-staging"], ["search-prod"]]
    flat = [s for wave in decide.waves(stacks) for s in wave]
    assert sorted(flat) == sorted(stacks) and len(flat) == len(set(flat))


def test_one_deployment_per_stack_a_lock_name_per_stack():
    names = [decide.concurrency_group(s) for s in ENVS]
    assert len(set(names)) == len(names)  # stacks never queue behind each other...
    assert decide.concurrency_group("vision-dev") == decide.concurrency_group("vision-dev")  # ...a stack's deployments do
    assert decide.concurrency_group("vision-dev") == "hybridserve-deploy-vision-dev"


# --------------------------------------------------------------------------------------------- known good, after up


def _outputs(version: str = GOOD, verdict: str = "passed", kept: list[str] | None = None) -> dict:
    kept = kept if kept is not None else [version, BAD]
    return {
        "modelPublications": {s: {"version": version, "uri": f"s3://b/models/{version}", "kept": kept} for s in ("aws", "openstack")},
        "smokeGate": {s: {"job": f"triton-smoke-{s}", "namespace": "triton", "verdict": verdict} for s in ("aws", "openstack")},
        "kubeconfigs": {"aws": "apiVersion: v1\nkind: Config\n", "openstack": "apiVersion: v1\nkind: Config\n"},
    }


def test_known_good_only_after_a_succeeded_update_with_passed_gates():
    history = [{"kind": "update", "version": 4, "result": "failed"}, {"kind": "update", "version": 3, "result": "succeeded"}]
    assert decide.last_update_result(history) == "failed"
    assert decide.last_update_result(list(reversed(history))) == "failed"  # the newest, whatever the order
    assert decide.last_update_result([{"kind": "refresh", "version": 5, "result": "succeeded"}, *history]) == "failed"
    assert decide.last_update_result([]) is None

    good = decide.known_good(_outputs(), "succeeded")
    assert good is not None and good.version == GOOD and good.versions == {"aws": GOOD, "openstack": GOOD}
    # After a failed update the outputs may be half written (pulumi/pulumi#15754): not trusted.
    assert decide.known_good(_outputs(), "failed") is None
    assert decide.known_good(_outputs(verdict="failed"), "succeeded") is None
    assert decide.known_good({}, "succeeded") is None
    split = KnownGood({"aws": GOOD, "openstack": BAD}, {})
    assert split.version is None  # the sites disagree: one pin cannot serve both


GATE_URN = f"urn:pulumi:{STACK}::hybridserve::hybridserve:serving:TritonService$kubernetes:batch/v1:Job::triton-aws-smoke-gate"
VPC_URN = f"urn:pulumi:{STACK}::hybridserve::hybridserve:network:AwsNetwork$aws:ec2/vpc:Vpc::vpc"
STACK_URN = f"urn:pulumi:{STACK}::hybridserve::pulumi:pulumi:Stack::hybridserve-{STACK}"


def _events(*failed: tuple[str, str, str], job: str = "triton-smoke-0123456789") -> list[str]:
    """An event log: the gate Job's pre-event (its planned name), then a failure per (urn, type, message)."""
    lines = [{"sequence": 0, "preludeEvent": {"config": {}}}]
    lines.append({"sequence": 1, "resourcePreEvent": {"metadata": {"op": "create", "urn": GATE_URN, "type": decide.GATE_JOB_TYPE,
                                                                     "new": {"inputs": {"metadata": {"name": job, "namespace": "triton"}}}}}})
    for i, (urn, type_, message) in enumerate(failed):
        lines.append({"sequence": 10 + i, "diagnosticEvent": {"urn": urn, "message": message + "\n", "severity": "error"}})
        lines.append({"sequence": 20 + i, "resOpFailedEvent": {"metadata": {"op": "create", "urn": urn, "type": type_}, "status": 1, "steps": 1}})
    return [json.dumps(e) for e in lines] + ['{"sequence": 99, "cut sho']  # a killed CLI's last line


def _report(passed: bool, message: str = "text_encoder: p99 latency 950 ms at concurrency 4 exceeds max_p99_ms 600") -> dict:
    return {
        "schema": SCHEMA_ID, "passed": passed, "exit_code": 0 if passed else 1, "run": {}, "error": None,
        "violations": [] if passed else [{"model": "text_encoder", "kind": "slo", "metric": "max_p99_ms", "message": message, "exit_code": 1}],
        "models": [{"name": "image_classifier"}, {"name": "text_encoder"}],
    }


def test_event_log_names_the_failed_gate_and_its_job():
    steps, jobs = decide.failed_steps(_events((GATE_URN, decide.GATE_JOB_TYPE, "Job failed: BackoffLimitExceeded")))
    assert [(s.name, s.gate_site, s.messages) for s in steps] == [("triton-aws-smoke-gate", "aws", ["Job failed: BackoffLimitExceeded"])]
    assert jobs == {"aws": "triton-smoke-0123456789"}
    steps, _ = decide.failed_steps(_events((VPC_URN, "aws:ec2/vpc:Vpc", "InvalidVpcRange")))
    assert [(s.type, s.gate_site) for s in steps] == [("aws:ec2/vpc:Vpc", None)]


def test_a_failed_gate_rolls_back_to_the_known_good_version():
    good = decide.known_good(_outputs(), "succeeded")
    steps, _ = decide.failed_steps(_events((GATE_URN, decide.GATE_JOB_TYPE, "Job failed")))
    decision = decide.after_up(255, steps, good, {"aws": _report(False), "openstack": None})
    assert decision.action == "rollback" and decision.version == GOOD and decision.gate_sites == ["aws"]
    assert "p99 latency 950 ms" in decision.reason and f"rolled back to {GOOD}" in decision.reason


def test_a_report_that_failed_counts_even_when_up_exited_zero():
    good = decide.known_good(_outputs(), "succeeded")
    decision = decide.after_up(0, [], good, {"aws": _report(True), "openstack": _report(False, "image_classifier: wrong outputs")})
    assert decision.action == "rollback" and decision.gate_sites == ["openstack"] and "wrong outputs" in decision.reason


def test_a_failed_gate_without_a_known_good_version_fails_without_rollback():
    steps, _ = decide.failed_steps(_events((GATE_URN, decide.GATE_JOB_TYPE, "Job failed")))
    decision = decide.after_up(255, steps, None, {"aws": None})
    assert decision.action == "fail" and decision.version is None
    assert "nothing to roll back to" in decision.reason and "failed (no report read)" in decision.reason


def test_sites_that_passed_with_different_versions_are_not_rolled_back_blindly():
    split = KnownGood({"aws": GOOD, "openstack": BAD}, {})
    decision = decide.after_up(255, [], split, {"aws": _report(False)})
    assert decision.action == "fail" and f"aws: {GOOD}, openstack: {BAD}" in decision.reason


def test_a_failure_that_is_not_the_gate_never_rolls_back():
    good = decide.known_good(_outputs(), "succeeded")
    steps, _ = decide.failed_steps(_events((VPC_URN, "aws:ec2/vpc:Vpc", "InvalidVpcRange: the CIDR is invalid")))
    decision = decide.after_up(255, steps, good, {"aws": None})
    assert decision.action == "fail" and "aws:ec2/vpc:Vpc vpc" in decision.reason and "InvalidVpcRange" in decision.reason
    assert "no rollback" in decision.reason
    steps, _ = decide.failed_steps([json.dumps({"diagnosticEvent": {"urn": STACK_URN, "message": "RunError: bad config", "severity": "error"}})])
    decision = decide.after_up(255, steps, good, {})
    assert decision.action == "fail" and "bad config" in decision.reason


def test_passed_when_up_succeeded_and_every_gate_passed():
    assert decide.after_up(0, [], None, {"aws": _report(True), "openstack": _report(True)}).action == "passed"


def test_rollback_target_must_be_kept_on_every_site():
    assert decide.rollback_problem(GOOD, _outputs(kept=[BAD, GOOD])) is None
    outputs = _outputs(kept=[BAD, GOOD])
    outputs["modelPublications"]["openstack"]["kept"] = [BAD]
    assert "no longer kept on openstack" in decide.rollback_problem(GOOD, outputs)
    assert "not a published version name" in decide.rollback_problem("latest", outputs)
    assert "no output modelPublications" in decide.rollback_problem(GOOD, {})


# --------------------------------------------------------------------------------------------- drift


def _preview(changes: dict, steps: list | None = None, diagnostics: list | None = None) -> str:
    return json.dumps({"changeSummary": changes, "steps": steps or [], "diagnostics": diagnostics or []})


def test_drift_verdicts():
    none = decide.drift_verdict(0, _preview({"same": 120}))
    assert (none.status, none.exit_code) == ("none", 0)
    drift = decide.drift_verdict(255, _preview({"same": 118, "update": 2}, [{"op": "update", "urn": VPC_URN}, {"op": "same", "urn": STACK_URN}],
                                               [{"severity": "error", "message": "error: no changes were expected but changes were proposed"}]))
    assert (drift.status, drift.exit_code, drift.resources) == ("drift", 1, [VPC_URN]) and "2 to update" in drift.message
    error = decide.drift_verdict(255, "", "error: failed to decrypt: incorrect passphrase")
    assert (error.status, error.exit_code) == ("error", 3) and "incorrect passphrase" in error.message
    error = decide.drift_verdict(255, _preview({}, diagnostics=[{"severity": "error", "message": "AccessDenied"}]))
    assert error.status == "error" and error.message == "AccessDenied"


# --------------------------------------------------------------------------------------------- ci changed (real git)


def _git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True, env=env).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    (root / "model_repo").mkdir(parents=True)
    (root / "model_repo" / "README").write_text("models\n")
    shutil.copytree(repo_root() / "stacks", root / "stacks")
    shutil.copy(repo_root() / "Pulumi.yaml", root)
    (root / "README.md").write_text("kit\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "base")
    monkeypatch.setenv("HYBRIDSERVE_ROOT", str(root))
    return root


def test_ci_changed_reads_the_diff_from_git(checkout, capsys):
    base = _git(checkout, "rev-parse", "HEAD")
    (checkout / "README.md").write_text("kit, documented\n")
    _git(checkout, "commit", "-qam", "docs")
    code, out, err = run_cli(["ci", "changed", "--base", base, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["stacks"] == []

    stack_file = checkout / "stacks" / "Pulumi.vision-prod.yaml"
    stack_file.write_text(stack_file.read_text() + "# a comment\n")
    shutil.move(checkout / "stacks" / "Pulumi.search-dev.yaml", checkout / "stacks" / "Pulumi.search-staging.yaml")
    _git(checkout, "add", "-A")
    _git(checkout, "commit", "-qm", "stacks")
    code, out, err = run_cli(["ci", "changed", "--base", base, "--json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    # The renamed file is a removed stack and a new one (its environment still says dev: the file decides).
    assert doc["stacks"] == ["search-staging", "vision-prod"] and doc["removed"] == ["search-dev"]
    assert doc["nonprod"] == ["search-staging"] and doc["prod"] == ["vision-prod"]
    assert doc["matrix"] == {"stack": ["search-staging", "vision-prod"]}

    (checkout / "model_repo" / "README").write_text("models v2\n")
    _git(checkout, "commit", "-qam", "model")
    code, out, _ = run_cli(["ci", "changed", "--base", "HEAD~1"], capsys)
    assert code == 0
    assert [line.split("\t")[0] for line in out.splitlines()] == ["search-staging", "vision-dev", "search-prod", "vision-prod"]


def test_ci_changed_with_an_unknown_base_is_a_clear_error(checkout, capsys):
    code, out, err = run_cli(["ci", "changed", "--base", "no-such-ref"], capsys)
    assert code == 2
    assert "--base no-such-ref" in err and "fetch-depth: 0" in err


# --------------------------------------------------------------------------------------------- deploy, rollback, drift (fake CLIs)

FAKE = """#!{python}
# A fake {tool}: records its arguments, answers from the files in $FAKE_DIR.
import json, os, sys
d = os.environ["FAKE_DIR"]
with open(os.path.join(d, "calls.jsonl"), "a") as f:
    f.write(json.dumps(["{tool}", *sys.argv[1:]]) + "\\n")
def answer(name, default=""):
    p = os.path.join(d, name)
    return open(p).read() if os.path.exists(p) else default
a = sys.argv[1:]
if "{tool}" == "kubectl":
    job = a[-1].split("/", 1)[1]
    sys.stdout.write(answer("log-" + job, ""))
    sys.exit(0 if os.path.exists(os.path.join(d, "log-" + job)) else 1)
if a[:2] == ["stack", "output"]:
    print(answer("outputs.json", "{{}}")); sys.exit(0)
if a[:2] == ["stack", "history"]:
    print(answer("history.json", "[]")); sys.exit(0)
if a[0] == "preview":
    sys.stdout.write(answer("preview.out")); sys.exit(int(answer("preview.code", "0")))
if a[0] == "up":
    if "--config" in a:
        sys.exit(int(answer("rollback.code", "0")))
    if "--event-log" in a:
        if os.environ.get("PULUMI_DEBUG_COMMANDS") != "true":  # as the real CLI: a debug command's flag
            sys.stderr.write("error: unknown flag: --event-log\\n"); sys.exit(255)
        open(a[a.index("--event-log") + 1], "w").write(answer("events.jsonl"))
    sys.exit(int(answer("up.code", "0")))
sys.stderr.write("unexpected: " + " ".join(a) + "\\n"); sys.exit(3)
"""


class Fake:
    def __init__(self, root: Path, fake_dir: Path):
        self.root, self.dir = root, fake_dir

    def set(self, name: str, value) -> None:
        (self.dir / name).write_text(value if isinstance(value, str) else json.dumps(value))

    def gate_log(self, job: str, report: dict) -> None:
        self.set(f"log-{job}", f"tables...\n2026-12-01T10:00:00Z {REPORT_MARKER}{json.dumps(report)}\n")

    @property
    def calls(self) -> list[list[str]]:
        path = self.dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def pulumi_calls(self, sub: str) -> list[list[str]]:
        return [c[1:] for c in self.calls if c[0] == "pulumi" and c[1] == sub]


@pytest.fixture
def fake(tmp_path, monkeypatch) -> Fake:
    root = tmp_path / "proj"
    (root / "model_repo").mkdir(parents=True)
    shutil.copytree(repo_root() / "stacks", root / "stacks")
    shutil.copy(repo_root() / "Pulumi.yaml", root)
    bin_dir, fake_dir = tmp_path / "bin", tmp_path / "fake"
    bin_dir.mkdir()
    fake_dir.mkdir()
    for tool in ("pulumi", "kubectl"):
        path = bin_dir / tool
        path.write_text(FAKE.format(python=sys.executable, tool=tool))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("HYBRIDSERVE_ROOT", str(root))
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_DIR", str(fake_dir))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)
    f = Fake(root, fake_dir)
    f.set("outputs.json", _outputs())
    f.set("history.json", [{"kind": "update", "version": 7, "result": "succeeded"}])
    return f


def test_deploy_previews_updates_and_writes_the_gate_reports(fake, capsys, tmp_path):
    for site in ("aws", "openstack"):
        fake.gate_log(f"triton-smoke-{site}", _report(True))
    reports = tmp_path / "out"
    code, out, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(reports)], capsys)
    assert code == 0, err
    assert f"{STACK}: deployed, smoke gate passed" in out
    (preview,) = fake.pulumi_calls("preview")
    (up,) = fake.pulumi_calls("up")
    assert preview == ["preview", "--stack", STACK, "--diff"]
    assert up[:5] == ["up", "--stack", STACK, "--yes", "--skip-preview"] and "--event-log" in up
    assert "--policy-pack" not in preview + up  # no policy/ in this checkout
    order = [c[1] for c in fake.calls if c[0] == "pulumi"]
    assert order.index("preview") < order.index("up")
    for site in ("aws", "openstack"):
        assert json.loads((reports / f"{STACK}-{site}.smoke.json").read_text())["passed"] is True
        suite = ET.parse(reports / f"{STACK}-{site}.smoke.junit.xml").getroot().find("testsuite")
        assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    assert json.loads((reports / f"{STACK}.known-good.json").read_text())["version"] == GOOD


def test_deploy_passes_the_policy_pack_when_the_checkout_has_one(fake, capsys, tmp_path):
    (fake.root / "policy" / "config").mkdir(parents=True)
    for site in ("aws", "openstack"):
        fake.gate_log(f"triton-smoke-{site}", _report(True))
    code, _, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(tmp_path / "out")], capsys)
    assert code == 0, err
    for sub in ("preview", "up"):
        (call,) = fake.pulumi_calls(sub)
        assert call[call.index("--policy-pack") + 1] == str(fake.root / "policy")
        assert "--policy-pack-config" not in call  # no per-stack file: the pack's defaults

    # The stack's own policy configuration, when it has one (policy/config/<stack>.json).
    config = fake.root / "policy" / "config" / f"{STACK}.json"
    config.write_text('{"kms-key-rotation": {"enforcementLevel": "advisory"}}')
    (fake.dir / "calls.jsonl").unlink()
    code, _, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(tmp_path / "out")], capsys)
    assert code == 0, err
    for sub in ("preview", "up"):
        (call,) = fake.pulumi_calls(sub)
        assert call[call.index("--policy-pack-config") + 1] == str(config)


def test_deploy_rolls_back_when_the_gate_fails_and_fails_the_stage(fake, capsys, tmp_path):
    fake.set("up.code", "255")
    fake.set("events.jsonl", "\n".join(_events((GATE_URN, decide.GATE_JOB_TYPE, "Job failed: BackoffLimitExceeded"), job="triton-smoke-new")))
    fake.gate_log("triton-smoke-new", _report(False))  # the failed update's Job: named by the event log, not the outputs
    fake.gate_log("triton-smoke-openstack", _report(True))
    reports = tmp_path / "out"
    code, out, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(reports)], capsys)
    assert code == 1
    assert f"stack {STACK}: the smoke gate failed (aws: text_encoder: p99 latency 950 ms" in err
    assert f"rolled back to {GOOD}" in err and "hybridserve:serving.publication.pin_version" in err
    first, rollback = fake.pulumi_calls("up")
    assert rollback[rollback.index("--config") + 1] == f"hybridserve:serving.publication.pin_version={GOOD}"
    assert "--config-path" in rollback and "--skip-preview" in rollback
    failure = ET.parse(reports / f"{STACK}-aws.smoke.junit.xml").getroot().find("testsuite/testcase[@name='text_encoder']/failure")
    assert "p99 latency 950 ms" in failure.get("message")
    assert json.loads((reports / f"{STACK}.decision.json").read_text())["action"] == "rollback"


def test_deploy_without_a_known_good_version_fails_for_a_person(fake, capsys, tmp_path):
    fake.set("history.json", [{"kind": "update", "version": 8, "result": "failed"}])
    fake.set("up.code", "255")
    fake.set("events.jsonl", "\n".join(_events((GATE_URN, decide.GATE_JOB_TYPE, "Job failed"), job="triton-smoke-new")))
    fake.gate_log("triton-smoke-new", _report(False))
    code, _, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(tmp_path / "out")], capsys)
    assert code == 3
    assert "nothing to roll back to" in err
    assert len(fake.pulumi_calls("up")) == 1  # no rollback attempted


def test_deploy_failing_elsewhere_fails_without_rollback(fake, capsys, tmp_path):
    fake.set("up.code", "255")
    fake.set("events.jsonl", "\n".join(_events((VPC_URN, "aws:ec2/vpc:Vpc", "InvalidVpcRange"))))
    code, _, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(tmp_path / "out")], capsys)
    assert code == 1
    assert "aws:ec2/vpc:Vpc vpc" in err and "InvalidVpcRange" in err and "no rollback" in err
    assert len(fake.pulumi_calls("up")) == 1


def test_deploy_stops_when_the_preview_fails(fake, capsys, tmp_path):
    fake.set("preview.code", "255")
    code, _, err = run_cli(["ci", "deploy", "--stack", STACK, "--reports", str(tmp_path / "out")], capsys)
    assert code == 1 and "pulumi preview failed" in err and "nothing was changed" in err
    assert fake.pulumi_calls("up") == []


def test_rollback_pins_a_kept_version(fake, capsys):
    fake.set("outputs.json", _outputs(version=BAD, kept=[BAD, GOOD]))
    code, out, err = run_cli(["ci", "rollback", "--stack", STACK, "--version", GOOD], capsys)
    assert code == 0, err
    (up,) = fake.pulumi_calls("up")
    assert up[up.index("--config") + 1] == f"hybridserve:serving.publication.pin_version={GOOD}"
    assert f"serving {GOOD}" in out


def test_rollback_refuses_a_version_no_longer_kept(fake, capsys):
    fake.set("outputs.json", _outputs(version=BAD, kept=[BAD]))
    code, _, err = run_cli(["ci", "rollback", "--stack", STACK, "--version", GOOD], capsys)
    assert code == 2
    assert f"cannot roll back to {GOOD}" in err and "keep_versions" in err
    assert fake.pulumi_calls("up") == []


def test_rollback_from_the_deploy_record(fake, capsys, tmp_path):
    record = tmp_path / "known-good.json"
    record.write_text(json.dumps(KnownGood({"aws": GOOD, "openstack": GOOD}, {}).as_json()))
    fake.set("outputs.json", _outputs(version=BAD, kept=[BAD, GOOD]))
    fake.set("history.json", [{"kind": "update", "version": 9, "result": "failed"}])
    code, _, err = run_cli(["ci", "rollback", "--stack", STACK, "--record", str(record)], capsys)
    assert code == 0, err
    # Without the record, a failed last update leaves nothing trustworthy to pick.
    code, _, err = run_cli(["ci", "rollback", "--stack", STACK], capsys)
    assert code == 3 and "give --version" in err


@pytest.mark.parametrize(("preview", "preview_code", "code", "status"), [
    (_preview({"same": 50}), "0", 0, "none"),
    (_preview({"same": 49, "update": 1}, [{"op": "update", "urn": VPC_URN}]), "255", 1, "drift"),
    ("error: getting stack configuration: incorrect passphrase\n", "255", 3, "error"),
])
def test_drift_exit_codes(fake, capsys, tmp_path, preview, preview_code, code, status):
    fake.set("preview.out", preview)
    fake.set("preview.code", preview_code)
    got, out, err = run_cli(["ci", "drift", "--stack", STACK, "--json", str(tmp_path / "drift.json")], capsys)
    assert got == code, out + err
    assert json.loads((tmp_path / "drift.json").read_text())["status"] == status
    (call,) = fake.pulumi_calls("preview")
    assert call == ["preview", "--stack", STACK, "--refresh", "--expect-no-changes", "--json"]


def test_missing_pulumi_and_unknown_stack_are_bad_input(fake, capsys, tmp_path):
    code, _, err = run_cli(["ci", "deploy", "--stack", "nope-dev"], capsys)
    assert code == 2 and "nope-dev" in err
    (Path(os.environ["PATH"]) / "pulumi").unlink()
    code, _, err = run_cli(["ci", "drift", "--stack", STACK], capsys)
    assert code == 2 and "`pulumi` is not on PATH" in err


# --------------------------------------------------------------------------------------------- pinning


def test_pin_version_is_a_version_name_and_warns():
    from hybridserve.stackconfig import build_stack_config
    from stackutil import reachable

    values = yaml.safe_load((repo_root() / "stacks" / f"Pulumi.{STACK}.yaml").read_text())["config"]
    from hybridserve.stackconfig.loader import StackConfigError, stack_warnings

    pinned = dict(values)
    pinned["hybridserve:serving"] = {**values["hybridserve:serving"], "publication": {"pin_version": GOOD}}
    cfg = build_stack_config(reachable(pinned), stack_name=STACK)
    assert cfg.serving.publication.pin_version == GOOD
    assert any("pinned version" in w for w in stack_warnings(cfg))
    pinned["hybridserve:serving"] = {**values["hybridserve:serving"], "publication": {"pin_version": "latest"}}
    with pytest.raises(StackConfigError, match="pin_version"):
        build_stack_config(reachable(pinned), stack_name=STACK)


def test_a_pinned_stack_serves_the_pinned_version(tmp_path):
    from infra.plan import plan_stack_file

    doc = yaml.safe_load((repo_root() / "stacks" / f"Pulumi.{STACK}.yaml").read_text())
    doc["config"]["hybridserve:serving"].setdefault("publication", {})["pin_version"] = GOOD
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    path = stacks / f"Pulumi.{STACK}.yaml"
    path.write_text(yaml.safe_dump(doc))
    shutil.copy(repo_root() / "Pulumi.yaml", tmp_path)
    plan = plan_stack_file(path)
    for site in ("aws", "openstack"):
        published = plan.outputs["modelPublications"][site]
        assert published["version"] == GOOD and published["uri"].endswith(f"/{GOOD}") and published["pinned"] == GOOD
        [pub] = [r for r in plan.resources if r.name == f"models-{site}"]
        assert pub.inputs["pinned"] is True and pub.inputs["digest"] == "" and pub.inputs["version"] == GOOD
    deployments = [r for r in plan.resources if r.type == "kubernetes:apps/v1:Deployment" and "triton" in r.name]
    assert deployments and all(GOOD in json.dumps(d.inputs) for d in deployments)


@pytest.mark.servers
def test_provider_pins_a_kept_version_and_unpins(built_model_repo, tmp_path, seaweed_endpoint, unique_bucket):
    from hybridserve.publish import Store, list_versions, repository_digest, triton_uri
    from infra.components.publication import ModelPublicationError, ModelPublicationProvider
    from tests.test_publish import GPU, _props, _touch_model_py

    repo = tmp_path / "model_repo"
    shutil.copytree(built_model_repo, repo)
    ep = seaweed_endpoint
    ep.client().create_bucket(Bucket=unique_bucket)
    store = Store(unique_bucket, "models", ep.region, endpoint_url=ep.url, sse="AES256", access_key=ep.access_key, secret_key=ep.secret_key)
    provider = ModelPublicationProvider()

    def inputs(pin: str | None = None) -> dict:
        props = _props(repo, store, keep=3)
        if pin:
            props.update(version=pin, digest="", pinned=True, uri=triton_uri(store, pin))
        result = provider.check({}, props)
        assert result.failures == []
        return result.inputs

    first = inputs()
    state = provider.create(first).outs
    v1 = first["version"]
    _touch_model_py(repo, "bad")
    second = inputs()
    state = provider.update("id", state, second).outs
    v2 = second["version"]
    assert state["history"] == [v2, v1]

    # Pinned: v1 again, nothing published (the repository holds v2's content), v2 kept for a later fix.
    pinned = inputs(v1)
    assert provider.diff("id", state, pinned).changes is True
    state = provider.update("id", state, pinned).outs
    assert state["history"] == [v1, v2] and state["uri"] == triton_uri(store, v1) and state["digest"] == ""
    assert sorted(list_versions(store)) == sorted([v1, v2])
    assert provider.diff("id", state, inputs(v1)).changes is False

    # A version this stack never published, or one gone from the bucket: refused, naming the key.
    with pytest.raises(ModelPublicationError, match="pin_version v0000000000000000 is not a version this stack published"):
        provider.update("id", state, inputs("v" + "0" * 16))
    from hybridserve.publish import delete_version

    delete_version(store, v2)
    with pytest.raises(ModelPublicationError, match=f"pin_version {v2} is not in s3://{unique_bucket}/models/"):
        provider.update("id", state, inputs(v2))
    # A new publication has nothing to pin.
    with pytest.raises(ModelPublicationError, match="no version published by this stack yet"):
        provider.create(inputs(v1))

    # Unpinned: the repository's content is published again and served.
    back = inputs()
    assert provider.diff("id", state, back).changes is True
    state = provider.update("id", state, back).outs
    assert state["version"] == v2 == repository_digest(repo, GPU).version and "pinned" not in state
    assert v2 in list_versions(store) and state["history"] == [v2, v1]


def test_ci_changed_all_and_the_gitlab_child_pipeline(checkout, capsys, tmp_path):
    code, out, err = run_cli(["ci", "changed", "--all", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["waves"] == [["search-dev", "vision-dev"], ["search-prod", "vision-prod"]]
    code, _, err = run_cli(["ci", "changed"], capsys)
    assert code == 2 and "--base REF" in err and "--all" in err
    code, _, err = run_cli(["ci", "changed", "--all", "--base", "HEAD"], capsys)
    assert code == 2

    out_file = tmp_path / "child.yml"
    code, out, err = run_cli(["ci", "gitlab-pipeline", "--all", "--stage", "drift", "--output", str(out_file)], capsys)
    assert code == 0, err
    child = yaml.safe_load(out_file.read_text())
    assert child["drift vision-prod"]["script"] == [".venv/bin/hybridserve ci drift --stack vision-prod --json reports/vision-prod.drift.json"]
    assert "when" not in child["drift vision-prod"]  # only deployments wait for a person
    code, _, err = run_cli(["ci", "gitlab-pipeline", "--all", "--stage", "destroy"], capsys)
    assert code == 2 and "--stage 'destroy'" in err


CANDIDATE_URN = GATE_URN.replace("triton-aws-smoke-gate", "triton-aws-candidate-gate")


def test_a_failed_candidate_gate_is_a_verdict_and_its_job_is_the_report_to_read():
    # Both gate Jobs are planned; the candidate fails, so the post-rollout gate never runs.
    lines = _events((CANDIDATE_URN, decide.GATE_JOB_TYPE, "Job failed: BackoffLimitExceeded"), job="triton-smoke-0123456789")
    lines.insert(2, json.dumps({"sequence": 2, "resourcePreEvent": {"metadata": {
        "op": "create", "urn": CANDIDATE_URN, "type": decide.GATE_JOB_TYPE,
        "new": {"inputs": {"metadata": {"name": "triton-candidate-abcdef0123", "namespace": "triton"}}}}}}))
    steps, jobs = decide.failed_steps(lines)
    assert [(s.name, s.gate_site) for s in steps] == [("triton-aws-candidate-gate", "aws")]
    assert jobs == {"aws": "triton-candidate-abcdef0123"}
    decision = decide.after_up(255, steps, decide.known_good(_outputs(), "succeeded"), {"aws": _report(False), "openstack": None})
    assert decision.action == "rollback" and decision.gate_sites == ["aws"]
