"""`hybridserve edge status --stack NAME`: per edge host healthy, down or SLO missed (issue 15, part 4).

The hosts come from the stack config (each edge site's hosts, Triton ports, the models it serves and their gate
SLOs: hybridserve.stackconfig.edgemodels), checked from here over the VPN by hybridserve.edge.health.check_hosts.
Exit 0 when every host is healthy, 1 when any is down or misses its SLO, 2 on bad input.

`--address SITE/HOST=ADDRESS` reaches a host another way than its stack address (an SSH port forward from a
machine off the VPN, `ssh -L 8000:HOST:8000 -L 8001:HOST:8001 jump`, then `--address site/host=127.0.0.1`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from hybridserve.errors import UserError
from hybridserve.stackconfig.cli import StackOpt, StacksDirOpt

EXIT_UNHEALTHY = 1
# The default edge SLO when a site sets none (infra/components/edge.py DEFAULT_EDGE_SLOS: no pulumi import here).
DEFAULT_SLOS = {"slos": {"*": {"max_p99_ms": 250, "p99_concurrency": 1, "max_error_rate": 0}}}

edge_app = typer.Typer(help="Edge sites: the hosts the operator owns, served from the stack's hubs.", no_args_is_help=True)


def _overrides(values: list[str]) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for value in values:
        target, sep, address = value.partition("=")
        site, slash, host = target.partition("/")
        if not (sep and slash and site and host and address):
            raise UserError(f"--address {value!r}: expected SITE/HOST=ADDRESS (e.g. store-berlin/edge-1=127.0.0.1)", exit_code=2)
        out[(site, host)] = address
    return out


def host_targets(stack: str | None, stacks_dir: Path | None, sites: list[str], addresses: list[str]):
    """The HostTargets of the stack's edge sites (all, or the `--site` ones)."""
    from hybridserve.paths import stacks_dir as default_stacks_dir
    from hybridserve.stackconfig.loader import load_stack_file, resolve_stack

    if not stack:
        raise UserError("--stack NAME is required (e.g. --stack search-dev)", exit_code=2)
    path = resolve_stack(stack, stacks_dir or default_stacks_dir())
    config = load_stack_file(path)
    if not config.edge_sites():
        raise UserError(f"{path.name}: hybridserve:sites has no edge site (kind: edge); nothing to check", exit_code=2)
    return targets_of(config, sites, addresses)


def targets_of(config, sites: list[str] = (), addresses: list[str] = ()):  # type: ignore[assignment]
    """The HostTargets of a loaded stack config's edge sites (all, or `sites`); `addresses`: --address overrides."""
    from hybridserve.edge.health import HostTarget
    from hybridserve.stackconfig.edgemodels import gate_slos, model_repository, served_models

    stack = config.stack_name
    edge = {site.name: site for _, site in config.edge_sites()}
    unknown = [s for s in sites if s not in edge]
    if unknown:
        raise UserError(f"--site {', '.join(unknown)}: not an edge site of {stack} (its edge sites: {', '.join(edge)})", exit_code=2)
    via = _overrides(list(addresses))
    known = {(s.name, h.name) for s in edge.values() for h in s.hosts}
    stray = [f"{s}/{h}" for s, h in via if (s, h) not in known]
    if stray:
        raise UserError(f"--address {', '.join(stray)}: no such host (hosts: {', '.join(f'{s}/{h}' for s, h in sorted(known))})", exit_code=2)
    repo = model_repository()
    targets = []
    for name, site in edge.items():
        if sites and name not in sites:
            continue
        models = tuple(served_models(site, repo))
        slos = gate_slos(site) or DEFAULT_SLOS
        for host in site.hosts:
            targets.append(HostTarget(
                site=name, host=host.name, address=via.get((name, host.name), host.address), models=models,
                http_port=site.http_port, grpc_port=site.grpc_port, metrics_port=site.metrics_port, slos=slos,
            ))
    return targets


# What `plan` shows per edge host (live, readiness only: the SLO gate is `edge status`'s, minutes per host).
PROBE_STYLE = {"ready": "green", "down": "red", "unreachable": "red"}


def probe_hosts(targets, timeout: float) -> list[tuple[str, str]]:
    """(state, detail) per target, in order, with `edge status --no-gate`'s probe (hybridserve.edge.health.check_host):
    ready, down (Triton answers, a model is not ready) or unreachable (no answer within `timeout`). Every host at once,
    so the whole probe takes about one host's worst case (live, then each model, `timeout` each) however many hosts."""
    from concurrent.futures import ThreadPoolExecutor

    from hybridserve.edge.health import check_host

    def probe(target):
        try:
            return check_host(target, gate=False, probe_timeout=timeout)
        except Exception as exc:  # e.g. something else than Triton answering garbage: a state, not a traceback
            return exc

    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        results = list(pool.map(probe, targets))
    out = []
    for r in results:
        if isinstance(r, Exception):
            out.append(("unreachable", f"no Triton answer ({type(r).__name__}: {r})"))
        elif r.state == "healthy":
            out.append(("ready", r.detail))
        elif r.detail.endswith("does not answer"):  # check_host's verdict when /v2/health/live gets no answer in time
            out.append(("unreachable", f"{r.detail} within {timeout:g}s"))
        else:
            out.append(("down", r.detail))
    return out


def probe_table(targets, states: list[tuple[str, str]], stack: str):
    from rich.table import Table

    table = Table(title=f"Edge hosts of {stack}, live (readiness; SLOs: hybridserve edge status --stack {stack})", title_justify="left", show_edge=False)
    for col in ("site", "host", "address", "state", "detail"):
        table.add_column(col, overflow="fold")
    for t, (state, detail) in zip(targets, states):
        table.add_row(t.site, t.host, t.address, f"[{PROBE_STYLE[state]}]{state}[/]", detail)
    return table


def status_command(
    stack: StackOpt = None,
    stacks_dir: StacksDirOpt = None,
    site: Annotated[Optional[list[str]], typer.Option("--site", help="Only this edge site (repeatable). Default: every edge site.")] = None,
    address: Annotated[Optional[list[str]], typer.Option("--address", metavar="SITE/HOST=ADDRESS", help="Reach a host at another address, e.g. through an SSH port forward (repeatable).")] = None,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Only probe readiness (no smoke gate: SLOs are not checked).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the states as JSON (a list, one object per host) instead of a table.")] = False,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", min=0.5, help="Seconds each readiness probe may take.")] = 5.0,
    gate_timeout: Annotated[float, typer.Option("--gate-timeout", min=10, help="Seconds each host's smoke gate may take; a --window no passing run fits in is refused before any request.")] = 300.0,
    window: Annotated[Optional[float], typer.Option("--window", min=0.1, help="The gate's measurement window, seconds (default: the quick profile's 2): shorter is a quicker, coarser check.")] = None,
) -> None:
    """Per edge host of the stack: healthy, down, or SLO missed (exit 1 when any host is not healthy)."""
    from hybridserve.console import make_console
    from hybridserve.edge.health import check_hosts, health_table

    targets = host_targets(stack, stacks_dir, list(site or []), list(address or []))
    if not no_gate:
        _check_gate_time(targets, gate_timeout, window)
    results = check_hosts(targets, gate=not no_gate, probe_timeout=probe_timeout, gate_timeout=gate_timeout, window=window)
    if json_out:
        typer.echo(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        console = make_console()
        console.print(health_table(results))
        bad = [r for r in results if r.state != "healthy"]
        if bad:
            console.print(f"[red]{len(bad)} of {len(results)} edge hosts not healthy[/]: clients of those sites fail over to "
                          "the nearest cloud site's Triton endpoint (stack output tritonEndpoints) over the VPN", highlight=False)
        else:
            console.print(f"[green]{len(results)} edge hosts healthy[/]", highlight=False)
    if any(r.state != "healthy" for r in results):
        raise typer.Exit(EXIT_UNHEALTHY)


def _check_gate_time(targets, gate_timeout: float, window: float | None) -> None:
    """--window against --gate-timeout, before any request: a window in which no run of some host's gate can finish
    is a usage error (exit 2); one whose worst case may not finish, a warning (that host would be reported down)."""
    from smoke_tests.options import PROFILES, longest_window

    from hybridserve.edge.health import GATE_WAIT_READY_S, gate_seconds

    def slowest(index: int, w: float | None):
        return max(((gate_seconds(t, window=w)[index], t) for t in targets), key=lambda pair: pair[0])

    if not targets:
        return
    profile = PROFILES["quick"]  # check_host's
    w = window if window is not None else profile.window_s
    flags = f"--window {w:g}" if window is not None else f"--window unset (the quick profile's {w:g} s)"
    for index in (0, 1):
        needed, target = slowest(index, window)
        if needed <= gate_timeout:
            continue
        fits = longest_window(lambda x: slowest(index, x)[0] <= gate_timeout, gate_timeout)
        fixes = ([f"--window at most {fits:g}"] if fits is not None else []) + [f"--gate-timeout at least {math.ceil(needed)}"]
        what = (f"even the shortest gate run that can pass takes {needed:.0f} s on {target.site}/{target.host} "
                f"({len(target.models)} model(s), at least {profile.stability_windows} windows of {w:g} s per concurrency level)"
                if index == 0 else
                f"the gate's worst case takes {needed:.0f} s on {target.site}/{target.host} ({len(target.models)} model(s): up to "
                f"{GATE_WAIT_READY_S:g} s readiness wait, {profile.max_windows} windows of {w:g} s per concurrency level plus about "
                "one to start and stop it)")
        then = "" if index == 0 else " (the host would be reported down, its gate cut off)"
        message = f"{flags} with --gate-timeout {gate_timeout:g}: {what}, more than --gate-timeout{then}; give {' or '.join(fixes)}"
        if index == 0:
            raise UserError(message, exit_code=2)
        typer.echo(f"warning: {message}", err=True)


edge_app.command("status")(status_command)
