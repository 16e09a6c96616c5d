"""`hybridserve ci ...`: the stages a pipeline runs, the same on GitHub Actions, GitLab CI and Jenkins.

    ci changed  --base REF [--head REF] [--json]   which stacks a change touches, dev before prod (--all: every stack)
    ci gitlab-pipeline --base REF | --all          GitLab child pipeline: a job per stack, in order, locked per stack
    ci deploy   --stack S [--reports DIR]          preview, up (with the policy pack), the gate's verdict;
                                                   a failed gate rolls back and fails the stage
    ci rollback --stack S [--version V | --record FILE]   pin the last model version that passed its gate
    ci drift    --stack S [--json FILE]            refresh-preview: drift / no drift / error

Exit codes: 0 done (deployed and passed; no drift); 1 the stage failed (preview or up failed; the gate
failed and the stack was rolled back; drift found); 2 bad input (unknown stack, missing CLI, bad ref or
version), before anything runs; 3 needs a person: the gate failed and no rollback was possible or the
rollback failed; drift could not be judged (the preview itself failed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from hybridserve.errors import UserError

app = typer.Typer(
    name="ci",
    help="CI stages per team stack: changed stacks, deploy (preview, up, gate, rollback), rollback, drift. Exit codes: 0 ok, 1 stage failed, 2 bad input, 3 needs a person.",
    no_args_is_help=True,
)

StackOpt = Annotated[str, typer.Option("--stack", "-s", help="Stack name, e.g. vision-dev (stacks/Pulumi.<stack>.yaml).", show_default=False)]
ReportsOpt = Annotated[Path, typer.Option("--reports", help="Directory for the reports the pipeline uploads (JSON, JUnit XML, the event log).")]
EXIT_FAILED, EXIT_NEEDS_PERSON = 1, 3


def _root() -> Path:
    from hybridserve.paths import repo_root

    return repo_root()


def _resolve(stack: str) -> None:
    from hybridserve.paths import stacks_dir
    from hybridserve.stackconfig.loader import resolve_stack

    resolve_stack(stack, stacks_dir())


def _touched(base: str | None, head: str, all_stacks: bool):
    from hybridserve.ci.decide import Touched, order_stacks, touched_stacks
    from hybridserve.ci.run import changed_files, existing_stacks
    from hybridserve.paths import stacks_dir

    existing = existing_stacks(stacks_dir())
    if all_stacks == bool(base):
        raise UserError("give either --base REF (the stacks a change touches) or --all (every stack)")
    if all_stacks:
        ordered = order_stacks(existing)
        return Touched(ordered, [], {n: "--all" for n in ordered}), existing
    return touched_stacks(changed_files(_root(), base, head), existing), existing


BaseOpt = Annotated[Optional[str], typer.Option("--base", help="The revision the change is against (PR: the base branch's commit; push: the commit before).", show_default=False)]
HeadOpt = Annotated[str, typer.Option("--head", help="The changed revision.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every stack, dev before prod (scheduled drift checks).")]


@app.command("changed")
def changed_command(
    base: BaseOpt = None,
    head: HeadOpt = "HEAD",
    all_stacks: AllOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line: stacks, nonprod, prod, waves, removed, reasons, matrix.")] = False,
) -> None:
    """Which stacks a change touches, dev before prod: a stack file -> that stack; the program (infra/, hybridserve/, model_repo/, smoke_tests/, Pulumi.yaml, pyproject.toml, constraints.txt, infra/requirements.txt) -> every stack; anything else -> none."""
    from hybridserve.ci.decide import PROD_RANK, environment_rank, waves

    touched, existing = _touched(base, head, all_stacks)
    chosen = {n: existing[n] for n in touched.stacks}
    doc = {
        **touched.as_json(),
        "nonprod": [n for n in touched.stacks if environment_rank(existing[n]) < PROD_RANK],
        "prod": [n for n in touched.stacks if environment_rank(existing[n]) >= PROD_RANK],
        "waves": waves(chosen),
    }
    if as_json:
        typer.echo(json.dumps(doc, separators=(",", ":")))
        return
    for name in touched.stacks:
        typer.echo(f"{name}\t{touched.reasons[name]}")
    for name in touched.removed:
        typer.echo(f"{name}\tremoved: its stack file is gone; destroy its resources by hand (pulumi destroy --stack {name})")
    if not touched.stacks and not touched.removed:
        typer.echo("no stack touched")


@app.command("deploy")
def deploy_command(stack: StackOpt, reports: ReportsOpt = Path("reports")) -> None:
    """Deploy one stack: `pulumi preview --diff`, `pulumi up` (with the policy pack when policy/ exists), the smoke gate's reports; a failed gate rolls back to the last model version that passed its gate and fails the stage."""
    from hybridserve.ci import decide, run
    from hybridserve.smokereport import stack_outputs
    from hybridserve.stackconfig import load_stack

    _resolve(stack)
    root = _root()
    cfg = load_stack(stack)
    reports.mkdir(parents=True, exist_ok=True)

    before = stack_outputs(stack)
    good = decide.known_good(before, decide.last_update_result(run.stack_history(stack, root)))
    run.write_json(reports / f"{stack}.known-good.json", good.as_json() if good else None)

    if run.pulumi_preview(stack, root) != 0:
        raise UserError(f"stack {stack}: pulumi preview failed (see above); nothing was changed", exit_code=EXIT_FAILED)
    events = reports / f"{stack}.events.jsonl"
    code = run.pulumi_up(stack, root, event_log=events)
    lines = events.read_text(encoding="utf-8").splitlines() if events.is_file() else []
    steps, jobs = decide.failed_steps(lines)

    gate_reports: dict[str, dict | None] = {}
    for site in cfg.serving.targets:
        report, problem = run.read_gate_report(stack, site, jobs.get(site), cfg.serving.namespace)
        gate_reports[site] = report
        run.write_reports(reports, stack, site, report, problem)
        typer.echo(f"{stack} {site}: gate {'PASSED' if report and report.get('passed') else 'FAILED' if report else 'no report (' + str(problem) + ')'}")

    decision = decide.after_up(code, steps, good, gate_reports)
    run.write_json(reports / f"{stack}.decision.json", {"stack": stack, "up_exit_code": code, **decision.__dict__})
    if decision.action == "passed":
        run.github_summary(f"### {stack}: deployed, smoke gate passed")
        typer.echo(f"{stack}: deployed, smoke gate passed")
        return
    if decision.action == "fail":
        run.github_summary(f"### {stack}: FAILED\n\n{decision.reason}")
        needs_person = bool(decision.gate_sites)  # the gate failed and nothing could be rolled back
        raise UserError(f"stack {stack}: {decision.reason}", exit_code=EXIT_NEEDS_PERSON if needs_person else EXIT_FAILED)
    pins, problem = decide.edge_pins(decision.version, before, recorded=good.edge_versions if good else None)
    if problem:  # the clusters alone would leave the edge hosts on the failed content: a person decides
        run.github_summary(f"### {stack}: FAILED, not rolled back\n\n{decision.reason}: {problem}")
        raise UserError(f"stack {stack}: {decision.reason.replace('rolled back', 'not rolled back')}: {problem}", exit_code=EXIT_NEEDS_PERSON)
    rolled = run.pulumi_up(stack, root, config=run.pin_config(decision.version, pins), message=f"rollback to {decision.version}: smoke gate failed")
    if rolled != 0:
        run.github_summary(f"### {stack}: FAILED, rollback FAILED\n\n{decision.reason}")
        raise UserError(f"stack {stack}: {decision.reason.replace('rolled back', 'rolling back')} failed too (pulumi up exited {rolled}); a person must look", exit_code=EXIT_NEEDS_PERSON)
    run.github_summary(f"### {stack}: FAILED, rolled back\n\n{decision.reason}. The stack file now pins it ({run.PIN_KEY}); commit that or a fix.")
    raise UserError(f"stack {stack}: {decision.reason} ({run.PIN_KEY} is set in stacks/Pulumi.{stack}.yaml of this workspace)", exit_code=EXIT_FAILED)


@app.command("rollback")
def rollback_command(
    stack: StackOpt,
    version: Annotated[Optional[str], typer.Option("--version", help="The published version to serve (v + 16 hex digits); one the stack still keeps.", show_default=False)] = None,
    record: Annotated[Optional[Path], typer.Option("--record", help="The <stack>.known-good.json `ci deploy` wrote before its update.", show_default=False)] = None,
    edge_version: Annotated[Optional[list[str]], typer.Option("--edge-version", metavar="SITE=VERSION", help="With --version: the edge site's publication version published with it (edgeHosts.<site>.publication.kept); repeatable. Default: the record's, or the edge sites' current one when the clusters serve --version now.", show_default=False)] = None,
) -> None:
    """Serve the last published model version that passed its gate: `pulumi up` with hybridserve:serving.publication.pin_version set to it (an explicit --version, else --record, else the stack outputs if its last update succeeded)."""
    from hybridserve.ci import decide, run
    from hybridserve.smokereport import stack_outputs

    if version and record:
        raise UserError("give either --version or --record, not both")
    given: dict[str, str] = {}
    for value in edge_version or []:
        site, sep, v = value.partition("=")
        if not (sep and site and v):
            raise UserError(f"--edge-version {value!r}: expected SITE=VERSION (e.g. store-berlin=v0123456789abcdef)")
        given[site] = v
    recorded: dict[str, str] | None = None
    _resolve(stack)
    root = _root()
    if record is not None:
        try:
            doc = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"--record {record}: not a known-good record of `ci deploy` ({exc})") from None
        version = (doc or {}).get("version") if isinstance(doc, dict) or doc is None else None
        recorded = (doc or {}).get("edge_versions") if isinstance(doc, dict) else None
        if not version:
            raise UserError(f"--record {record}: records no version that passed its gate (the stack had none before that deploy)", exit_code=EXIT_NEEDS_PERSON)
    outputs = stack_outputs(stack)
    if version is None:
        good = decide.known_good(outputs, decide.last_update_result(run.stack_history(stack, root)))
        if good is None or good.version is None:
            raise UserError(
                f"stack {stack}: its last update did not succeed, so its outputs do not tell which version passed its gate; "
                "give --version (one of modelPublications.<site>.kept) or --record from the deploy",
                exit_code=EXIT_NEEDS_PERSON,
            )
        version = good.version
        recorded = good.edge_versions
    problem = decide.rollback_problem(version, outputs)
    if problem:
        raise UserError(f"stack {stack}: cannot roll back to {version}: {problem}")
    pins, problem = decide.edge_pins(version, outputs, recorded=recorded if isinstance(recorded, dict) else None, given=given)
    if problem:
        raise UserError(f"stack {stack}: cannot roll back the edge sites with {version}: {problem}")
    code = run.pulumi_up(stack, root, config=run.pin_config(version, pins), message=f"rollback to {version}")
    if code != 0:
        raise UserError(f"stack {stack}: the rollback to {version} failed (pulumi up exited {code}); a person must look", exit_code=EXIT_NEEDS_PERSON)
    edge = "".join(f", edge site {site} {v}" for site, v in sorted(pins.items()))
    typer.echo(f"{stack}: serving {version} ({run.PIN_KEY}{edge}); remove the pins once a fixed model is merged")


@app.command("drift")
def drift_command(
    stack: StackOpt,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Also write the verdict as JSON.", show_default=False)] = None,
) -> None:
    """Does the cloud still match the stack? `pulumi preview --refresh --expect-no-changes --json`. Exit 0 no drift, 1 drift, 2 bad input, 3 the preview failed."""
    from hybridserve.ci import decide, run

    _resolve(stack)
    proc = run.drift_preview(stack, _root())
    verdict = decide.drift_verdict(proc.returncode, proc.stdout, proc.stderr)
    if json_path is not None:
        run.write_json(json_path, {"stack": stack, **verdict.as_json()})
    lines = [f"{stack}: {verdict.status}: {verdict.message}", *[f"  {urn}" for urn in verdict.resources]]
    typer.echo("\n".join(lines))
    run.github_summary("### drift " + "\n".join(lines))
    if verdict.exit_code:
        raise typer.Exit(verdict.exit_code)


@app.command("gitlab-pipeline")
def gitlab_pipeline_command(
    base: BaseOpt = None,
    head: HeadOpt = "HEAD",
    all_stacks: AllOpt = False,
    stage: Annotated[str, typer.Option("--stage", help="deploy (ci deploy per stack) or drift (ci drift per stack).")] = "deploy",
    output: Annotated[Path, typer.Option("--output", help="Where to write the child pipeline (GitLab: an artifact the trigger job includes).")] = Path("stacks-pipeline.yml"),
) -> None:
    """Write a GitLab child pipeline: one job per touched stack, waves in order (dev before prod), prod jobs manual in a protected environment, one deployment per stack (resource_group)."""
    import yaml

    from hybridserve.ci.decide import gitlab_child_pipeline

    if stage not in ("deploy", "drift"):
        raise UserError(f"--stage {stage!r}: expected deploy or drift")
    touched, existing = _touched(base, head, all_stacks)
    doc = gitlab_child_pipeline({n: existing[n] for n in touched.stacks}, stage=stage)
    output.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    typer.echo(f"wrote {output}: {len(touched.stacks)} stack{'s' if len(touched.stacks) != 1 else ''} ({', '.join(touched.stacks) or 'none'})")
