"""`hybridserve models build` and `hybridserve models validate`.

torch, numpy and protobuf are imported inside the commands so `hybridserve --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from hybridserve.console import make_console
from hybridserve.paths import model_repo_dir

app = typer.Typer(
    help="Build and validate the Triton model repository (model_repo/).",
    no_args_is_help=True,
)

RepoOption = Annotated[
    Optional[Path],
    typer.Option("--repo", help="Model repository directory, holding <model>/config.pbtxt and <model>/<version>/. Default: model_repo/ of the checkout ($HYBRIDSERVE_ROOT, else the nearest parent with Pulumi.yaml).", show_default=False),
]


@app.command("build")
def build_command(
    repo: RepoOption = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the artifacts are up to date (by default only missing or stale ones are built).")] = False,
) -> None:
    """Build each model's TorchScript artifact (model.pt) and reference set (reference.npz), deterministically."""
    from hybridserve.models.build import build_models
    from hybridserve.models.repository import display_path

    repo_dir = repo or model_repo_dir()
    results = build_models(repo_dir, force=force, progress=True)
    table = Table(title=f"models build: {display_path(repo_dir)}")
    table.caption = "artifacts: first 12 hex digits of their sha256"
    for column in ("model", "version", "status", "model.pt", "reference.npz"):
        table.add_column(column, no_wrap=True)
    for r in results:
        table.add_row(
            r.name,
            str(r.version),
            "[green]built[/]" if r.built else "up to date",
            r.model_sha256[:12],
            r.reference_sha256[:12],
        )
    make_console().print(table)


from hybridserve.tune.command import tune_command  # noqa: E402

app.command("tune")(tune_command)


@app.command("validate")
def validate_command(repo: RepoOption = None) -> None:
    """Check every config.pbtxt with Triton's schema, the layout, the backend and the built artifacts (exit code 2 on problems).

    Each artifact is loaded as its backend would load it (TorchScript with torch.jit.load, run once on inputs as the config declares them, its outputs compared with the config's); symbolic links out of the repository, to directories, dangling or looping are refused.
    """
    from hybridserve.models.repository import display_path, ensure_valid
    from hybridserve.paths import state_dir
    from hybridserve.sync.validated import record_validated_repository, tree_fingerprint

    repo = repo or model_repo_dir()
    before = tree_fingerprint(repo)
    info = ensure_valid(repo)
    # What passed is recorded by content: `hybridserve sync` of these very bytes need not validate again.
    record_validated_repository(repo, state_dir(), before)
    table = Table(title=f"{display_path(info.path)}: valid")
    for column in ("model", "ver", "batch", "inputs", "outputs", "atol / rtol"):
        wrap = column in ("inputs", "outputs")
        table.add_column(column, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis")

    def tensors(ts) -> str:
        return "\n".join(f"{t.name} {t.data_type.removeprefix('TYPE_')}[{','.join(map(str, t.dims))}]" for t in ts)

    for m in info.models:
        table.add_row(
            m.name,
            ", ".join(map(str, m.versions)),
            str(m.max_batch_size),
            tensors(m.inputs),
            tensors(m.outputs),
            f"{m.atol:.0e} / {m.rtol:.0e}",
        )
    make_console().print(table)


from hybridserve.models.compress import compare_command, compress_command  # noqa: E402

app.command("compress")(compress_command)
app.command("compare")(compare_command)
from hybridserve.promote.cli import promote_command, rollback_command  # noqa: E402

app.command("promote")(promote_command)
app.command("rollback")(rollback_command)
