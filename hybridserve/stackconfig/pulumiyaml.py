"""Read YAML as the Pulumi CLI reads Pulumi.yaml and Pulumi.<stack>.yaml, naming what it would refuse or change.

The CLI parses both with gopkg.in/yaml.v3 v3.0.1 (pulumi/pulumi sdk/go/common/encoding/marshal.go and sdk/go.mod;
yaml.v3 resolve.go and decode.go; read 2026-12-01), not with PyYAML's YAML 1.1 rules. tests/test_stackfile_reading.py
holds what that yaml.v3, built from source, gave for each spelling. What differs from `yaml.safe_load`:

- duplicate keys are refused ("mapping key ... already defined at line N"), at any depth;
- only true/false (True, TRUE, ...) are booleans: yes/no/on/off/y/n stay text, and so does 1:30 (no base 60);
- integers go through Go's strconv.ParseInt base 0: 0x1F, 0o17, 0b101, 1_000, and 010 is octal 8;
- 2026-12-01 becomes a Go time.Time, which Pulumi passes on as "2026-12-01 00:00:00 +0000 UTC";
- .inf/.nan are floats that Pulumi then cannot store (it keeps structured values as JSON);
- keys must be text (Pulumi: "expected only string keys"); only the first document of the file is read.

`parse` returns the values Pulumi would hold plus `Problem`s for what Pulumi refuses and for spellings it would
silently read as something else than written (octal, timestamps): those are refused here with what Pulumi
would make of them, so a stack file means what it says.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path_ = tuple[str | int, ...]

_PLAIN = "!hybridserve/plain"  # tag the loader gives untagged plain scalars, resolved below like yaml.v3
_STR = "tag:yaml.org,2002:str"
_CORE = "tag:yaml.org,2002:"

# yaml.v3 resolve.go resolveMapList: the only words with a meaning of their own.
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")  # yaml.v3 yamlStyleFloat
_DOT_FLOAT = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")  # what Go's ParseFloat accepts after a leading "."
# yaml.v3 allowedTimestampFormats (Go layouts 2006-1-2, 2006-1-2T15:4:5.999999999Z07:00, 2006-1-2 15:4:5.999999999)
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt](\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?(Z|[+-]\d{2}:\d{2}))|(?: (\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?))?$"
)
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_MAX_NODES = 200_000  # alias expansion guard (yaml.v3 refuses "excessive aliasing" too)


@dataclass(frozen=True)
class Timestamp:
    """A plain scalar yaml.v3 reads as a time.Time; `text` is how Pulumi passes it on (time.Time.String)."""

    written: str
    text: str


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based
    path: Path_  # keys and list indexes from the document root
    message: str


@dataclass
class Parsed:
    value: Any
    lines: dict[Path_, int] = field(default_factory=dict)  # path -> 1-based line of its key or list item
    problems: list[Problem] = field(default_factory=list)


class _Loader(yaml.SafeLoader):
    """PyYAML's parser and composer; untagged plain scalars are left for `resolve_plain`, not YAML 1.1's resolvers."""

    def resolve(self, kind, value, implicit):  # noqa: ANN001 - PyYAML's signature
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)


def _go_parse_int(s: str) -> int | None:
    """strconv.ParseInt(s, 0, 64), else strconv.ParseUint(s, 0, 64), as yaml.v3 tries them."""
    sign, body = 1, s
    signed = body[:1] in ("+", "-")
    if signed:
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    base = 10
    if len(body) > 1 and body[0] == "0":
        prefix = body[1].lower()
        base, body = {"x": (16, body[2:]), "b": (2, body[2:]), "o": (8, body[2:])}.get(prefix, (8, body[1:]))
    if not body or any(c not in _DIGITS[base] for c in body):
        return None
    value = sign * int(body, base)
    if -(2**63) <= value < 2**63 or (not signed and 0 <= value < 2**64):
        return value
    return None


def _timestamp(text: str) -> Timestamp | None:
    m = _TIMESTAMP.match(text)
    if not m:
        return None
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour, minute, second, frac, zone = m[4] or m[9], m[5] or m[10], m[6] or m[11], m[7] or m[12], m[8]
    try:
        when = dt.datetime(year, month, day, int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None  # Go's time.Parse refuses it too, so yaml.v3 reads the text
    shown = when.strftime("%Y-%m-%d %H:%M:%S") + (frac.rstrip("0").rstrip(".") if frac else "")
    if zone in (None, "Z"):
        return Timestamp(text, f"{shown} +0000 UTC")
    offset = zone.replace(":", "")  # Go names an offset zone by the offset (unless it is the machine's own zone)
    return Timestamp(text, f"{shown} {offset} {offset}")


def resolve_plain(text: str) -> Any:
    """The value yaml.v3 gives an untagged plain scalar decoded into `any` (resolve.go `resolve`)."""
    if text in _WORDS:
        return _WORDS[text]
    first = text[0]
    if first == ".":
        return float(text) if _DOT_FLOAT.match(text) else text
    if first.isdigit() or first in "+-":
        stamp = _timestamp(text)
        if stamp is not None:
            return stamp
        plain = text.replace("_", "")
        number = _go_parse_int(plain)
        if number is not None:
            return number
        if _YAML_STYLE_FLOAT.match(plain):
            try:
                return float(plain)
            except ValueError:
                return text
    return text


def go_json_float(value: float) -> str:
    """How Go's encoding/json writes a float64 (Pulumi keeps non-text config values as JSON)."""
    if value == 0:
        return "0"
    if 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(repr(value)), "f")  # repr: the shortest digits that read back, as Go's -1 precision
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, _, exponent = repr(value).partition("e")
    sign, digits = exponent[0], exponent[1:]
    if sign == "-" and len(digits) == 2 and digits[0] == "0":
        digits = digits[1]  # Go writes 1e-7 where Python writes 1e-07
    return f"{mantissa}e{sign}{digits}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, Timestamp):
        return "a timestamp"
    return "text"


class _Reader:
    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.problems: list[Problem] = []
        self._open: set[int] = set()
        self._count = 0

    def problem(self, node: Node | None, path: Path_, message: str) -> None:
        self.problems.append(Problem(node.start_mark.line + 1 if node is not None else None, path, message))

    def read(self, node: Node, path: Path_) -> Any:
        self._count += 1
        if self._count > _MAX_NODES:
            if self._count == _MAX_NODES + 1:
                self.problem(node, path, "expands to too many values through aliases (*name); write the values out")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if id(node) in self._open:
            self.problem(node, path, "is an alias of a value that contains it (&name ... *name); Pulumi refuses it")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                out = []
                for i, item in enumerate(node.value):
                    self.lines.setdefault((*path, i), item.start_mark.line + 1)
                    out.append(self.read(item, (*path, i)))
                return out
            return self.mapping(node, path)
        finally:
            self._open.discard(id(node))

    def scalar(self, node: ScalarNode, path: Path_) -> Any:
        text = node.value
        if node.tag == _PLAIN:
            value = resolve_plain(text)
        elif node.tag == _STR or not node.tag.startswith(_CORE):
            return text  # quoted, block, !!str, or a tag of its own (yaml.v3 keeps such scalars as text)
        elif node.tag == _CORE + "binary":
            try:
                return base64.b64decode("".join(text.split()), validate=True).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                self.problem(node, path, "!!binary value is not valid base64")
                return text
        else:
            value = resolve_plain(text) if text else None
            want = node.tag[len(_CORE) :]
            got = {bool: "bool", int: "int", float: "float", type(None): "null", Timestamp: "timestamp"}.get(type(value), "str")
            if want == "float" and got == "int":
                value, got = float(value), "float"
            if want != got:
                self.problem(node, path, f"{text!r} cannot be read as !!{want} (Pulumi: cannot decode !!{got} as a !!{want})")
                return text
        return self.judge(node, path, text, value)

    def judge(self, node: ScalarNode, path: Path_, text: str, value: Any) -> Any:
        """Refuse what Pulumi cannot store, and spellings Pulumi reads as something else than written."""
        if isinstance(value, Timestamp):
            self.problem(
                node, path,
                f"{text} is read by Pulumi as a timestamp and passed on as the text {value.text!r}; "
                f"quote it ('{text}') to keep it as written",
            )
            return text
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(node, path, f"{text} cannot be stored by Pulumi (config values are JSON, which has no {'NaN' if math.isnan(value) else 'infinity'}); give a finite number")
            return text
        digits = text.lstrip("+-").replace("_", "")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
            shown = go_json_float(value) if isinstance(value, float) else str(value)
            how = "an octal number" if isinstance(value, int) else "a number"
            self.problem(
                node, path,
                f"{text} is read by Pulumi as {how}, {shown}; write {shown}, or quote it ('{text}') to keep the leading zero as text",
            )
            return text
        return value

    def key(self, node: Node, path: Path_) -> str | None:
        if not isinstance(node, ScalarNode):
            self.problem(node, path, "has a list or mapping as a key; Pulumi accepts only text keys")
            return None
        if node.tag != _PLAIN:
            return node.value  # quoted (or tagged): text as written
        value = resolve_plain(node.value)
        if isinstance(value, str):
            return value
        self.problem(
            node, (*path, node.value),
            f"the key {node.value!r} is read as {_kind(value)}, not text; Pulumi accepts only text keys "
            f"(expected only string keys); quote it: '{node.value}'",
        )
        return None

    def mapping(self, node: MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        first: dict[str, int] = {}  # raw key text -> line (yaml.v3 compares keys as written)
        merges: list[Node] = []
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            raw = key_node.value if isinstance(key_node, ScalarNode) else None
            if raw is not None:
                if raw in first:
                    self.problems.append(
                        Problem(line, (*path, raw),
                                f"is set twice, on line {first[raw]} and on line {line}; Pulumi refuses duplicate keys "
                                "(mapping key already defined): keep one")
                    )
                    continue
                first[raw] = line
            if raw == "<<" and key_node.tag == _PLAIN:
                merges.append(value_node)
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            self.lines[(*path, key)] = line
            out[key] = self.read(value_node, (*path, key))
        for merge in merges:  # `<<: *base`: keys written in the mapping win over merged ones
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.problem(source, path, "<< merges only mappings (<<: *name or <<: [*a, *b])")
                    continue
                own, self.lines = self.lines, {}
                merged = self.read(source, path)
                lines, self.lines = self.lines, own
                for key, value in merged.items():
                    if key not in out:
                        out[key] = value
                        n = len(path) + 1
                        self.lines.update({p: line for p, line in lines.items() if p[:n] == (*path, key)})
        return out


def parse(text: str) -> Parsed:
    """The first document of `text` as Pulumi holds it, with problems. Raises yaml.YAMLError on a syntax error."""
    loader = _Loader(text)
    try:
        root = loader.get_node() if loader.check_node() else None
        # yaml.v3's Unmarshal stops after the first document; say so rather than ignore the rest
        second = loader.peek_event() if root is not None and not loader.check_event(yaml.StreamEndEvent) else None
    finally:
        loader.dispose()
    reader = _Reader()
    value = reader.read(root, ()) if root is not None else None
    if second is not None:
        reader.problems.append(
            Problem(second.start_mark.line + 1, (), "starts a second YAML document (---); Pulumi reads only the first: keep one document")
        )
    return Parsed(value, reader.lines, reader.problems)


def as_json(value: Any) -> Any:
    """A structured value as the program gets it: Pulumi hands it over as JSON (an integral float arrives as an int)."""
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    if isinstance(value, float):
        return json.loads(go_json_float(value))
    return value


def as_text(value: Any) -> str:
    """A scalar as `pulumi.Config.get` returns it: true/false, Go's number text, "" for no value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_json_float(value)
    return str(value)
