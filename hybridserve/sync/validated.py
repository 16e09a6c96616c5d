"""Which repository contents validated: a record keyed by a digest of the content, in the state dir.

The models module's validation loads and runs every artifact (torch's import alone takes seconds). A sync
need not repeat it for content that validated before, wherever that happened: `hybridserve models validate`
records the digest of what it passed, and so does the sync after its own validation. The digest covers what
the validator judges and nothing it does not:

- every file the sync uploads (the validator walks the same files, hybridserve.sync.scan.walk_model): path,
  sha256 and size, and whether it is a link;
- every directory inside the models (an empty version directory is no file, yet the validator refuses it);
- the validator itself: the source of hybridserve.models and the installed torch and tritonclient.

So a copy of the repository, a touched file or a fresh checkout of the same bytes is not validated again;
any changed byte, file, link or directory is. Content that was never validated never matches a record.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path

from hybridserve.sync.scan import LocalModel, is_ignored

RECORD_NAME = "validated-content.json"
VALIDATOR_MODULES = ("hybridserve.sync.scan", "hybridserve.publish.render", "hybridserve.sync.validated")
RECORD_FORMAT = 1
KEEP = 64  # digests kept (newest first): a few repositories and their recent versions


def validator_identity() -> bytes:
    """What the validator's verdict depends on besides the repository: its source and the libraries it runs."""
    import importlib.util

    h = hashlib.sha256(f"python {sys.version}\0".encode())
    spec = importlib.util.find_spec("hybridserve.models")
    sources = [source for folder in spec.submodule_search_locations or [] for source in sorted(Path(folder).glob("*.py"))]
    # The validator's rules also live in these modules (what is ignored, how a model's files are walked, which
    # backends a cluster rendering accepts): a kit upgrade that changes them must not trust older records.
    sources += [Path(importlib.util.find_spec(name).origin) for name in VALIDATOR_MODULES]
    for source in sources:
        h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    # As installed (found, not imported; importlib.metadata costs more).
    for package in ("torch", "tritonclient", "numpy"):
        found = importlib.util.find_spec(package)
        try:
            st = os.stat(found.origin)
            h.update(f"{package}={found.origin}:{st.st_size}:{st.st_mtime_ns}\0".encode())
        except (AttributeError, TypeError, OSError):
            h.update(f"{package}=none\0".encode())
    return h.digest()


def content_digest(repo_dir: Path, models: list[LocalModel]) -> str:
    """The digest of `models` (as hybridserve.sync.scan.scan_repository found them in `repo_dir`), see above."""
    h = hashlib.sha256(validator_identity())
    for m in models:
        for f in sorted([m.config_file, *m.files], key=lambda f: f.rel):
            h.update(json.dumps(["file", f.rel, f.sha256, f.size, os.path.islink(f.path)]).encode() + b"\n")
    repo_dir = Path(repo_dir)
    for m in models:
        for root, dirs, _ in os.walk(repo_dir / m.name):  # links are listed, not followed
            dirs[:] = sorted(d for d in dirs if not is_ignored(d))
            for d in dirs:
                path = os.path.join(root, d)
                kind = "link" if stat.S_ISLNK(os.lstat(path).st_mode) else "dir"
                h.update(json.dumps([kind, os.path.relpath(path, repo_dir)]).encode() + b"\n")
    return h.hexdigest()


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}  # no record, or a damaged one: validate
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT or not isinstance(data.get("digests"), dict):
        return {}
    return data["digests"]


def has_records(path: Path | None) -> bool:
    return path is not None and bool(_read(path))


def is_recorded(path: Path | None, digest: str) -> bool:
    return path is not None and digest in _read(path)


def record(path: Path | None, digest: str) -> None:
    """Note that the content with `digest` validated. An unwritable state dir only costs a validation next time."""
    if path is None:
        return
    path = Path(path)
    digests = {digest: datetime.now(timezone.utc).isoformat(timespec="seconds")}
    for known, when in sorted(_read(path).items(), key=lambda kv: kv[1], reverse=True):
        if len(digests) >= KEEP:
            break
        digests.setdefault(known, when)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": RECORD_FORMAT, "digests": digests}))
        os.replace(tmp, path)  # atomic: a concurrent sync reads the old or the new record, never half
    except OSError:
        pass


def record_path(state: Path) -> Path:
    return Path(state) / RECORD_NAME


def tree_fingerprint(repo_dir: Path) -> str:
    """The repository as lstat sees it (no file is read): every entry's path, type, size, times, inode and link
    target, and the validator's identity. Equal before and after a validation: no byte changed meanwhile
    (a write changes ctime, which user space cannot set back)."""
    h = hashlib.sha256(validator_identity())

    def signature(st: os.stat_result) -> list:
        return [oct(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]

    for root, dirs, files in os.walk(repo_dir):  # links are listed, not followed
        dirs.sort()
        for name in sorted(dirs) + sorted(files):
            path = os.path.join(root, name)
            line: list = [os.path.relpath(path, repo_dir)]
            try:
                st = os.lstat(path)
                line += [oct(st.st_mode)] if stat.S_ISDIR(st.st_mode) else signature(st)
                if stat.S_ISLNK(st.st_mode):
                    line.append(os.readlink(path))
                    line += signature(os.stat(path))  # the file it points to, as the scan reads it
            except OSError as exc:
                line.append(f"error {exc.errno}")
            h.update(json.dumps(line).encode() + b"\n")
    return h.hexdigest()


def record_validated_repository(repo_dir: Path, state: Path, before: str) -> None:
    """For `hybridserve models validate`, once the repository passed a validation that began when its
    tree_fingerprint was `before`: record its content (reads every file once), unless it changed meanwhile.
    The hashing goes through the sync's caches in `state` (file sha256s, parsed configs), so the sync that
    usually follows hashes and parses nothing again."""
    from hybridserve.errors import UserError
    from hybridserve.sync.scan import HASH_CACHE_NAME, scan_repository

    try:
        models = scan_repository(repo_dir, hash_cache=Path(state) / HASH_CACHE_NAME)
    except UserError:
        return  # something the sync itself refuses (e.g. a link out): nothing to vouch for
    digest = content_digest(repo_dir, models)
    if tree_fingerprint(repo_dir) == before:  # what was hashed is what validated
        record(record_path(state), digest)
