"""How a promotion reads on the console: its steps as they finish, then old against new, then the verdict."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from hybridserve.promote.flow import PromoteResult, Step

_STYLE = {"ok": "green", "failed": "red", "timeout": "red", "interrupted": "yellow", "skipped": "dim"}


def step_line(step: Step) -> Text:
    text = Text("  ")
    text.append(f"{step.status:<11}", style=_STYLE.get(step.status, ""))
    text.append(f"{step.name} ", style="bold")
    text.append(f"({step.seconds:.1f} s)", style="dim")
    if step.detail:
        text.append(f" {step.detail}")
    return text


def comparison_tables(result: PromoteResult) -> list[Table]:
    c = result.comparison
    if c is None:
        return []
    out = []
    agree = Table(title=f"old vs new on the same inputs ({result.model})", title_justify="left")
    for col in ("output", "rows", "max |diff|", "cosine mean", "cosine min", "top-1 agree"):
        agree.add_column(col, justify="left" if col == "output" else "right")
    for a in c.agreement:
        agree.add_row(a.output, str(a.rows), f"{a.max_abs_diff:.3g}", f"{a.mean_cosine:.4f}", f"{a.min_cosine:.4f}",
                      "-" if a.top1_agreement is None else f"{a.top1_agreement:.0%}")
    out.append(agree)
    if c.sides:
        perf = Table(title=f"side by side: {c.concurrency} concurrent one-row requests, {c.seconds_per_side:g} s windows alternating",
                     title_justify="left")
        for col in ("version", "requests", "failed", "inf/s", "p50 ms", "p99 ms"):
            perf.add_column(col, justify="left" if col == "version" else "right")
        for s in c.sides:
            perf.add_row(s.label, str(s.requests), str(s.failed), f"{s.throughput:,.0f}", f"{s.p50_ms:.1f}", f"{s.p99_ms:.1f}")
        base = c.sides[0].throughput
        if base and len(c.sides) == 2:
            perf.caption = f"throughput new/old: {c.sides[1].throughput / base:.2f}x"
        out.append(perf)
    return out


def render(result: PromoteResult) -> Group:
    parts: list = comparison_tables(result)
    if result.gate is not None and not result.gate.passed:
        parts.append(Text("gate report:", style="bold"))
        parts.append(result.gate)
    for note in result.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    style = "bold green" if result.verdict == "pass" else "bold red"
    parts.append(Text(f"{result.action} {result.verdict.upper()}: {result.message}", style=style))
    if result.history_key:
        parts.append(Text(f"recorded in {result.history_key}", style="dim"))
    return Group(*parts)
