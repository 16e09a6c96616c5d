"""The thin layer of the CI stages: run git and the Pulumi CLI, read what they wrote, write the reports.

Every decision is in hybridserve.ci.decide; this module only carries values between the tools and it.
The Pulumi CLI's own output streams to the CI log as it runs (preview, up); the commands whose output
is data (stack output, stack history, preview --json) are captured.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from hybridserve.errors import UserError

PIN_KEY = "hybridserve:serving.publication.pin_version"


def edge_pin_key(site: str) -> str:
    """The config path of an edge site's pin (serving.publication.edge_pins); quoted: site names hold '-'."""
    return f'hybridserve:serving.publication.edge_pins["{site}"]'


def pin_config(version: str, edge: dict[str, str]) -> dict[str, str]:
    """What a rollback sets: the clusters' pin and each edge site's (edge publications follow the same pin)."""
    return {PIN_KEY: version, **{edge_pin_key(site): v for site, v in sorted(edge.items())}}
POLICY_DIR = "policy"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        hint = {
            "pulumi": "install the Pulumi CLI (the pipelines use pulumi/actions, or `curl -fsSL https://get.pulumi.com | sh`) and log in to the backend",
            "git": "install git; `ci changed` reads the change from the checkout's history",
        }[tool]
        raise UserError(f"`{tool}` is not on PATH: {hint}")
    return path


def policy_args(root: Path, stack: str) -> list[str]:
    """`--policy-pack policy` when the checkout has the policy pack (issue 12, part 1), with the stack's
    `--policy-pack-config policy/config/<stack>.json` when there is one; else nothing."""
    pack = root / POLICY_DIR
    if not pack.is_dir():
        return []
    from hybridserve.policy.offline import config_file

    config = config_file(stack, root)
    return ["--policy-pack", str(pack), *(["--policy-pack-config", str(config)] if config.is_file() else [])]


def run_streamed(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Run a CLI with its output going to the CI log as it comes; its exit code."""
    _require(argv[0])
    print("+ " + " ".join(argv), file=sys.stderr, flush=True)
    return subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}).returncode


def run_captured(argv: list[str], *, cwd: Path) -> subprocess.CompletedProcess:
    _require(argv[0])
    print("+ " + " ".join(argv), file=sys.stderr, flush=True)
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------- git


def changed_files(root: Path, base: str, head: str) -> list[str]:
    """Paths changed between the merge base of `base` and `head`, and `head` (renames as delete + add)."""
    proc = run_captured(["git", "diff", "--name-only", "--no-renames", f"{base}...{head}"], cwd=root)
    if proc.returncode != 0:
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])
        raise UserError(
            f"--base {base} / --head {head}: git cannot diff them ({tail}); give commits this clone has "
            "(CI: fetch with enough depth, e.g. actions/checkout fetch-depth: 0)"
        )
    return [line for line in proc.stdout.splitlines() if line.strip()]


def existing_stacks(stacks_dir: Path) -> dict[str, str]:
    """Stack name -> environment (hybridserve:environment of its file, else the name's last part)."""
    from hybridserve.stackconfig.loader import StackConfigError, read_stack_config, stack_files

    out: dict[str, str] = {}
    for name, path in stack_files(stacks_dir).items():
        try:
            env = read_stack_config(path).get("hybridserve:environment")
        except StackConfigError:
            env = None  # `validate` reports the file; here it only needs a place in the order
        out[name] = env if isinstance(env, str) and env else name.rsplit("-", 1)[-1]
    return out


# --------------------------------------------------------------------------------------------- pulumi


def stack_history(stack: str, root: Path) -> Any:
    proc = run_captured(["pulumi", "stack", "history", "--stack", stack, "--json"], cwd=root)
    if proc.returncode != 0:
        raise UserError(f"reading the update history of stack {stack} failed: {' '.join(proc.stderr.strip().splitlines()[-2:])}")
    try:
        return json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise UserError(f"`pulumi stack history --json` of stack {stack} did not print JSON") from None


def pulumi_up(stack: str, root: Path, *, event_log: Path | None = None, config: dict[str, str] | None = None, message: str | None = None) -> int:
    argv = ["pulumi", "up", "--stack", stack, "--yes", "--skip-preview", *policy_args(root, stack)]
    extra_env = {}
    if event_log is not None:
        argv += ["--event-log", str(event_log)]
        # The CLI registers --event-log only with debug commands on (the Automation API sets the same).
        extra_env["PULUMI_DEBUG_COMMANDS"] = "true"
    if config:
        argv += ["--config-path"] + [a for k, v in config.items() for a in ("--config", f"{k}={v}")]
    if message:
        argv += ["--message", message]
    return run_streamed(argv, cwd=root, env=extra_env)


def pulumi_preview(stack: str, root: Path) -> int:
    return run_streamed(["pulumi", "preview", "--stack", stack, "--diff", *policy_args(root, stack)], cwd=root)


def drift_preview(stack: str, root: Path) -> subprocess.CompletedProcess:
    return run_captured(["pulumi", "preview", "--stack", stack, "--refresh", "--expect-no-changes", "--json"], cwd=root)


# --------------------------------------------------------------------------------------------- reports


def junit_of(stack: str, site: str, report: dict[str, Any] | None, problem: str | None = None) -> str:
    """JUnit XML of one site's gate: a test case per model (failures: its violations), or one error."""
    suite_name = f"smoke-gate {stack} {site}"
    root = ET.Element("testsuites", name="hybridserve ci")
    suite = ET.SubElement(root, "testsuite", name=suite_name)
    cases = failures = errors = 0
    if report is None:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name="report")
        ET.SubElement(case, "error", message=problem or "no report").text = problem or "no report"
        cases, errors = 1, 1
    else:
        by_model: dict[str, list[str]] = {}
        for v in report.get("violations") or []:
            by_model.setdefault(v.get("model") or "endpoint", []).append(v.get("message") or "")
        names = [m.get("name") for m in report.get("models") or [] if m.get("name")]
        for name in [*names, *[n for n in by_model if n not in names]]:
            case = ET.SubElement(suite, "testcase", classname=suite_name, name=name)
            cases += 1
            if by_model.get(name):
                failures += 1
                ET.SubElement(case, "failure", message=by_model[name][0]).text = "\n".join(by_model[name])
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def read_gate_report(stack: str, site: str, job: str | None, namespace: str) -> tuple[dict[str, Any] | None, str | None]:
    """(report, None) or (None, why not): the gate Job's log read with kubectl (hybridserve.smokereport)."""
    from hybridserve.smokereport import gate_log
    from smoke_tests.report import extract_report

    try:
        job_name, ns, log = gate_log(stack, site, job=job, namespace=namespace)
        report = extract_report(log)
    except (UserError, ValueError) as exc:
        return None, str(exc)
    if report is None:
        return None, f"the log of Job {ns}/{job_name} holds no report line: the gate did not finish"
    return report, None


def write_reports(out_dir: Path, stack: str, site: str, report: dict[str, Any] | None, problem: str | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if report is not None:
        path = out_dir / f"{stack}-{site}.smoke.json"
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    path = out_dir / f"{stack}-{site}.smoke.junit.xml"
    path.write_text(junit_of(stack, site, report, problem), encoding="utf-8")
    written.append(path)
    return written


def write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def github_summary(text: str) -> None:
    """Append to the job summary on GitHub Actions (GITHUB_STEP_SUMMARY); nothing elsewhere."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text.rstrip() + "\n")
