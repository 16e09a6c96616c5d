"""The resumable results file of `models tune`: JSON lines, a header naming the model, then one line per
measured candidate (keyed by the candidate's canonical text), appended and flushed to disk as each is
measured, so an interrupted run loses nothing and a rerun skips what is already there.

    {"kind": "header", "format": 1, "model": "text_encoder", "created": "..."}
    {"kind": "result", "key": "{...}", "candidate": {...}, "levels": [...], "error": null, "duration_s": 31.2}

A line cut short by a kill mid-write is dropped (the file is truncated to its last complete line).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.tune.search import Result

FORMAT = 1


def _bad(path: Path, what: str) -> UserError:
    return UserError(
        f"--results {path}: {what}. Give a results file written by `hybridserve models tune` for this model, "
        "or a new path (it is created).",
        exit_code=2,
    )


class ResultsFile:
    """Open (or create) the results file of `model`; `known` holds the results already in it by key."""

    def __init__(self, path: Path, model: str):
        self.path = Path(path)
        self.model = model
        self.known: dict[str, Result] = {}

    def check(self) -> "ResultsFile":
        """Read what is there (UserError exit 2 when it is not this model's results file). Writes nothing."""
        from hybridserve.paths import output_path_problem

        p = self.path
        problem = output_path_problem(p)
        if problem:  # found now, not after the servers started
            raise _bad(p, problem)
        if not p.exists():
            return self
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise _bad(p, f"cannot read it ({exc.strerror or exc})") from None
        lines = raw.split(b"\n")
        if raw and not raw.endswith(b"\n"):
            lines = lines[:-1]  # cut short mid-write: dropped (and truncated away by `open_for_append`)
        records = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise _bad(p, f"line {n} is not JSON (not a results file of models tune)") from None
        if not records:
            return self
        header = records[0]
        if not isinstance(header, dict) or header.get("kind") != "header" or "model" not in header:
            raise _bad(p, "its first line is not a models tune header")
        if header.get("format") != FORMAT:
            raise _bad(p, f"format {header.get('format')!r}, expected {FORMAT}")
        if header["model"] != self.model:
            raise _bad(p, f"holds the results of model {header['model']!r}, not {self.model!r}")
        for n, rec in enumerate(records[1:], 2):
            try:
                r = Result.from_record(rec)
            except (KeyError, TypeError, ValueError):
                raise _bad(p, f"line {n} is not a models tune result") from None
            self.known[r.candidate.key] = r
        return self

    def open_for_append(self) -> None:
        """Create the file with its header, or drop a partial last line of an interrupted write."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            header = {"kind": "header", "format": FORMAT, "model": self.model,
                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            self._append(header)
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, result: Result) -> None:
        self._append(result.to_record())
        self.known[result.candidate.key] = result

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one line: O_APPEND keeps it whole
            os.fsync(fd)
        finally:
            os.close(fd)
