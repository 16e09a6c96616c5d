"""`hybridserve validate` and `hybridserve plan`: offline checks and the offline plan of team stacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table
from rich.tree import Tree

from hybridserve.console import make_console
from hybridserve.errors import UserError

if TYPE_CHECKING:
    from infra.plan import Plan

_out = make_console()

StackOpt = Annotated[Optional[str], typer.Option("--stack", "-s", help="Stack name, e.g. vision-dev (file stacks/Pulumi.<stack>.yaml).", show_default=False)]
StacksDirOpt = Annotated[
    Optional[Path],
    typer.Option("--stacks-dir", help="Directory of the stack files. Default: stacks/ of the checkout.", show_default=False),
]


def _stacks_dir(option: Path | None) -> Path:
    from hybridserve.paths import stacks_dir

    return option if option is not None else stacks_dir()


def validate_command(
    stack: StackOpt = None,
    all_stacks: Annotated[bool, typer.Option("--all", help="Validate every stack (the default).")] = False,
    stacks_dir: StacksDirOpt = None,
    policies: Annotated[
        bool,
        typer.Option("--policies", help="Also run the program under the mock engine (seconds per stack) and apply the policy pack, as `plan` does."),
    ] = False,
) -> None:
    """Validate one stack or all of them: schema, networks, node counts, catalogues, SLOs, and cross-stack checks; with --policies, the policy pack too."""
    from hybridserve.stackconfig.validation import validate_stacks

    if stack and all_stacks:
        raise UserError("give either --stack NAME or --all, not both", exit_code=2)
    report = validate_stacks(_stacks_dir(stacks_dir), stack)
    report.raise_for_problems()
    from hybridserve.stackconfig.loader import display_path

    for name, path in report.selected.items():
        _out.print(f"[green]✓[/] {name}  [dim]{display_path(path)}[/]", highlight=False)
    for warning in report.warnings:
        _out.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    _out.print(f"{len(report.selected)} stack{'s' if len(report.selected) != 1 else ''} valid")
    if policies:
        _apply_policies(report.selected)


def _apply_policies(selected: dict[str, Path]) -> None:
    """Plan each stack offline and apply the policy pack; exit 1 on a mandatory violation."""
    from hybridserve.policy.offline import check_plan, load_config
    from infra.plan import plan_stack_file

    configs = {name: load_config(name) for name in selected}  # a bad policy config stops before any plan
    blocking = 0
    for name, path in selected.items():
        plan = plan_stack_file(path)
        blocking += _print_violations(plan, check_plan(plan.as_json(), configs[name]))
    _raise_for_violations(blocking)


def _raise_for_violations(blocking: int) -> None:
    if blocking:
        raise UserError(
            f"{blocking} mandatory policy violation{'s' if blocking != 1 else ''} (above): `pulumi up --policy-pack policy` would stop on "
            f"{'them' if blocking != 1 else 'it'}; fix the stack or the program, or make a policy advisory for a stack in policy/config/<stack>.json",
            exit_code=1,
        )


def plan_command(
    stack: StackOpt = None,
    all_stacks: Annotated[bool, typer.Option("--all", help="Plan every stack.")] = False,
    json_file: Annotated[
        Optional[Path],
        typer.Option("--json", help="Also write the plan as JSON (every resource: urn, type, name, parent, provider, inputs; secrets masked).", show_default=False),
    ] = None,
    stacks_dir: StacksDirOpt = None,
    manifests_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--manifests",
            help="Also write the Kubernetes objects as manifests: one multi-document YAML per cluster (aws.yaml, openstack.yaml) "
            "and helm-releases.yaml; with --all, one sub-directory per stack.",
            show_default=False,
        ),
    ] = None,
    no_probe: Annotated[
        bool,
        typer.Option("--no-probe", help="Do not probe the edge hosts. By default the text output shows each edge host's live state "
                                        "(ready, down, unreachable: `edge status --no-gate`'s readiness probe, all hosts at once); the JSON never does."),
    ] = False,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", min=0.2, max=30, help="Seconds each edge host readiness request may take.")] = 2.0,
    address: Annotated[
        Optional[list[str]],
        typer.Option("--address", metavar="SITE/HOST=ADDRESS", help="Probe an edge host at another address, e.g. through an SSH port forward (repeatable)."),
    ] = None,
) -> None:
    """Plan a stack offline: the real Pulumi program under the SDK's mock engine; resource tree, counts, monthly cost; the edge hosts' live state."""
    from hybridserve.stackconfig.validation import validate_stacks

    if stack and all_stacks:
        raise UserError("give either --stack NAME or --all, not both", exit_code=2)
    if not stack and not all_stacks:
        raise UserError("give --stack NAME or --all (NAME: the stack of stacks/Pulumi.<NAME>.yaml, e.g. vision-dev)", exit_code=2)
    if json_file is not None:
        from hybridserve.paths import output_path_problem

        problem = output_path_problem(json_file)
        if problem:  # before the plan (seconds per stack), not after it
            raise UserError(f"--json {json_file}: {problem}", exit_code=2)
    if manifests_dir is not None and manifests_dir.exists() and not manifests_dir.is_dir():
        raise UserError(f"--manifests {manifests_dir}: is a file; give a directory", exit_code=2)  # before the plan, not after
    report = validate_stacks(_stacks_dir(stacks_dir), stack)
    report.raise_for_problems()  # every selected stack valid before anything is planned
    if address and not stack:
        raise UserError("--address needs --stack NAME (it names a host of that stack)", exit_code=2)
    if address and no_probe:
        raise UserError("--address is for the edge hosts' probe, which --no-probe turns off; give one of them", exit_code=2)
    probe_targets = {}
    if not no_probe:
        from hybridserve.edge.status import targets_of
        from hybridserve.stackconfig.loader import load_stack_file

        for name, path in report.selected.items():  # a bad --address stops before the plan (seconds per stack)
            cfg = load_stack_file(path)
            if cfg.edge_sites():
                probe_targets[name] = targets_of(cfg, [], list(address or []))
        if address and not probe_targets:
            raise UserError(f"--address: stack {stack} has no edge site (kind: edge)", exit_code=2)

    from infra.plan import FORMAT, plan_stack_file

    from hybridserve.policy.offline import check_plan, load_config

    configs = {name: load_config(name) for name in report.selected}  # a bad policy config stops before the plan
    plans = [plan_stack_file(path) for path in report.selected.values()]
    docs, blocking = [], 0
    for plan in plans:
        _print_plan(plan)
        if plan.stack in probe_targets:
            _print_edge_probe(plan.stack, probe_targets[plan.stack], probe_timeout)
        doc = plan.as_json()
        violations = check_plan(doc, configs.get(plan.stack))
        doc["policyViolations"] = [v.__dict__ for v in violations]
        docs.append(doc)
        blocking += _print_violations(plan, violations)
    if json_file is not None:
        doc = docs[0] if stack else {"format": f"{FORMAT}-set", "plans": docs}
        try:
            json_file.parent.mkdir(parents=True, exist_ok=True)
            json_file.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"--json {json_file}: cannot write: {exc.strerror}", exit_code=2) from None
        _out.print(f"plan written to {json_file}", highlight=False)
    if manifests_dir is not None:
        _write_manifests(plans, manifests_dir, per_stack=not stack)
    _raise_for_violations(blocking)


def _print_edge_probe(stack: str, targets: list, timeout: float) -> None:
    """Each edge host's live state (the plan is offline; the hosts are not: say when one is down, per host)."""
    from hybridserve.edge.status import probe_hosts, probe_table

    states = probe_hosts(targets, timeout)
    _out.print(probe_table(targets, states, stack))
    bad = sum(state != "ready" for state, _ in states)
    if bad:
        _out.print(f"[yellow]warning:[/] {bad} of {len(states)} edge hosts of {stack} not ready (from this machine; "
                   "the host firewall admits Triton's ports only from the site's inference_cidrs: from elsewhere, probe "
                   "through an SSH port forward with --address SITE/HOST=ADDRESS, or skip with --no-probe)", highlight=False)


def _print_violations(plan: Plan, violations: list) -> int:
    """Print the policy pack's verdict on a plan; the number of mandatory violations."""
    from hybridserve.policy.rules import ALL_NAMES, MANDATORY

    if not violations:
        _out.print(f"[green]✓[/] policy pack: {len(ALL_NAMES)} policies, no violations", highlight=False)
        return 0
    names = {r.urn: f"{r.name} ({r.type})" for r in plan.resources}
    table = Table(title=f"Policy violations of {plan.stack}", show_edge=False)
    for col in ("policy", "level", "resource", "what to fix"):
        table.add_column(col, overflow="fold")
    for v in violations:
        level = "[red]mandatory[/]" if v.enforcement == MANDATORY else "[yellow]advisory[/]"
        table.add_row(v.policy, level, names.get(v.urn, v.urn), v.message)
    _out.print(table)
    return sum(v.enforcement == MANDATORY for v in violations)


def _write_manifests(plans: list[Plan], directory: Path, *, per_stack: bool) -> None:
    from infra.manifests import render  # lazy: only this option needs it

    for plan in plans:
        rendered = render(plan)
        target = directory / plan.stack if per_stack else directory
        rendered.write(target)
        objects = ", ".join(f"{name} {len(cm.manifests)} (Kubernetes {cm.kubernetes_version or '?'})" for name, cm in rendered.clusters.items())
        _out.print(f"manifests of {plan.stack} written to {target}: {objects or 'no objects'}; {len(rendered.releases)} Helm releases", highlight=False)
        for line in rendered.skipped:
            _out.print(f"[yellow]warning:[/] not a manifest, skipped: {line}", highlight=False)


def _print_plan(plan: Plan) -> None:
    _out.rule(f"[bold]{plan.stack}[/]  [dim]{plan.source}[/]")
    by_urn = {r.urn: r for r in plan.resources}
    children: dict[str | None, list] = {}
    for r in plan.resources:
        parent = r.parent if r.parent in by_urn else None
        children.setdefault(parent, []).append(r)

    def label(r) -> str:
        return f"[bold]{r.name}[/] [cyan]{r.type}[/]"

    def add(node: Tree, urn: str) -> None:
        for child in children.get(urn, []):
            add(node.add(label(child)), child.urn)

    for root in children.get(None, []):
        tree = Tree(label(root))
        add(tree, root.urn)
        _out.print(tree)

    counts = Table(title="Resources per provider", show_edge=False)
    counts.add_column("provider")
    counts.add_column("resources", justify="right")
    for package, n in plan.counts_by_package().items():
        counts.add_row(package, str(n))
    counts.add_row("[bold]total[/]", f"[bold]{sum(plan.counts_by_package().values())}[/]")
    _out.print(counts)

    _print_sites(plan)
    cost = Table(
        title="Estimated monthly compute cost, USD",
        caption="730 h/month; AWS on-demand list prices, OpenStack chargeback rates (hybridserve/stackconfig/catalog.py)",
        show_edge=False,
    )
    for col, justify in (("item", "left"), ("machine", "left"), ("GPU", "left"), ("nodes", "right"), ("$/h", "right"), ("at min", "right"), ("at max", "right")):
        cost.add_column(col, justify=justify, no_wrap=True)
    for line in plan.cost.lines:
        nodes = str(line.min_nodes) if line.min_nodes == line.max_nodes else f"{line.min_nodes}-{line.max_nodes}"
        cost.add_row(f"{line.cloud}: {line.item}", line.machine, line.gpu, nodes, f"{line.usd_per_hour:.3f}", f"{line.monthly_min:,.0f}", f"{line.monthly_max:,.0f}")
    cost.add_row("[bold]total[/]", "", "", "", "", f"[bold]{plan.cost.monthly_min:,.0f}[/]", f"[bold]{plan.cost.monthly_max:,.0f}[/]")
    _out.print(cost)
    _print_rollout(plan)
    for warning in plan.warnings:
        _out.print(f"[yellow]warning:[/] {warning}", highlight=False)


def site_rows(cfg) -> list[tuple[str, str, str, str, str]]:
    """(site, kind, networks, VPN links, hosts) per site of the stack, hubs first as declared."""
    links: dict[str, list[str]] = {}
    for link in cfg.links():
        links.setdefault(link.a, []).append(link.b)
        links.setdefault(link.b, []).append(link.a)
    rows = []
    for site in cfg.sites:
        hosts = ", ".join(f"{h.name} {h.address} ({h.gpu_model or h.accelerator})" for h in getattr(site, "hosts", []))
        rows.append((site.name, site.kind, ", ".join(cfg.site_networks(site.name)), ", ".join(links.get(site.name, [])), hosts or "-"))
    return rows


def _print_sites(plan: Plan) -> None:
    table = Table(title="Sites and VPN links", show_edge=False)
    for col in ("site", "kind", "networks", "linked to", "hosts"):
        table.add_column(col)
    for row in site_rows(plan.config):
        table.add_row(*row)
    _out.print(table)


def serving_rollout(plan: Plan) -> dict[str, list]:
    """Per site: the model publication and the Triton service's resources in the order `pulumi up` creates
    them (a topological order of their recorded dependencies; ties by name)."""
    by_urn = {r.urn: r for r in plan.resources}
    out: dict[str, list] = {}
    for site in ("aws", "openstack"):
        component = next((r for r in plan.resources if r.name == f"triton-{site}" and not r.custom), None)
        if component is None:
            continue
        members = [r for r in plan.resources if r.parent == component.urn or r.name == f"models-{site}"]
        urns = {r.urn for r in members}
        waits = {r.urn: {d for d in r.dependencies if d in urns} for r in members}
        order = []
        while waits:
            ready = sorted((u for u, deps in waits.items() if not deps), key=lambda u: by_urn[u].name)
            if not ready:  # a cycle cannot come from the engine; show the rest as they are
                ready = sorted(waits, key=lambda u: by_urn[u].name)
            for u in ready:
                order.append(by_urn[u])
                del waits[u]
            for deps in waits.values():
                deps.difference_update(ready)
        out[site] = order
    return out


def _print_rollout(plan: Plan) -> None:
    for site, order in serving_rollout(plan).items():
        table = Table(title=f"Serving on {site}, in the order `pulumi up` creates it", show_edge=False)
        table.add_column("#", justify="right")
        table.add_column("resource")
        table.add_column("kind")
        table.add_column("waits for")
        names = {r.urn: r.name for r in order}
        for i, r in enumerate(order, 1):
            waits = sorted(names[d] for d in r.dependencies if d in names)
            table.add_row(str(i), r.name, r.type.rsplit(":", 1)[-1], ", ".join(waits))
        _out.print(table)
