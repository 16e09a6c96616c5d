"""The smoke gate from the kit's side: a stack's `hybridserve:serving` section as the gate spec, and
`hybridserve smoke`, which is the gate's own command line (`smoke_tests.cli`) plus `--stack`.

The gate runs without the kit (in-cluster Jobs from NVIDIA's Triton SDK image), so it cannot read stack
files; the kit hands it the stack's expected models and SLOs as JSON instead (`--slos`, format in
`smoke_tests.gatespec`). `serving.models` lists the models (and versions) Triton must serve, empty meaning
"every model of the repository"; `serving.slo` / `serving.model_slos` map field by field onto the gate's SLO.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from smoke_tests.gatespec import SLO_FIELDS


def gate_spec(serving: Any) -> dict:
    """`hybridserve.stackconfig.schema.serving.ServingConfig` -> the gate spec `python -m smoke_tests --slos` takes.

    {"models": ["NAME" | "NAME:VERSION", ...] or None, "slos": {"*": {...}, "<model>": {...}}, "wait_ready_s": int}:
    every SLO with all five fields (None: not checked), "*" the stack-wide one, one entry per model with its
    own objectives (`serving.slo_for(model)`: the stack-wide ones with that model's overrides). Deterministic:
    models in the stack's order, every mapping in sorted key order (`gate_spec_json` for the text).
    """
    models = None
    if serving.models:
        models = []
        for spec in serving.models:
            if spec.versions:  # one entry per version: Triton is told to load each, so each must be ready
                models.extend(f"{spec.name}:{v}" for v in spec.versions)
            else:
                models.append(spec.name)
    slos = {"*": _slo(serving.slo)}
    for name in sorted(serving.model_slos):
        slos[name] = _slo(serving.slo_for(name))
    return {"models": models, "slos": dict(sorted(slos.items())), "wait_ready_s": int(serving.slo.wait_ready_seconds)}


def gate_spec_json(serving: Any) -> str:
    """`gate_spec(serving)` as compact JSON with sorted keys: one argument for `--slos` on a command line."""
    return json.dumps(gate_spec(serving), sort_keys=True, separators=(",", ":"))


def _slo(slo: Any) -> dict:
    return {name: getattr(slo, name) for name in sorted(SLO_FIELDS)}


# --------------------------------------------------------------------------------------------- hybridserve smoke


def smoke_main(argv: list[str]) -> int:
    """`hybridserve smoke ARGS`: `python -m smoke_tests ARGS` with `--stack NAME [--stacks-dir DIR]` turned into
    `--slos` (the stack's gate spec). Returns the exit code."""
    from smoke_tests.cli import main

    return main(argv, prog="hybridserve smoke", add_arguments=_add_stack_options, resolve=_apply_stack)


def _add_stack_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("stack (hybridserve smoke only; python -m smoke_tests takes its --slos)")
    group.add_argument("--stack", metavar="NAME", default=None,
                       help="Expected models, SLOs and wait_ready_seconds from stacks/Pulumi.<NAME>.yaml "
                            "(hybridserve:serving); the SLO flags, --model and --wait-ready override them.")
    group.add_argument("--stacks-dir", type=Path, metavar="DIR", default=None,
                       help="Where the stack files are (default: stacks/ of the checkout).")


def _apply_stack(args: argparse.Namespace) -> None:
    from hybridserve.errors import UserError

    if args.stack is None:
        if args.stacks_dir is not None:
            raise UserError(f"--stacks-dir {args.stacks_dir}: only used with --stack NAME; add --stack or drop it")
        return
    if args.slos is not None:
        raise UserError("--stack and --slos both give the expected models and SLOs: use one of them")
    from hybridserve.stackconfig.loader import load_stack

    args.slos = gate_spec_json(load_stack(args.stack, args.stacks_dir).serving)
