"""Fill the edge cache from the hub bucket: the objects the hub's sync manifest lists, changed ones only.

The hub prefix is written by `hybridserve sync` (hybridserve/sync/engine.py), whose manifest names every
object with its sha256 and size, written last, after every object it names was verified. The fill copies
exactly those objects:

- only what differs: an object whose sha256 (the cache's copy of the manifest, else the object's
  x-amz-meta-sha256) matches is skipped, so an interrupted fill resumes where it stopped;
- model files first, each model's config.pbtxt after them, the manifest last: the cache keeps the hub's
  atomic-publish order, so Triton never reads a config naming a version whose files are not all there;
- every download is checked against the manifest's sha256 before it is written to the cache (SSE-S3);
- bandwidth-limited when configured (s3transfer's max_bandwidth, bytes per second on the download);
- keys the hub no longer has are removed, configs first (the sync's own helper);
- a new publication (a new hub prefix) reuses what the cache already holds: an object whose sha256 a manifest
  of another prefix in the cache lists is copied inside the cache (no download), so only changed objects
  cross the link. The other prefixes stay until `prune_cache` removes them (after the new one serves).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hybridserve.edge.config import HubSource
from hybridserve.errors import UserError
from hybridserve.local.objectstore import S3Endpoint, ensure_bucket
from hybridserve.sync.engine import MANIFEST_NAME, SHA_META, VERSIONS_META, delete_configs_first
from hybridserve.sync.scan import CONFIG_NAME

EXIT_FILL = 3


@dataclass
class FillReport:
    copied: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # of `copied`: copied inside the cache from another prefix
    skipped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    bytes_copied: int = 0  # downloaded from the hub (objects reused from the cache cross no link)
    changed_models: list[str] = field(default_factory=list)  # models whose config.pbtxt changed (Triton reloads them)
    seconds: float = 0.0
    from_cache: bool = False  # a rollback's publication, complete in the cache: the hub was not read

    def summary(self) -> str:
        if self.from_cache:
            return (f"the cache holds the publication complete ({len(self.skipped)} objects): the hub was not read "
                    "(a rollback's, or the hub no longer publishes it)")
        return (f"copied {len(self.copied)} objects ({self.bytes_copied / 1e6:.1f} MB from the hub, {len(self.reused)} reused from "
                f"another publication in the cache), {len(self.skipped)} unchanged, "
                f"deleted {len(self.deleted)} in {self.seconds:.1f} s")


def _hub_client(hub: HubSource):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=hub.endpoint_url, region_name=hub.region,
        aws_access_key_id=hub.access_key, aws_secret_access_key=hub.secret_key,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                      retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=120),
    )


def _base(prefix: str) -> str:
    p = prefix.strip("/")
    return p + "/" if p else ""


def _read_json(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    try:
        return json.loads(body)
    except ValueError:
        return None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fill_cache(hub: HubSource, cache: S3Endpoint, cache_bucket: str, *, bandwidth_limit_mbps: float | None = None,
               work_dir: Path | None = None, cached_ok: bool = False) -> FillReport:
    """Bring `cache_bucket`/<hub prefix> up to the hub's published state. UserError when the hub cannot be read.

    `cached_ok` (a rollback): when the cache holds the prefix complete (its manifest, written last, and every object
    it names at its size), the hub is not read: the hub may have pruned a publication the cache kept for a rollback."""
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.monotonic()
    report = FillReport()
    base = _base(hub.prefix)
    where = f"s3://{hub.bucket}/{base} at {hub.endpoint_url or f'AWS S3 ({hub.region})'}"
    step = "reading the cache's copy of the publication"
    try:
        if cached_ok and _complete_in_cache(cache, cache_bucket, base, report):
            report.from_cache = True
            report.seconds = time.monotonic() - started
            return report
        step = "reading the hub's manifest"
        hub_s3 = _hub_client(hub)
        manifest = _read_json(hub_s3, hub.bucket, base + MANIFEST_NAME)
        if not manifest or not isinstance(manifest.get("objects"), dict):
            step = "reading the cache's copy of the publication"
            if _complete_in_cache(cache, cache_bucket, base, report):
                # The hub pruned a publication the cache kept (a rollback's, or `start` after one): serve the cached copy.
                report.from_cache = True
                report.seconds = time.monotonic() - started
                return report
            raise UserError(f"the hub {where} has no sync manifest ({MANIFEST_NAME}): nothing is published there yet; "
                            "publish the repository first (`hybridserve sync` / the stack's publication)", exit_code=EXIT_FILL)
        step = "preparing the cache bucket"
        ensure_bucket(cache, cache_bucket, sse="AES256")
        cache_s3 = cache.client()
        everything = _listing(cache_s3, cache_bucket)
        listing = {k: v for k, v in everything.items() if k.startswith(base)}
        previous = _read_json(cache_s3, cache_bucket, base + MANIFEST_NAME) or {}
        known = previous.get("objects", {}) if isinstance(previous.get("objects"), dict) else {}
        step = "reading the cache's other publications"
        reusable = _reusable(cache_s3, cache_bucket, base, everything)

        objects: dict[str, dict] = manifest["objects"]
        transfer = TransferConfig(
            max_bandwidth=int(bandwidth_limit_mbps * 1e6 / 8) if bandwidth_limit_mbps else None,
            max_concurrency=4 if not bandwidth_limit_mbps else 1,  # the limit is per transfer: one at a time then
        )
        # Files first, configs after, in a stable order.
        order = sorted(objects, key=lambda rel: (rel.rsplit("/", 1)[-1] == CONFIG_NAME, rel))
        tmp_root = Path(work_dir) if work_dir else Path(tempfile.gettempdir())
        tmp_root.mkdir(parents=True, exist_ok=True)
        step = "copying objects"
        for rel in order:
            entry = objects[rel]
            key = base + rel
            sha, size = entry.get("sha256"), entry.get("size")
            if _present(cache_s3, cache_bucket, key, sha, size, listing, known.get(rel)):
                report.skipped.append(key)
                continue
            if _copy_within(cache_s3, cache_bucket, key, sha, size, reusable):
                report.reused.append(key)
            else:
                _download(hub, hub_s3, cache_s3, cache_bucket, key, sha, transfer, tmp_root)
                report.bytes_copied += size or 0
            report.copied.append(key)
            if rel.rsplit("/", 1)[-1] == CONFIG_NAME and "/" in rel:
                report.changed_models.append(rel.split("/", 1)[0])
        step = "removing what the hub no longer has"
        stale = sorted(k for k in listing if k != base + MANIFEST_NAME and k[len(base):] not in objects)
        if stale:
            delete_configs_first(cache_s3, cache_bucket, base, stale, what=f"the cache refused to delete {{n}} objects in {cache_bucket!r}:",
                                 on_deleted=report.deleted.extend)
        step = "writing the manifest"
        if report.copied or report.deleted or previous.get("objects") != objects:
            cache_s3.put_object(Bucket=cache_bucket, Key=base + MANIFEST_NAME, Body=(json.dumps(manifest, indent=1) + "\n").encode(),
                                ContentType="application/json", ServerSideEncryption="AES256")
    except UserError:
        raise
    except (ClientError, BotoCoreError) as exc:
        raise UserError(f"cache fill from {where} failed while {step}: {exc}", exit_code=EXIT_FILL) from None
    report.seconds = time.monotonic() - started
    return report


def _complete_in_cache(cache: S3Endpoint, cache_bucket: str, base: str, report: FillReport) -> bool:
    from botocore.exceptions import ClientError

    s3 = cache.client()
    try:
        manifest = _read_json(s3, cache_bucket, base + MANIFEST_NAME)
    except ClientError as exc:  # no cache bucket yet: nothing cached
        if exc.response.get("Error", {}).get("Code") in ("NoSuchBucket", "404"):
            return False
        raise
    objects = manifest.get("objects") if isinstance(manifest, dict) else None
    if not isinstance(objects, dict) or not objects:
        return False
    listing = _listing(s3, cache_bucket, base)
    if any(not isinstance(e, dict) or listing.get(base + rel) != e.get("size") for rel, e in objects.items()):
        return False
    report.skipped.extend(base + rel for rel in sorted(objects))
    return True


def _present(s3, bucket: str, key: str, sha: str | None, size: int | None, listing: dict[str, int], known: dict | None) -> bool:
    """The cache already holds these bytes: its manifest copy says so and the listing agrees, else its metadata does."""
    from botocore.exceptions import ClientError

    if key not in listing or listing[key] != size:
        return False
    if known and known.get("sha256") == sha:
        return True
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return head.get("Metadata", {}).get(SHA_META) == sha and head.get("ContentLength") == size


def _listing(s3, bucket: str, prefix: str = "") -> dict[str, int]:
    listing: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            listing[obj["Key"]] = obj["Size"]
    return listing


def _reusable(s3, bucket: str, base: str, everything: dict[str, int]) -> dict[str, tuple[str, int]]:
    """sha256 -> (key, size) of the objects other publications in the cache hold, by their manifests (each written
    after every object it names was verified) where the listing still agrees on the size."""
    found: dict[str, tuple[str, int]] = {}
    for manifest_key in sorted(k for k in everything if k.rsplit("/", 1)[-1] == MANIFEST_NAME and not k.startswith(base)):
        other = manifest_key[: -len(MANIFEST_NAME)]
        data = _read_json(s3, bucket, manifest_key) or {}
        for rel, entry in (data.get("objects") or {}).items():
            key = other + rel
            if isinstance(entry, dict) and entry.get("sha256") and everything.get(key) == entry.get("size"):
                found.setdefault(entry["sha256"], (key, entry["size"]))
    return found


def _copy_within(s3, bucket: str, key: str, sha: str | None, size: int | None, reusable: dict[str, tuple[str, int]]) -> bool:
    """Copy an object the cache holds under another publication (server side); False when there is none or the
    cache refuses (the caller downloads it from the hub then)."""
    from botocore.exceptions import ClientError

    source = reusable.get(sha or "")
    if source is None or source[1] != size:
        return False
    try:
        head = s3.head_object(Bucket=bucket, Key=source[0])
        if head.get("Metadata", {}).get(SHA_META) != sha:
            return False
        metadata = {k: v for k, v in head.get("Metadata", {}).items() if k in (SHA_META, VERSIONS_META)}
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": source[0]}, MetadataDirective="REPLACE",
                       Metadata=metadata, ServerSideEncryption="AES256")
    except ClientError:
        return False
    return True


def _download(hub: HubSource, hub_s3, cache_s3, cache_bucket: str, key: str, sha: str | None, transfer, tmp_root: Path) -> None:
    """One object from the hub into the cache, checked against the manifest's sha256 before it is written."""
    fd, name = tempfile.mkstemp(prefix=".fill-", dir=tmp_root)
    os.close(fd)
    tmp = Path(name)
    try:
        hub_s3.download_file(hub.bucket, key, str(tmp), Config=transfer)
        got = _sha256_file(tmp)
        if got != sha:
            raise UserError(f"hub object s3://{hub.bucket}/{key} has sha256 {got}, its manifest says {sha}: the hub "
                            "changed during the fill; the next fill picks up the new state", exit_code=EXIT_FILL)
        head = hub_s3.head_object(Bucket=hub.bucket, Key=key)
        metadata = {SHA_META: sha}
        if VERSIONS_META in head.get("Metadata", {}):
            metadata[VERSIONS_META] = head["Metadata"][VERSIONS_META]
        cache_s3.upload_file(str(tmp), cache_bucket, key, ExtraArgs={"ServerSideEncryption": "AES256", "Metadata": metadata})
    finally:
        tmp.unlink(missing_ok=True)


def prune_cache(cache: S3Endpoint, cache_bucket: str, keep: list[str]) -> list[str]:
    """Delete every cached object outside the `keep` prefixes (publications nothing serves or rolls back to),
    each model's config first. Returns the deleted keys."""
    s3 = cache.client()
    bases = [_base(p) for p in keep]
    if "" in bases:  # a publication at the bucket's root: everything is under it
        return []
    stale = sorted(k for k in _listing(s3, cache_bucket) if not any(k.startswith(b) for b in bases))
    deleted: list[str] = []
    if stale:
        delete_configs_first(s3, cache_bucket, "", stale, what=f"the cache refused to delete {{n}} objects in {cache_bucket!r}:",
                             on_deleted=deleted.extend)
    return deleted
