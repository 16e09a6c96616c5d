"""Publishing a model repository as immutable, content-named versions in a site's bucket.

Layout under `s3://BUCKET/PREFIX/`:

    v<16 hex>/                 one version per content digest (digest.py), a complete Triton repository
      <model>/config.pbtxt     as the sync publishes it (hybridserve/sync/engine.py)
      <model>/<n>/...
      .hybridserve-manifest.json
    v<16 hex>/                 the previous ones, kept for rollback

Triton gets `triton_uri(store, version)` as its --model-repository. A version is never changed once
published: a new content gets a new prefix, and switching versions is switching that URI. Publishing
uses the sync engine (encrypted, verified, config-last, incremental), so publishing the same digest again
uploads nothing, and an interrupted publication completes on the next run.

`publish` builds the kit's models when missing or stale, renders the target's copy into a temporary
directory, recomputes the digest there and refuses when it is not the one the caller (the Pulumi program)
computed: the repository changed in between, and what `pulumi preview` showed would not be what is
uploaded. Deleting a version (`delete_version`) deletes every object under `PREFIX/<version>/` and
nothing else; on a versioned bucket they stay as noncurrent versions until the bucket's lifecycle rule
expires them.

No Pulumi here: infra/components/publication.py drives these functions from a dynamic provider.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hybridserve.errors import UserError
from hybridserve.publish.digest import VERSION_PATTERN, rendered_digest, version_name
from hybridserve.publish.render import Target, render_repository
from hybridserve.sync.errors import EXIT_BAD_ARGUMENT, translate

if TYPE_CHECKING:  # pragma: no cover
    from hybridserve.sync.engine import SyncReport, SyncTarget

STALE_DIGEST_HINT = "the model repository changed since the program read it; run pulumi up again"


@dataclass(frozen=True)
class Store:
    """A site's bucket: AWS S3 (endpoint_url None) or an S3 API such as Swift's s3api, SeaweedFS, moto.

    Versions live under `prefix`. sse as in hybridserve.sync.SyncTarget ("aws:kms" under kms_key_id on
    AWS, "AES256" for stores without a KMS, "none"). Credentials: access_key/secret_key, else boto3's
    chain; role_arn: assumed with STS first (the stack's model-writer role).
    """

    bucket: str
    prefix: str
    region: str
    endpoint_url: str | None = None
    sse: Literal["aws:kms", "AES256", "none"] = "aws:kms"
    kms_key_id: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    role_arn: str | None = None

    @property
    def base(self) -> str:
        """The store's key prefix with one trailing slash ("" for the bucket's root)."""
        p = self.prefix.strip("/")
        return p + "/" if p else ""

    def sync_target(self, version: str | None = None) -> "SyncTarget":
        """The sync engine's target for PREFIX/<version> (or PREFIX itself)."""
        from hybridserve.sync.engine import SyncTarget

        prefix = "/".join(p for p in (self.prefix.strip("/"), version) if p)
        return SyncTarget(
            bucket=self.bucket,
            prefix=prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key=self.access_key,
            secret_key=self.secret_key,
            sse=self.sse,
            kms_key_id=self.kms_key_id,
            role_arn=self.role_arn,
        )


@dataclass(frozen=True)
class Publication:
    """One published version: its name, Triton's URI for it, the digest, and what the sync did."""

    version: str
    uri: str
    digest: str
    uploaded: int
    bytes_uploaded: int
    unchanged: int
    report: "SyncReport" = field(repr=False, compare=False)

    @property
    def summary(self) -> str:
        what = f"uploaded {self.uploaded} objects ({self.bytes_uploaded} bytes)" if self.uploaded else "already published, nothing uploaded"
        return f"{self.uri}: {what}, {self.unchanged} unchanged"


# --------------------------------------------------------------------------------------------- URIs


def triton_s3_uri(endpoint: str, container: str, prefix: str) -> str:
    """Triton's form for a non-AWS S3 endpoint: s3://[https://]host:port/bucket/path (the port is required)."""
    from hybridserve.stackconfig.schema.storage import endpoint_host_port

    scheme, host, port = endpoint_host_port(endpoint)
    lead = "https://" if scheme == "https" else ""
    return f"s3://{lead}{host}:{port}/{container}/{prefix}"


def triton_uri(store: Store, version: str) -> str:
    """Triton's --model-repository for `version`: s3://bucket/prefix/version on AWS, else with host:port."""
    if not VERSION_PATTERN.fullmatch(version or ""):
        raise UserError(f"version {version!r} is not a published version name (v + 16 hex digits)")
    path = "/".join(p for p in (store.prefix.strip("/"), version) if p)
    if store.endpoint_url is None:
        return f"s3://{store.bucket}/{path}"
    try:
        return triton_s3_uri(store.endpoint_url, store.bucket, path)
    except ValueError:
        raise UserError(
            f"endpoint_url {store.endpoint_url!r}: not scheme://host[:port] without a path, e.g. https://swift.example.org:8080"
        ) from None


def check_store(store: Store) -> None:
    """UserError (exit 2) naming each field of `store` that cannot work, before anything is contacted."""
    from hybridserve.sync.engine import check_target

    check_target(store.sync_target())
    if store.endpoint_url is not None:
        triton_uri(store, "v" + "0" * 16)  # Triton's URI needs scheme://host[:port]


# --------------------------------------------------------------------------------------------- the store


def _s3(store: Store):
    from hybridserve.sync.engine import _client, _session

    target = store.sync_target()
    return _client(_session(target), target), target


def list_versions(store: Store) -> list[str]:
    """The version prefixes under the store's prefix (names like v0123456789abcdef), sorted by name."""
    from botocore.exceptions import BotoCoreError, ClientError

    check_store(store)
    s3, target = _s3(store)
    found = []
    try:
        candidates = set()
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store.base, Delimiter="/")
        for page in pages:
            for common in page.get("CommonPrefixes", []) or []:
                name = common["Prefix"][len(store.base):].rstrip("/")
                if VERSION_PATTERN.fullmatch(name):
                    candidates.add(name)
        # Filer-backed stores (SeaweedFS) keep listing a directory whose objects were all deleted: a version
        # counts only while it holds an object.
        for name in sorted(candidates):
            if s3.list_objects_v2(Bucket=store.bucket, Prefix=f"{store.base}{name}/", MaxKeys=1).get("Contents"):
                found.append(name)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, where=target.where, bucket=store.bucket, what=f"listing the versions under {target.url}") from None
    return found


def delete_version(store: Store, version: str) -> int:
    """Delete every object under PREFIX/<version>/ (paginated; nothing outside it); returns how many.

    Configs go first, so a reader never gets a config naming files this call already deleted.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from hybridserve.sync.engine import delete_configs_first

    if not VERSION_PATTERN.fullmatch(version or ""):
        raise UserError(f"refusing to delete {version!r}: not a published version name (v + 16 hex digits)", exit_code=EXIT_BAD_ARGUMENT)
    check_store(store)
    s3, target = _s3(store)
    base = store.base + version + "/"
    try:
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=base)
            for o in page.get("Contents", []) or []
        ]
        keys = [k for k in keys if k.startswith(base)]  # a store that ignored the prefix must not cost us objects
        delete_configs_first(
            s3, store.bucket, base, keys, what=f"deleting version {version} from s3://{store.bucket}/{base}: the store refused {{n}} objects:"
        )
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, where=target.where, bucket=store.bucket, what=f"deleting version {version}") from None
    return len(keys)


# --------------------------------------------------------------------------------------------- publish

_BUILD_LOCK = threading.Lock()  # two sites published from one process build the same repository once


def _build(repo_dir: Path, progress: bool) -> None:
    """`hybridserve models build` for the kit's models in repo_dir (skips what is up to date), one at a time."""
    from hybridserve.models.build import build_models, built_fingerprints

    if not built_fingerprints(repo_dir):  # neither a kit model nor a compressed variant of one
        return
    lock_path = Path(tempfile.gettempdir()) / f"hybridserve-build-{hashlib.sha256(str(repo_dir.resolve()).encode()).hexdigest()[:16]}.lock"
    with _BUILD_LOCK, open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # and one process at a time (another pulumi up, a CI step)
        build_models(repo_dir, progress=progress)


def check_built(repo_dir: Path) -> None:
    """The kit's model.pt / reference.npz in repo_dir are the build of the current definitions (their stamps)."""
    from hybridserve.models import build
    from hybridserve.models.repository import REFERENCE_FILE

    stale = []
    for name, (spec, fingerprint) in build.built_fingerprints(Path(repo_dir)).items():  # compressed variants too
        vdir = Path(repo_dir) / name / str(spec.version)
        stamp = build.read_stamp(vdir / spec.artifact)
        reference = vdir / REFERENCE_FILE
        if stamp is None or stamp.get("fingerprint") != fingerprint:
            stale.append(f"{name}/{spec.version}/{spec.artifact}: not built from the current definitions")
        elif not reference.is_file() or stamp.get("reference_sha256") != build.sha256_file(reference):
            stale.append(f"{name}/{spec.version}/{REFERENCE_FILE}: not the reference set of that build")
    if stale:
        raise UserError("the built artifacts are stale; run `hybridserve models build` (or publish with build):", details=stale)


ACCESS_RETRY_S = 60.0  # how long AccessDenied under a just-assumed role is retried (its policy may still propagate)


def _sync_when_allowed(rendered: Path, store: Store, version: str, progress: bool) -> "SyncReport":
    """The sync of one version; under a role, AccessDenied is retried for ACCESS_RETRY_S with backoff.

    `pulumi up` creates the writer role and its policy moments before it publishes, and IAM takes a while
    to apply a new policy everywhere. The sync is idempotent, so a retry only uploads what is missing.
    """
    from hybridserve.sync.engine import sync_repository
    from hybridserve.sync.errors import EXIT_ACCESS_DENIED

    deadline = time.monotonic() + (ACCESS_RETRY_S if store.role_arn else 0.0)
    delay = 1.0
    while True:
        try:
            # render_repository validated the rendered copy, artifacts included: not again per attempt.
            return sync_repository(rendered, store.sync_target(version), show_progress=progress, validated=True)
        except UserError as exc:
            retry = (
                exc.exit_code == EXIT_ACCESS_DENIED
                and not exc.message.startswith("cannot assume role")  # retried already, where it happened
                and time.monotonic() + delay < deadline
            )
            if not retry:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 8.0)


def publish(
    repo_dir: Path,
    store: Store,
    target: Target,
    *,
    expected_digest: str,
    build: bool = True,
    progress: bool = False,
) -> Publication:
    """Publish `target`'s copy of the repository at `repo_dir` as version version_name(expected_digest).

    build: run the kit's model build first when artifacts are missing or stale (else they must be built).
    With store.role_arn, AccessDenied is retried for ACCESS_RETRY_S (see _sync_when_allowed). Raises UserError when the rendered copy's digest is not `expected_digest` (STALE_DIGEST_HINT), and for
    anything the sync refuses. Idempotent: an already published digest uploads nothing.
    """
    repo_dir = Path(repo_dir)
    expected_version = version_name(expected_digest)
    check_store(store)
    if build:
        _build(repo_dir, progress)
    with tempfile.TemporaryDirectory(prefix="hybridserve-publish-") as tmp:
        rendered = render_repository(repo_dir, Path(tmp) / "repository", target, require_artifacts=True)
        check_built(rendered.path)
        got = rendered_digest(rendered.path, target)
        if got.digest != expected_digest:
            raise UserError(
                f"{STALE_DIGEST_HINT} (expected digest {expected_digest[:16]}, the repository now has {got.digest[:16]}).",
                exit_code=EXIT_BAD_ARGUMENT,
            )
        report = _sync_when_allowed(rendered.path, store, expected_version, progress)
    return Publication(
        version=expected_version,
        uri=triton_uri(store, expected_version),
        digest=expected_digest,
        uploaded=len(report.uploaded),
        bytes_uploaded=report.bytes_uploaded,
        unchanged=len(report.skipped),
        report=report,
    )
