"""Build and validate a `StackConfig` from Pulumi config keys, from a stack file or from the Pulumi runtime.

`build_stack_config` is the one constructor: `infra/` calls it with the values it reads through
`pulumi.Config` under `pulumi up`; `load_stack` calls it with the `config:` block of
`stacks/Pulumi.<stack>.yaml` offline (validate, plan, smoke tests). Either way every problem is
collected and reported as `<source>: <key path>: <bad value and what would be valid>`.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hybridserve.errors import UserError
from hybridserve.stackconfig import pulumiyaml
from hybridserve.stackconfig.schema.common import ConfigModel, Issue, Loc, collect_issues
from hybridserve.stackconfig.schema.sites import HUB_SECTIONS, SITE_KINDS
from hybridserve.stackconfig.schema.stack import PROJECT, SECRET_KEYS, StackConfig, format_loc

# Pulumi's own key listing packages whose default providers are refused (the kit passes explicit ones).
DISABLE_DEFAULT_PROVIDERS = "pulumi:disable-default-providers"
# A Python dynamic resource (the model publication) runs under the default provider of the
# `pulumi-python` package; "*" denies it too (pulumi/pulumi pkg/resource/deploy/default_providers.go
# exempts only the "pulumi" package), so the stacks list the packages they use instead.
DYNAMIC_PROVIDER_PACKAGE = "pulumi-python"
# pulumi-command: the edge hosts' remote commands (infra/components/edge.py).
EDGE_PROVIDER_PACKAGE = "command"
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
    return origin in (dict, list) or (isinstance(ann, type) and issubclass(ann, BaseModel))


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
    disabled: list[Any] | None = None
    for key, value in values.items():
        namespace, _, name = key.partition(":")
        if key == "aws:region":
            region = value
            continue
        if key == DISABLE_DEFAULT_PROVIDERS:
            raw_problems.extend(_disabled_providers_problems(value))
            disabled = _packages(value)
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
            homes = _section_paths(head)
            if head in OBJECT_KEYS:
                hint = f"a nested value needs --path: pulumi config rm {key}; pulumi config set --path {key} <value>"
            elif homes and name == head:
                hint = f"{head} is a key of {', '.join(homes)}: nest it there"
            else:
                hint = f"known keys: {', '.join(f'{PROJECT}:{k}' for k in (*CONFIG_FIELDS, *SECRET_KEYS))}"
            problems.append(((name,), f"is not a known key; {hint}"))
            continue
        if isinstance(value, dict) and set(value) == {"secure"} or key in secret_keys:
            problems.append(((name,), f"is a secret, but only {', '.join(f'{PROJECT}:{k}' for k in SECRET_KEYS)} may be; set it without --secret"))
            continue
        data[name] = _decode(name, value)

    moved = _inline_hub_settings(data, problems)
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
        if disabled is not None and config.edge_sites() and EDGE_PROVIDER_PACKAGE not in disabled and "*" not in disabled:
            # The edge hosts' remote commands take an explicit provider; denying the default one keeps it that way.
            raw_problems.append(
                f"{DISABLE_DEFAULT_PROVIDERS}: {json.dumps(disabled)} does not list {EDGE_PROVIDER_PACKAGE!r}, which provisions the edge "
                f"sites' hosts; add it: {json.dumps([*disabled, EDGE_PROVIDER_PACKAGE])}"
            )
        if stack_name is not None and config.stack_name != stack_name:
            problems.append(
                (("team",), f"team {config.team!r} and environment {config.environment!r} make stack {config.stack_name!r}, "
                 f"but this is stack {stack_name!r}; stacks are named <team>-<environment>")
            )
    if problems or raw_problems:
        raise StackConfigError(
            [f"{source}: {format_loc(_moved_loc(loc, moved))}: {message}" for loc, message in _dedupe(problems)] + [f"{source}: {m}" for m in raw_problems]
        )
    assert config is not None
    return config


def _inline_hub_settings(data: dict[str, Any], problems: list[tuple[Loc, str]]) -> dict[str, Loc]:
    """A hub site written with its settings inline in `hybridserve:sites` (the migrated shape): the settings go to
    the hub's section, where the model keeps them. Returns section -> the entry it came from, so problems are
    reported at the key the file has."""
    moved: dict[str, Loc] = {}
    sites = data.get("sites")
    if not isinstance(sites, list):
        return moved
    sites = data["sites"] = list(sites)
    for i, entry in enumerate(sites):
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in HUB_SECTIONS:
            continue
        section = HUB_SECTIONS[kind]
        settings = {k: v for k, v in entry.items() if k not in ("kind", "name")}
        if not settings:
            continue
        if section in data or section in moved:
            problems.append(((section,), f"the {kind} hub's settings are given twice, in {PROJECT}:{section} and inline in {PROJECT}:sites[{i}]; keep one"))
            continue
        data[section] = settings
        sites[i] = {k: v for k, v in entry.items() if k in ("kind", "name")}
        moved[section] = ("sites", i)
    return moved


def _moved_loc(loc: Loc, moved: Mapping[str, Loc]) -> Loc:
    """A location in a hub section, as the file spells it when the settings were inline in `sites`."""
    if loc and loc[0] in moved:
        return (*moved[loc[0]], *loc[1:])
    return loc


def stack_warnings(config: StackConfig, source: str = "config") -> list[str]:
    """What a valid stack should hear about (e.g. a Kubernetes version in paid extended support), one line each."""
    return [f"{source}: {format_loc(loc)}: {message}" for loc, message in _dedupe(collect_issues(config, method="warnings"))]


def _packages(value: Any) -> list[Any]:
    """The packages `pulumi:disable-default-providers` lists (the runtime hands them over as JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [value]
    return value if isinstance(value, list) else [value]


def _disabled_providers_problems(value: Any) -> list[str]:
    """`pulumi:disable-default-providers` must not deny the dynamic provider the model publication runs under."""
    packages = _packages(value)
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
        # Pulumi hands every scalar to the program as text (true, 1000 for 1e3); do the same offline.
        return pulumiyaml.as_text(value)
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
        out.append((_without_tags(loc), _explain(err, loc)))
    return out


def _without_tags(loc: Loc) -> Loc:
    """Drop the `kind` tag pydantic puts after a site's index (('sites', 2, 'edge', 'cidrs') -> ('sites', 2, 'cidrs'))."""
    out = list(loc)
    for i in range(len(out) - 2):
        if out[i] == "sites" and isinstance(out[i + 1], int) and out[i + 2] in SITE_KINDS:
            del out[i + 2]
            break
    return tuple(out)


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
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return f"kind {_show(ctx.get('tag'))} is not valid; expected one of {ctx.get('expected_tags')} (each site says its kind)"
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
        if typing.get_origin(model) in (typing.Union, types.UnionType):
            # a discriminated union (a site): the tag after the index names the member
            model = SITE_KINDS.get(part)
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
    """Every stack settings file in `stacks_dir`, by stack name, sorted.

    A StackConfigError names any file that looks like a stack file but that Pulumi would not read as one
    (Pulumi.NAME.yml, pulumi.NAME.yaml, a directory, a broken link): skipping it would drop a stack silently.
    """
    if not stacks_dir.is_dir():
        return {}
    found: dict[str, Path] = {}
    problems: list[str] = []
    for p in sorted(stacks_dir.iterdir()):
        problem = _misnamed_stack_file(p)
        if problem:
            problems.append(f"{_entry_path(p)}: {problem}")
        elif p.name.startswith(STACK_FILE_PREFIX) and p.name.endswith(STACK_FILE_SUFFIX):
            found[stack_name_of(p)] = p
    if problems:
        raise StackConfigError(problems, what=f"stack files of {display_path(stacks_dir)}")
    return dict(sorted(found.items()))


# Pulumi names a stack's settings file Pulumi.<stack><extension of Pulumi.yaml> in stackConfigDir
# (pulumi/pulumi sdk/go/common/workspace/paths.go ProjectStackPath, read 2026-12-01): with Pulumi.yaml that is
# exactly Pulumi.<stack>.yaml; a .yml, .json or differently cased name is another file it never opens.
_STACKISH_SUFFIXES = (".yaml", ".yml", ".json")


def _entry_path(p: Path) -> str:
    """`p` as shown to the user, not resolved (a link is named by its own name, not its target's)."""
    return str(Path(display_path(p.parent)) / p.name)


def _misnamed_stack_file(p: Path) -> str | None:
    """Why Pulumi would not read `p` as a stack's settings, when it looks meant to be one; None otherwise."""
    name = p.name
    lower = name.lower()
    if name.startswith(".") or not lower.endswith(_STACKISH_SUFFIXES):
        return None  # hidden files, editor backups, READMEs: not meant as stacks
    stem = name[: -len(next(s for s in _STACKISH_SUFFIXES if lower.endswith(s)))]
    stack = stem[len(STACK_FILE_PREFIX) :] if lower.startswith(STACK_FILE_PREFIX.lower()) else stem
    proper = f"{STACK_FILE_PREFIX}{stack}{STACK_FILE_SUFFIX}"
    if name == proper and stack:
        if p.is_file():
            return None
        if p.is_symlink() and not p.exists():
            return f"is a broken symbolic link (to {p.readlink()}); Pulumi cannot read stack {stack!r} from it"
        what = "a directory, not a file" if p.is_dir() else "not a regular file"
        return f"is {what}; Pulumi reads stack {stack!r} from a file of this name"
    if not stack:
        if name == "Pulumi.yaml":
            return "is a project file in the stacks directory; Pulumi.yaml belongs in the checkout root and stacks are Pulumi.<stack>.yaml"
        return f"names no stack; stack files are named {STACK_FILE_PREFIX}<team>-<env>{STACK_FILE_SUFFIX}"
    return (
        f"is not read by Pulumi, which reads stack {stack!r} only from {proper} (the extension of Pulumi.yaml, "
        f"this exact case); rename it: git mv {_entry_path(p)} {_entry_path(p.with_name(proper))}"
    )


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# Top-level keys of a stack settings file (pulumi/pulumi sdk/go/common/workspace/project.go ProjectStack);
# Pulumi ignores any other, so a key outside `config:` would silently be no setting at all.
STACK_FILE_KEYS = ("config", "environment", "secretsprovider", "encryptedkey", "encryptionsalt")
# Packages the program passes config to (their providers judge their own keys).
PROVIDER_NAMESPACES = ("pulumi", "aws", "openstack", "kubernetes", "random")


def _read_yaml(path: Path, source: str) -> pulumiyaml.Parsed:
    try:
        text = path.read_text(encoding="utf-8-sig")  # Pulumi strips a UTF-8 byte order mark too
        return pulumiyaml.parse(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", exc)
        if problem == "mapping values are not allowed here":
            problem = f"{problem} (a config key has no space after its namespace: {PROJECT}:team, not {PROJECT}: team; quote a value holding ': ')"
        raise StackConfigError([f"{source}: is not valid YAML{where}: {problem}"]) from None
    except UnicodeDecodeError as exc:  # a binary or non-UTF-8 file saved under a stack file's name
        raise StackConfigError(
            [f"{source}: is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
             "a stack file is Pulumi's YAML stack settings (config: ...)"]
        ) from None
    except OSError as exc:
        raise StackConfigError([f"{source}: cannot be read: {exc.strerror}"]) from None


def _file_key_path(path: tuple, *, stack_file: bool = True) -> str:
    """('config', 'hybridserve:aws', 'eks', 'gpu_pools', 0) -> 'hybridserve:aws.eks.gpu_pools[0]' (keys are named
    as `pulumi config` names them; in Pulumi.yaml the config: block is named too)."""
    parts = path[1:] if stack_file and path[:1] == ("config",) and len(path) > 1 else path
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _file_problem(source: str, line: int | None, path: tuple, message: str, *, stack_file: bool = True) -> str:
    where = f"{source}:{line}" if line else source
    return f"{where}: {_file_key_path(path, stack_file=stack_file)}: {message}"


def _section_paths(name: str) -> list[str]:
    """Where a key called `name` belongs in the sections (e.g. 'vpc' -> ['hybridserve:aws'])."""
    out: list[str] = []

    def walk(model: Any, prefix: str, depth: int) -> None:
        if depth > 3 or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return
        for field_name, info in model.model_fields.items():
            if field_name == name:
                out.append(prefix)
            walk(_unwrap(info.annotation), f"{prefix}.{field_name}", depth + 1)

    for key in OBJECT_KEYS:
        walk(_unwrap(StackConfig.model_fields[key].annotation), f"{PROJECT}:{key}", 0)
    return out


def read_stack_config(path: Path) -> dict[str, Any]:
    """The config of a stack settings file as the program gets it, merged over Pulumi.yaml's project values.

    Read as Pulumi reads it (see `pulumiyaml`): scalars are the text `pulumi.Config.get` returns, structured values
    what `Config.get_object` returns, keys without a namespace take the project's. A StackConfigError names each
    duplicate key, misplaced block, unparsable key and value that Pulumi would refuse or read otherwise than written.
    """
    source = display_path(path)
    project, defaults = _project_config(path.parent.parent / "Pulumi.yaml")
    parsed = _read_yaml(path, source)
    problems = [_file_problem(source, p.line, p.path, p.message) for p in parsed.problems]
    doc = parsed.value
    if doc is None:
        doc = {}  # an empty stack file: Pulumi reads no config
    if not isinstance(doc, dict) or not isinstance(doc.get("config", {}) or {}, dict):
        problems.append(f"{source}: must be a mapping with a `config:` mapping (a Pulumi stack settings file)")
        raise StackConfigError(problems)
    problems.extend(_top_level_problems(doc, parsed.lines, source, project))
    config, config_problems = _stack_config_values(doc.get("config") or {}, parsed.lines, source, project)
    problems.extend(config_problems)
    if problems:
        raise StackConfigError(problems)
    return {**defaults, **config}


def _top_level_problems(doc: dict, lines: dict, source: str, project: str) -> list[str]:
    problems = []
    for key, value in doc.items():
        line = lines.get((key,))
        if key == "environment" and isinstance(value, str):
            problems.append(_file_problem(
                source, line, (key,),
                f"the top-level `environment` lists Pulumi ESC environments to import; the stack's environment is "
                f"a config key: put `{project}:environment: {value}` under config:"))
        elif key in STACK_FILE_KEYS:
            continue
        elif ":" in key:
            problems.append(_file_problem(
                source, line, (key,),
                f"is at the top level of {source}; Pulumi reads stack settings only under `config:`: indent it under config:"))
        elif key in (project, *PROVIDER_NAMESPACES):
            problems.append(_file_problem(
                source, line, (key,),
                f"is a block at the top level of {source}; Pulumi reads stack settings only under `config:`, as flat "
                f"keys {key}:<key> (e.g. {key}:{'team' if key == project else 'region'}: ...)"))
        else:
            close = difflib.get_close_matches(key, STACK_FILE_KEYS, n=1)
            hint = f"; did you mean `{close[0]}:`?" if close else ""
            problems.append(_file_problem(
                source, line, (key,),
                f"is not a stack file key; Pulumi reads only {', '.join(STACK_FILE_KEYS)} and ignores the rest{hint}"))
    return problems


def _stack_config_values(raw: dict, lines: dict, source: str, project: str) -> tuple[dict[str, Any], list[str]]:
    """The `config:` block as Pulumi keys it (project namespace added) and hands it to the program, with problems."""
    known = {*CONFIG_FIELDS, *SECRET_KEYS}
    problems: list[str] = []
    values: dict[str, Any] = {}
    written: dict[str, str] = {}  # full key -> key as written
    empty_section: tuple[str, int | None] | None = None  # the last hybridserve section written with no value

    def problem(key: str, message: str) -> None:
        problems.append(_file_problem(source, lines.get(("config", key)), ("config", key), message))

    for key, value in raw.items():
        line = lines.get(("config", key))
        parts = key.split(":")
        if len(parts) == 1:
            full, namespace, name = f"{project}:{key}", project, key  # Pulumi adds the project's name
            if key == project and isinstance(value, dict):
                problem(key, f"is a block of keys; Pulumi config keys are flat: write {project}:<key> directly under config:, "
                             f"e.g. {project}:{next(iter(value), 'team')}: ...")
                continue
            if key not in known:
                if empty_section and key in _model_fields(empty_section[0]):
                    problem(key, f"is level with {empty_section[0]} (line {empty_section[1]}), which has no value, so Pulumi reads "
                                 f"it as a key of its own, {full}; indent it under {empty_section[0]}")
                    continue
                homes = _section_paths(key)
                if key == "region":
                    homes = ["aws:region (the AWS provider's key, read for hybridserve:aws too)", f"{project}:openstack"]
                hint = f"{key} is a key of {', '.join(homes)}: indent it there" if homes else \
                    f"known keys: {', '.join(f'{project}:{k}' for k in (*CONFIG_FIELDS, *SECRET_KEYS))}"
                problem(key, f"has no namespace, so Pulumi reads it as {full}, which is not a known key; {hint}")
                continue
        elif len(parts) == 3 and parts[1] == "config" and all(parts):
            namespace, name = parts[0], parts[2]  # Pulumi's old <namespace>:config:<name> spelling
            full = f"{namespace}:{name}"
        elif len(parts) == 2 and all(parts):
            namespace, name = parts
            full = key
        elif len(parts) == 2 and parts[0] and isinstance(value, dict):
            problem(key, f"is a block of keys; Pulumi config keys are flat: write {parts[0]}:<key> directly under config:, "
                         f"e.g. {parts[0]}:{next(iter(value), 'team')}: ...")
            continue
        else:
            problem(key, "is not a config key Pulumi can parse; config keys are <namespace>:<name>, e.g. "
                         f"{project}:team or aws:region")
            continue
        if namespace != project:
            empty_section = None
            if namespace not in PROVIDER_NAMESPACES and (
                name in known or difflib.get_close_matches(namespace.lower(), [project], n=1, cutoff=0.75)
            ):
                problem(key, f"namespace {namespace!r} is no package of this program, so nothing would read it; "
                             f"did you mean {project}:{name}?")
                continue
        if full in written:
            problem(key, f"sets {full} again (line {lines.get(('config', written[full]))} wrote it as `{written[full]}`); Pulumi adds the "
                         f"project's name to keys without a namespace, so they are one key: keep one")
            continue
        written[full] = key
        if value is None and namespace == project:
            if name in OBJECT_KEYS:
                empty_section = (full, line)
            problem(key, "has no value; Pulumi would read it as empty text (and warn); give it a value or delete the line")
            continue
        if namespace == project and len(parts) > 1:
            empty_section = None
        values[full] = pulumiyaml.as_json(value) if isinstance(value, (dict, list)) else pulumiyaml.as_text(value)
    return values, problems


def _model_fields(full_key: str) -> set[str]:
    model = _unwrap(StackConfig.model_fields[full_key.split(":", 1)[1]].annotation)
    return set(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else set()


def _project_config(project_file: Path) -> tuple[str, dict[str, Any]]:
    """(project name, config values Pulumi.yaml supplies when a stack does not set the key).

    As Pulumi applies them (pulumi/pulumi pkg/workspace/config.go mergeConfig, sdk/go/common/workspace/project.go
    RewriteShorthandConfigValues and Project.Validate, read 2026-12-01): `key: value` shorthand is a default for the
    project's keys and a value for other namespaces; `default:` wins over `value:`.
    """
    if not project_file.is_file():
        return PROJECT, {}
    source = display_path(project_file)
    parsed = _read_yaml(project_file, source)
    problems = [_file_problem(source, p.line, p.path, p.message, stack_file=False) for p in parsed.problems]
    doc = parsed.value if isinstance(parsed.value, dict) else {}
    project = doc.get("name") if isinstance(doc.get("name"), str) and doc.get("name") else PROJECT
    declared = doc.get("config") or {}
    out: dict[str, Any] = {}
    for key, decl in (declared.items() if isinstance(declared, dict) else ()):
        ours = ":" not in key or key.startswith(f"{project}:")
        full = key if ":" in key else f"{project}:{key}"
        where = (source, parsed.lines.get(("config", key)), ("config", key))
        if not isinstance(decl, dict):
            decl = {"default" if ours else "value": decl}
        if "default" in decl and "value" in decl and decl["default"] is not None and decl["value"] is not None:
            problems.append(_file_problem(*where, "has both `default:` and `value:`; Pulumi refuses that: keep one", stack_file=False))
            continue
        if not ours and ("type" in decl or decl.get("default") is not None or decl.get("value") is None):
            problems.append(_file_problem(
                *where, "is not in the project's namespace, so Pulumi accepts only `value:` for it (no `type:` or `default:`)",
                stack_file=False))
            continue
        value = decl.get("default") if decl.get("default") is not None else decl.get("value")
        if value is not None:
            out[full] = pulumiyaml.as_json(value) if isinstance(value, (dict, list)) else pulumiyaml.as_text(value)
    if problems:
        raise StackConfigError(problems)
    return project, out


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
    suffix = next((x for x in _STACKISH_SUFFIXES if guess.lower().endswith(x)), None)
    if guess.lower().startswith(STACK_FILE_PREFIX.lower()) and suffix:  # a file name, e.g. Pulumi.vision-dev.yml
        guess = guess[len(STACK_FILE_PREFIX) : -len(suffix)]
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
