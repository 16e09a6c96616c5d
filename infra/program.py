"""The program: config -> context (naming, tags, providers) -> component builders in order -> outputs."""

from __future__ import annotations

from infra.components import load_builders
from infra.config import read_config
from infra.context import StackContext


def run() -> StackContext:
    ctx = StackContext(read_config())
    for builder in load_builders():
        builder(ctx)
    ctx.export_outputs()
    return ctx
