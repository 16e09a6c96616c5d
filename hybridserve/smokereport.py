"""`hybridserve smoke-report --stack NAME --site SITE`: the report of the smoke gate the last `pulumi up` ran.

The gate runs as a Kubernetes Job per site (infra/components/triton.py) and prints its report to its log:
the human-readable tables, then one `HYBRIDSERVE-SMOKE-REPORT {json}` line. This command finds the Job
from the stack's outputs (`pulumi stack output`: `smokeGate`, and the site's kubeconfig, a secret kept
in a 0600 temporary file while kubectl runs), reads the log with `kubectl logs`, prints the tables and the
verdict, and with `--json FILE` writes the JSON report. Needs the Pulumi CLI (logged in to the stack's
backend) and kubectl; the EKS kubeconfig also calls the AWS CLI (`aws eks get-token`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from hybridserve.errors import UserError

SITES = ("aws", "openstack")
_TIMEOUT = 120


def _run(argv: list[str], what: str, *, cwd: Path | None = None) -> str:
    tool = argv[0]
    if shutil.which(tool) is None:
        hint = {
            "pulumi": "install the Pulumi CLI and `pulumi login` to the stack's backend (the report is found through the stack's outputs)",
            "kubectl": "install kubectl (the report is the gate Job's log)",
        }[tool]
        raise UserError(f"`{tool}` is not on PATH: {hint}")
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what}: `{' '.join(argv[:3])} ...` did not answer within {_TIMEOUT} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise UserError(f"{what} failed (`{' '.join(argv[:3])} ...` exited {proc.returncode})", details=tail or None)
    return proc.stdout


def stack_outputs(stack: str) -> dict[str, Any]:
    """`pulumi stack output --json --show-secrets` of `stack`, run in the project directory."""
    from hybridserve.paths import repo_root

    text = _run(["pulumi", "stack", "output", "--stack", stack, "--json", "--show-secrets"], f"reading the outputs of stack {stack}", cwd=repo_root())
    try:
        outputs = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise UserError(f"`pulumi stack output` of stack {stack} did not print JSON") from None
    return outputs if isinstance(outputs, dict) else {}


def gate_log(stack: str, site: str, *, job: str | None = None, namespace: str | None = None) -> tuple[str, str, str]:
    """(job, namespace, log text) of the gate Job of `site` in `stack`.

    `job`/`namespace`: read that Job instead of the one in the outputs (`hybridserve ci deploy` after a failed
    update, whose new Job the outputs do not name)."""
    outputs = stack_outputs(stack)
    gate = dict((outputs.get("smokeGate") or {}).get(site) or {})
    if job:
        gate.update(job=job, namespace=namespace or gate.get("namespace"))
    if not gate or not gate.get("job"):
        have = ", ".join(sorted((outputs.get("smokeGate") or {}))) or "none"
        raise UserError(
            f"stack {stack} has no smoke gate on site {site!r} (sites with one: {have}); has `pulumi up` run since Triton "
            "was added, and is the site in hybridserve:serving.targets?"
        )
    kubeconfig = (outputs.get("kubeconfigs") or {}).get(site)
    if not kubeconfig:
        raise UserError(f"stack {stack} exports no kubeconfig for site {site!r} (output kubeconfigs)")
    fd, path = tempfile.mkstemp(prefix=f"hybridserve-{site}-", suffix=".kubeconfig")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp: mode 0600, only this user reads the credential
            f.write(kubeconfig if isinstance(kubeconfig, str) else json.dumps(kubeconfig))
        log = _run(
            ["kubectl", "--kubeconfig", path, "logs", "--namespace", gate.get("namespace") or "triton", f"job/{gate['job']}"],
            f"reading the log of the smoke gate Job {gate['job']}",
        )
    finally:
        os.unlink(path)
    return gate["job"], gate.get("namespace") or "triton", log


def smoke_report_command(
    stack: str = typer.Option(..., "--stack", help="The stack (e.g. vision-dev) whose last `pulumi up` ran the gate."),
    site: str = typer.Option("aws", "--site", help="The site whose gate to show: aws or openstack."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the gate's JSON report (schema: smoke_tests/report.schema.json) to this file."),
) -> None:
    """Print the smoke gate report of the last `pulumi up` of a stack: the gate Job's log, read with kubectl.

    Needs the Pulumi CLI logged in to the stack's backend and kubectl (the EKS kubeconfig also runs `aws eks get-token`).
    """
    from smoke_tests.paths import output_path_problem
    from smoke_tests.report import extract_report

    if site not in SITES:
        raise UserError(f"--site {site!r}: expected one of {', '.join(SITES)}")
    if json_path is not None:
        problem = output_path_problem(json_path)
        if problem:
            raise UserError(f"--json {json_path}: {problem}")
    from hybridserve.paths import stacks_dir
    from hybridserve.stackconfig.loader import resolve_stack

    resolve_stack(stack, stacks_dir())  # a misspelt stack is named before any CLI runs
    job, namespace, log = gate_log(stack, site)
    try:
        report = extract_report(log)
    except ValueError as exc:
        raise UserError(f"the log of Job {namespace}/{job} is cut short: {exc}") from None
    typer.echo("\n".join(line for line in log.splitlines() if "HYBRIDSERVE-SMOKE-REPORT " not in line).rstrip())
    if report is None:
        raise UserError(f"the log of Job {namespace}/{job} holds no report line: the gate did not finish (see the log above)")
    verdict = "PASSED" if report.get("passed") else f"FAILED (exit code {report.get('exit_code')})"
    typer.echo(f"\nsmoke gate of stack {stack}, site {site} (Job {namespace}/{job}): {verdict}")
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"wrote {json_path}")
