"""The content digest of a model repository for one target, computable before anything is built.

The Pulumi program needs the digest at program time (it names the version prefix, so `pulumi preview`
shows the new version and URI), when the git-ignored artifacts may not exist yet. For the kit's own models
(hybridserve.models.definitions.MODEL_SPECS) they need not: `hybridserve models build` is
byte-deterministic and its output depends only on the build fingerprint (hybridserve.models.build.fingerprint:
the definitions source, seed, torch and numpy versions), so `<model>/<version>/model.pt` and
`reference.npz` are represented by "build:<fingerprint>", built or not, stale or not. `publish` checks the
stamp inside the built model.pt before it uploads, so the claim is verified where it matters.

Every other file is represented by its sha256; config.pbtxt by the sha256 of its rendered bytes for the
target (render.py), so a GPU copy and a CPU copy of the same repository differ. Files are those the sync
uploads (hybridserve/sync/scan.py: hidden files, `__pycache__`, `*.pyc` excluded).

The digest is the sha256 of a canonical JSON document {format, gpu, instances_per_gpu, files}. The target's
name is not in it: two GPU sites with the same settings publish the same version. The version name is
"v" + the first 16 hex digits of the digest (VERSION_PATTERN): a valid single S3 key segment, and
2^64 names make a collision between the few versions a bucket keeps practically impossible.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.publish.render import Target, check_source, render_config
from hybridserve.sync.scan import CONFIG_NAME, HashCache, model_dirs, walk_model

DIGEST_FORMAT = "hybridserve-publish/1"
BUILD_PREFIX = "build:"
DIGEST_PATTERN = re.compile(r"[0-9a-f]{64}")
VERSION_PATTERN = re.compile(r"v[0-9a-f]{16}")


@dataclass(frozen=True)
class Digest:
    """digest: sha256 hex; version: its version prefix name; files: relative path -> sha256 or "build:<fp>"."""

    digest: str
    version: str
    files: dict[str, str] = field(default_factory=dict)


def version_name(digest: str) -> str:
    """'v' + the first 16 hex digits of the digest: the version prefix under the store's prefix."""
    if not DIGEST_PATTERN.fullmatch(digest or ""):
        raise UserError(f"digest {digest!r} is not a sha256 hex digest (64 characters 0-9a-f)")
    return "v" + digest[:16]


def built_artifacts(repo_dir: Path) -> dict[str, str]:
    """rel path -> "build:<fingerprint>" of the kit's built files, for every kit model the repository holds."""
    from hybridserve.models import build
    from hybridserve.models.repository import REFERENCE_FILE

    out = {}
    for name, (spec, fingerprint) in build.built_fingerprints(Path(repo_dir)).items():  # compressed variants too
        fp = BUILD_PREFIX + fingerprint
        out[f"{name}/{spec.version}/{spec.artifact}"] = fp
        out[f"{name}/{spec.version}/{REFERENCE_FILE}"] = fp
    return out


def digest_of_files(files: dict[str, str], target: Target) -> Digest:
    document = {
        "format": DIGEST_FORMAT,
        "gpu": target.gpu,
        "instances_per_gpu": target.instances_per_gpu if target.gpu else None,
        "files": dict(sorted(files.items())),
    }
    if target.keep_backend:  # only then: every other target's digest (and version name) stays what it was
        document["keep_backend"] = True
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Digest(digest=digest, version=version_name(digest), files=document["files"])


def _files(repo_dir: Path, target: Target, *, rendered: bool, hash_cache: Path | None) -> dict[str, str]:
    cache = HashCache(hash_cache)
    artifacts = built_artifacts(repo_dir)
    files: dict[str, str] = {}
    for model_dir in model_dirs(repo_dir):
        config_rel = f"{model_dir.name}/{CONFIG_NAME}"
        for path in walk_model(model_dir):
            rel = path.relative_to(repo_dir).as_posix()
            if rel in artifacts:
                continue
            if rel == config_rel:
                data = path.read_bytes()
                files[rel] = hashlib.sha256(data if rendered else render_config(data, rel, target)).hexdigest()
            else:
                files[rel] = cache.digest(path)[0]
    try:
        cache.save()
    except OSError:
        pass  # an unwritable cache only costs hashing time
    files.update(artifacts)
    return files


def repository_digest(repo_dir: Path, target: Target, *, hash_cache: Path | None = None) -> Digest:
    """The digest of `target`'s copy of the repository at `repo_dir`, built or not (see the module docstring).

    Validates the repository first (its configs for this target; artifacts not required): UserError
    naming each file and field. hash_cache: a JSON file remembering the sha256 of unchanged large files.
    """
    repo_dir = Path(repo_dir)
    check_source(repo_dir, target)
    return digest_of_files(_files(repo_dir, target, rendered=False, hash_cache=hash_cache), target)


def rendered_digest(rendered_dir: Path, target: Target) -> Digest:
    """The digest of an already rendered copy (render.render_repository): equal to repository_digest of its source."""
    return digest_of_files(_files(Path(rendered_dir), target, rendered=True, hash_cache=None), target)
