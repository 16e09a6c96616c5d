"""The local side of the sync: which files a model repository holds, their sha256, and the published config.

A model is every non-hidden directory directly under the repository. Inside it, a directory whose name is a
positive integer without a leading zero is a version (Triton ignores the others, and so does its policy);
everything else (config.pbtxt, labels files, other directories) is model-level. Hidden files, `__pycache__`
and `*.pyc` are never synced; neither are files at the repository's top level (Triton reads only
directories there).

Symbolic links (see `entry_problem`): a link to a file inside the repository that the sync itself would
upload is allowed and uploaded with its target's bytes under the link's name (S3 has no links; e.g.
`2/model.pt -> ../1/model.pt`). Every other link is refused naming its path, and never followed: a link
out of the repository (the sync would upload whatever it points to, a credentials file say), to a hidden
or ignored file, to a directory (links can loop, and a linked tree would be uploaded twice), a dangling
link, a loop. FIFOs, sockets and devices are refused too (reading a FIFO blocks forever).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridserve.errors import UserError
from hybridserve.sync.errors import EXIT_INVALID_REPOSITORY

CONFIG_NAME = "config.pbtxt"
HASH_CACHE_NAME = "sync-hashes.json"  # the sync's sha256 cache (HashCache) in the state dir; its ConfigCache sits next to it
_HASH_CHUNK = 1024 * 1024
MB = 1024 * 1024
# The sync's multipart uploads (engine.py says why 16 MiB): files this large go up in parts of PART_SIZE, and the
# scan hashes each part as well (PartDigests), in the same read as the whole file.
MULTIPART_THRESHOLD = 16 * MB
PART_SIZE = 16 * MB


@dataclass(frozen=True)
class LocalFile:
    rel: str  # posix path relative to the repository: "text_encoder/1/model.pt"
    path: Path
    size: int
    sha256: str
    model: str
    version: int | None  # None: model-level (config.pbtxt, labels, ...)
    parts: "PartDigests | None" = None  # files of MULTIPART_THRESHOLD bytes and more


_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class PartDigests:
    """The sha256 (hex) and CRC32 of each `part_size` part of a file, as its multipart upload sends them.

    Each part then goes up with the scan's digests (the SigV4 payload hash and x-amz-checksum-crc32) instead of
    botocore reading it twice more to compute them while the store waits: on 2 cores that was a third of the
    client's CPU in a 1 GiB sync, time the store could not use. The store checks the part against them (S3 both,
    SeaweedFS the CRC32), so a file rewritten after its hashing is refused, as single PUTs are (ChecksumSHA256).
    Kept in the hash cache: hashed once (by `models validate` or the first sync), used by every sync of the bytes.
    """

    part_size: int
    sha256: tuple[str, ...]
    crc32: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"part_size": self.part_size, "sha256": list(self.sha256), "crc32": list(self.crc32)}

    @classmethod
    def from_json(cls, data: Any, size: int) -> "PartDigests | None":
        """None unless `data` describes every part of a file of `size` bytes."""
        try:
            part_size, sha, crc = int(data["part_size"]), tuple(data["sha256"]), tuple(int(c) for c in data["crc32"])
        except (TypeError, KeyError, ValueError):
            return None
        n = -(-size // part_size) if part_size > 0 else -1
        if n != len(sha) or n != len(crc) or not all(0 <= c < 2**32 for c in crc):
            return None
        if not all(isinstance(h, str) and len(h) == 64 and _HEX.fullmatch(h) for h in sha):
            return None
        return cls(part_size, sha, crc)


@dataclass(frozen=True)
class ConfigFacts:
    """What the sync's fast path needs from a model's config.pbtxt, as ConfigCache remembers it."""

    selected: tuple[int, ...]  # its version policy applied to every local version
    policy: str  # describe_policy
    rendered: bytes  # render_config(model, selected)

    @property
    def rendered_sha256(self) -> str:
        return hashlib.sha256(self.rendered).hexdigest()

    @property
    def rendered_size(self) -> int:
        return len(self.rendered)


@dataclass
class LocalModel:
    name: str
    config_file: LocalFile
    files: list[LocalFile] = field(default_factory=list)  # every file but config.pbtxt
    versions: dict[int, list[LocalFile]] = field(default_factory=dict)
    facts: ConfigFacts | None = field(default=None, repr=False)  # set by scan_repository
    _config: object = field(default=None, repr=False, compare=False)

    @property
    def config(self):
        """tritonclient's inference.ModelConfig, parsed on first use (by the scan, unless it took its facts from
        the ConfigCache) from the bytes the scan hashed: a file changed since then is refused."""
        if self._config is None:
            data = self.config_file.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != self.config_file.sha256:
                raise UserError(
                    f"{self.config_file.path} changed while syncing; nothing was published from it. Run the sync again.",
                    exit_code=EXIT_INVALID_REPOSITORY,
                )
            self._config = parse_config(self.config_file.path, data.decode())
        return self._config

    @config.setter
    def config(self, value) -> None:
        self._config = value


def version_of(dirname: str) -> int | None:
    """Triton's rule: a version directory is numeric and does not start with 0."""
    if re.fullmatch(r"[1-9][0-9]*", dirname):  # not isdigit(): that also takes non-ASCII digits such as "١"
        return int(dirname)
    return None


def is_ignored(name: str) -> bool:
    """Never synced (nor published, nor part of a content digest): hidden names, `__pycache__`, `*.pyc`."""
    return name.startswith(".") or name == "__pycache__" or name.endswith(".pyc")



def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size) of what was actually read, so the two always describe the same bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def file_digests(path: Path) -> tuple[str, int, PartDigests | None]:
    """(hex sha256, size, PartDigests) of what was actually read, in one read; parts only for files of
    MULTIPART_THRESHOLD bytes and more (PART_SIZE divides into whole _HASH_CHUNK reads)."""
    h = hashlib.sha256()
    size = 0
    part_sha: list[str] = []
    part_crc: list[int] = []
    crc = 0
    with open(path, "rb") as f:
        part = hashlib.sha256() if os.fstat(f.fileno()).st_size >= MULTIPART_THRESHOLD else None
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            if part is not None:
                part.update(chunk)
                crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            if part is not None and size % PART_SIZE == 0:
                part_sha.append(part.hexdigest())
                part_crc.append(crc)
                part, crc = hashlib.sha256(), 0
    if part is None or size < MULTIPART_THRESHOLD:
        return h.hexdigest(), size, None
    if size % PART_SIZE:
        part_sha.append(part.hexdigest())
        part_crc.append(crc)
    return h.hexdigest(), size, PartDigests(PART_SIZE, tuple(part_sha), tuple(part_crc))


# Like git's "racy clean" rule: a file changed this recently may change again within the same timestamp tick.
RACY_SECONDS = 2.0


class HashCache:
    """sha256 of files by (size, mtime, ctime, inode, device), kept in a JSON file between syncs.

    Saves re-reading gigabytes of unchanged weights on every sync. ctime cannot be set from user space and
    changes on every write, so a rewrite that keeps size and mtime (cp -p, rsync -t, touch -r) still misses
    the cache; files changed less than RACY_SECONDS before hashing are not cached at all. path None: no cache.
    """

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, list] = {}
        self.hits = 0
        self._dirty = False
        self._lock = threading.Lock()
        if self.path and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("format") == 1 and isinstance(data.get("files"), dict):
                    self.entries = data["files"]
            except (OSError, ValueError, AttributeError):
                self.entries = {}  # a damaged cache is only a slower sync

    @staticmethod
    def _signature(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]

    def digest(self, path: Path) -> tuple[str, int]:
        """(sha256, size): for the callers that upload nothing (part digests are not computed for them)."""
        digest, size, _ = self._digests(path, parts=False)
        return digest, size

    def digests(self, path: Path) -> tuple[str, int, PartDigests | None]:
        """(sha256, size, part digests) for the sync: an entry is [size, mtime, ctime, inode, device, sha256]
        plus, for files of MULTIPART_THRESHOLD bytes and more, their PartDigests (an entry without them, older or
        written by `digest`, is hashed again)."""
        return self._digests(path, parts=True)

    def _digests(self, path: Path, *, parts: bool) -> tuple[str, int, PartDigests | None]:
        key = os.path.abspath(path)
        before = os.stat(path)
        signature = self._signature(before)
        hit = self.entries.get(key) if self.path else None
        if isinstance(hit, list) and len(hit) in (6, 7) and hit[:5] == signature and isinstance(hit[5], str):
            large = parts and before.st_size >= MULTIPART_THRESHOLD
            cached = PartDigests.from_json(hit[6], before.st_size) if large and len(hit) == 7 else None
            if not large or cached is not None:
                with self._lock:
                    self.hits += 1
                return hit[5], before.st_size, cached
        if parts:
            digest, size, found = file_digests(path)
        else:
            (digest, size), found = sha256_file(path), None
        if self.path is None:
            return digest, size, found
        unchanged = self._signature(os.stat(path)) == signature and size == before.st_size
        settled = time.time() - max(before.st_mtime, before.st_ctime) > RACY_SECONDS
        if unchanged and settled:
            with self._lock:
                self.entries[key] = signature + [digest] + ([found.to_json()] if found else [])
                self._dirty = True
        return digest, size, found

    def save(self) -> None:
        if not self.path or not self._dirty:
            return
        entries = {k: v for k, v in self.entries.items() if os.path.exists(k)}  # forget deleted files
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": 1, "files": entries}))
        os.replace(tmp, self.path)  # atomic: a concurrent sync reads the old or the new cache, never half


def entry_problem(path: Path, repo_dir: Path) -> str | None:
    """Why the sync cannot upload the entry at `path` of the repository `repo_dir`, or None (module docstring)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISLNK(st.st_mode):
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            return None
        return "is not a regular file (a FIFO, socket or device); the sync uploads only regular files"
    pointed = os.readlink(path)
    try:
        target = Path(path).resolve(strict=True)
    except FileNotFoundError:
        return f"is a symbolic link to {pointed}, which does not exist (a dangling link); remove it or copy the file in"
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError for a loop, later versions OSError (ELOOP)
        return f"is a symbolic link that loops ({pointed}); remove it"
    root = Path(repo_dir).resolve()
    try:
        parts = target.relative_to(root).parts
    except ValueError:
        return (
            f"is a symbolic link to {target}, outside the repository {root}; the sync never follows a link out of "
            "the repository (it would upload that file): copy the file into the repository if it belongs there"
        )
    if target.is_dir():
        return (
            "is a symbolic link to a directory; links to directories are not followed (they can loop, and the tree "
            "would be uploaded twice): move or copy the directory here, or link the files one by one"
        )
    if not target.is_file():
        return f"is a symbolic link to {target.relative_to(root).as_posix()}, which is not a regular file"
    if len(parts) < 2 or any(is_ignored(p) for p in parts):
        return (
            f"is a symbolic link to {target.relative_to(root).as_posix()}, a file the sync does not upload (hidden, "
            "ignored or outside every model directory); link only to files of the models"
        )
    return None


def walk_model(model_dir: Path, *, problems: list[tuple[Path, str]] | None = None) -> Iterator[Path]:
    """Every file of a model directory the sync would upload (config.pbtxt included), in a stable order.

    Links are never followed out of the repository (the model directory's parent): an entry the sync cannot
    upload (`entry_problem`) is added to `problems` and skipped, or, with problems None, raises UserError.
    """
    model_dir = Path(model_dir)
    repo_dir = model_dir.parent

    def refuse(path: Path, why: str) -> None:
        if problems is None:
            raise UserError(f"{path}: {why}; nothing was synced.", exit_code=EXIT_INVALID_REPOSITORY)
        problems.append((path, why))

    if model_dir.is_symlink():
        refuse(model_dir, entry_problem(model_dir, repo_dir) or "is a symbolic link to a directory; move the model here")
        return
    unreadable: list[OSError] = []
    for root, dirs, files in os.walk(model_dir, onerror=unreadable.append):  # followlinks=False: links listed, not entered
        for error in unreadable:
            refuse(Path(error.filename), f"cannot read the directory: {error.strerror or error}")
        unreadable.clear()
        kept = []
        for d in sorted(d for d in dirs if not is_ignored(d)):
            why = entry_problem(Path(root) / d, repo_dir)
            if why:
                refuse(Path(root) / d, why)
            else:
                kept.append(d)
        dirs[:] = kept
        for name in sorted(files):
            if is_ignored(name):
                continue
            why = entry_problem(Path(root) / name, repo_dir)
            if why:
                refuse(Path(root) / name, why)
            else:
                yield Path(root) / name
    for error in unreadable:
        refuse(Path(error.filename), f"cannot read the directory: {error.strerror or error}")



def _rel(path: Path, repo_dir: Path) -> str:
    try:
        return Path(path).relative_to(repo_dir).as_posix()
    except ValueError:
        return str(path)


def model_dirs(repo_dir: Path) -> list[Path]:
    """The directories the sync treats as models: every non-ignored directory directly under the repository."""
    return sorted(p for p in Path(repo_dir).iterdir() if p.is_dir() and not is_ignored(p.name))


def model_config_pb2():
    """tritonclient's generated ModelConfig module, without running `tritonclient.grpc`'s __init__.

    That __init__ imports grpc, numpy and the whole client: a third of an unchanged sync's time, for a
    protobuf module that needs only protobuf. The module is loaded from tritonclient's own file under a name
    of ours; protobuf registers its descriptors once per pool, so ModelConfig is the very same class as
    `tritonclient.grpc.model_config_pb2.ModelConfig` whichever is imported first. Already imported: that one.
    """
    import sys

    with _PB2_LOCK:
        for name in ("tritonclient.grpc.model_config_pb2", _PB2_NAME):
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "ModelConfig"):  # not one another thread is still importing
                return module
        return _load_model_config_pb2()


def _load_model_config_pb2():
    import importlib.util
    import sys

    try:
        package = importlib.util.find_spec("tritonclient")  # finds, does not import
        path = Path(package.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
        spec = importlib.util.spec_from_file_location(_PB2_NAME, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - another tritonclient layout: the ordinary import
        from tritonclient.grpc import model_config_pb2 as module

        return module
    sys.modules[_PB2_NAME] = module
    return module


_PB2_NAME = "hybridserve._tritonclient_model_config_pb2"
_PB2_LOCK = threading.Lock()


def parse_config(path: Path, text: str | None = None):
    from google.protobuf import text_format

    config = model_config_pb2().ModelConfig()
    try:
        text_format.Parse(path.read_text() if text is None else text, config)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise UserError(
            f"{path}: not a valid Triton model configuration ({exc}); nothing was published (new files already uploaded stay unpublished; the next sync reuses them).",
            exit_code=EXIT_INVALID_REPOSITORY,
        ) from None
    return config


Found = list[tuple[str, Path, str, "int | None"]]  # (model, path, rel, version) of every file, config.pbtxt included


def walk_repository(repo_dir: Path) -> Found:
    """Every file the sync would upload, as (model, path, rel, version); UserError naming every problem (a link out,
    a model without config.pbtxt or version, ...) before any file is read."""
    repo_dir = Path(repo_dir)
    if not repo_dir.is_dir():
        raise UserError(
            f"model repository {repo_dir} does not exist or is not a directory; pass --repo PATH "
            "(a Triton repository: <model>/config.pbtxt, <model>/<version>/...).",
            exit_code=EXIT_INVALID_REPOSITORY,
        )
    found: list[tuple[str, Path, str, int | None]] = []
    problems: list[str] = []
    found_dirs = model_dirs(repo_dir)
    for model_dir in found_dirs:
        unsyncable: list[tuple[Path, str]] = []
        files = list(walk_model(model_dir, problems=unsyncable))
        problems.extend(f"{_rel(path, repo_dir)}: {why}" for path, why in unsyncable)
        if unsyncable:
            continue
        if not (model_dir / CONFIG_NAME).is_file():
            problems.append(f"{model_dir.name}/: no {CONFIG_NAME}")
            continue
        has_version = False
        for path in files:
            rel_parts = path.relative_to(model_dir).parts
            version = version_of(rel_parts[0]) if len(rel_parts) > 1 else None
            has_version |= version is not None
            found.append((model_dir.name, path, path.relative_to(repo_dir).as_posix(), version))
        if not has_version:
            problems.append(f"{model_dir.name}/: no version directory with files (e.g. {model_dir.name}/1/model.pt)")
    if not found_dirs:
        problems.append("no model directories")
    if problems:
        raise UserError(
            f"model repository {repo_dir} is not a valid Triton repository; nothing was synced:",
            exit_code=EXIT_INVALID_REPOSITORY,
            details=problems,
        )
    return found


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # the hashing reports it


def scan_repository(
    repo_dir: Path,
    *,
    hash_cache: Path | None = None,
    found: Found | None = None,
    on_hashed: Callable[[LocalFile], None] | None = None,
    before_configs: Callable[[list[LocalModel]], None] | None = None,
) -> list[LocalModel]:
    """Every model with its files and sha256 (hashed in parallel: hashlib releases the GIL on large reads).

    hash_cache: a JSON file remembering the sha256 of unchanged files between runs (see HashCache).
    found: what walk_repository(repo_dir) returned, when the caller walked already.
    on_hashed(file): called (in a hashing thread) as each file is hashed; the files are then hashed smallest
    first, so that the caller (the sync's early uploads) has something to work on at once and all along.
    before_configs(models): called once every file is hashed, with the models as found (files and sha256s; the
    configs not parsed yet: a bad one raises after it).
    """
    repo_dir = Path(repo_dir)
    if found is None:
        found = walk_repository(repo_dir)
    cache = HashCache(hash_cache)

    def digest(item) -> tuple[str, int] | OSError:
        model, path, rel, version = item
        try:
            sha, size, parts = cache.digests(path)
        except OSError as exc:  # unreadable (permissions), or removed since the walk
            return exc
        if on_hashed is not None:
            on_hashed(LocalFile(rel=rel, path=path, size=size, sha256=sha, model=model, version=version, parts=parts))
        return sha, size, parts

    order = sorted(range(len(found)), key=lambda i: _size(found[i][1])) if on_hashed else range(len(found))
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        hashed = dict(zip(order, pool.map(digest, (found[i] for i in order))))
    digests = [hashed[i] for i in range(len(found))]
    unreadable = [f"{rel}: cannot read: {d.strerror or d}" for (_, _, rel, _), d in zip(found, digests) if isinstance(d, OSError)]
    if unreadable:
        raise UserError(
            f"model repository {repo_dir}: some files cannot be read; nothing was published (new files already uploaded stay unpublished; the next sync reuses them):",
            exit_code=EXIT_INVALID_REPOSITORY,
            details=unreadable,
        )
    try:
        cache.save()
    except OSError:
        pass  # an unwritable cache location only costs hashing time next run

    models: dict[str, LocalModel] = {}
    configs = ConfigCache(Path(hash_cache).with_name(CONFIG_CACHE_NAME) if hash_cache else None)
    files = [
        LocalFile(rel=rel, path=path, size=size, sha256=digest, model=model, version=version, parts=parts)
        for (model, path, rel, version), (digest, size, parts) in zip(found, digests)
    ]
    for lf in files:
        if lf.rel == f"{lf.model}/{CONFIG_NAME}":
            models[lf.model] = LocalModel(name=lf.model, config_file=lf)
    for lf in files:
        if lf.rel == f"{lf.model}/{CONFIG_NAME}":
            continue
        m = models[lf.model]
        m.files.append(lf)
        if lf.version is not None:
            m.versions.setdefault(lf.version, []).append(lf)
    if before_configs is not None:
        before_configs([models[name] for name in sorted(models)])
    for name in sorted(models):
        configs.fill(models[name])  # parses (a bad config is refused here) unless these bytes parsed before
    try:
        configs.save()
    except OSError:
        pass  # an unwritable cache location only costs parsing time next run
    return [models[name] for name in sorted(models)]


CONFIG_CACHE_NAME = "sync-configs.json"


class ConfigCache:
    """Each config.pbtxt's ConfigFacts, keyed by its bytes (sha256), path and local versions, and the code that
    renders it: an unchanged sync need not import protobuf, which costs as much as its read of the store.

    The key changes with any byte of the config, its path (the rendered header names it), the set of local
    versions (the policy selects among them), this module's source (render_config) and the installed protobuf
    and tritonclient (their text format and schema). A config that never parsed has no entry: it is parsed,
    and refused, in the scan as before. path None: no cache.
    """

    FORMAT = 1
    KEEP = 256  # entries kept (the newest): many models and their recent versions

    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.entries: dict[str, list] = {}
        self.used: dict[str, list] = {}
        self._identity: str | None = None
        if self.path is not None:
            try:
                data = json.loads(self.path.read_text())
                if data.get("format") == self.FORMAT and isinstance(data.get("configs"), dict):
                    self.entries = data["configs"]
            except (OSError, ValueError, AttributeError):
                self.entries = {}  # none yet, or damaged: parse

    def identity(self) -> str:
        """What rendering depends on besides the config: this module's source and the installed libraries."""
        if self._identity is None:
            import importlib.util
            import sys

            h = hashlib.sha256(Path(__file__).read_bytes())
            h.update(os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "").encode() + b"\0")
            for name in ("google.protobuf", "tritonclient"):
                try:  # found, not imported
                    spec = importlib.util.find_spec(name)
                    locations = list(spec.submodule_search_locations or [])
                    origin = str(Path(locations[0]) / "grpc" / "model_config_pb2.py") if name == "tritonclient" else spec.origin
                    st = os.stat(origin)
                    h.update(f"{name}={origin}:{st.st_size}:{st.st_mtime_ns}\0".encode())
                except (ImportError, AttributeError, TypeError, IndexError, ValueError, OSError):
                    h.update(f"{name}=none\0".encode())
            h.update(sys.version.encode())
            self._identity = h.hexdigest()
        return self._identity

    def key(self, m: LocalModel) -> str:
        what = [self.identity(), m.config_file.rel, m.config_file.sha256, sorted(m.versions)]
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()

    def fill(self, m: LocalModel) -> None:
        key = self.key(m) if self.path is not None else ""
        known = self.entries.get(key)
        if self._valid(known):
            m.facts = ConfigFacts(tuple(known[0]), known[1], known[2].encode())
        else:
            # m.config reads the file again and refuses bytes other than those hashed: never cached under
            # another content's key.
            selected = select_versions(m.config, m.versions)
            m.facts = ConfigFacts(tuple(selected), describe_policy(m.config), render_config(m, selected))
        if self.path is not None:
            self.used[key] = [list(m.facts.selected), m.facts.policy, m.facts.rendered.decode()]

    @staticmethod
    def _valid(entry) -> bool:
        return (
            isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], list)
            and all(isinstance(v, int) for v in entry[0]) and isinstance(entry[1], str) and isinstance(entry[2], str)
        )

    def save(self) -> None:
        if self.path is None or all(self.entries.get(k) == v for k, v in self.used.items()):
            return  # nothing new: no write
        entries = dict(self.used)
        for k, v in self.entries.items():
            if len(entries) >= self.KEEP:
                break
            entries.setdefault(k, v)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": self.FORMAT, "configs": entries}))
        os.replace(tmp, self.path)  # atomic: a concurrent sync reads the old or the new cache, never half


# --------------------------------------------------------------------------------------------- policy


def describe_policy(config) -> str:
    which = config.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return "all"
    if which == "specific":
        return "specific " + str(sorted(config.version_policy.specific.versions))
    if which == "latest":
        return f"latest {config.version_policy.latest.num_versions or 1}"
    return "latest 1 (default)"


def select_versions(config, ready: Iterable[int]) -> list[int]:
    """The user's version policy applied to the versions that are fully uploaded and verified.

    `latest N` picks the N newest *ready* versions, so the previous version keeps serving until its
    successor is complete, exactly what Triton would do if partial versions were invisible.
    """
    ready = sorted(set(ready))
    which = config.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return ready
    if which == "specific":
        return sorted(set(config.version_policy.specific.versions) & set(ready))
    n = (config.version_policy.latest.num_versions if which == "latest" else 1) or 1
    return ready[-n:]


def policy_selects(model: LocalModel, ready: Iterable[int]) -> list[int]:
    """select_versions(model.config, ready), from the scan's ConfigFacts when `ready` is every local version."""
    ready = set(ready)
    if model.facts is not None and ready == set(model.versions):
        return list(model.facts.selected)
    return select_versions(model.config, ready)


def rendered_config(model: LocalModel, versions: list[int]) -> bytes:
    """render_config(model, versions), from the scan's ConfigFacts when `versions` are those it rendered."""
    if model.facts is not None and tuple(versions) == model.facts.selected:
        return model.facts.rendered
    return render_config(model, versions)


def render_config(model: LocalModel, versions: list[int]) -> bytes:
    """The config.pbtxt readers get: the user's config with `version_policy { specific { versions } }`.

    Triton reads the policy only from config.pbtxt, so this is what keeps it off partial versions.
    """
    from google.protobuf import text_format

    config = model_config_pb2().ModelConfig()
    config.CopyFrom(model.config)
    config.ClearField("version_policy")
    config.version_policy.specific.versions.extend(versions)
    header = (
        f"# Published by `hybridserve sync` from {model.config_file.rel} (sha256 {model.config_file.sha256[:16]}).\n"
        f"# Its version policy ({describe_policy(model.config)}) applied to the fully uploaded, verified versions.\n"
    )
    return (header + text_format.MessageToString(config)).encode()
