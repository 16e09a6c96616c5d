"""What the store publishes for a model, and the two writes promote makes there besides the sync.

- `served_versions`: the versions a model's published config.pbtxt names (the sync's `hybridserve-versions`
  metadata, else the policy in the text).
- `download_version`: a published version's files, each checked against its sha256 metadata, so the gate runs
  exactly the bytes Triton would load from the store.
- `publish_versions`: rewrite the model's config.pbtxt with `version_policy { specific { versions } }`, under
  the encryption the current one has, verified with a HEAD; the switch and its undo use it. The config's
  entry is dropped from the sync's manifest first: the sync's fast path trusts the manifest, so its next run
  compares with the store (and renders the config the promotion history pins) instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.sync.engine import MANIFEST_NAME, SHA_META, VERSIONS_META, SyncTarget, _client, _session
from hybridserve.sync.scan import CONFIG_NAME, version_of

REFERENCE_FILE = "reference.npz"


@dataclass
class Store:
    """A boto3 client on a sync target, with the key arithmetic of its layout."""

    target: SyncTarget

    def __post_init__(self) -> None:
        self.s3 = _client(_session(self.target), self.target, max_attempts=3)
        self.bucket = self.target.bucket
        self.base = self.target.base

    def config_key(self, model: str) -> str:
        return f"{self.base}{model}/{CONFIG_NAME}"

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def models(self) -> list[str]:
        """Models with a published config.pbtxt directly under the prefix."""
        out = []
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.base, Delimiter="/"):
            for p in page.get("CommonPrefixes", []) or []:
                name = p["Prefix"][len(self.base):].rstrip("/")
                if self._exists(self.config_key(name)):
                    out.append(name)
        return sorted(out)

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read_config(self, model: str):
        """(ModelConfig, text, head) of the published config.pbtxt; UserError (2) when there is none."""
        from botocore.exceptions import ClientError

        from hybridserve.sync.scan import parse_config

        key = self.config_key(model)
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                known = ", ".join(self.models()) or "none"
                raise UserError(
                    f"MODEL {model!r}: not published in {self.url(self.base)} (no {key}); published models: {known}. "
                    "Publish it with `hybridserve sync` (or `hybridserve local up`) first.",
                    exit_code=2,
                ) from None
            raise
        text = r["Body"].read().decode()
        return parse_config(Path(key), text), text, r

    def served_versions(self, model: str) -> list[int]:
        config, _, r = self.read_config(model)
        listed = {k.lower(): v for k, v in (r.get("Metadata") or {}).items()}.get(VERSIONS_META)
        if listed is not None:
            return sorted(int(v) for v in listed.split(",") if v.strip().isdigit())
        if config.version_policy.WhichOneof("policy_choice") == "specific":
            return sorted(config.version_policy.specific.versions)
        return self.versions(model)[-1:]

    def versions(self, model: str) -> list[int]:
        """Version directories present under the model's prefix (complete or not)."""
        prefix = f"{self.base}{model}/"
        found = set()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for p in page.get("CommonPrefixes", []) or []:
                v = version_of(p["Prefix"][len(prefix):].rstrip("/"))
                if v is not None:
                    found.add(v)
        return sorted(found)

    def download_version(self, model: str, version: int) -> dict[str, bytes]:
        """relative name -> bytes of every object under <model>/<version>/, each checked against its sha256."""
        prefix = f"{self.base}{model}/{version}/"
        files: dict[str, bytes] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for o in page.get("Contents", []) or []:
                r = self.s3.get_object(Bucket=self.bucket, Key=o["Key"])
                body = r["Body"].read()
                want = {k.lower(): v for k, v in (r.get("Metadata") or {}).items()}.get(SHA_META)
                if want is not None and hashlib.sha256(body).hexdigest() != want:
                    raise UserError(
                        f"{self.url(o['Key'])}: its content does not match its sha256 metadata; not gating a "
                        "corrupted version. Publish it again (`hybridserve sync --replace`).",
                        exit_code=3,
                    )
                files[o["Key"][len(prefix):]] = body
        if not files:
            raise UserError(f"{self.url(prefix)}: no files; version {version} of {model} is not published", exit_code=2)
        return files

    def publish_versions(self, model: str, versions: list[int], note: str) -> None:
        """Rewrite <model>/config.pbtxt to publish exactly `versions` (same encryption), verified by a HEAD."""
        from google.protobuf import text_format

        config, _, r = self.read_config(model)
        config.ClearField("version_policy")
        config.version_policy.specific.versions.extend(sorted(versions))
        body = (f"# Published by `hybridserve models {note}`: versions {', '.join(map(str, versions))}.\n"
                + text_format.MessageToString(config)).encode()
        sha = hashlib.sha256(body).hexdigest()
        extra = {}
        if r.get("ServerSideEncryption"):
            extra["ServerSideEncryption"] = r["ServerSideEncryption"]
            if r.get("SSEKMSKeyId"):
                extra["SSEKMSKeyId"] = r["SSEKMSKeyId"]
        key = self.config_key(model)
        self._forget_in_manifest(f"{model}/{CONFIG_NAME}")
        self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=body, ContentType="text/plain",
            Metadata={SHA_META: sha, VERSIONS_META: ",".join(map(str, sorted(versions)))}, **extra,
        )
        head = self.s3.head_object(Bucket=self.bucket, Key=key)
        got = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}.get(SHA_META)
        if got != sha or int(head.get("ContentLength", -1)) != len(body):
            raise UserError(f"{self.url(key)} did not verify after the write (sha256 {got}, expected {sha})", exit_code=3)

    def _forget_in_manifest(self, rel: str) -> None:
        """Drop `rel` from the sync's manifest before it is rewritten here (the engine does the same before its
        own overwrites): a manifest vouching for a config the store no longer has would let the next sync's fast
        path report the wrong served versions, and edge fills check downloads against it."""
        import json

        from botocore.exceptions import ClientError

        key = self.base + MANIFEST_NAME
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return  # no manifest: nothing vouches for anything
            raise
        try:
            manifest = json.loads(r["Body"].read())
        except ValueError:
            return  # unreadable: the sync ignores it too
        objects = manifest.get("objects") if isinstance(manifest, dict) else None
        if not isinstance(objects, dict) or rel not in objects:
            return
        manifest["objects"] = {k: v for k, v in objects.items() if k != rel}
        extra = {}
        if r.get("ServerSideEncryption"):
            extra["ServerSideEncryption"] = r["ServerSideEncryption"]
            if r.get("SSEKMSKeyId"):
                extra["SSEKMSKeyId"] = r["SSEKMSKeyId"]
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=(json.dumps(manifest, indent=1) + "\n").encode(),
                           ContentType="application/json", **extra)

    def sse_args(self, model: str) -> dict[str, str]:
        """The encryption arguments the model's config.pbtxt was written with (for the history record)."""
        head = self.s3.head_object(Bucket=self.bucket, Key=self.config_key(model))
        extra = {}
        if head.get("ServerSideEncryption"):
            extra["ServerSideEncryption"] = head["ServerSideEncryption"]
            if head.get("SSEKMSKeyId"):
                extra["SSEKMSKeyId"] = head["SSEKMSKeyId"]
        return extra
