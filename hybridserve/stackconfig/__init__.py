"""Stack configuration: the typed schema of a team stack, its validation, and the cost estimate.

Importable without Pulumi (smoke tests read the SLOs from here):

    from hybridserve.stackconfig import load_stack
    slo = load_stack("vision-dev").serving.slo
"""

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
