"""The promotion history: an audit record per model, kept with the published repository.

Key: `<prefix>/.hybridserve-history.<model>.json` (a file at the repository's root, like the sync's manifest:
Triton treats every directory there as a model, never a file). One JSON object per model:

    {"format": "hybridserve-history/1", "model": "text_encoder",
     "served": 2,                  # the version the last passing promote/rollback made the served one
     "stack": [1, 2],              # served versions, oldest first: rollback returns to the one below the top
     "entries": [{"at", "who", "action", "version", "from_version", "verdict", "summary"}, ...]}

Atomic update: read-modify-write with a conditional PUT (If-Match on the ETag read, If-None-Match: * for the
first entry). S3 (since 2024), SeaweedFS and moto refuse the PUT with 412 PreconditionFailed when someone wrote
in between; then the record is read again and the entry appended to the newer one (bounded retries). So two
concurrent promotions never lose each other's entries. A store that ignores these headers would make the
update last-writer-wins; `probe_conditional_writes` tells (the tests run it against SeaweedFS).

`hybridserve sync` honours `served`: it keeps publishing that version, however the local config.pbtxt's
policy reads, so a later plain sync never silently undoes a rollback (or serves an ungated version); it
says so in its notes and names the promote command that would change it.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

HISTORY_FORMAT = "hybridserve-history/1"
HISTORY_PREFIX = ".hybridserve-history."
HISTORY_SUFFIX = ".json"
MAX_WRITE_ATTEMPTS = 5
# CI systems' own names for who triggered a run (GitHub Actions, GitLab CI, Jenkins with the build-user plugin).
CI_IDENTITY_ENV = ("HYBRIDSERVE_ACTOR", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER_ID")


def history_key(base: str, model: str) -> str:
    """The object key of `model`'s record under the key prefix `base` ("" or ending in "/")."""
    return f"{base}{HISTORY_PREFIX}{model}{HISTORY_SUFFIX}"


def is_history_key(base: str, key: str) -> bool:
    rest = key[len(base):] if key.startswith(base) else None
    return bool(rest) and "/" not in rest and rest.startswith(HISTORY_PREFIX) and rest.endswith(HISTORY_SUFFIX)


def model_of_key(base: str, key: str) -> str:
    return key[len(base) + len(HISTORY_PREFIX) : -len(HISTORY_SUFFIX)]


def who() -> str:
    """The CI identity when a pipeline runs this (first of CI_IDENTITY_ENV set), else user@host."""
    for name in CI_IDENTITY_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return f"{value} ({name})"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class History:
    model: str
    served: int | None = None
    stack: list[int] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    etag: str | None = None  # of the object read; None: no record yet

    def to_json(self) -> bytes:
        body = {"format": HISTORY_FORMAT, "model": self.model, "served": self.served, "stack": self.stack, "entries": self.entries}
        return (json.dumps(body, indent=1) + "\n").encode()

    def previous(self, current: int) -> int | None:
        """The passing version served before `current` (rollback's target), None when there is none."""
        stack = [v for v in self.stack]
        while stack and stack[-1] == current:
            stack.pop()
        return stack[-1] if stack else None

    def apply(self, entry: dict[str, Any]) -> None:
        """Append `entry`; a passing one moves `served` and the stack (rollback pops, promote pushes)."""
        self.entries.append(entry)
        if self.served is None and entry.get("from_version") is not None:
            # The first record of a model, whatever its verdict, names what served before it: a failed first
            # promotion must pin that, or the next plain sync would publish the version its gate refused.
            self.served, self.stack = entry["from_version"], [entry["from_version"]]
        if entry.get("verdict") != "pass":
            return
        version, before = entry["version"], entry.get("from_version")
        if entry.get("action") == "rollback":
            while self.stack and self.stack[-1] != version:
                self.stack.pop()
            if not self.stack:
                self.stack = [version]
        else:
            if not self.stack and before is not None:
                self.stack = [before]  # the version served before the first promotion
            if not self.stack or self.stack[-1] != version:
                self.stack.append(version)
        self.served = version


class HistoryError(Exception):
    """The record is unreadable or could not be written (the message says which key and why)."""


def read(s3, bucket: str, base: str, model: str) -> History:
    from botocore.exceptions import ClientError

    key = history_key(base, model)
    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return History(model)
        raise
    try:
        data = json.loads(r["Body"].read())
        if data.get("format") != HISTORY_FORMAT or data.get("model") != model:
            raise ValueError(f"format {data.get('format')!r}, model {data.get('model')!r}")
        served = data.get("served")
        return History(
            model,
            served=int(served) if served is not None else None,
            stack=[int(v) for v in data.get("stack") or []],
            entries=list(data.get("entries") or []),
            etag=r.get("ETag"),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise HistoryError(
            f"s3://{bucket}/{key}: not a promotion history ({exc}); expected a JSON object with format "
            f"{HISTORY_FORMAT!r}. Restore it from the bucket's object versions, or delete it to start a new record."
        ) from None


def append(s3, bucket: str, base: str, model: str, entry: dict[str, Any], *, sse: dict[str, str] | None = None) -> History:
    """Append `entry` to `model`'s record atomically (conditional PUT, re-read and retry on 412)."""
    from botocore.exceptions import ClientError

    key = history_key(base, model)
    for _ in range(MAX_WRITE_ATTEMPTS):
        history = read(s3, bucket, base, model)
        history.apply(entry)
        condition = {"IfMatch": history.etag} if history.etag else {"IfNoneMatch": "*"}
        try:
            r = s3.put_object(
                Bucket=bucket, Key=key, Body=history.to_json(), ContentType="application/json", **condition, **(sse or {})
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                continue  # someone wrote in between: append to theirs
            raise
        history.etag = r.get("ETag")
        return history
    raise HistoryError(f"s3://{bucket}/{key}: {MAX_WRITE_ATTEMPTS} conditional writes lost to concurrent writers; the entry is not recorded")


def read_served(s3, bucket: str, base: str, keys) -> dict[str, tuple[int, str]]:
    """model -> (served version, where it was recorded) for every history key among `keys` (a listing)."""
    out = {}
    for key in keys:
        if not is_history_key(base, key):
            continue
        model = model_of_key(base, key)
        history = read(s3, bucket, base, model)
        if history.served is not None:
            last = next((e for e in reversed(history.entries) if e.get("verdict") == "pass"), {})
            out[model] = (history.served, f"s3://{bucket}/{key} ({last.get('action', '?')} by {last.get('who', '?')} at {last.get('at', '?')})")
    return out


def probe_conditional_writes(s3, bucket: str, key: str) -> bool:
    """True when the store refuses a PUT whose If-Match names another ETag (writes `key`, then deletes it)."""
    from botocore.exceptions import ClientError

    s3.put_object(Bucket=bucket, Key=key, Body=b"probe")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"probe2", IfMatch='"00000000000000000000000000000000"')
        honoured = False
    except ClientError as exc:
        honoured = exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412")
    s3.delete_object(Bucket=bucket, Key=key)
    return honoured
