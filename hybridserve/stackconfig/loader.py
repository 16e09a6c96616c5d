"""Build and validate a `StackConfig` from Pulumi config keys, from a stack file or from the Pulumi runtime.

`build_stack_config` is the one constructor: `infra/` calls it with the values it reads through
`pulumi.Config` under `pulumi up`; `load_stack` calls it with the `config:` block of
`stacks/Pulumi.<stack>.yaml` offline (validate, plan, smoke tests). Either way every problem is
collected and reported as `<source>: <key path>: <bad value and what would be valid>`.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hybridserve.errors import UserError
from hybridserve.stackconfig.schema.common import ConfigModel, Issue, Loc, collect_issues
from hybridserve.stackconfig.schema.stack import PROJECT, SECRET_KEYS, StackConfig, format_loc

# Pulumi's own key listing packages whose default providers are refused (the kit passes explicit ones).
DISABLE_DEFAULT_PROVIDERS = "pulumi:disable-default-providers"
# A Python dynamic resource (the model publication) runs under the default provider of the
# `pulumi-python` package; "*" denies it too (pulumi/pulumi pkg/resource/deploy/default_providers.go
# exempts only the "pulumi" package), so the stacks list the packages they use instead.
DYNAMIC_PROVIDER_PACKAGE = "pulumi-python"
STACK_FILE_PREFIX = "Pulumi."
STACK_FILE_SUFFIX = ".yaml"
# Top-level fields that are set by config keys (secrets_set is derived, not a key).
CONFIG_FIELDS: tuple[str, ...] = tuple(f for f in StackConfig.model_fields if f != "secrets_set")


def _is_object_field(name: str) -> bool:
    ann = StackConfig.model_fields[name].annotation
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        ann = typing.get_args(ann)[0]
        origin = typing.get_origin(ann)
    return origin is dict or (isinstance(ann, type) and issubclass(ann, BaseModel))


OBJECT_KEYS: tuple[str, ...] = tuple(f for f in CONFIG_FIELDS if _is_object_field(f))
"""Keys holding structured values (`pulumi config set --path`, `Config.get_object`)."""
SCALAR_KEYS: tuple[str, ...] = tuple(f for f in CONFIG_FIELDS if f not in OBJECT_KEYS)


class StackConfigError(UserError):
    """One or more problems in one or more stacks; `problems` are complete one-line messages."""

    exit_code = 2

    def __init__(self, problems: list[str], *, what: str = "stack configuration"):
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} in the {what}", details=self.problems)


def build_stack_config(
    values: Mapping[str, Any],
    *,
    source: str = "config",
    stack_name: str | None = None,
    secret_keys: Iterable[str] = (),
) -> StackConfig:
    """A validated `StackConfig` from full config keys (`hybridserve:aws`, `aws:region`, ...).

    Values may be parsed objects (stack YAML) or strings (the Pulumi runtime passes JSON text for
    structured values). `secret_keys` are the full keys the runtime marks secret. Raises
    `StackConfigError` listing every problem.
    """
    problems: list[tuple[Loc, str]] = []
    data: dict[str, Any] = {}
    secrets_set: set[str] = set()
    secret_keys = set(secret_keys)
    region: Any = None

    raw_problems: list[str] = []
    for key, value in values.items():
        namespace, _, name = key.partition(":")
        if key == "aws:region":
            region = value
            continue
        if key == DISABLE_DEFAULT_PROVIDERS:
            raw_problems.extend(_disabled_providers_problems(value))
            continue
        if namespace != PROJECT:
            continue  # other providers' and pulumi: settings are not ours to judge
        if name in SECRET_KEYS:
            if value is None:
                continue
            if not (isinstance(value, dict) and set(value) == {"secure"}) and key not in secret_keys:
                problems.append(((name,), f"is stored in plain text; store it encrypted: pulumi config set --secret {key} <value>"))
            secrets_set.add(name)
            continue
        if name not in CONFIG_FIELDS:
            head = name.split(".")[0].split("[")[0]
            if head in OBJECT_KEYS:
                hint = f"a nested value needs --path: pulumi config rm {key}; pulumi config set --path {key} <value>"
            else:
                hint = f"known keys: {', '.join(f'{PROJECT}:{k}' for k in (*CONFIG_FIELDS, *SECRET_KEYS))}"
            problems.append(((name,), f"is not a known key; {hint}"))
            continue
        if isinstance(value, dict) and set(value) == {"secure"} or key in secret_keys:
            problems.append(((name,), f"is a secret, but only {', '.join(f'{PROJECT}:{k}' for k in SECRET_KEYS)} may be; set it without --secret"))
            continue
        data[name] = _decode(name, value)

    if region is not None:
        aws = data.get("aws")
        if isinstance(aws, dict):
            if "region" in aws and aws["region"] != region:
                problems.append((("aws", "region"), f"{region!r} conflicts with {PROJECT}:aws.region ({aws['region']!r}); set the region only in aws:region"))
            data["aws"] = {**aws, "region": region}
        elif aws is None:
            data["aws"] = {"region": region}

    config: StackConfig | None = None
    try:
        config = StackConfig.model_validate({**data, "secrets_set": frozenset(secrets_set)})
    except ValidationError as exc:
        errors = translate_validation_error(exc)
        problems.extend(errors)
        problems.extend(_section_issues(data, failed={loc[0] for loc, _ in errors if loc}))
    if config is not None:
        problems.extend(collect_issues(config))
        if stack_name is not None and config.stack_name != stack_name:
            problems.append(
                (("team",), f"team {config.team!r} and environment {config.environment!r} make stack {config.stack_name!r}, "
                 f"but this is stack {stack_name!r}; stacks are named <team>-<environment>")
            )
    if problems or raw_problems:
        raise StackConfigError(
            [f"{source}: {format_loc(loc)}: {message}" for loc, message in _dedupe(problems)] + [f"{source}: {m}" for m in raw_problems]
        )
    assert config is not None
    return config


def stack_warnings(config: StackConfig, source: str = "config") -> list[str]:
    """What a valid stack should hear about (e.g. a Kubernetes version in paid extended support), one line each."""
    return [f"{source}: {format_loc(loc)}: {message}" for loc, message in _dedupe(collect_issues(config, method="warnings"))]


def _disabled_providers_problems(value: Any) -> list[str]:
    """`pulumi:disable-default-providers` must not deny the dynamic provider the model publication runs under."""
    if isinstance(value, str):
        try:
            value = json.loads(value)  # the runtime hands it over as JSON text
        except json.JSONDecodeError:
            value = [value]
    packages = value if isinstance(value, list) else [value]
    denied = [p for p in packages if p in ("*", DYNAMIC_PROVIDER_PACKAGE)]
    if not denied:
        return []
    return [
        f"{DISABLE_DEFAULT_PROVIDERS}: {json.dumps(packages)} denies the default provider of {DYNAMIC_PROVIDER_PACKAGE!r}, which "
        "the model publication (a Python dynamic resource) runs under; list the packages instead: "
        '["aws", "openstack", "kubernetes", "random"]'
    ]


def _decode(name: str, value: Any) -> Any:
    if name in OBJECT_KEYS and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # pydantic reports "should be a valid dictionary" with the key path
    if name in SCALAR_KEYS and isinstance(value, (int, float, bool)):
        # Pulumi hands every scalar to the program as text; do the same offline.
        return json.dumps(value) if isinstance(value, bool) else str(value)
    return value


def _dedupe(problems: list[tuple[Loc, str]]) -> list[tuple[Loc, str]]:
    seen: set[tuple[Loc, str]] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _section_issues(data: dict[str, Any], failed: set) -> list[Issue]:
    """Cross-field checks of the sections that parsed, so one report lists problems from all of them."""
    found: list[Issue] = []
    for name in OBJECT_KEYS:
        ann = StackConfig.model_fields[name].annotation
        if name in failed or name not in data or not (isinstance(ann, type) and issubclass(ann, ConfigModel)):
            continue
        try:
            section = ann.model_validate(data[name])
        except ValidationError:
            continue
        found.extend(collect_issues(section, (name,)))
    return found


# --- pydantic errors -> key path, bad value, what would be valid ----------------------------------


def translate_validation_error(exc: ValidationError, prefix: Loc = ()) -> list[tuple[Loc, str]]:
    out: list[tuple[Loc, str]] = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *(p for p in err["loc"] if not _is_internal_loc(p)))
        out.append((loc, _explain(err, loc)))
    return out


def _is_internal_loc(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _explain(err: dict, loc: Loc) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "missing":
        if len(loc) == 1:
            return f"is required but not set; set it: pulumi config set {format_loc(loc)} <value>"
        return "is required but not set"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        valid = ", ".join(f for f in model.model_fields) if model else "see the schema"
        return f"is not a known key; valid keys here: {valid}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == "literal_error":
        return f"{_show(value)} is not valid; expected {ctx.get('expected')}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{_show(value)} is out of range; {err['msg'].lower().replace('input should be', 'must be')}"
    if kind in ("too_short", "too_long"):
        return f"{_show(value)} has the wrong length; {err['msg'].lower().replace('input should have', 'must have').replace('list should have', 'must have')}"
    if kind == "string_pattern_mismatch":
        return f"{_show(value)} is not valid; it must match {ctx.get('pattern')}"
    return f"{_show(value)} is not valid: {err['msg']}"


def _unwrap(ann: Any) -> Any:
    """Strip Annotated / Optional / list / dict to the element type."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = args[0] if len(args) == 1 else ann
            if len(args) != 1:
                return ann
        elif origin in (list, tuple, frozenset, set):
            ann = typing.get_args(ann)[0]
        elif origin is dict:
            ann = typing.get_args(ann)[1]
        else:
            return ann


def _model_at(loc: Loc) -> type[BaseModel] | None:
    model: Any = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            # a dict key (e.g. a flavor name) keeps the element type
            continue
        model = _unwrap(field.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


# --- stack files ------------------------------------------------------------------------------------


def stack_name_of(path: Path) -> str:
    return path.name[len(STACK_FILE_PREFIX) : -len(STACK_FILE_SUFFIX)]


def stack_files(stacks_dir: Path) -> dict[str, Path]:
    """Every stack settings file in `stacks_dir`, by stack name, sorted."""
    if not stacks_dir.is_dir():
        return {}
    found = {
        stack_name_of(p): p
        for p in stacks_dir.glob(f"{STACK_FILE_PREFIX}*{STACK_FILE_SUFFIX}")
        if p.is_file() and stack_name_of(p)
    }
    return dict(sorted(found.items()))


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_stack_config(path: Path) -> dict[str, Any]:
    """The `config:` block of a stack settings file, merged over Pulumi.yaml's project defaults."""
    source = display_path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise StackConfigError([f"{source}: is not valid YAML{where}: {getattr(exc, 'problem', exc)}"]) from None
    except UnicodeDecodeError as exc:  # a binary or non-UTF-8 file saved under a stack file's name
        raise StackConfigError(
            [f"{source}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
             "a stack file is Pulumi's YAML stack settings (config: ...)"]
        ) from None
    except OSError as exc:
        raise StackConfigError([f"{source}: cannot be read: {exc.strerror}"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}) or {}, dict):
        raise StackConfigError([f"{source}: must be a mapping with a `config:` mapping (a Pulumi stack settings file)"])
    config = dict(_project_defaults(path.parent.parent / "Pulumi.yaml"))
    config.update(doc.get("config") or {})
    return config


def _project_defaults(project_file: Path) -> dict[str, Any]:
    """`default:` values declared in Pulumi.yaml's `config:` block (Pulumi applies them too)."""
    try:
        doc = yaml.safe_load(project_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, Any] = {}
    for key, decl in (doc.get("config") or {}).items():
        full = key if ":" in key else f"{doc.get('name', PROJECT)}:{key}"
        if isinstance(decl, dict) and "default" in decl:
            out[full] = decl["default"]
        elif isinstance(decl, dict) and "value" in decl:
            out[full] = decl["value"]
    return out


def load_stack_file(path: Path) -> StackConfig:
    """Load and validate one stack settings file; raises StackConfigError."""
    return build_stack_config(read_stack_config(path), source=display_path(path), stack_name=stack_name_of(path))


def check_stacks_dir(stacks_dir: Path) -> None:
    """UserError naming --stacks-dir when it is missing or a file (not "no stack files" / "stack not found")."""
    if not stacks_dir.is_dir():
        what = "is a file, not a directory" if stacks_dir.exists() else "does not exist"
        raise UserError(
            f"--stacks-dir {display_path(stacks_dir)}: {what}; give the directory holding the "
            f"{STACK_FILE_PREFIX}<team>-<env>{STACK_FILE_SUFFIX} stack files (default: stacks/ of the checkout)",
            exit_code=2,
        )


def resolve_stack(name: str, stacks_dir: Path) -> Path:
    """The settings file of stack `name`; a UserError listing the stacks when there is none."""
    check_stacks_dir(stacks_dir)
    files = stack_files(stacks_dir)
    if name in files:
        return files[name]
    known = ", ".join(files) or "(none)"
    # A file name or path where a stack name belongs, or the wrong case: say which stack was meant.
    guess = Path(name).name
    if guess.startswith(STACK_FILE_PREFIX) and guess.endswith(STACK_FILE_SUFFIX):
        guess = stack_name_of(Path(guess))
    guess = next((n for n in files if n.lower() == guess.lower()), None)
    hint = f"; did you mean --stack {guess}?" if guess and guess != name else ""
    raise UserError(
        f"stack {name!r} not found in {display_path(stacks_dir)}; available stacks: {known}{hint}",
        exit_code=2,
    )


def load_stack(name: str, stacks_dir: Path | None = None) -> StackConfig:
    """The validated configuration of stack `name` (e.g. 'vision-dev') from `stacks/`."""
    from hybridserve.paths import stacks_dir as default_stacks_dir

    return load_stack_file(resolve_stack(name, stacks_dir or default_stacks_dir()))
