"""The pipeline files (issue 12): GitHub Actions workflows pass actionlint, the GitLab files pass GitLab's
schema (check-jsonschema's vendored copy), and every pipeline wires the same `hybridserve ci` commands with
the rules the stage logic relies on (dev before prod, prod approved, one deployment per stack, OIDC).

actionlint and check-jsonschema are pinned dev dependencies (pyproject.toml): a missing binary fails these
tests, it does not skip them. Each checker is also shown a broken file, so a checker that passes
everything cannot pass here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hybridserve.ci.decide import concurrency_group, gitlab_child_pipeline
from hybridserve.paths import repo_root

ROOT = repo_root()
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GITLAB_FILES = [ROOT / ".gitlab-ci.yml", ROOT / ".gitlab" / "hybridserve.yml"]
SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    """The binary from the project's venv (next to this interpreter), else PATH; missing is a failure."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.is_file() else shutil.which(name)
    assert found, f"{name} is not installed: `make install` installs the dev extra (pyproject.toml pins it)"
    return found


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("actionlint"), "-no-color", *map(str, files)], cwd=ROOT, capture_output=True, text=True)


def _gitlab_schema(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", *map(str, files)], capture_output=True, text=True)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --------------------------------------------------------------------------------------------- linters


def test_workflows_exist():
    assert {p.name for p in WORKFLOWS} >= {"pull-request.yml", "deploy.yml", "deploy-stack.yml", "drift.yml"}


def test_every_workflow_passes_actionlint():
    result = _actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_flags_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  deploy:\n"
        "    needs: build\n"                                  # no such job
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - run: echo ${{ matrix.stack }}\n"             # no matrix in this job
        "      - uses: actions/checkout@v4\n"
        "        with:\n"
        "          fetch-dept: 0\n"                            # misspelt input
    )
    result = subprocess.run([_tool("actionlint"), "-no-color", str(broken)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout
    assert 'job "deploy" needs job "build" which does not exist' in result.stdout
    assert 'property "stack" is not defined in object type {}' in result.stdout
    assert 'input "fetch-dept" is not defined' in result.stdout


def test_gitlab_files_pass_the_gitlab_schema():
    result = _gitlab_schema(*GITLAB_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gitlab_schema_flags_a_broken_file(tmp_path):
    broken = tmp_path / ".gitlab-ci.yml"
    broken.write_text("deploy:\n  stage: deploy\n  script: make\n  when: sometimes\n  resource_group: [a, b]\n")
    result = _gitlab_schema(broken)
    assert result.returncode == 1, result.stdout
    assert "$.deploy.when: 'sometimes' is not one of" in result.stdout
    assert "$.deploy.resource_group: ['a', 'b'] is not of type 'string'" in result.stdout


@pytest.mark.parametrize("stage", ["deploy", "drift"])
def test_generated_child_pipelines_pass_the_gitlab_schema(tmp_path, stage):
    stacks = {"search-dev": "dev", "vision-dev": "dev", "vision-staging": "staging", "vision-prod": "prod"}
    for name, doc in (("some", gitlab_child_pipeline(stacks, stage=stage)), ("none", gitlab_child_pipeline({}, stage=stage))):
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        result = _gitlab_schema(path)
        assert result.returncode == 0, (name, result.stdout + result.stderr)


# --------------------------------------------------------------------------------------------- what the pipelines promise


def _steps(workflow: dict) -> list[tuple[str, dict]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_to_commits_and_aws_access_is_oidc(path):
    workflow = _load(path)
    for job_id, step in _steps(workflow):
        uses = step.get("uses")
        if uses and not uses.startswith("./"):
            assert SHA_PIN.match(uses), f"{path.name} {job_id}: {uses} is not pinned to a full commit SHA"
        if uses and uses.startswith("aws-actions/configure-aws-credentials@"):
            inputs = step.get("with", {})
            assert "role-to-assume" in inputs and not {"aws-access-key-id", "aws-secret-access-key"} & set(inputs)
            job = workflow["jobs"][job_id]
            permissions = job.get("permissions", workflow.get("permissions", {}))
            assert permissions.get("id-token") == "write", f"{path.name} {job_id}: OIDC needs id-token: write"
    assert "AWS_SECRET_ACCESS_KEY" not in path.read_text()


def test_pull_requests_preview_each_touched_stack_with_a_comment():
    wf = _load(ROOT / ".github" / "workflows" / "pull-request.yml")
    changed = " ".join(s.get("run", "") for s in wf["jobs"]["changes"]["steps"])
    assert "hybridserve ci changed --base" in changed
    preview = wf["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.changes.outputs.stacks) }}"
    [pulumi] = [s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["comment-on-pr"] is True
    assert "policy" in pulumi["with"]["policyPacks"]  # the pack once policy/ exists
    assert "policy/config/{0}.json" in pulumi["with"]["policyPackConfigs"]  # with the stack's own config
    assert preview["permissions"]["pull-requests"] == "write"
    tests = " ".join(s.get("run", "") for s in wf["jobs"]["test"]["steps"])
    assert "make test" in tests and "hybridserve validate --all" in tests and "actionlint" in tests


def test_main_deploys_nonprod_before_prod_one_stack_at_a_time():
    wf = _load(ROOT / ".github" / "workflows" / "deploy.yml")
    nonprod, prod = wf["jobs"]["deploy-nonprod"], wf["jobs"]["deploy-prod"]
    assert "deploy-nonprod" in prod["needs"]
    assert "needs.deploy-nonprod.result == 'success'" in prod["if"]
    assert nonprod["strategy"]["max-parallel"] == 1 and prod["strategy"]["max-parallel"] == 1
    assert nonprod["uses"] == prod["uses"] == "./.github/workflows/deploy-stack.yml"

    stack = _load(ROOT / ".github" / "workflows" / "deploy-stack.yml")["jobs"]["deploy"]
    assert stack["environment"] == "${{ inputs.stack }}"  # production environments carry the approval
    # The lock name the stage logic defines, for the stack being deployed; queued, never cancelled.
    assert stack["concurrency"]["group"] == concurrency_group("${{ inputs.stack }}")
    assert stack["concurrency"]["cancel-in-progress"] is False
    runs = " ".join(s.get("run", "") for s in stack["steps"])
    assert 'hybridserve ci deploy --stack "$STACK" --reports reports' in runs
    [upload] = [s for s in stack["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and "reports/" in upload["with"]["path"]


def test_drift_is_scheduled_for_every_stack_and_never_queues_over_a_deploy():
    wf = _load(ROOT / ".github" / "workflows" / "drift.yml")
    assert wf[True]["schedule"]  # YAML 1.1 reads the key `on` as True
    drift = wf["jobs"]["drift"]
    assert "hybridserve ci drift" in " ".join(s.get("run", "") for s in drift["steps"])
    assert "ci changed --all" in " ".join(s.get("run", "") for s in wf["jobs"]["stacks"]["steps"])
    assert drift["concurrency"]["group"] != concurrency_group("${{ matrix.stack }}")


def test_gitlab_and_jenkins_call_the_same_commands():
    gitlab = (ROOT / ".gitlab-ci.yml").read_text()
    assert "hybridserve ci gitlab-pipeline" in gitlab and "hybridserve ci changed" in gitlab
    child = gitlab_child_pipeline({"vision-dev": "dev", "vision-prod": "prod"})
    assert child["stages"] == ["deploy-1", "deploy-2"]
    dev, prod = child["deploy vision-dev"], child["deploy vision-prod"]
    assert (dev["stage"], prod["stage"]) == ("deploy-1", "deploy-2")
    assert dev["resource_group"] == concurrency_group("vision-dev") and prod["resource_group"] == concurrency_group("vision-prod")
    assert prod["when"] == "manual" and "when" not in dev
    assert dev["script"] == [".venv/bin/hybridserve ci deploy --stack vision-dev --reports reports"]
    assert _load(ROOT / ".gitlab" / "hybridserve.yml")[".hybridserve"]["id_tokens"]["AWS_ID_TOKEN"]["aud"] == "sts.amazonaws.com"

    jenkins = (ROOT / "Jenkinsfile").read_text()
    for command in ("ci changed --base", "ci deploy --stack", "ci drift --stack", "ci changed --all"):
        assert command in jenkins, command
    assert 'lock(resource: "hybridserve-deploy-${stack}")' in jenkins  # concurrency_group's name
    assert jenkins.index("changed.nonprod") < jenkins.index("changed.prod") and "input message" in jenkins
