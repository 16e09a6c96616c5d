"""Validate stacks from a stacks directory: each file alone, then the checks across all of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.stackconfig.crossstack import cross_stack_problems
from hybridserve.stackconfig.loader import (
    StackConfigError,
    check_stacks_dir,
    display_path,
    load_stack_file,
    resolve_stack,
    stack_files,
    stack_warnings,
)
from hybridserve.stackconfig.schema.stack import StackConfig


@dataclass
class ValidationReport:
    selected: dict[str, Path]  # stack name -> file, the stacks asked about
    configs: dict[str, StackConfig]  # stack name -> config, for the selected stacks that are valid
    problems: list[str]
    warnings: list[str] = field(default_factory=list)  # of the selected valid stacks

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            names = ", ".join(self.selected)
            raise StackConfigError(self.problems, what=f"stack configuration ({names})")


def validate_stacks(stacks_dir: Path, stack: str | None = None) -> ValidationReport:
    """Validate stack `stack` (with the cross-stack checks that involve it), or every stack."""
    check_stacks_dir(stacks_dir)
    files = stack_files(stacks_dir)
    if stack is not None:
        selected = {stack: resolve_stack(stack, stacks_dir)}
    else:
        if not files:
            raise UserError(f"no stack files (Pulumi.<team>-<env>.yaml) in {display_path(stacks_dir)}", exit_code=2)
        selected = files

    problems: list[str] = []
    valid: dict[str, StackConfig] = {}  # every valid stack in the directory, for the cross-stack checks
    for name, path in files.items():
        try:
            valid[name] = load_stack_file(path)
        except StackConfigError as exc:
            if name in selected:
                problems.extend(exc.problems)
    sources = {display_path(files[n]): cfg for n, cfg in valid.items()}
    only = {display_path(p) for p in selected.values()}
    problems.extend(cross_stack_problems(sources, only=only))
    # Edge sites' model choices against the model repository (the variant exists, is built, keeps its bound).
    from hybridserve.stackconfig.edgemodels import model_repository, site_problems

    for name in selected:
        if name in valid and valid[name].edge_sites():
            problems.extend(site_problems(valid[name], model_repository(), display_path(selected[name])))
    warnings = [w for n in selected if n in valid for w in stack_warnings(valid[n], display_path(files[n]))]
    # The smoke gate's time against its deadline, counting the repository's models when serving.models is empty
    # (the schema, which does not read the repository, counts one model for them).
    for name in selected:
        if name in valid:
            found, warnings = _repository_gate_time(valid[name], display_path(files[name]), warnings)
            problems.extend(found)
    return ValidationReport(selected, {n: valid[n] for n in selected if n in valid}, problems, warnings)


def _repository_gate_time(config: StackConfig, source: str, warnings: list[str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) with the gate's time judged on the repository's models (serving.models empty): its
    finding replaces the schema's one-model warning."""
    from hybridserve.stackconfig.edgemodels import repository_gate_time_issues
    from hybridserve.stackconfig.schema.common import Issue
    from hybridserve.stackconfig.schema.stack import format_loc

    issues = repository_gate_time_issues(config)
    if issues is None:  # models listed, or none or one to read: the schema's count stands
        return [], warnings

    def line(issue: Issue) -> str:
        return f"{source}: {format_loc(('serving', *issue.loc))}: {issue.message}"

    error, warning = issues
    prefix = f"{source}: {format_loc(('serving', 'gate'))}."
    kept = [w for w in warnings if not w.startswith(prefix)]  # the schema's, counted on one model
    return ([line(error)] if error else []), kept + ([line(warning)] if warning else [])
