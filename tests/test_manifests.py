"""The Kubernetes manifests the program renders: strict schema validation and a checkov scan.

Each example stack is planned once per test run (conftest `example_plans`); checkov runs once over every stack's
manifests (plus a canary that must fail, so a scan that checks nothing cannot pass).

checkov cannot share .venv (it pins boto3 against ours): `make test` installs it into
.venv-tools/ and passes HYBRIDSERVE_CHECKOV. Without it the checkov tests skip loudly (or fail on
CI / when the variable names a missing binary).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from hybridserve.cli import main
from hybridserve.errors import UserError
from hybridserve.paths import repo_root
from hybridserve.stackconfig import stack_files
from infra.manifests import HELM_RELEASES_FILE, HelmRelease, Rendered, render, supported_versions, to_manifest, validate
from infra.plan import Plan

EXAMPLES = repo_root() / "stacks"
NAMES = sorted(stack_files(EXAMPLES))
MARKERS = ("[secret]", "[unknown]")

# checkov check IDs that may fail on what we render, each with why it does not apply. Keep it short:
# every entry must still fail somewhere (test_checkov_allow_list_is_not_stale), else remove it.
CHECKOV_ALLOWED: dict[str, str] = {
    # Triton's and the gate's images are pinned to an NGC release tag. Their digests cannot be looked up
    # offline here, and a made-up digest would fail the first pull; a stack pins them with
    # serving.triton_digest / serving.gate.image_digest (then the image is <repo>:<tag>@sha256:...).
    "CKV_K8S_43": "images pinned by release tag; digests are the stack's choice (serving.triton_digest, serving.gate.image_digest)",
}
# checkov also scans the pod template of each workload as a Pod of its own.
POD_TEMPLATE_KINDS = {"Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob"}


@pytest.fixture(scope="module")
def planned(example_plans) -> dict[str, tuple[Plan, Rendered]]:
    """Every example stack planned (once per test run: conftest) and rendered once for the module."""
    out = {}
    for name, plan in copy.deepcopy(example_plans).items():
        out[name] = (plan, render(plan))
    return out


def _minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


# --- rendering and schema validation ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_manifest_validates_strictly(planned, name):
    plan, rendered = planned[name]
    assert set(rendered.clusters) == {"aws", "openstack"}
    # the version each cluster runs, as the stack configures it
    assert rendered.clusters["aws"].kubernetes_version == plan.config.aws.eks.version
    assert rendered.clusters["openstack"].kubernetes_version == _minor(plan.config.openstack.magnum.template.kube_tag)
    assert not rendered.skipped

    for cluster, cm in rendered.clusters.items():
        kinds = {m["kind"] for m in cm.manifests}
        assert {"Namespace", "ServiceAccount", "StorageClass"} <= kinds, cluster
        # every Kubernetes object of the plan on this provider became a manifest
        planned_urns = [r.urn for r in plan.resources if r.provider == cm.provider_urn and r.type.startswith("kubernetes:") and "helm.sh" not in r.type]
        assert sorted(cm.urns) == sorted(planned_urns)
        assert cm.kubernetes_version in supported_versions()
        assert validate(cm.manifests, cm.kubernetes_version) == [], f"{name}/{cluster}"
        # among them the candidate gate: Triton as a native sidecar (the schema knows restartPolicy on containers),
        # then the agreement step as a plain init container
        [candidate] = [m for m in cm.manifests if m["kind"] == "Job" and m["metadata"]["name"].startswith("triton-candidate-")]
        assert [c.get("restartPolicy") for c in candidate["spec"]["template"]["spec"]["initContainers"]] == ["Always", None]
        assert not any(marker in json.dumps(cm.manifests) for marker in MARKERS)

    # the Swift credentials Secret: its values are secret in the plan, stood in and recorded
    secret = next(m for m in rendered.clusters["openstack"].manifests if m["kind"] == "Secret")
    assert secret["stringData"] == {"placeholder-secret": "placeholder-secret"}
    assert [s.path for s in rendered.clusters["openstack"].stand_ins] == ["stringData"]


@pytest.mark.parametrize("name", NAMES)
def test_helm_releases_are_pinned_with_a_repository(planned, name):
    _, rendered = planned[name]
    assert {r.cluster for r in rendered.releases} == {"aws", "openstack"}
    for release in rendered.releases:
        assert release.problems() == [], release.name
        assert release.repo and release.repo.startswith("https://")
        assert release.namespace


def test_a_misspelt_or_mistyped_manifest_fails_validation(planned):
    _, rendered = planned["vision-dev"]
    cm = rendered.clusters["aws"]
    storage_class = next(m for m in cm.manifests if m["kind"] == "StorageClass")
    assert validate([storage_class], cm.kubernetes_version) == []

    misspelt = copy.deepcopy(storage_class)
    misspelt["reclaimPolicyy"] = misspelt.pop("reclaimPolicy")
    nested = copy.deepcopy(storage_class)
    nested["metadata"]["namspace"] = "triton"
    mistyped = copy.deepcopy(storage_class)
    mistyped["allowVolumeExpansion"] = "yes"
    problems = validate([misspelt, nested, mistyped], cm.kubernetes_version)
    assert len(problems) == 3
    assert "reclaimPolicyy" in problems[0]
    assert problems[1].startswith("StorageClass/gp3-encrypted: metadata:") and "namspace" in problems[1]
    assert "allowVolumeExpansion" in problems[2]

    custom = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert "Couldn't find schema" in validate([custom], cm.kubernetes_version)[0]
    with pytest.raises(UserError, match="no schemas for Kubernetes 1.19"):
        validate([storage_class], "1.19")


def test_placeholders_become_schema_valid_stand_ins():
    def resource(type_: str, inputs: dict) -> dict:
        return {"urn": f"urn:pulumi:s::p::{type_}::x", "type": type_, "name": "x", "parent": None, "provider": "urn:pulumi:s::p::pulumi:providers:kubernetes::k8s-aws", "inputs": inputs}

    secret, stand_ins = to_manifest(
        resource("kubernetes:core/v1:Secret", {"metadata": {"name": "[unknown]", "namespace": "triton"}, "data": {"key": "[secret]"}, "stringData": "[secret]", "immutable": "[unknown]"}),
        "1.31",
    )
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == "placeholder-unknown"
    assert secret["data"] == {"key": "cGxhY2Vob2xkZXItc2VjcmV0"}  # base64: the field's format is byte
    assert secret["stringData"] == {"placeholder-secret": "placeholder-secret"}
    assert secret["immutable"] is False
    assert sorted((s.path, s.marker) for s in stand_ins) == [("data.key", "[secret]"), ("immutable", "[unknown]"), ("metadata.name", "[unknown]"), ("stringData", "[secret]")]

    deployment, _ = to_manifest(resource("kubernetes:apps/v1:Deployment", {"metadata": {"name": "d"}, "spec": "[unknown]"}), "1.31")
    assert deployment["apiVersion"] == "apps/v1"
    assert set(deployment["spec"]) == {"selector", "template"}  # the required fields of a DeploymentSpec
    replicas, _ = to_manifest(resource("kubernetes:apps/v1:Deployment", {"metadata": {"name": "d"}, "spec": {"replicas": "[unknown]", "selector": {}, "template": {}}}), "1.31")
    assert replicas["spec"]["replicas"] == 0
    assert validate([secret, deployment, replicas], "1.31") == []


def test_an_unpinned_helm_release_is_reported():
    release = HelmRelease("aws", "urn:x", "x", "x", "^1.2.0", None, "ns", False, {})
    problems = release.problems()
    assert len(problems) == 2 and "not pinned" in problems[0] and "no chart repository" in problems[1]
    assert HelmRelease("aws", "urn:x", "x", "oci://registry.example/x", "1.2.0", None, "ns", False, {}).problems() == []


def test_plan_writes_manifests_per_cluster(planned, tmp_path: Path, capsys):
    out_dir = tmp_path / "manifests"
    json_file = tmp_path / "plan.json"
    with pytest.raises(SystemExit) as info:
        main(["plan", "--stack", "vision-dev", "--stacks-dir", str(EXAMPLES), "--json", str(json_file), "--manifests", str(out_dir)])
        raise SystemExit(0)
    out, err = capsys.readouterr()
    assert (info.value.code or 0) == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["aws.yaml", "helm-releases.yaml", "openstack.yaml"]
    assert "manifests of vision-dev written to" in out

    _, rendered = planned["vision-dev"]
    for cluster, cm in rendered.clusters.items():
        docs = [d for d in yaml.safe_load_all((out_dir / f"{cluster}.yaml").read_text()) if d]
        assert docs == cm.manifests  # the files are what was validated (and the rendering is deterministic)
    releases = yaml.safe_load((out_dir / HELM_RELEASES_FILE).read_text())["releases"]
    assert [(r["cluster"], r["chart"], r["version"], r["repo"]) for r in releases] == [(r.cluster, r.chart, r.version, r.repo) for r in rendered.releases]
    assert "# Placeholders replaced by schema-valid stand-ins" in (out_dir / "openstack.yaml").read_text()
    # the JSON contract is unchanged by the new option
    doc = json.loads(json_file.read_text())
    assert doc["format"] == "hybridserve-plan/v1" and all(set(r) == {"urn", "type", "name", "parent", "provider", "inputs"} for r in doc["resources"])


# --- checkov ---------------------------------------------------------------------------------------

# A Pod checkov must flag: proves the scan runs its checks and that this parsing reads its failures.
CANARY = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "canary"},
    "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
}
CANARY_MUST_FAIL = {"CKV_K8S_16", "CKV_K8S_21"}  # privileged container; the default namespace


def _checkov_binary() -> str:
    from toolutil import tool

    return tool("HYBRIDSERVE_CHECKOV", ".venv-tools/bin/checkov", on_path="checkov",
                build_hint="run `make tools`, or `make test`, which builds .venv-tools/ with the pinned checkov")


def _offline_env(home: Path) -> dict[str, str]:
    """checkov without its platform: no API key or URL, no mapping download, no user config (HOME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BC_", "PRISMA_", "CKV_", "CHECKOV_"))}
    home.mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(exist_ok=True)
    env.update(HOME=str(home), TMPDIR=str(home / "tmp"), BC_SKIP_MAPPING="TRUE", LOG_LEVEL="WARNING")
    return env


@pytest.fixture(scope="module")
def checkov_scan(planned, tmp_path_factory) -> dict:
    binary = _checkov_binary()
    root = tmp_path_factory.mktemp("checkov")
    scan_dir = root / "manifests"
    total = 0
    for name, (_, rendered) in planned.items():
        rendered.write(scan_dir / name)
        total += sum(1 + (m["kind"] in POD_TEMPLATE_KINDS) for cm in rendered.clusters.values() for m in cm.manifests)
    (scan_dir / "canary").mkdir()
    (scan_dir / "canary" / "canary.yaml").write_text(yaml.safe_dump(CANARY))
    proc = subprocess.run(
        [binary, "-d", str(scan_dir), "--framework", "kubernetes", "--output", "json", "--quiet", "--skip-download", "--skip-results-upload"],
        cwd=root, env=_offline_env(root / "home"), capture_output=True, text=True, timeout=600,
    )
    # 0: nothing failed, 1: failed checks (the canary's); anything else is a crash
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one entry per framework when several ran
        report = next(r for r in report if r.get("check_type") == "kubernetes")
    failed = report["results"]["failed_checks"]
    return {"summary": report["summary"], "failed": failed, "stderr": proc.stderr, "objects": total + 1}


def test_checkov_scanned_every_manifest_offline(checkov_scan):
    summary = checkov_scan["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] == checkov_scan["objects"]
    for phrase in ("Failed to get", "prismacloud", "bridgecrew.cloud", "api key"):
        assert phrase.lower() not in checkov_scan["stderr"].lower(), checkov_scan["stderr"][-2000:]


def test_checkov_flags_the_canary(checkov_scan):
    canary = {f["check_id"] for f in checkov_scan["failed"] if f["file_path"].startswith("/canary/")}
    assert CANARY_MUST_FAIL <= canary


def _is_canary(finding: dict) -> bool:
    return finding["file_path"].startswith("/canary/")


def allow_list_problems(failed: list[dict], allowed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(findings outside the allow-list, allow-listed checks that no longer fail anywhere), canary excluded."""
    stacks = [f for f in failed if not _is_canary(f)]
    new = [f"{f['check_id']} {f['check_name']}: {f['file_path']} {f['resource']}" for f in stacks if f["check_id"] not in allowed]
    failing = {f["check_id"] for f in stacks}
    stale = sorted(set(allowed) - failing)
    return new, stale


def test_checkov_finds_nothing_outside_the_allow_list(checkov_scan):
    new, _ = allow_list_problems(checkov_scan["failed"], CHECKOV_ALLOWED)
    assert new == []


def test_checkov_allow_list_is_not_stale(checkov_scan):
    _, stale = allow_list_problems(checkov_scan["failed"], CHECKOV_ALLOWED)
    assert stale == [], "an allow-listed check passes now: remove it from CHECKOV_ALLOWED"


def test_positive_control_the_allow_list_comparison_fails_on_a_new_and_on_a_vanished_finding(checkov_scan):
    """The two tests above compare the real scan with CHECKOV_ALLOWED: fed the canary's findings as if a stack had
    rendered them, the comparison must report them as new, and an allowed check that never fires as stale."""
    canary = [f for f in checkov_scan["failed"] if _is_canary(f)]
    assert CANARY_MUST_FAIL <= {f["check_id"] for f in canary}
    as_stack = [dict(f, file_path="/vision-dev/aws.yaml") for f in canary]
    new, stale = allow_list_problems([*checkov_scan["failed"], *as_stack], CHECKOV_ALLOWED)
    assert {line.split()[0] for line in new} >= CANARY_MUST_FAIL and all("/vision-dev/aws.yaml" in line for line in new)
    assert stale == []
    new, stale = allow_list_problems(checkov_scan["failed"], {**CHECKOV_ALLOWED, "CKV_K8S_9999": "never fails"})
    assert new == [] and stale == ["CKV_K8S_9999"]
    # and an allowed finding that disappears from the scan is reported
    without = [f for f in checkov_scan["failed"] if f["check_id"] not in CHECKOV_ALLOWED]
    assert allow_list_problems(without, CHECKOV_ALLOWED)[1] == sorted(CHECKOV_ALLOWED)
