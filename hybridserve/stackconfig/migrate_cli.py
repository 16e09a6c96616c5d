"""`hybridserve stacks migrate`: the command only; the work is in hybridserve.stackconfig.migrate.

Kept apart so `hybridserve` starts without importing the stack schema and ruamel.yaml (a third of a
second): every command runs after the whole CLI is imported, `hybridserve sync` included.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from hybridserve.errors import UserError


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: an interrupted rewrite leaves the old stack file, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def migrate_command(
    stack: Annotated[str | None, typer.Option("--stack", help="Only this stack (default: every stack file).")] = None,
    stacks_dir: Annotated[Path, typer.Option("--stacks-dir", help="Directory of the stack files.")] = Path("stacks"),
    write: Annotated[bool, typer.Option("--write", help="Rewrite the files (default: show the change only).")] = False,
) -> None:
    """Rewrite stack files into the sites-as-a-list shape (`hybridserve:sites`); both shapes plan the same."""
    from hybridserve.stackconfig.loader import display_path, stack_files
    from hybridserve.stackconfig.migrate import check_same, migrate_text

    files = stack_files(stacks_dir)
    if stack is not None:
        if stack not in files:
            raise UserError(f"--stack: {stack!r} has no stack file in {display_path(stacks_dir)}; stacks: {', '.join(files) or 'none'}", exit_code=2)
        files = {stack: files[stack]}
    for name, path in files.items():
        before = path.read_text(encoding="utf-8")
        after = migrate_text(before, display_path(path))
        if after is None:
            typer.echo(f"{name}: already in the sites shape")
            continue
        check_same(path, after)
        if write:
            _replace(path, after)
            typer.echo(f"{name}: rewrote {display_path(path)}")
        else:
            diff = difflib.unified_diff(before.splitlines(True), after.splitlines(True), str(path), f"{path} (migrated)")
            typer.echo("".join(diff))
    if not write:
        typer.echo("(nothing written; --write rewrites the files)")
