"""`hybridserve doctor --stack NAME`: the preflight of a real `pulumi up`.

The Pulumi CLI and the AWS CLI v2 cannot be installed here, so they are small scripts on a PATH that holds
nothing else (they answer `version`, `whoami --json`, `stack ls --json`, `--version` as the real ones do).
Everything else is real: the project's Python environment (this interpreter's), STS on moto_server, the
clouds.yaml search, the stack files.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
import yaml

from hybridserve.paths import repo_root
from tests.cliutil import run_cli

STACK = "vision-dev"

FAKE_PULUMI = """#!/bin/sh
case "$1" in
  version) echo "${FAKE_PULUMI_VERSION:-v3.280.0}" ;;
  whoami)
    if [ -n "$FAKE_PULUMI_USER" ]; then
      printf '{"user": "%s", "organizations": [], "url": "%s"}\\n' "$FAKE_PULUMI_USER" "${FAKE_PULUMI_URL:-s3://state-bucket}"
    else
      echo "error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions" >&2; exit 255
    fi ;;
  stack) printf '%s\\n' "${FAKE_PULUMI_STACKS:-[]}" ;;
  *) echo "unexpected: $*" >&2; exit 3 ;;
esac
"""

FAKE_AWS = """#!/bin/sh
[ "$1" = "--version" ] && echo "${FAKE_AWS_VERSION:-aws-cli/2.31.4 Python/3.13.7 Linux/6.1 exe/x86_64.debian.12}" && exit 0
exit 3
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A checkout whose Pulumi.yaml points at this interpreter's environment (the one with the pins), a PATH
    with only the fake CLIs, a clouds.yaml for the stack's cloud, AWS keys and a passphrase: ready."""
    src = repo_root()
    root = tmp_path / "proj"
    (root / "infra").mkdir(parents=True)
    (root / "model_repo").mkdir()
    shutil.copytree(src / "stacks", root / "stacks")
    shutil.copy(src / "pyproject.toml", root)
    shutil.copy(src / "infra" / "requirements.txt", root / "infra")
    pulumi_yaml = yaml.safe_load((src / "Pulumi.yaml").read_text())
    pulumi_yaml["runtime"]["options"]["virtualenv"] = sys.prefix
    (root / "Pulumi.yaml").write_text(yaml.safe_dump(pulumi_yaml))

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(bin_dir / "pulumi", FAKE_PULUMI)
    _script(bin_dir / "aws", FAKE_AWS)

    cloud = yaml.safe_load((root / "stacks" / f"Pulumi.{STACK}.yaml").read_text())["config"]["hybridserve:openstack"]["cloud"]
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {cloud: {
        "auth_type": "v3applicationcredential",
        "auth": {"auth_url": "https://keystone.example.test:5000/v3", "application_credential_id": "abc", "application_credential_secret": "s3cr3t"},
    }}}))

    env = {
        "HYBRIDSERVE_ROOT": str(root), "PATH": str(bin_dir), "HOME": str(tmp_path / "home"),
        "OS_CLIENT_CONFIG_FILE": str(clouds),
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "PULUMI_CONFIG_PASSPHRASE": "correct horse", "FAKE_PULUMI_USER": "ci-runner",
        "FAKE_PULUMI_STACKS": json.dumps([{"name": STACK}, {"name": "vision-prod"}]),
    }
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "PULUMI_CONFIG_PASSPHRASE_FILE", "OS_PASSWORD", "OS_AUTH_URL", "PULUMI_BACKEND_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return root


def doctor(capsys, *, online: bool = False) -> tuple[int, dict[str, dict], str]:
    """Run doctor (offline unless `online`: then STS, Keystone and the stack list are asked) -> (exit code, checks by name, stderr)."""
    code, out, err = run_cli(["doctor", "--stack", STACK, "--json", "-", *([] if online else ["--offline"])], capsys)
    report = json.loads(out[out.index("{"):])
    return code, {c["name"]: c for c in report["checks"]}, err


def test_ready_machine_passes_with_kubectl_only_a_warning(project, capsys):
    code, checks, err = doctor(capsys)
    assert code == 0, checks
    assert {n: c["status"] for n, c in checks.items()} == {
        "pulumi install": "ok", "python environment": "ok", "pulumi CLI": "ok", "pulumi backend": "ok",
        "pulumi stack": "skip", "stack secrets": "ok", "AWS CLI": "ok", "AWS credentials": "ok",
        "OpenStack credentials": "ok", "OpenStack endpoint": "skip", "kubectl": "warn",
    }
    assert "ci-runner at s3://state-bucket" in checks["pulumi backend"]["detail"]
    assert "ready: 11 checks, none failed" in err


def test_missing_pulumi_cli_fails_with_the_install_fix(project, capsys):
    (Path(os.environ["PATH"]) / "pulumi").unlink()
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert checks["pulumi CLI"]["status"] == "fail"
    assert "install the Pulumi CLI" in checks["pulumi CLI"]["fix"]


def test_old_pulumi_cli_warns(project, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_PULUMI_VERSION", "v3.100.0")
    code, checks, _ = doctor(capsys)
    assert code == 0
    assert checks["pulumi CLI"]["status"] == "warn"
    assert "older than the SDK" in checks["pulumi CLI"]["detail"]


def test_not_logged_in_fails_naming_pulumi_login(project, capsys, monkeypatch):
    monkeypatch.delenv("FAKE_PULUMI_USER")
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert checks["pulumi backend"]["status"] == "fail"
    assert "PULUMI_ACCESS_TOKEN must be set" in checks["pulumi backend"]["detail"]
    assert checks["pulumi backend"]["fix"].startswith("pulumi login")


def test_stack_missing_in_backend_fails_with_stack_init(project, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_PULUMI_STACKS", json.dumps([{"name": "acme/hybridserve/vision-prod"}]))
    code, checks, _ = doctor(capsys, online=True)  # online: the stack list is read
    assert code == 1
    assert checks["pulumi stack"]["status"] == "fail"
    assert checks["pulumi stack"]["fix"] == f"pulumi stack init {STACK}"


def test_passphrase_provider_without_passphrase_fails(project, capsys, monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE")
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert checks["stack secrets"]["status"] == "fail"
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" in checks["stack secrets"]["fix"]
    # Pulumi Cloud keeps the secrets itself: no passphrase needed there.
    monkeypatch.setenv("FAKE_PULUMI_URL", "https://api.pulumi.com")
    code, checks, _ = doctor(capsys)
    assert checks["stack secrets"]["status"] == "ok"


@pytest.mark.parametrize(("version", "status"), [
    ("aws-cli/1.18.69 Python/3.8 Linux", "fail"),   # answers v1alpha1: Kubernetes 1.24+ refuses it
    ("aws-cli/1.44.0 Python/3.12 Linux", "warn"),   # works, not what the kit is tested with
    ("aws-cli/2.4.0 Python/3.8 Linux", "fail"),
])
def test_aws_cli_versions(project, capsys, monkeypatch, version, status):
    monkeypatch.setenv("FAKE_AWS_VERSION", version)
    code, checks, _ = doctor(capsys)
    assert checks["AWS CLI"]["status"] == status
    assert code == (1 if status == "fail" else 0)


def test_no_aws_cli_or_credentials_fail(project, capsys, monkeypatch):
    (Path(os.environ["PATH"]) / "aws").unlink()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert checks["AWS CLI"]["status"] == "fail" and "aws eks get-token" in checks["AWS CLI"]["detail"]
    assert checks["AWS credentials"]["status"] == "fail"


@pytest.mark.servers
def test_sts_confirms_identity_and_account_allow_list(project, capsys, monkeypatch, moto_endpoint):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint.url)
    monkeypatch.setenv("FAKE_PULUMI_STACKS", json.dumps([{"name": STACK}]))
    code, checks, _ = doctor(capsys, online=True)
    assert checks["AWS credentials"]["status"] == "ok", checks["AWS credentials"]
    account = checks["AWS credentials"]["detail"].rsplit("account ", 1)[1].rstrip(")")
    assert account.isdigit()
    # The Keystone URL of the fixture does not resolve: the online check says so.
    assert checks["OpenStack endpoint"]["status"] == "fail"

    stack_file = project / "stacks" / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    doc["config"]["aws:allowedAccountIds"] = ["999999999999"]
    stack_file.write_text(yaml.safe_dump(doc))
    code, checks, _ = doctor(capsys, online=True)
    assert code == 1
    assert checks["AWS credentials"]["status"] == "fail"
    assert f"account {account} is not in the stack's aws:allowedAccountIds" in checks["AWS credentials"]["detail"]


def test_an_unknown_aws_profile_is_a_failed_check_not_a_traceback(project, capsys, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert checks["AWS credentials"]["status"] == "fail" and "no-such-profile" in checks["AWS credentials"]["detail"]


@pytest.mark.servers
def test_the_account_is_judged_by_hybridserve_account_id(project, capsys, monkeypatch, moto_endpoint):
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint.url)
    stack_file = project / "stacks" / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    doc["config"]["hybridserve:aws"]["account_id"] = "999999999999"
    stack_file.write_text(yaml.safe_dump(doc))
    code, checks, _ = doctor(capsys, online=True)
    assert code == 1
    assert "is not in the stack's hybridserve:aws.account_id (999999999999)" in checks["AWS credentials"]["detail"]


def test_openstack_entry_missing_or_incomplete(project, capsys, monkeypatch, tmp_path):
    clouds = Path(os.environ["OS_CLIENT_CONFIG_FILE"])
    doc = yaml.safe_load(clouds.read_text())
    (name, entry), = doc["clouds"].items()
    doc["clouds"] = {"other": entry}
    clouds.write_text(yaml.safe_dump(doc))
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert f"no clouds.yaml entry named {name!r}" in checks["OpenStack credentials"]["detail"]

    # The entry without its secret: secure.yaml next to clouds.yaml supplies it, as openstacksdk merges them.
    del entry["auth"]["application_credential_secret"]
    clouds.write_text(yaml.safe_dump({"clouds": {name: entry}}))
    code, checks, _ = doctor(capsys)
    assert checks["OpenStack credentials"]["status"] == "fail"
    assert "application_credential_secret" in checks["OpenStack credentials"]["detail"]
    (clouds.parent / "secure.yaml").write_text(yaml.safe_dump({"clouds": {name: {"auth": {"application_credential_secret": "x"}}}}))
    code, checks, _ = doctor(capsys)
    assert checks["OpenStack credentials"]["status"] == "ok"


def test_python_environment_checks(project, capsys):
    (project / "infra" / "requirements.txt").unlink()
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert "`pulumi install` would install nothing" in checks["pulumi install"]["detail"]

    doc = yaml.safe_load((project / "Pulumi.yaml").read_text())
    doc["runtime"]["options"]["virtualenv"] = "missing-venv"
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(doc))
    code, checks, _ = doctor(capsys)
    assert checks["python environment"]["status"] == "fail"
    assert checks["python environment"]["fix"].startswith("make install")


def test_pin_mismatch_is_named(project, capsys):
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(text.replace('"pulumi-aws==', '"pulumi-aws==0.0.1", "unused==', 1))
    code, checks, _ = doctor(capsys)
    assert code == 1
    assert "pulumi-aws" in checks["python environment"]["detail"] and "(pinned 0.0.1)" in checks["python environment"]["detail"]


def test_the_checkout_requirements_install_the_project_with_its_pins():
    """What `pulumi install` reads (infra/requirements.txt, pip run from infra/): the project and constraints."""
    lines = [line.split("#")[0].strip() for line in (repo_root() / "infra" / "requirements.txt").read_text().splitlines()]
    assert "-c ../constraints.txt" in lines and "-e .." in lines
    assert (repo_root() / "infra" / ".." / "constraints.txt").is_file()


def test_unknown_or_invalid_stack_is_exit_2(project, capsys):
    code, _, err = run_cli(["doctor", "--stack", "nope-dev"], capsys)
    assert code == 2 and "stack 'nope-dev' not found" in err
    stack_file = project / "stacks" / f"Pulumi.{STACK}.yaml"
    stack_file.write_text(stack_file.read_text().replace("hybridserve:team: vision", "hybridserve:team: Vision!"))
    code, _, err = run_cli(["doctor", "--stack", STACK], capsys)
    assert code == 2 and "team" in err
