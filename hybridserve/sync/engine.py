"""Content-addressed, incremental, atomically published sync of a Triton model repository to S3.

Layout under `s3://BUCKET/PREFIX/` (PREFIX is what Triton gets as `--model-repository`):

    <model>/<version>/<file>          every file carries x-amz-meta-sha256
    <model>/config.pbtxt              written by the sync, with `version_policy { specific { versions } }`
    .hybridserve-manifest.json        sha256/size/etag/encryption per key and the published versions

Atomic publish. Triton loads only the versions a model's config.pbtxt lets it load, and it reads that
policy from config.pbtxt alone. So the files of every version are uploaded first (all files at once,
through one transfer manager: up to MAX_CONCURRENCY requests, multipart in MULTIPART_CHUNKSIZE parts);
each upload is verified with a HEAD as it completes (size, sha256 metadata, the encryption asked for);
then the model's config.pbtxt is written, with the user's own version policy applied to the versions
whose every file verified (`latest N` picks
the N newest *complete* versions, `specific` is intersected, `all` is all complete ones). A reader that
fetches config.pbtxt at any moment therefore names only complete versions. Single PUTs and multipart
uploads become visible only when complete, and no published version is ever written to (see below).
The manifest is written last; it is a file, not a directory, so Triton never mistakes it for a model.

In-place changes. A published version whose content changed locally cannot be updated atomically: a
reader could load half old, half new files. The sync refuses (exit 25) and names the files, before
writing anything but early uploads of versions no config serves (below). The fix is a new version
directory; `replace=True` (`--replace`) instead unpublishes the version first (config.pbtxt without it,
or no config.pbtxt when it was the only one, so the model is briefly unavailable), uploads, verifies and
republishes. Rewriting an object with identical bytes (e.g.
to re-encrypt it under another key) is not an in-place change and needs no flag.

Incremental and resumable. Local files are hashed (sha256s cached by size, times and inode between
runs); a remote object counts as present when the manifest records the same sha256/size/encryption and
the listing shows the same size and ETag, else when a HEAD shows the same size, sha256 metadata and
encryption. So a rerun after an interruption at any point (even without a manifest) uploads only what is
missing or different.

Fast path: an unchanged repository costs one GET (the manifest) and a local stat. When every local file
and every config as it would be rendered has the sha256 and size the manifest records, under the
encryption asked for, the manifest lists nothing else and publishes the versions the policies select
now, the sync ends there: no LIST, no HEAD, no write. It trusts that the manifest describes the store:
that nobody deleted or changed objects under the prefix behind the sync's back (only the sync writes
there, and one sync per prefix at a time). The sync keeps that true itself: before a run overwrites or
deletes an object the manifest vouches for, it drops that entry from the manifest (one PUT), so an
interrupted run never leaves a manifest that matches the repository but not the store. `verify=True`
(`--verify`) trusts nothing: it lists the prefix and HEADs every object, and re-uploads what is missing
or different; a file of a published version that the manifest records with the local bytes is restored
without --replace (readers were promised those bytes). `prune` always lists.

Early uploads. A file that is a pure addition (its key neither listed nor in the manifest, its version served
by no config in the store, and every config there written by the sync) is uploaded as soon as it is hashed,
while the rest of the repository is still being hashed, planned and validated: the store is read (manifest,
listing, configs) alongside the scan, and the unfinished multipart uploads of an interrupted sync on those
keys are aborted before the first one. Files hashed while the store was being read go largest first, and the
scan parses the configs only once the first uploads are on their way (parsing holds the GIL the store's reads
need; at most STARTED_WAIT_S of waiting). Nothing is published (no config.pbtxt, no manifest) before the scan,
the plan (conflicts) and the validation all passed: until a config names its version, such an upload is
invisible to Triton. Should the sync fail after all, those objects stay, unpublished, and the next run finds
them (HEAD: size, sha256 metadata, encryption) instead of uploading them again. Everything else (changed
files, --replace, --prune, --verify, pins, a dry run, which uploads nothing) waits for the plan as before;
so does all of an unchanged repository (its manifest lists every file: the fast path decides, no LIST).
Before a version is published for the first time, objects in its directory that the repository lacks (such a
failed run's upload of a file since renamed or removed) are deleted, without --prune: Triton loads every file
of a version it serves, and nothing serves that version yet.

Validation (the models module: loads and runs every artifact) runs in a child process while the files
are hashed and the store is read; nothing is published before it passed (early uploads at most, above).
With a hash cache, a tree whose fingerprint (every entry's lstat and link target, the validator's source)
validated before is not validated again, nor is content whose digest (every file's sha256, the directories, the validator) is
recorded as validated, by an earlier sync or by `hybridserve models validate` (hybridserve/sync/validated.py).

Prune (never by default) deletes keys under the prefix that the repository no longer has: configs of
removed models first, so no config ever names a version whose files are being deleted by this run.
A reader that fetched a config just before that moment can still race a prune; versioned buckets keep
the deleted objects as noncurrent versions.

One sync per prefix at a time: concurrent syncs to the same prefix are not coordinated.

Promoted versions. `hybridserve models promote/rollback` record the version they gated and made the served
one in `.hybridserve-history.<model>.json` (hybridserve/promote/history.py). A sync keeps publishing that
version (its config.pbtxt names it alone, whatever the local version policy selects) and notes it: new
versions are uploaded but served only once promoted, and a rollback is never silently undone. `pins`
(model -> versions) does the same for the promote command's own publish step.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import functools
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from hybridserve.errors import UserError
from hybridserve.sync.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_BAD_ARGUMENT,
    EXIT_INVALID_REPOSITORY,
    EXIT_KMS,
    EXIT_PUBLISHED_CHANGED,
    EXIT_STORE_ERROR,
    EXIT_VERIFY_FAILED,
    error_code,
    error_message,
    translate,
)
from hybridserve.sync.scan import (
    CONFIG_NAME,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    LocalFile,
    LocalModel,
    PartDigests,
    policy_selects,
    rendered_config,
    scan_repository,
    version_of,
    walk_repository,
)
from hybridserve.sync.validated import content_digest, has_records, is_recorded, record_path, tree_fingerprint
from hybridserve.sync.validated import record as record_content

MANIFEST_NAME = ".hybridserve-manifest.json"
MANIFEST_FORMAT = "hybridserve-sync/1"
SHA_META = "sha256"  # x-amz-meta-sha256 on every object the sync writes
VERSIONS_META = "hybridserve-versions"  # on config.pbtxt: the versions it publishes, "1,2"

# 16 MiB parts (MULTIPART_THRESHOLD and PART_SIZE live in scan.py: the scan hashes each part): a few large files
# still keep all threads busy (a 100 MiB repository is ~9 parts at once), and each part costs a request's fixed
# work (signing, headers, a connection round trip) half as often as with the AWS CLI's 8 MiB. Measured on 2 cores against SeaweedFS with SSE-S3, 512 MiB in 4 files, 3 alternating repeats
# (2026-12-02): the client's CPU 1.43 s with 8 MiB parts, 1.28 s with 16 MiB, 1.19 s with 32 MiB; the store's
# the same for all (~7.1 s); 32 MiB parts (and 4 threads instead of 10) were no faster. Files under 16 MiB are single
# PUTs, checked whole by the store against the scan's sha256 (ChecksumSHA256); parts carry the scan's digests of
# each part (scan.PartDigests). s3transfer grows the part size by itself when a file would need more than
# 10,000 parts (then botocore computes the parts' digests).
MULTIPART_CHUNKSIZE = PART_SIZE
MAX_CONCURRENCY = 10
HEAD_CONCURRENCY = 8
STARTED_WAIT_S = 2.0  # the longest the scan waits for the first early uploads before parsing the configs
STARTED_WAIT_PHASE = "scan: waiting for the store's reads (early uploads) before parsing the configs"

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# What stores answer when the body does not match the checksum sent with it (S3, SeaweedFS, moto).
_BAD_DIGEST = {"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest", "XAmzContentSHA256Mismatch"}


# --------------------------------------------------------------------------------------------- public types


@dataclass
class SyncTarget:
    """Where to sync: an S3 bucket and prefix on AWS (endpoint_url None) or any S3-compatible endpoint.

    sse: "aws:kms" (default; under `kms_key_id`, or, when it is None, under the bucket's default KMS key,
    which must then be configured), "AES256" (SSE-S3, for stores without a KMS such as SeaweedFS or
    Swift), or "none" (only when asked for explicitly). access_key/secret_key None: boto3's credential chain;
    session_token goes with them (temporary credentials).

    role_arn: assume this IAM role with STS first and sync under it (the Pulumi stack's model-writer role:
    only it may encrypt with the stack key). AccessDenied on AssumeRole is retried for up to
    ASSUME_ROLE_TIMEOUT_S, since a role created moments ago (in the same `pulumi up`) is not assumable
    everywhere at once; the credentials refresh themselves when a long sync outlives the session. With
    endpoint_url, STS is asked at that endpoint (moto, MinIO); else AWS STS in `region`.
    """

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    sse: Literal["aws:kms", "AES256", "none"] = "aws:kms"
    kms_key_id: str | None = None
    role_arn: str | None = None
    session_token: str | None = field(default=None, repr=False)
    # Where `region` came from, for messages: the CLI's flag or the environment variable it defaulted to.
    region_source: str = field(default="--region", repr=False, compare=False)

    @property
    def base(self) -> str:
        """The key prefix with one trailing slash, or "" for the bucket's root."""
        p = self.prefix.strip("/")
        return p + "/" if p else ""

    @property
    def where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.base}"


@dataclass
class Change:
    action: Literal["add", "update", "delete"]
    key: str
    size: int
    note: str = ""


@dataclass
class SyncReport:
    """What a sync did (or, with dry_run, would do). Keys are full object keys. Rich-renderable."""

    target: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0
    published: dict[str, list[int]] = field(default_factory=dict)
    dry_run: bool = False
    changes: list[Change] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # published versions changed in place (dry run)
    encryption: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Where the time went: phase -> seconds (see _Spans); `hybridserve sync --timings` prints it.
    timings: dict[str, float] = field(default_factory=dict)
    # "manifest": the store was judged by its manifest alone (module docstring, Fast path); "store": listed and
    # checked object by object.
    compared_with: str = ""
    validation: str = ""  # "ran", or why the models module's validation was skipped

    def _summary(self, size: str) -> str:
        verb = "would upload" if self.dry_run else "uploaded"
        summary = (
            f"{self.target}: {verb} {len(self.uploaded)} objects ({size}), "
            f"{len(self.skipped)} unchanged, {'would delete' if self.dry_run else 'deleted'} {len(self.deleted)}"
        )
        if not self.changes:
            summary += " - up to date"
        if not self.dry_run:
            summary += f" in {self.seconds:.1f} s"
        return summary

    def _status_lines(self) -> list[str]:
        lines = [f"encryption: {self.encryption}"]
        for model, versions in sorted(self.published.items()):
            shown = ", ".join(map(str, versions)) if versions else "none"
            lines.append(f"{'would publish' if self.dry_run else 'published'} {model}: versions {shown}")
        return lines

    def plain_lines(self) -> list[str] | None:
        """The report as rich prints it, without importing rich, when it is unstyled text only (nothing changed,
        no note, no conflict): an unchanged sync's whole output. None: print it with rich."""
        if self.changes or self.notes or self.conflicts or self.bytes_uploaded:
            return None
        return [self._summary("0 bytes"), *self._status_lines()]  # rich.filesize.decimal(0)

    def __rich__(self):
        from rich.console import Group
        from rich.filesize import decimal
        from rich.table import Table
        from rich.text import Text

        parts: list[Any] = []
        if self.changes:
            table = Table(title="Would change (dry run)" if self.dry_run else "Changes", title_justify="left")
            table.add_column("action")
            table.add_column("key", overflow="fold")
            table.add_column("size", justify="right")
            table.add_column("note")
            style = {"add": "green", "update": "yellow", "delete": "red"}
            for c in self.changes:
                table.add_row(Text(c.action, style=style[c.action]), c.key, decimal(c.size), c.note)
            parts.append(table)
        parts.append(Text(self._summary(decimal(self.bytes_uploaded))))
        parts.extend(Text(line) for line in self._status_lines())
        for note in self.notes:
            parts.append(Text(f"note: {note}", style="yellow"))
        for conflict in self.conflicts:
            parts.append(Text(f"refused: {conflict}", style="bold red"))
        return Group(*parts)


# --------------------------------------------------------------------------------------------- internals


@dataclass(frozen=True)
class _Encryption:
    algorithm: str  # "aws:kms" | "AES256" | "none"
    kms_key_id: str | None  # sent as SSEKMSKeyId; None: the store's default key
    accept: frozenset[str] | None  # key identifiers a HEAD may report; None: any key
    label: str

    def extra_args(self) -> dict[str, str]:
        if self.algorithm == "none":
            return {}
        args = {"ServerSideEncryption": self.algorithm}
        if self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    def matches(self, algorithm: str | None, kms_key_id: str | None) -> bool:
        if self.algorithm == "none":
            return True
        if algorithm != self.algorithm:
            return False
        if self.algorithm != "aws:kms" or self.accept is None:
            return True
        if not kms_key_id:
            return False
        tails = {a.rsplit("/", 1)[-1] for a in self.accept}
        return kms_key_id in self.accept or kms_key_id.rsplit("/", 1)[-1] in tails


@dataclass(frozen=True)
class _Head:
    size: int
    sha256: str | None
    etag: str | None
    sse: str | None
    kms_key_id: str | None
    metadata: dict[str, str]

    def entry(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "etag": self.etag, "sse": self.sse, "kms_key_id": self.kms_key_id}


@dataclass
class _Item:
    """One local file (or rendered config) and what the plan decided for it."""

    key: str
    rel: str
    size: int
    sha256: str
    state: Literal["same", "add", "update"]
    content_same: bool = False  # an update that only re-encrypts
    restores: bool = False  # puts back what the manifest says was published (deleted or changed behind our back)
    file: LocalFile | None = None
    entry: dict[str, Any] | None = None  # manifest entry when verified present


def check_target(target: SyncTarget) -> None:
    """UserError (exit 2) naming each option of `target` that cannot work, before anything is contacted."""
    bad = []
    if not target.bucket or "/" in target.bucket:
        bad.append(f"bucket (--bucket) {target.bucket!r}: give a bucket name (no slashes, no s3://)")
    else:
        problem = bucket_problem(target.bucket)
        if problem:
            bad.append(f"bucket (--bucket) {problem}")
    if target.sse not in ("aws:kms", "AES256", "none"):
        bad.append(f"sse (--sse) {target.sse!r}: valid values are 'aws:kms', 'AES256', 'none'")
    if target.kms_key_id and target.sse != "aws:kms":
        bad.append(f"kms_key_id (--kms-key-id) is only valid with sse 'aws:kms' (sse is {target.sse!r})")
    if target.endpoint_url:
        problem = _endpoint_problem(target.endpoint_url)
        if problem:
            # Never echo a URL with user info: it may hold a secret.
            shown = "(URL with user:password@)" if "@" in target.endpoint_url else repr(target.endpoint_url)
            bad.append(f"endpoint_url (--endpoint-url) {shown}: {problem}")
    problem = _prefix_problem(target.prefix)
    if problem:
        bad.append(f"prefix (--prefix) {target.prefix!r}: {problem}")
    problem = region_problem(target.region, aws=not target.endpoint_url)
    if problem:
        bad.append(f"region ({target.region_source}) {target.region!r}: {problem}")
    if bool(target.access_key) != bool(target.secret_key):
        bad.append("give both access_key and secret_key, or neither (then boto3's credential chain applies)")
    if target.session_token and not target.access_key:
        bad.append("session_token goes with access_key and secret_key (temporary credentials); give all three")
    if target.role_arn is not None and not _ROLE_ARN.fullmatch(target.role_arn):
        bad.append(
            f"role_arn (--role-arn) {target.role_arn!r}: not an IAM role ARN; "
            "e.g. arn:aws:iam::123456789012:role/acme-vision-dev-model-writer (stack output modelWriterRoleArn)"
        )
    if bad:
        raise UserError("invalid sync target:", exit_code=EXIT_BAD_ARGUMENT, details=bad)


_check_target = check_target  # the name tests and older callers use


# botocore's own rule for region names (it refuses others only when the first request is built).
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?")
# IAM's rule for role ARNs (any partition: aws, aws-cn, aws-us-gov); the path may hold '/'.
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")


def bucket_problem(bucket: str) -> str | None:
    """Why `bucket` breaks S3's bucket naming rules, or None: the stack schema's rule (SeaweedFS, MinIO and
    Swift's s3api with its default dns_compliant_bucket_names apply the same), checked before any request,
    so a bad name is not answered as a missing bucket, a signature error or an unreachable host."""
    from hybridserve.stackconfig.bucketnames import check_bucket_name

    try:
        check_bucket_name(bucket)
    except ValueError as exc:
        return str(exc)
    return None


def region_problem(region: str | None, *, aws: bool) -> str | None:
    """Why `region` cannot be the bucket's region, or None. On AWS (no endpoint URL) it must be a region
    botocore's endpoint data knows (every partition: aws, aws-cn, aws-us-gov, ...; read locally, no
    request), else boto3 would send the request to a host that does not exist and the failure would read
    as an unreachable endpoint. Another store takes any name botocore can sign with (e.g. RegionOne)."""
    if not _REGION.fullmatch(region or ""):
        return "not a region name; e.g. us-east-1 (any name of that form for a non-AWS store)"
    if not aws:
        return None
    import botocore
    import botocore.session

    session = botocore.session.get_session()
    known = {r for p in session.get_available_partitions() for r in session.get_available_regions("s3", partition_name=p)}
    if region in known:
        return None
    import difflib

    close = difflib.get_close_matches(region, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (
        f"not an AWS region with S3; {hint}known to botocore {botocore.__version__}: e.g. us-east-1, eu-west-1 "
        "(a region opened since needs a newer boto3). For another S3 store, pass its --endpoint-url"
    )


def _endpoint_problem(url: str) -> str | None:
    """Why `url` cannot be an S3 endpoint, or None. botocore would fail later and vaguely (or with a ValueError)."""
    from urllib.parse import urlsplit

    example = "e.g. http://127.0.0.1:8333 or https://s3.example.com"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when not a number or out of 0..65535
    except ValueError:
        return f"the port must be a number from 1 to 65535; {example}"
    if parts.scheme not in ("http", "https"):
        return f"must start with http:// or https://; {example}"
    if parts.username is not None or parts.password is not None:
        return "must not hold credentials; they come from the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...)"
    if not parts.hostname:
        return f"has no host; {example}"
    if port == 0:
        return f"the port must be a number from 1 to 65535; {example}"
    if parts.query or parts.fragment:
        return f"must be just scheme://host[:port], without ?query or #fragment; {example}"
    return None


def _prefix_problem(prefix: str) -> str | None:
    """Why `prefix` would not make sane keys, or None. Leading and trailing slashes are dropped, not refused."""
    if prefix.startswith("s3://"):
        return "give the key prefix only (e.g. models), not an s3:// URL; the bucket is --bucket"
    segments = prefix.strip("/").split("/")
    if prefix.strip("/") and any(seg in ("", ".", "..") for seg in segments):
        # S3 keeps such keys literally, but Triton's and Swift's path handling would not find them.
        return "has an empty, '.' or '..' path segment; use plain names separated by '/', e.g. teams/vision/models"
    if any(ord(c) < 32 or c == "\\" for c in prefix):
        return "holds a control character or a backslash; use plain names separated by '/', e.g. teams/vision/models"
    return None


ASSUME_ROLE_TIMEOUT_S = 60.0  # how long AccessDenied on AssumeRole is retried (IAM is eventually consistent)
ASSUME_ROLE_SESSION = "hybridserve-sync"


def _session(target: SyncTarget):
    """One botocore session per sync: its clients share the loaded service models (loading them costs ~0.5 s
    each time). botocore's, not boto3's: importing boto3 imports s3transfer too, a good part of an unchanged
    sync's time; the uploads import it when there is something to upload.

    With target.role_arn, the session holds the role's credentials (refreshed before they expire).
    """
    import botocore.session

    session = botocore.session.Session()
    if target.access_key or target.secret_key or target.session_token:
        session.set_credentials(target.access_key, target.secret_key, target.session_token)
    session.set_config_variable("region", target.region)
    if not target.role_arn:
        return session
    return _assumed_role_session(session, target)


def _assumed_role_session(base, target: SyncTarget):
    import botocore.session
    from botocore.credentials import RefreshableCredentials

    sts = _client(base, target, "sts", max_attempts=2)

    def fetch() -> dict[str, str]:
        creds = _assume_role(sts, target)
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=fetch(), refresh_using=fetch, method="sts-assume-role"
    )
    core = botocore.session.Session()
    core._credentials = credentials  # botocore has no public setter for refreshable credentials
    core.set_config_variable("region", target.region)
    return core


def _assume_role(sts, target: SyncTarget) -> dict[str, Any]:
    """STS credentials of target.role_arn; AccessDenied is retried with backoff for ASSUME_ROLE_TIMEOUT_S."""
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.monotonic()
    deadline = started + ASSUME_ROLE_TIMEOUT_S
    delay = 1.0
    attempts = 0
    while True:
        attempts += 1
        try:
            return sts.assume_role(RoleArn=target.role_arn, RoleSessionName=ASSUME_ROLE_SESSION)["Credentials"]
        except ClientError as exc:
            code = error_code(exc)
            if code == "AccessDenied" and time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            if code in ("AccessDenied", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"):
                waited = f" ({attempts} attempts in {time.monotonic() - started:.0f} s)" if attempts > 1 else ""
                raise UserError(
                    f"cannot assume role {target.role_arn} (--role-arn){waited}: {code}: {error_message(exc) or 'denied'}. "
                    "The role's trust policy must allow these credentials sts:AssumeRole (the stack's model-writer "
                    "role trusts storage.writer_principals, else the account), and they need sts:AssumeRole on it.",
                    exit_code=EXIT_ACCESS_DENIED,
                ) from None
            raise translate(exc, where=target.where, bucket=target.bucket, what=f"assuming role {target.role_arn}") from None
        except BotoCoreError as exc:
            raise translate(exc, where=target.where, bucket=target.bucket, what=f"assuming role {target.role_arn}") from None


def _client(session, target: SyncTarget, service: str = "s3", *, max_attempts: int = 5):
    from botocore.config import Config

    config = Config(
        region_name=target.region,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=10,
        read_timeout=120,
        # One pooled connection per transfer thread, plus the HEADs and the config writes of the main thread.
        max_pool_connections=MAX_CONCURRENCY + HEAD_CONCURRENCY,
        # Non-AWS endpoints (an IP and a port) cannot take bucket names as DNS labels.
        s3={"addressing_style": "path"} if target.endpoint_url else {},
    )
    return session.create_client(service, region_name=target.region, endpoint_url=target.endpoint_url, config=config)


def _head(s3, bucket: str, key: str) -> _Head | None:
    from botocore.exceptions import ClientError

    try:
        r = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return None
        raise
    meta = {k.lower(): v for k, v in (r.get("Metadata") or {}).items()}
    return _Head(
        size=int(r.get("ContentLength", -1)),
        sha256=meta.get(SHA_META),
        etag=r.get("ETag"),
        sse=r.get("ServerSideEncryption"),
        kms_key_id=r.get("SSEKMSKeyId"),
        metadata=meta,
    )


def _probe(s3, target: SyncTarget, manifest_key: str) -> bytes | None:
    """The client's first request: GET of the manifest (None when there is none). It doubles as the bucket check
    (skipped when the lean GET already had the store answer NoSuchKey: that GET was the check).

    Not HeadBucket: a writer policy that grants s3:ListBucket only under the prefix (an s3:prefix condition, as
    the Pulumi stack's model-writer role has) refuses it; that role may GET under the prefix. A GET, not a
    HEAD: its error code tells a missing key (NoSuchKey) from a missing bucket (NoSuchBucket), and a bare HTTP
    status from something that is not an S3 API (errors.translate, "checking bucket").
    """
    from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

    try:
        return s3.get_object(Bucket=target.bucket, Key=manifest_key)["Body"].read()
    except ParamValidationError as exc:
        raise UserError(f"bucket name {target.bucket!r} is not valid: {exc}", exit_code=EXIT_BAD_ARGUMENT) from None
    except ClientError as exc:
        if error_code(exc) == "NoSuchKey":
            return None
        raise translate(exc, where=target.where, bucket=target.bucket, what="checking bucket", sse=target.sse) from None
    except BotoCoreError as exc:
        raise translate(exc, where=target.where, bucket=target.bucket, what="checking bucket", sse=target.sse) from None


def _lean_manifest(target: SyncTarget, manifest_key: str) -> tuple[bytes | None, bool]:
    """(the manifest, absent), read without a botocore client, for the fast path; None: not read (then the client
    reads it). absent: the store answered NoSuchKey (the bucket exists, takes these credentials, has no manifest).

    Creating an S3 client loads and builds S3's whole service model: a third of an unchanged sync's time, for
    one GET. This GET is signed with SigV4 and sent by the standard library when the credentials and CA bundle
    are those botocore would use without reading a file (_plain_request_settings: importing botocore alone cost
    more than the rest of an unchanged sync), else by botocore itself (the session's credential chain, its HTTP
    session's CA bundle and proxies). Only where it is the same request the client would
    send: an explicit --endpoint-url (path-style addressing, as _client uses; AWS endpoints are resolved by
    botocore's rules) and SSE-S3 or none (SSE-KMS checks its key with KMS first), without --role-arn. Anything
    but a 200 is None: the client then asks again, and its answer (and error, translated) is the one used;
    except NoSuchKey, which is that answer (a first sync: the client lists at once, no probe GET).
    """
    if not target.endpoint_url or target.sse not in ("AES256", "none") or target.role_arn:
        return None, False
    try:
        status, body = _signed_request(target, manifest_key)
    except Exception:  # noqa: BLE001 - the client path asks again and reports whatever is wrong
        return None, False
    if status == 200:
        return body, False
    return None, status == 404 and b"<Code>NoSuchKey</Code>" in body


def _signed_get(target: SyncTarget, key: str) -> bytes | None:
    """GET `key` (path-style at target.endpoint_url), SigV4-signed; the body on a 200, else None (tests: the
    request the store accepts; the sync itself reads the status too, _signed_request)."""
    status, body = _signed_request(target, key)
    return body if status == 200 else None


def _signed_request(target: SyncTarget, key: str) -> tuple[int, bytes]:
    """(HTTP status, body) of a SigV4-signed GET of `key` (path-style at target.endpoint_url); 0: not sent."""
    plain = _plain_request_settings(target)
    if plain is not None:
        return _stdlib_get(target, key, *plain)
    return _botocore_get(target, key)


def _env_credentials(target: SyncTarget) -> tuple[str, str, str | None] | None:
    """(access key, secret, token) where botocore's chain would take them without reading any file: explicit
    ones, or the environment's (its first provider; AWS_PROFILE does not skip it). None: ask botocore."""
    if target.access_key or target.secret_key or target.session_token:
        return (target.access_key, target.secret_key, target.session_token) if target.access_key and target.secret_key else None
    env = os.environ
    if not env.get("AWS_ACCESS_KEY_ID") or not env.get("AWS_SECRET_ACCESS_KEY") or env.get("AWS_CREDENTIAL_EXPIRATION"):
        return None
    # botocore's EnvProvider reads AWS_SECURITY_TOKEN before AWS_SESSION_TOKEN.
    token = env.get("AWS_SECURITY_TOKEN") or env.get("AWS_SESSION_TOKEN") or None
    return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], token


def _plain_request_settings(target: SyncTarget) -> tuple[tuple[str, str, str | None], str | None] | None:
    """((credentials), CA bundle or None) when the GET can be sent by the standard library exactly as botocore
    would send it (importing botocore costs more than the rest of an unchanged sync): credentials from the
    options or the environment, no proxy, and for https a CA bundle known without reading the AWS config file
    ($AWS_CA_BUNDLE, or botocore's default when there is no config file). None: botocore sends it."""
    credentials = _env_credentials(target)
    if credentials is None:
        return None
    if any(name.lower().endswith("_proxy") and value for name, value in os.environ.items()):
        return None  # botocore honours HTTP(S)_PROXY / NO_PROXY: leave that to it
    if target.endpoint_url.lower().startswith("http://"):
        return credentials, None
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        return credentials, bundle
    config = os.environ.get("AWS_CONFIG_FILE") or os.path.join("~", ".aws", "config")
    if os.path.exists(os.path.expanduser(config)):
        return None  # it may name a ca_bundle
    try:
        from certifi import where  # botocore's default bundle when certifi is installed (httpsession.get_cert_path)
    except ImportError:
        return None
    return credentials, where()


def _stdlib_get(target: SyncTarget, key: str, credentials: tuple[str, str, str | None], ca_bundle: str | None) -> tuple[int, bytes]:
    """The GET with http.client, signed with AWS Signature Version 4 (docs.aws.amazon.com/AmazonS3/latest/API/
    sig-v4-header-based-auth.html, read 2026-12-01) as botocore's S3SigV4Auth signs it; (status, body). A wrong
    signature is a 403: the client asks again (tests/test_sync_prune_errors.py checks that this GET is accepted by a real store)."""
    import hmac
    import http.client
    from urllib.parse import quote, urlsplit

    access_key, secret_key, token = credentials
    endpoint = urlsplit(target.endpoint_url)
    path = f"{endpoint.path.rstrip('/')}/{target.bucket}/{quote(key, safe='/~')}"
    now = datetime.now(timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": endpoint.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    if token:
        headers["x-amz-security-token"] = token
    signed = ";".join(sorted(headers))
    canonical = "\n".join(["GET", path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed, payload])
    scope = f"{day}/{target.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signing_key = ("AWS4" + secret_key).encode()
    for part in (day, target.region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    if endpoint.scheme == "https":
        import ssl

        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            endpoint.hostname, endpoint.port, timeout=10, context=ssl.create_default_context(cafile=ca_bundle)
        )
    else:
        conn = http.client.HTTPConnection(endpoint.hostname, endpoint.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _botocore_get(target: SyncTarget, key: str) -> tuple[int, bytes]:
    from urllib.parse import quote

    import botocore.session
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.httpsession import URLLib3Session
    from botocore.utils import get_environ_proxies

    session = botocore.session.Session()
    if target.access_key or target.secret_key or target.session_token:
        session.set_credentials(target.access_key, target.secret_key, target.session_token)
    credentials = session.get_credentials()
    if credentials is None:
        return 0, b""
    url = f"{target.endpoint_url.rstrip('/')}/{target.bucket}/{quote(key, safe='/~')}"
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(credentials.get_frozen_credentials(), "s3", target.region).add_auth(request)
    http = URLLib3Session(verify=session.get_config_variable("ca_bundle") or True, proxies=get_environ_proxies(url), timeout=(10, 120))
    try:
        response = http.send(request.prepare())
        return response.status_code, response.content
    finally:
        http.close()


def _bucket_default_kms_key(s3, target: SyncTarget) -> tuple[str | None, str]:
    """(key id or None for the AWS managed aws/s3 key, label) from the bucket's default encryption."""
    from botocore.exceptions import ClientError

    try:
        rules = s3.get_bucket_encryption(Bucket=target.bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as exc:
        code = error_code(exc)
        if code in ("ServerSideEncryptionConfigurationNotFoundError", "NoSuchEncryptionConfiguration", "404"):
            rules = []
        elif code in ("AccessDenied", "403"):
            # A writer role need not read bucket settings: S3 applies the default key; the HEADs show which.
            return None, "bucket default key (not readable with these credentials; the objects' SSEKMSKeyId names it)"
        else:
            raise
    default = (rules[0].get("ApplyServerSideEncryptionByDefault") or {}) if rules else {}
    algorithm = default.get("SSEAlgorithm")
    if algorithm in ("aws:kms", "aws:kms:dsse"):
        key = default.get("KMSMasterKeyID")
        return key, (f"bucket default key {key}" if key else "bucket default key (AWS managed aws/s3)")
    raise UserError(
        f"--sse aws:kms needs a KMS key: pass --kms-key-id KEY (key id, ARN or alias/NAME). Bucket "
        f"{target.bucket!r} has no default KMS key to fall back on (its default encryption: {algorithm or 'none'}). "
        "Stores without a KMS (SeaweedFS, Swift) take --sse AES256.",
        exit_code=EXIT_KMS,
    )


def _describe_kms_key(session, target: SyncTarget, key: str, notes: list[str]) -> tuple[str, str] | None:
    """(arn, key id) of a usable key; UserError for a missing/disabled/unsuitable one; None if KMS can't be asked."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        meta = _client(session, target, "kms", max_attempts=2).describe_key(KeyId=key)["KeyMetadata"]
    except ClientError as exc:
        code = error_code(exc)
        if code in ("NotFoundException", "InvalidArnException", "ValidationException"):
            raise UserError(
                f"KMS key {key!r} does not exist in region {target.region}"
                + (f" at {target.endpoint_url}" if target.endpoint_url else "")
                + f" ({code}). --kms-key-id takes a key id, a key ARN or alias/NAME of an existing key.",
                exit_code=EXIT_KMS,
            ) from None
        notes.append(
            f"KMS key {key} not pre-checked ({code or exc}; kms:DescribeKey would allow it); the uploads will tell "
            "if it is unusable. Bucket policies compare the key ARN: give --kms-key-id as an ARN"
        )
        return None
    except BotoCoreError as exc:
        notes.append(f"KMS key {key} not pre-checked ({exc}); the uploads will tell if it is unusable")
        return None
    state = meta.get("KeyState") or ("Enabled" if meta.get("Enabled") else "Disabled")
    if state != "Enabled" or meta.get("Enabled") is False:
        raise UserError(
            f"KMS key {meta.get('Arn', key)} is {state}: S3 cannot encrypt with it. "
            + ("Enable it (aws kms enable-key) " if state == "Disabled" else "Cancel its deletion or restore it ")
            + "or pass another --kms-key-id.",
            exit_code=EXIT_KMS,
        )
    usage = meta.get("KeyUsage", "ENCRYPT_DECRYPT")
    spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
    if usage != "ENCRYPT_DECRYPT" or spec != "SYMMETRIC_DEFAULT":
        raise UserError(
            f"KMS key {meta.get('Arn', key)} is {spec}/{usage}; S3 SSE-KMS needs a SYMMETRIC_DEFAULT "
            "ENCRYPT_DECRYPT key. Pass another --kms-key-id.",
            exit_code=EXIT_KMS,
        )
    return meta["Arn"], meta["KeyId"]


def _resolve_encryption(session, s3, target: SyncTarget, notes: list[str]) -> _Encryption:
    if target.sse == "none":
        return _Encryption("none", None, None, "none (asked for explicitly)")
    if target.sse == "AES256":
        return _Encryption("AES256", None, None, "SSE-S3 (AES256)")
    key, label = target.kms_key_id, None
    if not key:
        key, label = _bucket_default_kms_key(s3, target)
        notes.append(f"no --kms-key-id: encrypting under the {label}")
        if key is None:
            return _Encryption("aws:kms", None, None, f"SSE-KMS, {label}")
    resolved = _describe_kms_key(session, target, key, notes)
    if resolved:
        arn, key_id = resolved
        # The ARN, not an alias: an alias can be repointed, the objects must name the key they are under.
        return _Encryption("aws:kms", arn, frozenset({key, arn, key_id}), f"SSE-KMS, key {arn}" + (f" ({label})" if label else ""))
    is_alias = key.startswith("alias/") or ":alias/" in key
    return _Encryption("aws:kms", key, None if is_alias else frozenset({key}), f"SSE-KMS, key {key}")


def _list(s3, bucket: str, base: str) -> dict[str, tuple[int, str | None]]:
    objects: dict[str, tuple[int, str | None]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for o in page.get("Contents", []) or []:
            objects[o["Key"]] = (int(o["Size"]), o.get("ETag"))
    return objects


def _parse_manifest(body: bytes | None, key: str, notes: list[str]) -> dict[str, Any]:
    if body is None:
        return {}
    try:
        manifest = json.loads(body)
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("objects"), dict):
            raise ValueError(f"format {manifest.get('format')!r}")
    except (ValueError, AttributeError) as exc:
        notes.append(f"ignored the remote manifest {key} ({exc}); every object is verified with a HEAD instead")
        return {}
    return manifest


def _published_versions(head: _Head | None, remote_versions: set[int]) -> set[int]:
    """What readers can load now: our config says so in metadata; a foreign config may name any version."""
    if head is None:
        return set()
    listed = head.metadata.get(VERSIONS_META)
    if listed is None:
        return set(remote_versions)
    return {int(v) for v in listed.split(",") if v.strip().isdigit()}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------- the sync


def delete_configs_first(s3, bucket: str, base: str, keys, *, what: str, on_deleted: Callable[[list[str]], None] | None = None) -> None:
    """Delete `keys` (all under `base`) in batches of 1000, each model's config.pbtxt first: a reader never
    gets a config naming files this call already deleted. `what` (with {n}) heads the error when the store
    refuses some; `on_deleted(batch)` after each batch."""
    configs = [k for k in keys if k.endswith("/" + CONFIG_NAME) and k[len(base):].count("/") == 1]
    for batch_keys in (configs, sorted(set(keys) - set(configs))):
        for i in range(0, len(batch_keys), 1000):
            batch = batch_keys[i : i + 1000]
            r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = r.get("Errors") or []
            if errors:
                raise UserError(
                    what.format(n=len(errors)),
                    exit_code=EXIT_STORE_ERROR,
                    details=[f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}" for e in errors[:20]],
                )
            if on_deleted is not None:
                on_deleted(batch)


class _Spans:
    """Wall seconds per phase of one sync, into report.timings (a phase entered twice adds up)."""

    def __init__(self, timings: dict[str, float]):
        self.timings = timings

    @contextlib.contextmanager
    def __call__(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started


def sync_repository(
    repo_dir: Path,
    target: SyncTarget,
    *,
    dry_run: bool = False,
    prune: bool = False,
    replace: bool = False,
    verify: bool = False,
    show_progress: bool = True,
    console=None,
    on_uploaded: Callable[[str], None] | None = None,
    hash_cache: Path | None = None,
    validated: bool = False,
    pins: dict[str, list[int]] | None = None,
    honour_history: bool = True,
) -> SyncReport:
    """Sync `repo_dir` to `target`; see the module docstring for the guarantees.

    dry_run: read the store, change nothing, report what would change. prune: delete keys under the
    prefix that the repository no longer has. replace: allow re-uploading published versions that changed
    in place (unpublished meanwhile). verify: do not trust the manifest: list the prefix and HEAD every
    object (finds objects deleted or changed behind the sync's back). on_uploaded(key): called after each
    file is uploaded and verified. hash_cache: a JSON file that keeps local sha256s between runs (the CLI
    uses the state dir), and next to it the fingerprint of the last repository that validated; None: hash
    and validate every time. validated: the caller ran the models module's validation on `repo_dir` just
    before (the local plane after its build, the publication after rendering): skip repeating it, which
    loads and runs every artifact.
    pins: model -> the versions its config.pbtxt publishes (they must exist locally), whatever its policy
    selects; honour_history: pin each model to the served version its promotion history records.
    """
    started = time.monotonic()
    report = SyncReport(target=target.url, dry_run=dry_run)
    check_target(target)
    repo_dir = Path(repo_dir)
    validation = _Validation(repo_dir, hash_cache, report.timings, skip=validated)
    try:
        _sync(repo_dir, target, report, validation, dry_run=dry_run, prune=prune, replace=replace, verify=verify,
              show_progress=show_progress, console=console, on_uploaded=on_uploaded, hash_cache=hash_cache,
              pins=pins, honour_history=honour_history)
    except Exception:
        invalid = validation.failure()  # an invalid repository is what to fix first, whatever else went wrong
        if invalid is not None:
            raise invalid from None
        raise
    finally:
        validation.close()
        report.validation = validation.state
    report.seconds = time.monotonic() - started
    return report


def _sync(repo_dir: Path, target: SyncTarget, report: SyncReport, validation: _Validation, *, dry_run, prune, replace,
          verify, show_progress, console, on_uploaded, hash_cache, pins=None, honour_history=True) -> None:
    span = _Spans(report.timings)
    manifest_key = target.base + MANIFEST_NAME
    # The fast path never writes, so a version the promotion history serves is never undone by it; an
    # explicit pin (models promote's publish step) decides the configs and takes the full path.
    fast = not (verify or prune or pins)
    early = _EarlyRead(target, manifest_key, lean=fast)
    uploads: _EarlyUploads | None = None
    try:
        with span("scan and hash"):
            found = walk_repository(repo_dir)  # a link out or a broken layout is refused before anything is sent
            if fast and not (dry_run or replace):
                uploads = _EarlyUploads(target, early, found, report.timings)

            def hashed(found_models: list[LocalModel]) -> None:
                validation.scanned(found_models)  # its digest needs the files' sha256s only: it starts at once
                if uploads is not None:
                    uploads.wait_started()

            models = scan_repository(repo_dir, hash_cache=hash_cache, found=found, on_hashed=uploads and uploads.hashed,
                                     before_configs=hashed)
        waited = report.timings.pop(STARTED_WAIT_PHASE, None)
        if waited is not None:  # shown on its own, after the scan's
            report.timings["scan and hash"] -= waited
            report.timings[STARTED_WAIT_PHASE] = waited
        empty = [
            f"{m.name}/{CONFIG_NAME}: its version_policy ({m.facts.policy}) selects none of the versions "
            f"it has: {sorted(m.versions)}"
            for m in models
            if not m.facts.selected
        ]
        if empty:
            raise UserError("not publishing (new files may already be uploaded, unpublished): a model would publish no version:", exit_code=EXIT_INVALID_REPOSITORY, details=empty)
        if uploads is not None:
            uploads.hashing_done()
        _sync_with_store(models, target, report, validation, early, span, fast=fast, dry_run=dry_run, prune=prune,
                         replace=replace, verify=verify, show_progress=show_progress, console=console,
                         on_uploaded=on_uploaded, pins=pins, honour_history=honour_history, uploads=uploads)
    finally:
        early.cancel()
        if uploads is not None:
            # After a failure (or anything the executor did not take over): cancels what is queued and aborts
            # unfinished multipart uploads. What completed stays, unpublished (module docstring, Early uploads).
            uploads.close()


def _sync_with_store(models, target: SyncTarget, report: SyncReport, validation: _Validation, early: "_EarlyRead", span,
                     *, fast, dry_run, prune, replace, verify, show_progress, console, on_uploaded, pins, honour_history,
                     uploads: "_EarlyUploads | None" = None) -> None:
    where, bucket, base = target.where, target.bucket, target.base
    manifest_key = base + MANIFEST_NAME
    current_step = "checking bucket"
    try:
        with span("connect and read manifest"):
            lean = early.lean_body()
        if lean is not None:
            # SSE-S3 or none: resolving the encryption asks nothing. A manifest that does not say "up to date"
            # is read again below, with the client, as if this had not happened.
            enc = _resolve_encryption(None, None, target, [])
            if _up_to_date(models, _parse_manifest(lean, manifest_key, []), enc, base, report):
                report.encryption = enc.label
                with span("validate (waiting)"):
                    validation.wait()
                return
        with span("connect and read manifest"):
            # The early uploads read the store while the files were hashed (they need the listing); what they read
            # is the store as this sync sees it. When they did not (or failed to: then the same reads fail here,
            # and say so), it is read here.
            store = uploads.store() if uploads is not None else None
            if store is None:
                session, probe, body = early.client_read()
                current_step = "resolving the encryption key"
                enc = _resolve_encryption(session, probe, target, report.notes)
                manifest = _parse_manifest(body, manifest_key, report.notes)
            else:
                session, enc, manifest = store.session, store.enc, store.manifest
                report.notes.extend(store.notes)
            report.encryption = enc.label
        if fast and _up_to_date(models, manifest, enc, base, report):
            with span("validate (waiting)"):
                validation.wait()
            return
        report.compared_with = "store"
        current_step = "listing the prefix"
        with span("list and compare"):
            if store is not None and store.remote is not None:
                s3, remote = store.s3, store.remote
            else:
                # More retries than the probe's: from here on, failures are passing ones.
                s3 = early.full_client or _client(session, target)
                remote = _list(s3, bucket, base)
            current_step = "reading the promotion history"
            pinned = _pins(models, remote, s3, target, pins, honour_history, report.notes)
            plan = _Plan(target, enc, models, remote, manifest, s3, report.notes, pinned, verify=verify)
            current_step = "comparing with the store"
            plan.compare()
            plan.find_conflicts(prune=prune)
            plan.fill_report(report, prune=prune)
        with span("validate (waiting)"):
            validation.wait()  # nothing is written, nor a plan shown, for a repository the validator refuses
        if plan.conflicts and not replace:
            details = plan.conflict_details()
            if dry_run:
                report.conflicts = details
                return
            raise UserError(
                "published model versions changed in place; a reader could load a mix of old and new files, "
                "so nothing was published (new versions' files may already be uploaded, unpublished). Put the new content in a new version directory (e.g. "
                f"{_next_version_hint(plan)}) and sync again, or pass --replace to unpublish these versions "
                "while they are re-uploaded (they are unavailable meanwhile):",
                exit_code=EXIT_PUBLISHED_CHANGED,
                details=details,
            )
        if dry_run:
            return
        current_step = "writing to the store"
        if uploads is not None:
            uploads.finish()  # every hashed file it takes is submitted: the executor submits the rest
        _Executor(plan, report, prune=prune, show_progress=show_progress, console=console, on_uploaded=on_uploaded, span=span,
                  early=uploads if uploads is not None and uploads.transfers is not None else None).run()
    except UserError:
        raise
    except Exception as exc:
        # botocore.exceptions only when botocore was imported: an unchanged sync may never import it.
        botocore_errors = sys.modules.get("botocore.exceptions")
        if botocore_errors is not None and isinstance(exc, (botocore_errors.ClientError, botocore_errors.BotoCoreError)):
            raise translate(exc, where=where, bucket=bucket, what=current_step, sse=target.sse) from None
        raise


def _import_in_background(*modules: str) -> None:
    """Import `modules` on a daemon thread; whoever imports one later waits for it (the import lock) or finds it
    done. A failure here is left for that later import to raise."""

    def run() -> None:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    threading.Thread(target=run, daemon=True, name="hybridserve-sync-imports").start()


class _EarlyRead:
    """The store's first reads, on a thread of their own while the scan hashes the files (hashlib releases the
    GIL; importing botocore and creating a client are Python): the manifest without a client (_lean_manifest)
    where that applies, else, or when that manifest does not show the repository up to date, the session, the
    probe client and its GET of the manifest (_probe); when the lean GET found no manifest (NoSuchKey), the
    session and the sync's own client (`full_client`), without a probe GET. Errors are raised where the sync
    asks for the result, so they come after the scan's, as before. A daemon thread: a sync that fails first
    never waits for it.
    """

    def __init__(self, target: SyncTarget, manifest_key: str, *, lean: bool):
        self.target, self.manifest_key = target, manifest_key
        self.lean = lean and bool(target.endpoint_url) and target.sse in ("AES256", "none") and not target.role_arn
        self._lean_body: bytes | None = None
        # When the lean GET found no manifest (NoSuchKey), the probe's GET would only say it again: no probe
        # request, and the client made is the sync's own (with its retries), here.
        self.full_client = None
        self._lean_ready = threading.Event()
        self._go_on = threading.Event()  # the lean manifest was not enough: read with the client
        self._cancelled = False
        self._done = threading.Event()
        self._result: tuple[Any, Any, bytes | None] | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._run, daemon=True, name="hybridserve-sync-connect").start()

    def _run(self) -> None:
        try:
            absent = False
            if self.lean:
                self._lean_body, absent = _lean_manifest(self.target, self.manifest_key)
                self._lean_ready.set()
                if self._lean_body is not None:
                    self._go_on.wait()
                    if self._cancelled:
                        return
            # A sync that failed first (the scan) cancels: no session (with a role: AssumeRole and its retries)
            # and no request after that, in a long-lived caller (the Pulumi provider, promote).
            if self._cancelled:
                return
            session = _session(self.target)
            if self._cancelled:
                return
            if absent:
                self.full_client = _client(session, self.target)
                self._result = (session, self.full_client, None)
                return
            probe = _client(session, self.target, max_attempts=2)
            self._result = (session, probe, _probe(probe, self.target, self.manifest_key))
        except BaseException as exc:  # noqa: BLE001 - raised in the sync's thread by client_read
            self._error = exc
        finally:
            self._lean_ready.set()
            self._done.set()

    def lean_body(self) -> bytes | None:
        if not self.lean:
            return None
        self._lean_ready.wait()
        return self._lean_body

    def client_read(self):
        """(session, probe client or full_client, manifest body or None): the client's reads, or their error."""
        self._go_on.set()
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._result

    def cancel(self) -> None:
        self._cancelled = True
        self._go_on.set()


@dataclass
class _StoreState:
    """The store as the early uploads read it, for the rest of the sync (remote None: not listed)."""

    session: Any
    enc: _Encryption
    manifest: dict[str, Any]
    notes: list[str]
    s3: Any = None
    remote: dict[str, tuple[int, str | None]] | None = None


class _Transfers:
    """One s3transfer manager for a sync's uploads. Each upload is verified with a HEAD as it completes (in the
    transfer's worker thread, so the HEADs overlap each other and the remaining uploads) and its result handed
    over through `next`. Bytes sent before the progress bar exists are counted and shown when it appears."""

    def __init__(self, s3, bucket: str, enc: _Encryption):
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        self.s3, self.bucket, self.enc = s3, bucket, enc
        self.done: "queue.Queue[tuple[str, _Head | None, BaseException | None]]" = queue.Queue()
        self.submitted: dict[str, _Item] = {}
        self._lock = threading.Lock()
        self._sent = 0
        self._bar: tuple[Any, Any] | None = None
        self._closed = False
        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNKSIZE,
            max_concurrency=MAX_CONCURRENCY,
            preferred_transfer_client="classic",  # the same code path against AWS and every other store
        )
        self.manager = create_transfer_manager(s3, config)
        # Parts go up with the digests the scan computed (scan.PartDigests): (bucket, key) -> digests.
        self._parts: dict[tuple[str, str], PartDigests] = {}
        self._hooks = f"hybridserve-part-digests-{id(self)}"  # botocore's unique ids are one namespace: two suffixes
        s3.meta.events.register("before-parameter-build.s3.UploadPart", self._part_checksum, unique_id=self._hooks + "-crc")
        # First: botocore's own choose-signer handler answers for every S3 operation, and the first answer wins.
        s3.meta.events.register_first("choose-signer.s3.UploadPart", _choose_part_signer, unique_id=self._hooks + "-sha")

    def _part_digest(self, params: dict[str, Any]) -> tuple[str, int] | None:
        parts = self._parts.get((params.get("Bucket"), params.get("Key")))
        number = params.get("PartNumber")
        if parts is None or not isinstance(number, int) or not 1 <= number <= len(parts.sha256):
            return None
        return parts.sha256[number - 1], parts.crc32[number - 1]

    def _part_checksum(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """before-parameter-build: the part's CRC32 as its checksum where s3transfer asked for one (botocore then
        reads nothing to compute it; with request_checksum_calculation "when_required" it asks for none, and S3
        refuses a part checksum its upload was not created with), and its sha256 for the signer."""
        digest = self._part_digest(params)
        if digest is None or context.get("is_presign_request"):
            return
        if [k for k in params if k.startswith("Checksum") and k != "ChecksumAlgorithm"]:
            return  # a checksum given by someone else: theirs stands, and botocore signs as it would
        if str(params.get("ChecksumAlgorithm", "")).upper() == "CRC32":
            params["ChecksumCRC32"] = base64.b64encode(digest[1].to_bytes(4, "big")).decode()
        context[_PART_SHA256] = digest[0]

    def submit(self, item: _Item) -> None:
        from s3transfer.subscribers import BaseSubscriber

        transfers, s3, bucket = self, self.s3, self.bucket

        class _Events(BaseSubscriber):
            def on_progress(self, future, bytes_transferred, **kwargs):
                transfers._advance(bytes_transferred)

            def on_done(self, future, **kwargs):
                # s3transfer swallows exceptions raised here: they travel in the queue.
                try:
                    future.result()
                    head, error = _head(s3, bucket, item.key), None
                except BaseException as exc:  # noqa: BLE001 - handed to the sync's thread as is
                    head, error = None, exc
                transfers.done.put((item.key, head, error))

        extra = dict(self.enc.extra_args(), Metadata={SHA_META: item.sha256})
        if item.size < MULTIPART_THRESHOLD:
            # The store checks the body against the sha256 the scan hashed (and botocore skips its own CRC32): a
            # file rewritten between hashing and upload is refused, not stored under a digest it does not have.
            # S3 takes a whole-object SHA256 only for single PUTs: parts carry the scan's digests of each part.
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(item.sha256)).decode()
        elif item.file is not None and item.file.parts is not None:
            from s3transfer.utils import ChunksizeAdjuster

            if ChunksizeAdjuster().adjust_chunksize(MULTIPART_CHUNKSIZE, item.size) == item.file.parts.part_size:
                self._parts[(self.bucket, item.key)] = item.file.parts
        self.manager.upload(str(item.file.path), self.bucket, item.key, extra_args=extra, subscribers=[_Events()])
        self.submitted[item.key] = item  # after: an upload() that raised is not counted as on its way

    def _advance(self, n: int) -> None:
        with self._lock:
            if self._bar is None:
                self._sent += n
            else:
                self._bar[0].advance(self._bar[1], n)

    def show(self, progress, task) -> None:
        """From now on, progress goes to this bar; what was sent before is on it at once."""
        with self._lock:
            progress.advance(task, self._sent)
            self._bar = (progress, task)

    def next(self) -> tuple[str, _Head | None, BaseException | None]:
        while True:
            try:
                return self.done.get(timeout=0.5)
            except queue.Empty:  # a timeout, so that Ctrl-C is seen
                continue

    def close(self, error: BaseException | None = None) -> None:
        """Wait for every transfer; with `error`, cancel the queued ones and abort started multipart uploads
        first, so nothing half-written becomes visible. (Not shutdown(cancel=True): s3transfer 0.19.3 passes its
        arguments in the wrong order there and raises a TypeError; __exit__ does it right.)"""
        if self._closed:
            return
        self._closed = True
        try:
            if error is None:
                self.manager.__exit__(None, None, None)
            else:
                self.manager.__exit__(type(error), error, None)
        finally:
            self.s3.meta.events.unregister("before-parameter-build.s3.UploadPart", unique_id=self._hooks + "-crc")
            self.s3.meta.events.unregister("choose-signer.s3.UploadPart", unique_id=self._hooks + "-sha")


_PART_SHA256 = "hybridserve_part_sha256"  # in a request's context: the sha256 of the part it sends
_PART_SIGNER = "hybridserve-s3v4-part"


def _choose_part_signer(context: dict[str, Any], signing_name: str, signature_version: str, **_: Any) -> str | None:
    """choose-signer: S3's SigV4 signer, taking the part's sha256 from the scan (_PartDigestAuth), for the parts
    _Transfers gave one; botocore's own choice otherwise (the same call botocore makes next)."""
    if _PART_SHA256 not in context or context.get("is_presign_request"):
        return None
    from botocore.handlers import set_operation_specific_signer

    chosen = set_operation_specific_signer(context=context, signing_name=signing_name) or signature_version
    if chosen != "s3v4":
        return chosen
    import botocore.auth

    botocore.auth.AUTH_TYPE_MAPS.setdefault(_PART_SIGNER, _part_digest_auth())
    return _PART_SIGNER


@functools.cache
def _part_digest_auth() -> type:
    from botocore.auth import S3SigV4Auth

    class _PartDigestAuth(S3SigV4Auth):
        """Signs a part with the sha256 the scan computed wherever botocore would read the part to compute it:
        over plain HTTP it signs every payload; over HTTPS too, once a part carries a CRC32 header (botocore then
        no longer streams an unsigned aws-chunked body with a trailing checksum, as with any checksum given)."""

        def payload(self, request):
            sha = request.context.get(_PART_SHA256)
            if sha and not self._is_streaming_checksum_payload(request) and self._should_sha256_sign_payload(request):
                return sha
            return super().payload(request)

    return _PartDigestAuth


class _EarlyUploads:
    """Uploads that start while the files are still being hashed (module docstring, Early uploads).

    On a thread of its own: read the store (the manifest through _EarlyRead, the encryption, the listing, the
    configs the store holds), decide which files are pure additions, abort the unfinished multipart uploads an
    interrupted sync left on them, then upload each such file as soon as the scan hashed it. The rest of the
    sync uses what it read (`store`) and takes the transfers over (`finish`, then _Executor). It never
    publishes: configs and the manifest are the executor's, once the scan, the plan and the validation passed.
    Any error here only ends the early uploads: the sync reads the store again itself and reports what fails.
    """

    def __init__(self, target: SyncTarget, early: "_EarlyRead", found, timings: dict[str, float]):
        self.target, self.early, self.found, self.timings = target, early, found, timings
        self.base = target.base
        self.manifest_key = self.base + MANIFEST_NAME
        self.transfers: _Transfers | None = None
        self.notes: list[str] = []  # for the report, once the executor takes over
        self.stale_multipart: list[tuple[str, str]] | None = None  # those left for the executor; None: not listed
        self.aborted = 0
        self._state: _StoreState | None = None
        self._store_read = threading.Event()
        self._started = threading.Event()  # the first upload is submitted, or there will be none
        self._queue: "queue.Queue[LocalFile | None]" = queue.Queue()
        self._lock = threading.Lock()  # _stopped and the transfers' creation and submissions
        self._stopped = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="hybridserve-sync-early-uploads")
        self._thread.start()

    # -- called by the sync's thread (hashed: by the scan's hashing threads)

    def hashed(self, f: LocalFile) -> None:
        self._queue.put(f)

    def hashing_done(self) -> None:
        self._queue.put(None)

    def wait_started(self) -> None:
        """Until the first upload is submitted (or there will be none), at most STARTED_WAIT_S seconds.

        The scan calls it before it parses the configs: parsing (and importing protobuf) holds the GIL that this
        thread's botocore import and client need, and the configs are not needed before the plan. A store slow to
        answer delays a bad config's error by STARTED_WAIT_S at most."""
        started = time.perf_counter()
        self._started.wait(STARTED_WAIT_S)
        self.timings[STARTED_WAIT_PHASE] = time.perf_counter() - started

    def store(self) -> _StoreState | None:
        """What it read of the store; None when it did not read it (the repository may be unchanged: the fast
        path decides) or could not."""
        self._store_read.wait()
        return self._state

    def finish(self) -> None:
        """Once the scan is done: wait until every hashed file it takes is submitted."""
        self._queue.put(None)
        self._thread.join()

    def close(self) -> None:
        """Stop submitting; cancel what was not taken over by the executor (a no-op once it closed them)."""
        with self._lock:
            self._stopped = True
            transfers = self.transfers
        self._queue.put(None)
        if transfers is not None:
            self._thread.join()
            transfers.close(RuntimeError("the sync ended before these uploads were taken over"))

    # -- its thread

    def _run(self) -> None:
        try:
            started = time.perf_counter()
            self._state = self._read_store()
            if self._state is not None:
                self.timings["read the store (alongside the scan)"] = time.perf_counter() - started
            self._store_read.set()
            if self._state is None or self._state.remote is None:
                return
            eligible = self._additions(self._state)
            if not eligible or self._stopped:
                return
            # Under the lock, so a sync that already ended (close) never aborts the uploads of the next one on
            # this prefix, in a long-lived caller that starts it at once.
            with self._lock:
                if self._stopped:
                    return
                self._abort_stale_multipart(self._state.s3, eligible)
            with self._lock:
                if self._stopped:
                    return
                self.transfers = _Transfers(self._state.s3, self.target.bucket, self._state.enc)
            while (batch := self._next_batch()) is not None:
                for f in batch:
                    if f.rel not in eligible:
                        continue
                    with self._lock:
                        if self._stopped:
                            return
                        item = _Item(key=self.base + f.rel, rel=f.rel, size=f.size, sha256=f.sha256, state="add", file=f)
                        self.transfers.submit(item)
                    self._started.set()
        except BaseException:  # noqa: BLE001 - the sync's own reads and uploads report it
            return
        finally:
            self._store_read.set()
            self._started.set()

    def _next_batch(self) -> list[LocalFile] | None:
        """The files hashed since the last call, largest first; None once hashing is done and all are taken.

        The scan hashes the smallest files first (they can go at once), but files often wait here for the store's
        reads: then the largest go first, so their parts keep the store busy while the small ones fill the gaps
        (small files first left it idle for a few hundred milliseconds, then waited on the big parts)."""
        f = self._queue.get()
        if f is None:
            return None
        batch = [f]
        with contextlib.suppress(queue.Empty):
            while (f := self._queue.get_nowait()) is not None:
                batch.append(f)
        if f is None:
            self._queue.put(None)  # the end stays seen: the next call returns None
        return sorted(batch, key=lambda x: x.size, reverse=True)

    def _read_store(self) -> _StoreState | None:
        walked = {rel for _, _, rel, _ in self.found}

        def maybe_unchanged(manifest: dict[str, Any]) -> bool:
            # The manifest lists every file and config the repository has: perhaps up to date. Then the fast path
            # decides once the files are hashed, and an unchanged sync keeps costing one GET (no LIST).
            return bool(manifest) and manifest.get("prefix") == self.base and set(manifest["objects"]) == walked

        lean = self.early.lean_body()
        if lean is not None and maybe_unchanged(_parse_manifest(lean, self.manifest_key, [])):
            return None
        session, probe, body = self.early.client_read()
        notes: list[str] = []
        enc = _resolve_encryption(session, probe, self.target, notes)
        manifest = _parse_manifest(body, self.manifest_key, notes)
        state = _StoreState(session, enc, manifest, notes)
        if maybe_unchanged(manifest):
            return state
        state.s3 = self.early.full_client or _client(session, self.target)
        state.remote = _list(state.s3, self.target.bucket, self.base)
        return state

    def _additions(self, state: _StoreState) -> set[str]:
        """The files that are pure additions: their key is neither listed nor in the manifest, and no config the
        store holds may serve their version. A config the sync did not write (no versions metadata) may serve
        any version by its own policy: none of that model's files is uploaded early."""
        remote, base = state.remote, self.base
        objects = state.manifest.get("objects", {}) if state.manifest else {}
        published = state.manifest.get("published") if state.manifest else None
        published = published if isinstance(published, dict) else {}
        models = sorted({model for model, _, _, _ in self.found})
        config_keys = [base + f"{m}/{CONFIG_NAME}" for m in models if base + f"{m}/{CONFIG_NAME}" in remote]
        with ThreadPoolExecutor(max_workers=HEAD_CONCURRENCY) as pool:
            heads = dict(zip(config_keys, pool.map(lambda k: _head(state.s3, self.target.bucket, k), config_keys)))
        served: dict[str, set[int] | None] = {}  # model -> versions readers may load; None: any
        for m in models:
            head = heads.get(base + f"{m}/{CONFIG_NAME}")
            if head is not None and VERSIONS_META not in head.metadata:
                served[m] = None
                continue
            listed = published.get(m)
            versions = {v for v in listed if isinstance(v, int)} if isinstance(listed, list) else set()
            served[m] = versions | _published_versions(head, set())
        eligible = set()
        for model, _, rel, version in self.found:
            versions = served[model]
            if rel == f"{model}/{CONFIG_NAME}" or base + rel in remote or rel in objects or versions is None:
                continue
            if version is None:
                # A model-level file (labels, ...) goes with every version: only while no config is in the store.
                if base + f"{model}/{CONFIG_NAME}" not in remote and not versions:
                    eligible.add(rel)
            elif version not in versions:
                eligible.add(rel)
        return eligible

    def _abort_stale_multipart(self, s3, keys: set[str]) -> None:
        """Before the first early upload: abort the unfinished multipart uploads of an interrupted sync on these
        keys (_Executor._abort_stale_multipart); the others listed are left for the executor."""
        from botocore.exceptions import ClientError

        wanted = {self.base + rel for rel in keys}
        try:
            stale = _stale_multipart(s3, self.target.bucket, self.base)
            for key, upload_id in stale:
                if key in wanted:
                    s3.abort_multipart_upload(Bucket=self.target.bucket, Key=key, UploadId=upload_id)
                    self.aborted += 1
        except ClientError as exc:  # stores without ListMultipartUploads; never a reason to fail the sync
            self.notes.append(f"could not clean up unfinished multipart uploads ({error_code(exc)})")
            self.stale_multipart = []
            return
        self.stale_multipart = [(k, u) for k, u in stale if k not in wanted]


def _stale_multipart(s3, bucket: str, base: str) -> list[tuple[str, str]]:
    """(key, upload id) of every unfinished multipart upload under `base`."""
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=base)
    return [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", []) or []]


def _up_to_date(models: list[LocalModel], manifest: dict[str, Any], enc: _Encryption, base: str, report: SyncReport) -> bool:
    """The fast path (module docstring): does the manifest say the store holds exactly this repository?

    Every local file and every rendered config must have the manifest's sha256 and size under the encryption
    asked for, the manifest must list nothing else, and publish the versions the policies select now. Then
    the report is filled as "all unchanged" and no other request is made.
    """
    if not manifest or manifest.get("prefix") != base:
        return False
    objects = manifest["objects"]
    published = manifest.get("published") or {}
    expected: dict[str, tuple[str, int]] = {}
    versions_now: dict[str, list[int]] = {}
    for m in models:
        for f in m.files:
            expected[f.rel] = (f.sha256, f.size)
        # As render_config(m, select_versions(m.config, m.versions)) gives them (scan.ConfigCache: no protobuf).
        expected[m.config_file.rel] = (m.facts.rendered_sha256, m.facts.rendered_size)
        versions_now[m.name] = list(m.facts.selected)
    if set(objects) != set(expected) or published != versions_now:
        return False
    for rel, (sha, size) in expected.items():
        entry = objects[rel]
        if not isinstance(entry, dict) or entry.get("sha256") != sha or entry.get("size") != size:
            return False
        if not enc.matches(entry.get("sse"), entry.get("kms_key_id")):
            return False
    report.compared_with = "manifest"
    report.skipped.extend(base + rel for rel in sorted(expected))
    report.published.update(versions_now)
    return True


class _Validation:
    """The models module's validation, in a process of its own alongside the scan and the store's reads;
    skipped for content that validated before.

    Validation loads and runs every artifact (importing torch alone takes seconds): alone it was most of an
    unchanged sync's time and a large part of a small full one. It runs while the files are hashed and the
    store is read (a process, not a thread: torch's import would hold the GIL they need), and everything
    that writes waits for it (`wait`), so an invalid repository still changes nothing in the store; when
    anything else fails meanwhile, the invalid repository is what gets reported.

    Two records next to the hash cache say what passed. The tree record: a fingerprint of the last tree that
    passed, per repository path (every entry's lstat and link target, the validator's own source and the
    installed torch and tritonclient; no file read): a match skips at once. The content record
    (hybridserve/sync/validated.py): digests of contents that passed, here or in `hybridserve models validate`,
    whatever their path or file times; checked once the scan hashed the files (`scanned`). When there is a
    content record to check, the child starts only if it does not match; else at once, alongside the scan.
    Either way, content that never validated is validated. A digest is recorded only when the tree's
    fingerprint did not change from before the scan to after the validation passed (no byte changed meanwhile).
    """

    def __init__(self, repo_dir: Path, hash_cache: Path | None, timings: dict[str, float], *, skip: bool):
        self.repo_dir = Path(repo_dir)
        self.timings = timings
        self.child: subprocess.Popen | None = None
        self.started = 0.0
        self.record = self.repo_dir.resolve().as_posix() if hash_cache else None
        self.path = Path(hash_cache).with_name(Path(hash_cache).stem + "-validated.json") if hash_cache else None
        self.contents = record_path(Path(hash_cache).parent) if hash_cache else None
        self.fingerprint = None
        self.digest: str | None = None
        self.deferred = False
        self.state = "skipped: the caller validated the repository" if skip else "ran"
        if skip:
            return
        if self.path is not None:
            self.fingerprint = tree_fingerprint(self.repo_dir)
            if self._known().get(self.record) == self.fingerprint:
                self.state = "skipped: this very tree validated before"
                return
            if has_records(self.contents):
                self.deferred = True  # `scanned` decides, once the content's digest is known
                return
        self._start()

    def scanned(self, models: list[LocalModel]) -> None:
        """The scan hashed every file: skip the validation if this content validated before, else run it."""
        if self.state != "ran" or self.path is None:
            return
        self.digest = content_digest(self.repo_dir, models)
        if not self.deferred:
            return
        self.deferred = False
        if is_recorded(self.contents, self.digest):
            self.state = "skipped: this content validated before"
            if tree_fingerprint(self.repo_dir) == self.fingerprint:  # the tree as hashed: a match next time skips sooner
                self._remember_tree()
            return
        self._start()

    def _start(self) -> None:
        import hybridserve

        # The child imports the same hybridserve as this process, wherever that came from.
        root = str(Path(hybridserve.__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        # Each artifact runs once on a few reference rows: one thread is plenty, and torch's OpenMP pool would
        # otherwise spin against the hashing threads for the same cores (seen: 3x slower on 2 cores).
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.started = time.perf_counter()
        self.child = subprocess.Popen(
            [sys.executable, "-m", "hybridserve.sync.validate_child", str(self.repo_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )

    def _known(self) -> dict[str, str]:
        try:
            known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # no record, or a damaged one: validate
        return known if isinstance(known, dict) else {}

    def wait(self) -> None:
        """Returns once the repository validated; raises the validator's UserError when it did not."""
        if self.child is None:
            return
        child, self.child = self.child, None
        out, err = child.communicate()
        self.timings["validate (alongside)"] = time.perf_counter() - self.started
        try:
            verdict = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(
                f"validating {self.repo_dir} failed (exit code {child.returncode}):\n{err.decode(errors='replace')[-4000:]}"
            ) from None
        if not verdict.get("ok"):
            raise UserError(
                f"not publishing (new files may already be uploaded, unpublished): {verdict.get('message')}", exit_code=EXIT_INVALID_REPOSITORY, details=verdict.get("details") or None
            )
        if self.path is None:
            return
        if tree_fingerprint(self.repo_dir) != self.fingerprint:
            return  # changed while it was validated: what passed is not known exactly; validate next time
        self._remember_tree()
        if self.digest is not None:
            record_content(self.contents, self.digest)

    def _remember_tree(self) -> None:
        known = self._known()
        known[self.record] = self.fingerprint
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, self.path)
        except OSError:
            pass  # an unwritable state dir only costs a validation next time

    def failure(self) -> UserError | None:
        """After another error: the validator's own, if it refuses the repository (it is named first)."""
        try:
            self.wait()
        except UserError as exc:
            return exc
        except Exception:  # noqa: BLE001 - the other error is the one to report then
            return None
        return None

    def close(self) -> None:
        """Never leave the child behind (an interrupted sync)."""
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()


def _pins(models, remote, s3, target: SyncTarget, pins, honour_history: bool, notes: list[str]) -> dict[str, list[int]]:
    """model -> versions to publish instead of what its policy selects: `pins`, then the promotion history."""
    from hybridserve.promote.history import HistoryError, read_served

    out = {name: sorted(set(versions)) for name, versions in (pins or {}).items()}
    recorded: dict[str, tuple[int, str]] = {}
    if honour_history:
        try:
            recorded = read_served(s3, target.bucket, target.base, sorted(remote))
        except HistoryError as exc:
            raise UserError(f"not publishing (new files may already be uploaded, unpublished): {exc}", exit_code=EXIT_BAD_ARGUMENT) from None
    local = {m.name: m for m in models}
    bad = []
    for name, (version, where) in sorted(recorded.items()):
        if name in out or name not in local:
            continue
        m = local[name]
        if version not in m.versions:
            bad.append(
                f"{name}: version {version} is the served one as promoted ({where}), but {name}/{version}/ is not in "
                f"the repository; restore it, or `hybridserve models promote {name} --version N` one it has "
                f"({', '.join(map(str, sorted(m.versions)))})"
            )
            continue
        out[name] = [version]
        others = sorted(v for v in policy_selects(m, m.versions) if v != version)
        notes.append(
            f"{name}: publishing version {version}, the served one as promoted ({where})"
            + (f"; versions {', '.join(map(str, others))} are uploaded, not served: `hybridserve models promote {name} --version N` gates and serves one" if others else "")
        )
    for name, versions in (pins or {}).items():
        missing = [v for v in versions if name not in local or v not in local[name].versions]
        if missing:
            bad.append(f"{name}: pinned versions {missing} are not in the repository")
    if bad:
        raise UserError("not publishing (new files may already be uploaded, unpublished): the promotion history names versions the repository lacks:", exit_code=EXIT_BAD_ARGUMENT, details=bad)
    return out


def _next_version_hint(plan: "_Plan") -> str:
    model, version = sorted(plan.conflicts)[0]
    newest = max(next(m for m in plan.models if m.name == model).versions)
    return f"{model}/{newest + 1}/"


class _Plan:
    """What is where: local files with their decisions, remote keys, published versions, conflicts."""

    def __init__(self, target, enc, models, remote, manifest, s3, notes, pins=None, *, verify: bool = False):
        self.target: SyncTarget = target
        self.verify = verify  # trust no manifest entry: HEAD every object that is listed
        self.enc: _Encryption = enc
        self.models: list[LocalModel] = models
        self.remote: dict[str, tuple[int, str | None]] = remote
        self.manifest = manifest
        self.manifest_objects: dict[str, Any] = manifest.get("objects", {}) if manifest else {}
        self.s3 = s3
        self.notes = notes
        self.base = target.base
        self.manifest_key = self.base + MANIFEST_NAME
        self.items: dict[str, _Item] = {}  # files (not configs), by key
        self.config_heads: dict[str, _Head | None] = {}
        self.published_before: dict[str, set[int]] = {}
        self.configs: dict[str, tuple[list[int], bytes]] = {}  # model -> (versions, rendered) if all uploads succeed
        self.config_items: dict[str, _Item] = {}
        self.conflicts: dict[tuple[str, int], list[str]] = {}
        self.stale: list[str] = []
        # Objects in a version directory this run publishes for the first time that the repository lacks (an
        # earlier, failed run's early upload of a file since renamed or removed, or a foreign write): deleted
        # before any config names the version, since Triton loads every file under it. Nothing serves it yet.
        self.strays: list[str] = []
        self.pins: dict[str, list[int]] = pins or {}

    def key(self, rel: str) -> str:
        return self.base + rel

    def select(self, m: LocalModel, ready) -> list[int]:
        """The versions m's config.pbtxt publishes among `ready`: its pin, else what its policy selects."""
        if m.name in self.pins:
            return sorted(set(self.pins[m.name]) & set(ready))
        return policy_selects(m, ready)

    def bookkeeping(self, key: str) -> bool:
        """The sync's manifest and the promotion histories: never stale, never pruned."""
        from hybridserve.promote.history import is_history_key

        return key == self.manifest_key or is_history_key(self.base, key)

    def _trusted(self, f_sha: str, f_size: int, rel: str, key: str) -> dict[str, Any] | None:
        """The manifest entry, if manifest and listing agree it is this content under the asked encryption."""
        entry = self.manifest_objects.get(rel)
        listed = self.remote.get(key)
        if self.verify or not entry or not listed:
            return None
        size, etag = listed
        if (
            entry.get("sha256") == f_sha
            and entry.get("size") == f_size == size
            and etag
            and entry.get("etag") == etag
            and self.enc.matches(entry.get("sse"), entry.get("kms_key_id"))
        ):
            return entry
        return None

    def compare(self) -> None:
        to_head: list[str] = []
        for m in self.models:
            for f in m.files:
                key = self.key(f.rel)
                item = _Item(key=key, rel=f.rel, size=f.size, sha256=f.sha256, state="add", file=f)
                if key in self.remote:
                    entry = self._trusted(f.sha256, f.size, f.rel, key)
                    if entry:
                        item.state, item.entry = "same", entry
                    else:
                        to_head.append(key)
                self.items[key] = item
            config_key = self.key(m.config_file.rel)
            if config_key in self.remote:
                to_head.append(config_key)

        with ThreadPoolExecutor(max_workers=HEAD_CONCURRENCY) as pool:
            heads = dict(zip(to_head, pool.map(lambda k: _head(self.s3, self.target.bucket, k), to_head)))

        for key, item in self.items.items():
            if key not in heads:
                continue
            head = heads[key]
            if head is None:
                item.state = "add"
            elif head.size == item.size and head.sha256 == item.sha256:
                if self.enc.matches(head.sse, head.kms_key_id):
                    item.state, item.entry = "same", head.entry()
                else:
                    item.state, item.content_same = "update", True
            else:
                item.state = "update"

        for m in self.models:
            config_key = self.key(m.config_file.rel)
            head = heads.get(config_key)
            self.config_heads[m.name] = head
            remote_versions = self._remote_versions(m.name)
            self.published_before[m.name] = _published_versions(head, remote_versions)
            versions = self.select(m, m.versions)
            rendered = rendered_config(m, versions)
            self.configs[m.name] = (versions, rendered)
            self.config_items[m.name] = self._config_item(m, rendered)

    def _config_item(self, m: LocalModel, rendered: bytes) -> _Item:
        key = self.key(m.config_file.rel)
        sha = _sha256(rendered)
        head = self.config_heads.get(m.name)
        item = _Item(key=key, rel=m.config_file.rel, size=len(rendered), sha256=sha, state="add")
        if head is not None:
            if head.sha256 == sha and head.size == len(rendered) and self.enc.matches(head.sse, head.kms_key_id):
                item.state, item.entry = "same", head.entry()
            else:
                item.state = "update"
        return item

    def _remote_versions(self, model: str) -> set[int]:
        prefix = self.key(model + "/")
        versions = set()
        for key in self.remote:
            if key.startswith(prefix):
                parts = key[len(prefix):].split("/")
                if len(parts) > 1 and version_of(parts[0]) is not None:
                    versions.add(int(parts[0]))
        return versions

    def local_keys(self) -> set[str]:
        return set(self.items) | {self.key(m.config_file.rel) for m in self.models}

    def find_conflicts(self, *, prune: bool) -> None:
        for item in self.items.values():
            f = item.file
            if item.state == "same" or item.content_same or f is None or f.version is None:
                continue
            entry = self.manifest_objects.get(item.rel)
            if isinstance(entry, dict) and entry.get("sha256") == item.sha256 and entry.get("size") == item.size:
                # Readers were promised these bytes and cannot get them now: putting them back is a repair,
                # not an in-place change.
                item.restores = True
                continue
            if f.version in self.published_before.get(f.model, set()):
                self.conflicts.setdefault((f.model, f.version), []).append(
                    f"{item.rel}: {'added to' if item.state == 'add' else 'changed in'} published version {f.model}/{f.version}"
                )
        local = self.local_keys()
        local_models = {m.name: m for m in self.models}
        for key in sorted(self.remote):
            if key in local or self.bookkeeping(key):
                continue
            parts = key[len(self.base):].split("/")
            model = local_models.get(parts[0])
            version = version_of(parts[1]) if len(parts) > 2 else None
            publishes = self.configs[model.name][0] if model else ()
            if model and version in publishes and version not in self.published_before.get(model.name, set()):
                self.strays.append(key)
        if not prune:
            return
        strays = set(self.strays)
        self.stale = sorted(k for k in self.remote if k not in local and not self.bookkeeping(k) and k not in strays)
        for key in self.stale:
            parts = key[len(self.base):].split("/")
            model = local_models.get(parts[0])
            version = version_of(parts[1]) if len(parts) > 2 else None
            if model and version in model.versions and version in self.published_before.get(model.name, set()):
                self.conflicts.setdefault((model.name, version), []).append(
                    f"{key[len(self.base):]}: --prune would delete it from published version {model.name}/{version}"
                )

    def conflict_details(self) -> list[str]:
        return [line for _, lines in sorted(self.conflicts.items()) for line in lines]

    def fill_report(self, report: SyncReport, *, prune: bool) -> None:
        for m in self.models:
            for f in m.files:
                item = self.items[self.key(f.rel)]
                if item.state == "same":
                    report.skipped.append(item.key)
                else:
                    note = "re-encrypt (same content)" if item.content_same else ""
                    if item.restores:
                        note = "restore (missing or different in the store)"
                    if (f.model, f.version) in self.conflicts:
                        note = "published version: needs --replace"
                    report.changes.append(Change(item.state, item.key, item.size, note))
                    if report.dry_run:
                        report.uploaded.append(item.key)
                        report.bytes_uploaded += item.size
            citem = self.config_items[m.name]
            versions = self.configs[m.name][0]
            report.published[m.name] = versions
            if citem.state == "same":
                report.skipped.append(citem.key)
            else:
                report.changes.append(Change(citem.state, citem.key, citem.size, "publishes versions " + ", ".join(map(str, versions))))
                if report.dry_run:
                    report.uploaded.append(citem.key)
                    report.bytes_uploaded += citem.size
        for key in self.strays:
            report.changes.append(Change("delete", key, self.remote[key][0], "not in the repository, in a version published now"))
            if report.dry_run:
                report.deleted.append(key)
        if prune:
            for key in self.stale:
                report.changes.append(Change("delete", key, self.remote[key][0], "prune"))
                if report.dry_run:
                    report.deleted.append(key)
        else:
            local = self.local_keys()
            strays = set(self.strays)
            stale = [k for k in self.remote if k not in local and not self.bookkeeping(k) and k not in strays]
            if stale:
                report.notes.append(f"{len(stale)} objects under the prefix are not in the repository; --prune deletes them")


class _Executor:
    """Carries out a plan: (unpublish for --replace), upload + verify, publish per model, prune, manifest."""

    def __init__(self, plan: _Plan, report: SyncReport, *, prune, show_progress, console, on_uploaded, span=None,
                 early: _EarlyUploads | None = None):
        self.plan = plan
        self.early = early  # its transfers (already under way) are taken over
        self.span = span or _Spans(report.timings)
        self.report = report
        self.prune = prune
        self.show_progress = show_progress
        self.console = console
        self.on_uploaded = on_uploaded
        self.s3 = plan.s3
        self.bucket = plan.target.bucket
        self.entries: dict[str, dict[str, Any]] = {}  # rel -> manifest entry of verified objects
        self.verified: set[str] = set()  # keys whose content is verified present
        self.replacing: set[str] = set()  # models with versions unpublished for --replace

    def run(self) -> None:
        plan = self.plan
        for item in plan.items.values():
            if item.state == "same":
                self.verified.add(item.key)
                self.entries[item.rel] = item.entry
        pending: dict[str, list[_Item]] = {
            m.name: [plan.items[plan.key(f.rel)] for f in m.files if plan.items[plan.key(f.rel)].state != "same"]
            for m in plan.models
        }

        self.replacing = {model for model, _ in plan.conflicts}
        self._invalidate_manifest(pending)
        if plan.strays:
            delete_configs_first(
                self.s3, self.bucket, plan.base, plan.strays,
                what=f"the store refused to delete {{n}} objects in bucket {self.bucket!r} from version directories published now:",
                on_deleted=self.report.deleted.extend,
            )
            self.report.notes.append(
                f"deleted {len(plan.strays)} objects the repository lacks from version directories published now "
                "(Triton would have loaded them with the version)"
            )

        # --replace: the changed versions become invisible before they are touched, and are published again
        # only after the uploads and the prune, when their content is final.
        for model in sorted(self.replacing):
            m = self._model(model)
            changed = {v for mm, v in plan.conflicts if mm == model}
            ready = {v for v in m.versions if v not in changed and self._version_ready(m, v)}
            self._publish(m, ready, unpublishing=changed)

        for m in plan.models:
            if not pending[m.name] and m.name not in self.replacing:
                self._publish(m, set(m.versions))

        uploads = [item for m in plan.models for item in pending[m.name]]
        if self.early is not None:
            self.report.notes.extend(self.early.notes)
        if uploads:
            with self.span("upload and verify (configs of complete models included)"):
                early = self.early.transfers.submitted if self.early is not None else {}
                self._abort_stale_multipart({item.key for item in uploads if item.key not in early})
                self._upload_all(uploads, pending)

        if plan.enc.algorithm == "aws:kms" and plan.enc.kms_key_id is None:
            used = sorted({e.get("kms_key_id") or "?" for e in self.entries.values() if e})
            self.report.notes.append(f"the objects are encrypted under KMS key {', '.join(used)}")
        if self.prune and plan.stale:
            self._prune()
        with self.span("publish the rest, write the manifest"):
            for model in sorted(self.replacing):
                self._publish(self._model(model), set(self._model(model).versions))
            self._write_manifest()

    def _model(self, name: str) -> LocalModel:
        return next(m for m in self.plan.models if m.name == name)

    def _invalidate_manifest(self, pending: dict[str, list[_Item]]) -> None:
        """Before overwriting or deleting an object the manifest vouches for, drop it from the manifest.

        The fast path trusts the manifest. Were this run interrupted after such a write, and the local file
        then put back as the manifest knew it, the manifest would vouch for bytes the store no longer has. One
        PUT, only on runs that change what an earlier run published; pure additions need none (the manifest
        lacks them, so the fast path does not apply until a run completes).
        """
        plan = self.plan
        objects = plan.manifest_objects
        if not objects or plan.manifest_key not in plan.remote:
            return
        touched = {item.rel for items in pending.values() for item in items}
        touched |= {m.config_file.rel for m in plan.models if plan.config_items[m.name].state != "same" or m.name in self.replacing}
        if self.prune:
            touched |= {key[len(plan.base):] for key in plan.stale}
        touched |= {key[len(plan.base):] for key in plan.strays}
        if not touched & set(objects):
            return
        manifest = dict(plan.manifest, objects={rel: e for rel, e in objects.items() if rel not in touched})
        manifest["written"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._put_manifest(manifest)
        plan.manifest = manifest

    def _version_ready(self, m: LocalModel, version: int) -> bool:
        return all(self.plan.key(f.rel) in self.verified for f in m.versions[version])

    # ---- uploads

    def _abort_stale_multipart(self, keys: set[str]) -> None:
        """Abort the unfinished multipart uploads a killed sync left on keys this run uploads again.

        They are invisible to readers but cost storage until a lifecycle rule (AbortIncompleteMultipartUpload)
        removes them. Only keys of this run: one sync per prefix at a time is the rule anyway. The early uploads
        did so for theirs already (and listed them: that list serves here).
        """
        from botocore.exceptions import ClientError

        early = self.early
        aborted = early.aborted if early is not None else 0
        try:
            listed = early.stale_multipart if early is not None else None
            stale = [(k, u) for k, u in (listed if listed is not None else _stale_multipart(self.s3, self.bucket, self.plan.base)) if k in keys]
            for key, upload_id in stale:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                aborted += 1
        except ClientError as exc:  # stores without ListMultipartUploads; never a reason to fail the sync
            self.report.notes.append(f"could not clean up unfinished multipart uploads ({error_code(exc)})")
        if aborted:
            self.report.notes.append(f"aborted {aborted} unfinished multipart uploads of an interrupted sync")

    def _upload_all(self, uploads: list[_Item], pending: dict[str, list[_Item]]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        transfers = self.early.transfers if self.early is not None else _Transfers(self.s3, self.bucket, self.plan.enc)
        progress, task = self._progress(sum(i.size for i in uploads), len(uploads))
        if progress is None:
            # The report of a sync that uploaded is printed with rich: import it while this thread only waits
            # for the store (done after the last upload, the import was 65 ms of a 101 MiB sync).
            _import_in_background("rich.console", "rich.table", "rich.text", "rich.filesize", "hybridserve.console")
        planned = {item.key: item for item in uploads}
        remaining = {name: len(items) for name, items in pending.items()}
        try:
            if progress is not None:
                progress.start()
                transfers.show(progress, task)
            # Model by model: with a bounded thread pool, earlier models complete (and publish) first.
            for item in uploads:
                if item.key not in transfers.submitted:  # an early upload is of these very bytes (one scan)
                    transfers.submit(item)
            for _ in range(len(planned.keys() | transfers.submitted.keys())):
                key, head, error = transfers.next()
                item = planned.get(key) or transfers.submitted[key]
                if isinstance(error, ClientError) and error_code(error) in _BAD_DIGEST:
                    raise UserError(
                        f"{item.rel} changed while it was being synced: the store refused bytes whose checksum is not "
                        f"the one hashed moments before ({error_code(error)}); its model version is not published. "
                        "Run the sync again once the file is final.",
                        exit_code=EXIT_VERIFY_FAILED,
                    ) from None
                if isinstance(error, (ClientError, BotoCoreError)):
                    raise translate(
                        error,
                        where=self.plan.target.where,
                        bucket=self.bucket,
                        what=f"uploading {item.key}",
                        sse=self.plan.enc.algorithm,
                    ) from None
                if error is not None:
                    raise error
                self._verify(item, head)
                self.report.uploaded.append(item.key)
                self.report.bytes_uploaded += item.size
                if self.on_uploaded is not None:
                    self.on_uploaded(item.key)
                if key not in planned:
                    continue  # not in the plan (cannot happen: early uploads are additions, planned as such)
                model = item.file.model
                remaining[model] -= 1
                if remaining[model] == 0 and model not in self.replacing:
                    self._publish(self._model(model), set(self._model(model).versions))
        except BaseException as exc:
            # Cancels queued transfers and aborts started multipart uploads: nothing half-written becomes visible.
            transfers.close(exc)
            raise
        else:
            transfers.close()
        finally:
            if progress is not None:
                progress.stop()

    def _progress(self, total: int, count: int):
        if not self.show_progress:
            return None, None
        from hybridserve.console import make_console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        progress = Progress(
            TextColumn("[bold]sync[/] {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console or make_console(stderr=True),
        )
        task = progress.add_task(f"{count} files", total=total)
        return progress, task

    def _verify(self, item: _Item, head: _Head | None) -> None:
        """The object is what was sent (size, sha256 metadata) under the encryption asked for."""
        problems = []
        if head is None:
            problems.append("missing after upload")
        else:
            if head.size != item.size:
                problems.append(f"size {head.size}, sent {item.size}")
            if head.sha256 != item.sha256:
                problems.append(f"sha256 metadata {head.sha256!r}, sent {item.sha256}")
            if not self.plan.enc.matches(head.sse, head.kms_key_id):
                problems.append(
                    f"encryption {head.sse or 'none'}{' ' + head.kms_key_id if head.kms_key_id else ''}, "
                    f"asked for {self.plan.enc.label}"
                )
        if problems:
            hint = (
                " The store may not support this encryption: use an --sse it supports (AES256 for SSE-S3), "
                "or --sse none if it encrypts at rest by other means."
                if any("encryption" in p for p in problems)
                else ""
            )
            raise UserError(
                f"{item.key} did not verify after upload; its model version is not published.{hint}",
                exit_code=EXIT_VERIFY_FAILED,
                details=problems,
            )
        self.verified.add(item.key)
        self.entries[item.rel] = head.entry()

    # ---- publish

    def _publish(self, m: LocalModel, ready: set[int], *, unpublishing: set[int] | None = None) -> None:
        """Write m's config.pbtxt naming the versions its policy selects among `ready` (verified) ones."""
        plan = self.plan
        ready = {v for v in ready if self._version_ready(m, v)}
        versions = plan.select(m, ready)
        key = plan.key(m.config_file.rel)
        if not versions and m.name in plan.pins and not unpublishing:
            # The pinned versions are not uploaded yet: the published config stays as it is. Not when they are
            # being replaced (--replace): then the config must stop naming them first, like any other version.
            return
        if not versions:
            # Only reachable through --replace of a model's last selectable version.
            if plan.config_heads.get(m.name) is not None:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
                plan.config_heads[m.name] = None
            self.report.notes.append(
                f"{m.name}: unpublished versions {sorted(unpublishing or [])} while they are replaced; "
                "no other version was left, so its config.pbtxt is removed meanwhile"
            )
            return
        rendered = rendered_config(m, versions)
        sha = _sha256(rendered)
        head = plan.config_heads.get(m.name)
        if unpublishing:
            self.report.notes.append(f"{m.name}: unpublished versions {sorted(unpublishing)} while they are replaced")
        if not (head is not None and head.sha256 == sha and head.size == len(rendered) and plan.enc.matches(head.sse, head.kms_key_id)):
            extra = plan.enc.extra_args()
            self.s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=rendered,
                ContentType="text/plain",
                Metadata={SHA_META: sha, VERSIONS_META: ",".join(map(str, versions))},
                **extra,
            )
            item = _Item(key=key, rel=m.config_file.rel, size=len(rendered), sha256=sha, state="update")
            head = _head(self.s3, self.bucket, key)
            self._verify(item, head)
            plan.config_heads[m.name] = head
            if not unpublishing and key not in self.report.uploaded:
                self.report.uploaded.append(key)
                self.report.bytes_uploaded += len(rendered)
        else:
            self.entries[m.config_file.rel] = head.entry()
        self.report.published[m.name] = versions

    # ---- prune and manifest

    def _prune(self) -> None:
        plan = self.plan
        delete_configs_first(
            self.s3, self.bucket, plan.base, plan.stale, what=f"--prune: the store refused to delete {{n}} objects in bucket {self.bucket!r}:",
            on_deleted=self.report.deleted.extend,
        )

    def _write_manifest(self) -> None:
        plan = self.plan
        content = {
            "prefix": plan.base,
            "encryption": {"sse": plan.enc.algorithm, "kms_key_id": plan.enc.kms_key_id},
            "published": {name: versions for name, versions in sorted(self.report.published.items())},
            "objects": {rel: self.entries[rel] for rel in sorted(self.entries)},
        }
        if plan.manifest and all(plan.manifest.get(k) == v for k, v in content.items()) and plan.manifest_key in plan.remote:
            return  # unchanged: an up-to-date sync writes nothing at all
        manifest = {"format": MANIFEST_FORMAT, "written": datetime.now(timezone.utc).isoformat(timespec="seconds"), **content}
        self._put_manifest(manifest)

    def _put_manifest(self, manifest: dict[str, Any]) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self.plan.manifest_key,
            Body=(json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode(),
            ContentType="application/json",
            **self.plan.enc.extra_args(),
        )
