"""`hybridserve doctor --stack NAME`: is this machine ready to run `pulumi up` of that stack for real?

Every check names what it found and, when it fails, the command that fixes it. What a real run needs
beyond a valid stack file (`validate` checks that first; a bad stack is exit 2 like everywhere):

- the Python environment Pulumi runs the program in: Pulumi.yaml's `virtualenv` with the pinned packages,
  and a `requirements.txt` in the program directory (`main: infra/`): `pulumi install` with the pip
  toolchain reads the requirements of the *program* directory and installs nothing when there is none
  (pulumi/pulumi sdk/python/toolchain/pip.go `InstallDependencies`, read 2026-12-01);
- the Pulumi CLI, logged in to a backend, the stack created there, and the passphrase when the stack's
  secrets use the passphrase provider;
- the AWS CLI v2 (the EKS kubeconfig runs `aws eks get-token`) and AWS credentials, in an account the
  stack allows (`aws:allowedAccountIds`);
- OpenStack credentials for the stack's `hybridserve:openstack.cloud` (clouds.yaml, as the provider reads it);
- kubectl, only to read gate reports afterwards (a warning, not a failure).

`--offline` skips what needs the network (STS, the Keystone endpoint, the backend's stack list).
Exit codes: 0 ready (warnings allowed), 1 a check failed, 2 bad input (unknown or invalid stack).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import typer
import yaml

from hybridserve.console import make_console
from hybridserve.errors import UserError

Status = Literal["ok", "warn", "fail", "skip"]

# Packages the program imports; their versions must be the project's pins (pyproject.toml).
PROGRAM_PACKAGES = ("pulumi", "pulumi-aws", "pulumi-kubernetes", "pulumi-openstack", "pulumi-random", "torch", "boto3")
_TIMEOUT = 30
PULUMI_INSTALL_DOCS = "https://www.pulumi.com/docs/iac/download-install/"
AWS_CLI_DOCS = "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"
# `aws eks get-token` answers with the v1beta1 ExecCredential (the kubeconfig's apiVersion) from CLI 1.24.0 and
# the v2 release of the same change (aws/aws-cli pull request 6940, May 2022; aws/containers-roadmap issue 1736).
AWS_CLI_MIN = {1: (1, 24, 0), 2: (2, 7, 0)}
# Where openstacksdk (and the Terraform-based OpenStack provider, through gophercloud's clientconfig)
# look for clouds.yaml, in order: https://docs.openstack.org/openstacksdk/latest/user/config/configuration.html
CLOUDS_YAML_DIRS = (Path.cwd, lambda: Path.home() / ".config" / "openstack", lambda: Path("/etc/openstack"))


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class Context:
    """What the checks share: the stack, its settings file and the project directory."""

    stack: str
    stack_file: Path
    root: Path
    config: Any  # StackConfig
    raw: dict[str, Any]  # the stack file's top level (encryptionsalt, secretsprovider)
    settings: dict[str, Any]  # its config as Pulumi hands it to the program (loader.read_stack_config)
    offline: bool


def _run(argv: list[str], *, cwd: Path | None = None) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, "", f"did not answer within {_TIMEOUT} s"
    except OSError as exc:
        return 126, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def _tail(text: str, lines: int = 2) -> str:
    return " ".join(text.strip().splitlines()[-lines:])


def _version(text: str) -> tuple[int, ...] | None:
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in match.groups()) if match else None


# --- Python environment -----------------------------------------------------------------------------


def _project(root: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load((root / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _pins(root: Path) -> dict[str, str]:
    """name -> pinned version from pyproject.toml's dependencies (`name==X`)."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    try:
        deps = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    except (OSError, KeyError, ValueError):
        return {}
    pins = {}
    for dep in deps:
        req = Requirement(dep)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins


_VERSIONS_SCRIPT = """
import json, sys
from importlib.metadata import version, PackageNotFoundError
out = {}
for name in sys.argv[1:]:
    try:
        out[name] = version(name)
    except PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def check_python(ctx: Context) -> list[Check]:
    project = _project(ctx.root)
    runtime = project.get("runtime") if isinstance(project.get("runtime"), dict) else {}
    options = runtime.get("options") or {}
    main = str(project.get("main") or ".")
    checks: list[Check] = []

    toolchain = options.get("toolchain", "pip")
    requirements = ctx.root / main / "requirements.txt"
    if toolchain == "pip" and not requirements.is_file():
        checks.append(Check(
            "pulumi install", "fail",
            f"{requirements.relative_to(ctx.root)} is missing: with `main: {main}` the pip toolchain installs the program "
            "directory's requirements, so `pulumi install` would install nothing",
            f"restore {requirements.relative_to(ctx.root)} (it installs the project with its pins: `-c ../constraints.txt` and `-e ..`)",
        ))
    else:
        checks.append(Check("pulumi install", "ok", f"{toolchain} toolchain; requirements in {requirements.relative_to(ctx.root)}"))

    venv_option = options.get("virtualenv")
    if not venv_option:
        checks.append(Check("python environment", "warn", "Pulumi.yaml sets no virtualenv: the program runs on whatever `python3` is on PATH", "set runtime.options.virtualenv: .venv"))
        return checks
    venv = Path(venv_option) if Path(venv_option).is_absolute() else ctx.root / venv_option
    python = venv / "bin" / "python"
    if not python.exists():
        checks.append(Check("python environment", "fail", f"virtualenv {venv} (Pulumi.yaml) does not exist", "make install   (or: pulumi install)"))
        return checks
    code, out, err = _run([str(python), "-c", _VERSIONS_SCRIPT, *PROGRAM_PACKAGES, "hybridserve"])
    try:
        found: dict[str, str | None] = json.loads(out)
    except json.JSONDecodeError:
        checks.append(Check("python environment", "fail", f"{python} did not run: {_tail(err) or f'exit {code}'}", "make install"))
        return checks
    from packaging.utils import canonicalize_name

    pins = _pins(ctx.root)
    wrong = []
    for name in (*PROGRAM_PACKAGES, "hybridserve"):
        have = found.get(name)
        want = pins.get(canonicalize_name(name))
        if have is None:
            wrong.append(f"{name} missing")
        elif want and have.split("+")[0] != want.split("+")[0]:
            wrong.append(f"{name} {have} (pinned {want})")
    if wrong:
        checks.append(Check("python environment", "fail", f"{venv}: " + ", ".join(wrong), "make install   (installs the pins of pyproject.toml / constraints.txt)"))
    else:
        checks.append(Check("python environment", "ok", f"{venv}: pulumi {found.get('pulumi')}, pulumi-aws {found.get('pulumi-aws')}, torch {found.get('torch')}"))
    return checks


# --- Pulumi -----------------------------------------------------------------------------------------


def _passphrase_check(ctx: Context, backend: str | None) -> Check:
    provider = ctx.raw.get("secretsprovider")
    uses_passphrase = (provider is None and ("encryptionsalt" in ctx.raw or (backend is not None and not backend.startswith("https://")))) or (
        isinstance(provider, str) and provider.startswith("passphrase")
    )
    if not uses_passphrase:
        return Check("stack secrets", "ok", f"secrets provider: {provider or 'the Pulumi Cloud backend'}")
    phrase_file = os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    if "PULUMI_CONFIG_PASSPHRASE" in os.environ:
        return Check("stack secrets", "ok", "passphrase provider; PULUMI_CONFIG_PASSPHRASE is set")
    if phrase_file:
        if Path(phrase_file).is_file():
            return Check("stack secrets", "ok", f"passphrase provider; PULUMI_CONFIG_PASSPHRASE_FILE={phrase_file}")
        return Check("stack secrets", "fail", f"PULUMI_CONFIG_PASSPHRASE_FILE={phrase_file} does not exist", "point it at the file holding the stack's passphrase")
    return Check(
        "stack secrets", "fail",
        "the stack's secrets use the passphrase provider and neither PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set "
        "(a non-interactive `pulumi up` cannot ask for it)",
        "export PULUMI_CONFIG_PASSPHRASE_FILE=<file>   (in CI: from a secret)",
    )


def check_pulumi(ctx: Context) -> list[Check]:
    if shutil.which("pulumi") is None:
        return [Check("pulumi CLI", "fail", "`pulumi` is not on PATH", f"install the Pulumi CLI: {PULUMI_INSTALL_DOCS}")]
    code, out, err = _run(["pulumi", "version"])
    have = _version(out)
    if code != 0 or have is None:
        return [Check("pulumi CLI", "fail", f"`pulumi version` failed: {_tail(err or out) or f'exit {code}'}", f"reinstall the Pulumi CLI: {PULUMI_INSTALL_DOCS}")]
    checks: list[Check] = []
    sdk = _pins(ctx.root).get("pulumi")
    sdk_version = _version(sdk or "")
    if sdk_version and have < sdk_version:
        checks.append(Check("pulumi CLI", "warn", f"v{'.'.join(map(str, have))} is older than the SDK the program uses ({sdk})", f"update the CLI to {sdk} or newer: {PULUMI_INSTALL_DOCS}"))
    else:
        checks.append(Check("pulumi CLI", "ok", f"v{'.'.join(map(str, have))}"))

    code, out, err = _run(["pulumi", "whoami", "--json"], cwd=ctx.root)
    if code != 0:
        checks.append(Check(
            "pulumi backend", "fail", f"not logged in: {_tail(err or out) or f'exit {code}'}",
            "pulumi login   (Pulumi Cloud; in CI set PULUMI_ACCESS_TOKEN), or pulumi login s3://<bucket> / --local for a self-managed backend",
        ))
        checks.append(_passphrase_check(ctx, None))
        return checks
    try:
        who = json.loads(out)
    except json.JSONDecodeError:
        who = {"user": out.strip()}
    backend = who.get("url") or os.environ.get("PULUMI_BACKEND_URL")
    checks.append(Check("pulumi backend", "ok", f"{who.get('user', '?')} at {backend or 'the default backend'}"))

    if ctx.offline:
        checks.append(Check("pulumi stack", "skip", "not looked up (--offline)"))
    else:
        code, out, err = _run(["pulumi", "stack", "ls", "--json"], cwd=ctx.root)
        try:
            names = [str(s.get("name", "")) for s in json.loads(out)] if code == 0 else None
        except (json.JSONDecodeError, AttributeError):
            names = None
        if names is None:
            checks.append(Check("pulumi stack", "fail", f"`pulumi stack ls` failed: {_tail(err or out) or f'exit {code}'}", "check the backend login and network"))
        elif any(n == ctx.stack or n.endswith(f"/{ctx.stack}") for n in names):
            checks.append(Check("pulumi stack", "ok", f"{ctx.stack} exists in the backend"))
        else:
            checks.append(Check("pulumi stack", "fail", f"no stack {ctx.stack} in the backend (found: {', '.join(names) or 'none'})", f"pulumi stack init {ctx.stack}"))
    checks.append(_passphrase_check(ctx, backend))
    return checks


# --- AWS --------------------------------------------------------------------------------------------


def check_aws(ctx: Context) -> list[Check]:
    checks: list[Check] = []
    if shutil.which("aws") is None:
        checks.append(Check("AWS CLI", "fail", "`aws` is not on PATH; the EKS kubeconfig runs `aws eks get-token`", f"install the AWS CLI v2: {AWS_CLI_DOCS}"))
    else:
        code, out, err = _run(["aws", "--version"])
        have = _version(out + err)
        if code != 0 or have is None:
            checks.append(Check("AWS CLI", "fail", f"`aws --version` failed: {_tail(err or out) or f'exit {code}'}", f"reinstall the AWS CLI v2: {AWS_CLI_DOCS}"))
        elif have < AWS_CLI_MIN.get(have[0], (99,)):
            checks.append(Check(
                "AWS CLI", "fail",
                f"version {'.'.join(map(str, have))} answers `aws eks get-token` with client.authentication.k8s.io/v1alpha1, which Kubernetes 1.24+ refuses",
                f"install the AWS CLI v2: {AWS_CLI_DOCS}",
            ))
        elif have[0] < 2:
            checks.append(Check("AWS CLI", "warn", f"version {'.'.join(map(str, have))} (v1) can get EKS tokens; the kit is tested against v2", f"install the AWS CLI v2: {AWS_CLI_DOCS}"))
        else:
            checks.append(Check("AWS CLI", "ok", f"v{'.'.join(map(str, have))}"))

    import boto3
    import botocore.exceptions
    from botocore.config import Config

    region = ctx.config.aws.region
    try:
        session = boto3.Session(region_name=region)
        creds = session.get_credentials()
    except botocore.exceptions.BotoCoreError as exc:  # an unknown AWS_PROFILE, an unreadable config file
        checks.append(Check("AWS credentials", "fail", str(exc), "fix AWS_PROFILE or the AWS config file (aws configure list-profiles)"))
        return checks
    if creds is None:
        checks.append(Check(
            "AWS credentials", "fail", "none found (environment, profile, SSO, web identity or instance role)",
            "aws sso login --profile <p> && export AWS_PROFILE=<p>   (in CI: an OIDC role, AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE)",
        ))
        return checks
    # The accounts the stack may deploy to: hybridserve:aws.account_id (what the program's provider
    # enforces), else aws:allowedAccountIds as Pulumi hands it over.
    allowed = [ctx.config.aws.account_id] if ctx.config.aws.account_id else _json_list(ctx.settings.get("aws:allowedAccountIds"))
    if ctx.offline:
        checks.append(Check("AWS credentials", "ok", f"found ({creds.method}); identity not checked (--offline)"))
        return checks
    try:
        sts = session.client("sts", config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))
        ident = sts.get_caller_identity()
    except botocore.exceptions.BotoCoreError as exc:
        checks.append(Check("AWS credentials", "fail", f"STS in {region} did not confirm them: {exc}", "check network access to STS and the credentials' expiry (aws sso login)"))
        return checks
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        checks.append(Check("AWS credentials", "fail", f"STS refused them: {error.get('Code')}: {error.get('Message')}", "refresh the credentials (aws sso login, or the CI role)"))
        return checks
    account = ident.get("Account")
    if allowed and str(account) not in {str(a) for a in allowed}:
        key = "hybridserve:aws.account_id" if ctx.config.aws.account_id else "aws:allowedAccountIds"
        checks.append(Check("AWS credentials", "fail", f"account {account} is not in the stack's {key} ({', '.join(map(str, allowed))})", "use the credentials of the stack's account"))
    else:
        checks.append(Check("AWS credentials", "ok", f"{ident.get('Arn')} (account {account})"))
    return checks


# --- OpenStack --------------------------------------------------------------------------------------


def _clouds_files() -> list[Path]:
    env = os.environ.get("OS_CLIENT_CONFIG_FILE")
    files = [Path(env)] if env else []
    return files + [where() / "clouds.yaml" for where in CLOUDS_YAML_DIRS]


def _json_list(value: Any) -> list:
    """A list setting as Pulumi passes it: a list, or its JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return list(value) if isinstance(value, list) else []


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def check_openstack(ctx: Context) -> list[Check]:
    name = ctx.config.openstack.cloud
    entry, source = None, None
    searched = _clouds_files()
    for path in searched:
        clouds = _load_yaml(path).get("clouds") or {}
        if isinstance(clouds, dict) and isinstance(clouds.get(name), dict):
            entry, source = dict(clouds[name]), path
            break
    if entry is None:
        return [Check(
            "OpenStack credentials", "fail",
            f"no clouds.yaml entry named {name!r} (hybridserve:openstack.cloud); looked in {', '.join(str(p) for p in searched)}",
            f"add `{name}:` under `clouds:` in ~/.config/openstack/clouds.yaml (an application credential is best), or set OS_CLIENT_CONFIG_FILE",
        )]
    # secure.yaml next to clouds.yaml holds the secret half (openstacksdk merges it).
    secure = (_load_yaml(source.with_name("secure.yaml")).get("clouds") or {}).get(name) or {}
    auth = {**(entry.get("auth") or {}), **(secure.get("auth") or {})}
    auth_type = str(entry.get("auth_type") or "password")
    has_stack_password = "hybridserve:openstack_password" in ctx.settings
    problems = []
    if not auth.get("auth_url") and not os.environ.get("OS_AUTH_URL"):
        problems.append("no auth.auth_url")
    if "applicationcredential" in auth_type:
        if not auth.get("application_credential_secret") and not os.environ.get("OS_APPLICATION_CREDENTIAL_SECRET"):
            problems.append("no application_credential_secret (clouds.yaml, secure.yaml or OS_APPLICATION_CREDENTIAL_SECRET)")
    elif not (auth.get("password") or os.environ.get("OS_PASSWORD") or has_stack_password):
        problems.append("no password (clouds.yaml, secure.yaml, OS_PASSWORD, or `pulumi config set --secret hybridserve:openstack_password`)")
    if problems:
        return [Check("OpenStack credentials", "fail", f"{source}: cloud {name!r}: " + "; ".join(problems), "complete the entry (an application credential needs auth_type: v3applicationcredential)")]
    checks = [Check("OpenStack credentials", "ok", f"{source}: cloud {name!r} ({auth_type})")]
    want_region = ctx.config.openstack.region
    regions = entry.get("regions") or ([entry["region_name"]] if entry.get("region_name") else [])
    if want_region and regions and want_region not in [r if isinstance(r, str) else r.get("name") for r in regions]:
        checks.append(Check("OpenStack region", "warn", f"stack region {want_region!r} is not among the entry's regions {regions}", "check hybridserve:openstack.region"))
    auth_url = auth.get("auth_url") or os.environ.get("OS_AUTH_URL")
    if ctx.offline:
        checks.append(Check("OpenStack endpoint", "skip", f"{auth_url} not contacted (--offline)"))
    else:
        checks.append(_reach(auth_url))
    return checks


def _reach(url: str) -> Check:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (the user's own Keystone URL)
            status = resp.status
    except urllib.error.HTTPError as exc:  # Keystone answers version discovery with 300; any answer is reach
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Check("OpenStack endpoint", "fail", f"{url} did not answer: {getattr(exc, 'reason', exc)}", "check the network path to Keystone (VPN, proxy: HTTPS_PROXY)")
    return Check("OpenStack endpoint", "ok", f"{url} answered (HTTP {status})")


def check_kubectl(ctx: Context) -> list[Check]:
    if shutil.which("kubectl") is None:
        return [Check("kubectl", "warn", "not on PATH: `pulumi up` does not need it; `hybridserve smoke-report` does", "install kubectl to read gate reports")]
    return [Check("kubectl", "ok", shutil.which("kubectl") or "")]


CHECKS: tuple[Callable[[Context], list[Check]], ...] = (check_python, check_pulumi, check_aws, check_openstack, check_kubectl)


def run_checks(ctx: Context) -> list[Check]:
    found: list[Check] = []
    for check in CHECKS:
        found.extend(check(ctx))
    return found


# --- command ----------------------------------------------------------------------------------------

_ICON = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]", "skip": "[dim]-[/]"}


def doctor_command(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name, e.g. vision-dev (file stacks/Pulumi.<stack>.yaml).", show_default=False)],
    offline: Annotated[bool, typer.Option("--offline", help="Skip what needs the network (STS, Keystone, the backend's stack list).")] = False,
    json_out: Annotated[Optional[str], typer.Option("--json", help="Also write the checks as JSON to FILE ('-' for stdout).", show_default=False)] = None,
) -> None:
    """Preflight of a real `pulumi up` of one stack: Python environment, Pulumi CLI and backend, AWS CLI and credentials, OpenStack credentials.

    Each failed check says how to fix it. Exit 0 when ready (warnings allowed), 1 when a check failed, 2 for an unknown or invalid stack.
    """
    from hybridserve.paths import output_path_problem, repo_root, stacks_dir
    from hybridserve.stackconfig.loader import build_stack_config, display_path, read_stack_config, resolve_stack, stack_name_of

    if json_out not in (None, "-"):
        problem = output_path_problem(Path(json_out))
        if problem:
            raise UserError(f"--json {json_out}: {problem}", exit_code=2)
    path = resolve_stack(stack, stacks_dir())
    settings = read_stack_config(path)
    config = build_stack_config(settings, source=display_path(path), stack_name=stack_name_of(path))  # a bad stack is exit 2, before any check
    raw = _load_yaml(path)
    ctx = Context(stack=stack, stack_file=path, root=repo_root(), config=config, raw=raw, settings=settings, offline=offline)
    checks = run_checks(ctx)

    console = make_console(stderr=json_out == "-")
    for c in checks:
        console.print(f"{_ICON[c.status]} [bold]{c.name}[/]: {c.detail}", highlight=False, soft_wrap=True)
        if c.fix and c.status in ("fail", "warn"):
            console.print(f"    fix: {c.fix}", highlight=False, soft_wrap=True, markup=False)
    failed = [c for c in checks if c.status == "fail"]
    console.print(f"{len(failed)} of {len(checks)} checks failed" if failed else f"ready: {len(checks)} checks, none failed")
    if json_out is not None:
        text = json.dumps({"stack": stack, "ready": not failed, "checks": [asdict(c) for c in checks]}, indent=2)
        if json_out == "-":
            print(text)
        else:
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(json_out).write_text(text + "\n", encoding="utf-8")
    if failed:
        raise typer.Exit(1)
