"""`hybridserve stacks migrate`: rewrite stack files into the sites-as-a-list shape (issue 15).

Before: the hubs' settings in `hybridserve:aws` and `hybridserve:openstack`. After: one list,
`hybridserve:sites`, whose hub entries carry those settings inline (`- name: aws`, `kind: aws`, then
the section's keys), followed by any edge sites. Both shapes read into the same `StackConfig`
(the loader moves inline hub settings back to their sections), so a migrated stack plans exactly
as before; tests/test_stacks_migrate.py checks that resource for resource for every example stack.

The file is rewritten with ruamel.yaml's round trip, which keeps comments and key order inside the
moved sections; the result is read back with the kit's own loader before anything is written.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from hybridserve.errors import UserError
from hybridserve.stackconfig.loader import display_path, load_stack_file, stack_files
from hybridserve.stackconfig.schema.sites import HUB_SECTIONS
from hybridserve.stackconfig.schema.stack import PROJECT

SITES_KEY = f"{PROJECT}:sites"


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never fold a long line the author wrote on one
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def migrate_text(text: str, source: str = "stack file") -> str | None:
    """The file in the sites shape, or None when it is in that shape already."""
    y = _yaml()
    doc = y.load(text)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        return None
    sections = {kind: f"{PROJECT}:{section}" for kind, section in HUB_SECTIONS.items()}
    present = {kind: key for kind, key in sections.items() if key in config}
    if not present and SITES_KEY in config:
        return None
    sites = config.get(SITES_KEY)
    if sites is None:
        sites = CommentedSeq([CommentedMap([("name", kind), ("kind", kind)]) for kind in HUB_SECTIONS])
    elif not isinstance(sites, list):
        raise UserError(f"{source}: {SITES_KEY}: expected a list of sites; fix it before migrating", exit_code=2)
    for kind, key in present.items():
        at = next((i for i, e in enumerate(sites) if isinstance(e, dict) and e.get("kind") == kind), None)
        entry = sites[at] if at is not None else {"name": kind}
        extra = set(entry) - {"name", "kind"}
        if extra:
            raise UserError(f"{source}: the {kind} hub has settings both in {key} and inline in {SITES_KEY} ({', '.join(sorted(extra))}); keep one", exit_code=2)
        # The section's own map becomes the entry, so the comments inside it stay where they were.
        section = config[key] if isinstance(config[key], CommentedMap) else CommentedMap()
        _indent_comments(section, 2)  # its keys move from under the section key to under a list item
        section.insert(0, "name", entry.get("name", kind))
        section.insert(1, "kind", kind)
        if at is None:
            sites.insert(list(HUB_SECTIONS).index(kind), section)
        else:
            sites[at] = section
    # The list takes the place of the first hub section; the sections go.
    first = min((list(config).index(k) for k in present.values()), default=len(config))
    if SITES_KEY in config:
        del config[SITES_KEY]
    for key in present.values():
        del config[key]
    config.insert(min(first, len(config)), SITES_KEY, sites)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _indent_comments(node: Any, by: int, seen: set | None = None) -> None:
    """Shift the comments on their own lines inside `node` right by `by` columns, like the keys they sit with."""
    seen = set() if seen is None else seen
    if id(node) in seen or not isinstance(node, (CommentedMap, CommentedSeq)):
        return
    seen.add(id(node))

    def shift(tokens: Any) -> None:
        for token in tokens if isinstance(tokens, list) else [tokens]:
            if isinstance(token, list):
                shift(token)
            elif token is not None and hasattr(token, "start_mark") and id(token) not in seen:
                seen.add(id(token))
                token.start_mark.column += by

    shift(list(node.ca.items.values()))
    if node.ca.comment:
        shift(node.ca.comment)
    for child in node.values() if isinstance(node, CommentedMap) else node:
        _indent_comments(child, by, seen)


def check_same(path: Path, text: str) -> None:
    """The migrated text must read into the same configuration, or nothing is written."""
    old = load_stack_file(path)
    with tempfile.TemporaryDirectory() as tmp:
        # The same layout (Pulumi.yaml one level up holds the project's values), the same file name (the stack's name).
        project = path.resolve().parent.parent / "Pulumi.yaml"
        if project.is_file():
            shutil.copy(project, Path(tmp) / "Pulumi.yaml")
        migrated = Path(tmp) / "stacks" / path.name
        migrated.parent.mkdir()
        migrated.write_text(text, encoding="utf-8")
        new = load_stack_file(migrated)
    if _normal(new) != _normal(old):
        raise UserError(f"{display_path(path)}: the migrated file would read differently; nothing was written (please report this)", exit_code=2)


def _normal(cfg: Any) -> Any:
    return cfg.model_dump(mode="json")
