"""Read the stack configuration the way Pulumi hands it to the program, into the shared schema.

Scalars come from `Config.get`, structured keys from `Config.get_object`, the region from the AWS
provider's own key `aws:region`. Secrets (`SECRET_KEYS`) are never read here: components read
them with `secret()` so they stay Pulumi secrets end to end.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from hybridserve.stackconfig.loader import OBJECT_KEYS, SCALAR_KEYS, StackConfigError, build_stack_config, stack_warnings
from hybridserve.stackconfig.schema.stack import PROJECT, SECRET_KEYS, StackConfig


def _all_keys() -> set[str]:
    """Every config key the engine passed (for unknown-key detection: typos must not pass silently)."""
    keys = set(runtime_config.CONFIG.get())
    keys.update(runtime_config.get_config_env())
    return keys


def read_config() -> StackConfig:
    """The validated StackConfig of the running stack; a pulumi.RunError (no traceback) listing every problem."""
    cfg = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for key in SCALAR_KEYS:
        value = cfg.get(key)
        if value is not None:
            values[f"{PROJECT}:{key}"] = value
    for key in OBJECT_KEYS:
        try:
            value = cfg.get_object(key)
        except pulumi.ConfigTypeError:
            value = runtime_config.get_config(f"{PROJECT}:{key}")  # not JSON: let the schema say what is expected
        if value is not None:
            values[f"{PROJECT}:{key}"] = value
    region = pulumi.Config("aws").get("region")
    if region is not None:
        values["aws:region"] = region
    for key in SECRET_KEYS:
        full = f"{PROJECT}:{key}"
        if runtime_config.get_config(full) is not None:
            # Only presence and secretness are checked; the value itself is not passed on.
            values[full] = {"secure": "(set)"} if runtime_config.is_config_secret(full) else "(plain text)"
    known = {f"{PROJECT}:{k}" for k in (*SCALAR_KEYS, *OBJECT_KEYS, *SECRET_KEYS)}
    for key in _all_keys():
        if key.startswith(f"{PROJECT}:") and key not in known:
            values[key] = runtime_config.get_config(key)
    source = f"stack {pulumi.get_stack()}"
    try:
        cfg = build_stack_config(values, source=source, stack_name=pulumi.get_stack())
    except StackConfigError as exc:
        raise pulumi.RunError(str(exc)) from None
    for warning in stack_warnings(cfg, source):
        pulumi.log.warn(warning)
    return cfg


def secret(key: str) -> pulumi.Output[str] | None:
    """The secret `hybridserve:<key>` as a secret Output, or None when the stack does not set it."""
    if key not in SECRET_KEYS:
        raise KeyError(f"{key!r} is not a secret key; secret keys: {', '.join(SECRET_KEYS)}")
    return pulumi.Config(PROJECT).get_secret(key)
