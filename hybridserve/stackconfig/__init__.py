"""Stack configuration: the typed schema of a team stack, its validation, and the cost estimate.

Importable without Pulumi (smoke tests read the SLOs from here):

    from hybridserve.stackconfig import load_stack
    slo = load_stack("vision-dev").serving.slo
"""

from typing import TYPE_CHECKING

# Lazy: `hybridserve --help` and the data-plane commands should not pay for building the schema.
_EXPORTS = {
    "StackConfigError": "hybridserve.stackconfig.loader",
    "build_stack_config": "hybridserve.stackconfig.loader",
    "load_stack": "hybridserve.stackconfig.loader",
    "load_stack_file": "hybridserve.stackconfig.loader",
    "read_stack_config": "hybridserve.stackconfig.loader",
    "resolve_stack": "hybridserve.stackconfig.loader",
    "stack_files": "hybridserve.stackconfig.loader",
    "PROJECT": "hybridserve.stackconfig.schema",
    "SECRET_KEYS": "hybridserve.stackconfig.schema",
    "StackConfig": "hybridserve.stackconfig.schema",
    "format_loc": "hybridserve.stackconfig.schema",
}

if TYPE_CHECKING:
    from hybridserve.stackconfig.loader import (
        StackConfigError,
        build_stack_config,
        load_stack,
        load_stack_file,
        read_stack_config,
        resolve_stack,
        stack_files,
    )
    from hybridserve.stackconfig.schema import PROJECT, SECRET_KEYS, StackConfig, format_loc


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "PROJECT",
    "SECRET_KEYS",
    "StackConfig",
    "StackConfigError",
    "build_stack_config",
    "format_loc",
    "load_stack",
    "load_stack_file",
    "read_stack_config",
    "resolve_stack",
    "stack_files",
]
