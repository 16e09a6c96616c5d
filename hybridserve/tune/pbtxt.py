"""Write a tuned candidate into config.pbtxt: only the tuned fields change, comments and everything else stay.

The text is edited in place (the protobuf text printer would drop every comment): the fields are found on a
copy of the text whose comments and string contents are blanked out, so a `#` or a brace inside either
never misleads the search. The edited text is then parsed with Triton's schema and must equal the original
configuration with exactly the tuned fields set, else nothing is written. The file is replaced atomically.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.tune.search import Candidate

THREADS_PARAMETER = "torch_num_threads"  # read by model_repo/*/1/model.py


def _mask(text: str) -> str:
    """`text` with comments and the contents of string literals replaced by spaces (same offsets)."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "#":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
        elif ch in "\"'":
            quote, i = ch, i + 1
            while i < n and text[i] != quote and text[i] != "\n":
                if text[i] == "\\":
                    out[i] = " "
                    i += 1
                if i < n:
                    out[i] = " "
                i += 1
            i += 1
        else:
            i += 1
    return "".join(out)


def _close(masked: str, open_at: int) -> int:
    """Index of the bracket closing the one at `open_at` ({ or [, nested either way)."""
    depth = 0
    for i in range(open_at, len(masked)):
        if masked[i] in "{[<":
            depth += 1
        elif masked[i] in "}]>":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced brackets")


def _depths(masked: str) -> list[int]:
    depth, out = 0, []
    for ch in masked:
        if ch in "}]>":
            depth -= 1
        out.append(depth)
        if ch in "{[<":
            depth += 1
    return out


def _fields(masked: str, name: str, lo: int = 0, hi: int | None = None, depth: int = 0) -> list[tuple[int, int]]:
    """Spans (start, end) of the fields `name` at bracket depth `depth` within masked[lo:hi]: scalars up to the
    end of their value, messages and lists up to their closing bracket."""
    hi = len(masked) if hi is None else hi
    depths = _depths(masked)
    spans = []
    for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\s*:?\s*", masked[lo:hi]):
        start = lo + m.start()
        if depths[start] != depth:
            continue
        after = lo + m.end()
        if after < len(masked) and masked[after] in "{[<":
            spans.append((start, _close(masked, after) + 1))
        else:
            value = re.match(r"\"[^\"\n]*\"|'[^'\n]*'|[^\s,;\]}]+", masked[after:])  # strings: blanked inside
            spans.append((start, after + (value.end() if value else 0)))
    return spans


class _Edit:
    def __init__(self, text: str):
        self.text = text

    @property
    def masked(self) -> str:
        return _mask(self.text)

    def replace(self, start: int, end: int, new: str) -> None:
        self.text = self.text[:start] + new + self.text[end:]

    def delete_field(self, start: int, end: int) -> None:
        """Remove a field; its whole line when nothing else is on it."""
        line_start = self.text.rfind("\n", 0, start) + 1
        line_end = self.text.find("\n", end)
        line_end = len(self.text) if line_end < 0 else line_end
        if not self.text[line_start:start].strip() and not self.text[end:line_end].strip():
            self.replace(line_start, min(line_end + 1, len(self.text)), "")
        else:
            self.replace(start, end, "")

    def indent_at(self, pos: int) -> str:
        line_start = self.text.rfind("\n", 0, pos) + 1
        return re.match(r"[ \t]*", self.text[line_start:]).group(0)

    def insert_after_open(self, open_at: int, line: str, indent: str) -> None:
        self.replace(open_at + 1, open_at + 1, f"\n{indent}{line}")

    def append_block(self, block: str) -> None:
        self.text = self.text.rstrip("\n") + "\n\n" + block.rstrip("\n") + "\n"


def parse_config(text: str, where: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise UserError(f"{where}: not valid Triton model configuration text: {exc}", exit_code=2) from None


def expected_config(original, c: Candidate, threads_parameter: str = THREADS_PARAMETER, *, set_threads: bool = True):
    """The original configuration (a ModelConfig message) with the candidate's fields set."""
    from tritonclient.grpc import model_config_pb2

    want = model_config_pb2.ModelConfig()
    want.CopyFrom(original)
    if not want.instance_group:
        want.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    want.instance_group[0].count = c.instances
    if set_threads:
        want.parameters[threads_parameter].string_value = str(c.threads)
    if want.max_batch_size > 0:
        db = want.dynamic_batching
        db.max_queue_delay_microseconds = c.max_queue_delay_us
        del db.preferred_batch_size[:]
        db.preferred_batch_size.extend(c.preferred_batch_sizes)
    return want


def tuned_text(text: str, c: Candidate, *, where: str, threads_parameter: str = THREADS_PARAMETER,
               set_threads: bool = True) -> str:
    """config.pbtxt `text` with the candidate's fields written in; UserError (nothing written) when the
    file's layout is not one this edit can keep intact. `set_threads` False leaves the threads parameter
    alone (model.py's own rule, measure.default_threads, gives the candidate's count wherever it runs)."""
    original = parse_config(text, where)
    if len(original.instance_group) > 1:
        raise UserError(f"{where}: instance_group has {len(original.instance_group)} groups; models tune sets the "
                        "count of a single group. Merge them or set the count by hand.", exit_code=2)
    e = _Edit(text)

    # instance_group [ { ... count: N } ]
    groups = _fields(e.masked, "instance_group")
    if groups:
        gs, ge = groups[0]
        m = e.masked
        first = re.search(r"[\[{<]", m[gs:ge])
        open_at = m.index("{", gs, ge) if "{" in m[gs:ge] else None
        counts = _fields(m, "count", gs, ge, depth=2 if first and first.group(0) == "[" else 1)
        if counts:
            cs, ce = counts[0]
            e.replace(cs, ce, f"count: {c.instances}")
        elif open_at is not None:
            e.insert_after_open(open_at, f"count: {c.instances}", e.indent_at(open_at) + "  ")
        else:
            raise UserError(f"{where}: instance_group has no group to set the count of", exit_code=2)
    else:
        e.append_block(f"instance_group [\n  {{\n    kind: KIND_CPU\n    count: {c.instances}\n  }}\n]")

    # dynamic_batching { preferred_batch_size: [ ... ] max_queue_delay_microseconds: N }
    if original.max_batch_size > 0:
        pbs = f"preferred_batch_size: [ {', '.join(map(str, c.preferred_batch_sizes))} ]"
        delay = f"max_queue_delay_microseconds: {c.max_queue_delay_us}"
        blocks = _fields(e.masked, "dynamic_batching")
        if blocks:
            bs, be = blocks[0]
            open_at = e.masked.index("{", bs, be)
            inner = e.indent_at(bs) + "  "
            delays = _fields(e.masked, "max_queue_delay_microseconds", bs, be, depth=1)
            if delays:
                e.replace(*delays[0], delay)
            else:
                e.insert_after_open(open_at, delay, inner)
            bs, be = _fields(e.masked, "dynamic_batching")[0]
            olds = _fields(e.masked, "preferred_batch_size", bs, be, depth=1)
            for s, t in reversed(olds[1:]):
                e.delete_field(s, t)
            if olds and c.preferred_batch_sizes:
                e.replace(*olds[0], pbs)
            elif olds:
                e.delete_field(*olds[0])
            elif c.preferred_batch_sizes:
                e.insert_after_open(e.masked.index("{", bs, be), pbs, inner)
        else:
            lines = ([f"  {pbs}"] if c.preferred_batch_sizes else []) + [f"  {delay}"]
            e.append_block("dynamic_batching {\n" + "\n".join(lines) + "\n}")

    # parameters: { key: "torch_num_threads" value: { string_value: "N" } }
    done = not set_threads
    for ps, pe in [] if done else _fields(e.masked, "parameters"):
        if re.search(rf"key\s*:\s*[\"']{re.escape(threads_parameter)}[\"']", e.text[ps:pe]):
            values = [(s, t) for s, t in _fields(e.masked, "string_value", ps, pe, depth=2)]
            if not values:
                raise UserError(f"{where}: parameter {threads_parameter} has no string_value to set", exit_code=2)
            e.replace(*values[0], f'string_value: "{c.threads}"')
            done = True
            break
    if not done:
        e.append_block(
            "# Threads per model instance (model.py: torch.set_num_threads), set by `hybridserve models tune`.\n"
            f'parameters: {{\n  key: "{threads_parameter}"\n  value: {{ string_value: "{c.threads}" }}\n}}'
        )

    got = parse_config(e.text, f"{where} (as models tune would write it)")
    if got != expected_config(original, c, threads_parameter, set_threads=set_threads):
        raise UserError(f"{where}: could not edit the tuned fields without changing others (its layout is unusual); "
                        f"set them by hand: {c.describe()}", exit_code=2)
    return e.text


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a temporary file in the same directory, synced, renamed over it."""
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
