"""The gate spec (`--slos`): which models to expect, their SLOs and how long to wait for readiness, as JSON.

    {"models": ["text_encoder", "image_classifier:1"],      # or null: every model of --model-repo with a reference
     "slos": {"*": {"min_throughput": 20.0, "throughput_concurrency": null, "max_p99_ms": 500.0,
                    "p99_concurrency": null, "max_error_rate": 0.0},
              "text_encoder": {"min_throughput": 150.0, "throughput_concurrency": 4}},
     "wait_ready_s": 600}

Every key is optional. "*" is every model's SLO; a model's own entry overrides it field by field (a field
it leaves out comes from "*"). An SLO field that is null, or missing from both, is not checked. The kit writes it from a stack (`hybridserve.smokegate.gate_spec`), so an
in-cluster Job gets the stack's objectives without the kit's stack loader; the individual SLO flags
override it field by field, as they override a stack's SLOs. Validated strictly: a mistyped key would
otherwise silently drop an objective from the gate.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoke_tests.errors import GateError, bad_input
from smoke_tests.options import ALL_MODELS, SLO, ModelTarget

SPEC_KEYS = ("models", "slos", "wait_ready_s")
SLO_FIELDS = ("min_throughput", "throughput_concurrency", "max_p99_ms", "p99_concurrency", "max_error_rate")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class GateSpec:
    models: list[ModelTarget] | None = None  # None: every model of the model repository with a reference
    slos: dict[str, SLO] = field(default_factory=dict)  # by model name; "*" for models without their own
    wait_ready_s: float | None = None  # None: --wait-ready's own default (0)


def read_gate_spec(value: str, *, flag: str = "--slos") -> GateSpec:
    """`--slos VALUE`: a JSON text, or `@FILE` holding one. Bad input (exit 2) names the flag and the key."""
    where = flag
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        where = f"{flag} {value}"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise bad_input(f"{where}: no such file; give a JSON text or @FILE") from None
        except IsADirectoryError:
            raise bad_input(f"{where}: is a directory, not a JSON file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise bad_input(f"{where}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = "" if value.startswith("@") else " (to read a file, write @FILE)"
        raise bad_input(f"{where}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}{hint}") from None
    return parse_gate_spec(data, where=where)


def parse_gate_spec(data: Any, *, where: str = "--slos") -> GateSpec:
    """A decoded gate spec -> GateSpec; GateError (exit 2) naming `where` and the key for anything else."""

    def fail(key: str, problem: str) -> GateError:
        return bad_input(f"{where}: {key}{problem}" if key else f"{where}: {problem}")

    if not isinstance(data, dict):
        raise fail("", f"expected a JSON object with keys {', '.join(SPEC_KEYS)}, got {_kind(data)}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise fail("", f"unknown key {unknown[0]!r}; valid keys: {', '.join(SPEC_KEYS)}")

    models = None
    raw = data.get("models")
    if raw is not None:
        if not isinstance(raw, list) or not raw:
            raise fail("models", ": expected a non-empty list of \"NAME\" or \"NAME:VERSION\" strings, or null for every "
                                 f"model of --model-repo; got {json.dumps(raw)}")
        models = []
        for i, entry in enumerate(raw):
            if not isinstance(entry, str):
                raise fail(f"models[{i}]", f": expected \"NAME\" or \"NAME:VERSION\", got {_kind(entry)}")
            try:
                models.append(ModelTarget.parse(entry))
            except GateError:
                raise fail(f"models[{i}]", f" = {json.dumps(entry)}: expected NAME or NAME:VERSION, e.g. text_encoder:1") from None

    slos: dict[str, SLO] = {}
    raw = data.get("slos")
    if raw is not None:
        if not isinstance(raw, dict):
            raise fail("slos", f": expected an object of model name (or \"*\" for all) -> SLO, got {_kind(raw)}")
        given = {}
        for name, slo in raw.items():
            if name != ALL_MODELS and not _NAME.fullmatch(name):
                raise fail(f"slos key {name!r}", ': not a model name (letters, digits, "_", ".", "-") nor "*" (every model)')
            given[name] = _parse_slo(slo, f"slos.{name}", fail)
        # A model's entry overrides "*" field by field, like a stack's model_slos over its slo: a field it leaves
        # out comes from "*", a null one is not checked.
        base = given.get(ALL_MODELS, {})
        slos = {name: SLO(**({**base, **fields} if name != ALL_MODELS else fields)) for name, fields in given.items()}

    wait = data.get("wait_ready_s")
    if wait is not None:
        if not _is_number(wait) or wait < 0:
            raise fail("wait_ready_s", f" = {json.dumps(wait)}: expected seconds, a number 0 or more")
        wait = float(wait)
    return GateSpec(models, slos, wait)


def _parse_slo(raw: Any, key: str, fail) -> dict[str, Any]:
    """The fields `raw` gives (a null one as None), checked."""
    if not isinstance(raw, dict):
        raise fail(key, f": expected an object with keys from {', '.join(SLO_FIELDS)}, got {_kind(raw)}")
    unknown = sorted(set(raw) - set(SLO_FIELDS))
    if unknown:
        raise fail("", f"unknown key {unknown[0]!r} in {key}; valid keys: {', '.join(SLO_FIELDS)}")
    values: dict[str, Any] = {}
    for name in SLO_FIELDS:
        if name not in raw:
            continue
        value = raw[name]
        if value is None:
            values[name] = None
            continue
        shown = f"{key}.{name} = {json.dumps(value)}"
        if name.endswith("_concurrency"):
            if not (isinstance(value, int) and not isinstance(value, bool)) or value < 1:
                raise fail("", f"{shown}: expected an integer concurrency, 1 or more")
        elif name == "max_error_rate":
            if not _is_number(value) or not 0 <= value <= 1:
                raise fail("", f"{shown}: expected a fraction from 0 to 1 (0.01 = 1 %)")
            value = float(value)
        else:
            unit = "inferences/s" if name == "min_throughput" else "ms"
            if not _is_number(value) or not value > 0:
                raise fail("", f"{shown}: expected a number above 0 ({unit})")
            value = float(value)
        values[name] = value
    return values


def _is_number(value: Any) -> bool:
    # bool is an int in Python, but `true` is no number of seconds; NaN and infinity compare as nothing.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), f"the number {value}" if _is_number(value) else type(value).__name__)
