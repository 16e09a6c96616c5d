"""`hybridserve sync`: the model repository to s3://BUCKET/PREFIX/, encrypted, incremental, atomically published.

Credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
AWS_PROFILE, an instance or IRSA role): never from options, never printed. `--role-arn` assumes a role
with them first (the stack's model-writer role). Exit codes: hybridserve.sync.errors.

This is the one definition of the command's options, help and usage errors; `hybridserve.sync.command`
runs it without importing typer (see there) and must agree with it (tests/test_sync_cli.py).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer


class SSE(str, Enum):
    kms = "aws:kms"
    aes256 = "AES256"
    none = "none"


def sync_command(
    bucket: str = typer.Option(
        ..., "--bucket", help="Target bucket (must exist); S3's naming rules are checked first: 3-63 lowercase letters, digits, '.' and '-'."
    ),
    prefix: str = typer.Option(
        "models", "--prefix", help="Key prefix inside the bucket (names separated by '/'; leading/trailing '/' dropped; no '.' or '..'); Triton's --model-repository is s3://BUCKET/PREFIX."
    ),
    endpoint_url: Optional[str] = typer.Option(
        None,
        "--endpoint-url",
        help="S3-compatible endpoint as http(s)://HOST[:PORT] (Swift s3api, MinIO, SeaweedFS, moto), e.g. "
        "http://127.0.0.1:8333. Omit for AWS S3.",
    ),
    region: Optional[str] = typer.Option(
        None, "--region", help="Region of the bucket and KMS key; on AWS (no --endpoint-url) one that botocore knows, checked before any request. "
        "Default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1.",
        show_default=False,
    ),
    sse: SSE = typer.Option(
        SSE.kms,
        "--sse",
        help="Server-side encryption of every object: aws:kms (SSE-KMS under --kms-key-id), AES256 (SSE-S3, for "
        "stores without a KMS such as SeaweedFS or Swift), or none (only if the store encrypts by other means).",
    ),
    kms_key_id: Optional[str] = typer.Option(
        None,
        "--kms-key-id",
        help="KMS key id, ARN or alias/NAME for --sse aws:kms. Omitted: the bucket's default KMS key, "
        "which must then be configured on the bucket.",
    ),
    role_arn: Optional[str] = typer.Option(
        None,
        "--role-arn",
        help="Assume this IAM role with STS and sync under it, e.g. the stack output modelWriterRoleArn (the stack "
        "key lets only that role encrypt). The credentials from the environment must be allowed to assume it; "
        "AccessDenied is retried for up to a minute (a role just created takes that long to be assumable).",
        show_default=False,
    ),
    repo: Optional[Path] = typer.Option(
        None, "--repo", help="Model repository to sync. Default: model_repo/ of this checkout.", show_default=False
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Compare with the store and show what would be added, updated or deleted; change nothing."
    ),
    prune: bool = typer.Option(
        False, "--prune", help="Also delete objects under the prefix that the repository no longer has (never by default)."
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Allow re-uploading a published version whose files changed: it is unpublished first and "
        "republished once verified (unavailable meanwhile). Without it such a sync is refused; prefer a new version.",
    ),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Check every object in the store (LIST the prefix, HEAD each object: size, sha256, encryption) instead of "
        "trusting the manifest the last sync wrote; re-uploads whatever was deleted or changed behind its back.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (bytes) on stderr."),
    timings: bool = typer.Option(False, "--timings", help="Print on stderr how long each phase of the sync took."),
) -> None:
    """Sync the validated model repository to s3://BUCKET/PREFIX/: encrypted, incremental, atomically published.

    Every file is uploaded with its sha256 and verified; only then is the model's config.pbtxt written, listing just the versions that are complete, so Triton never sees a half-uploaded version. Unchanged files are not uploaded again; an interrupted sync completes when run again.

    When the repository is unchanged since the last sync, one read of the manifest that sync wrote is the whole check: it trusts that nobody else deleted or changed objects under the prefix since. --verify checks every object.

    Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...) and are never printed.
    """
    from hybridserve.sync.command import run_sync

    code = run_sync(
        bucket=bucket, prefix=prefix, endpoint_url=endpoint_url, region=region, sse=sse.value, kms_key_id=kms_key_id,
        role_arn=role_arn, repo=repo, dry_run=dry_run, prune=prune, replace=replace, verify=verify,
        progress=progress, timings=timings,
    )
    if code:
        raise typer.Exit(code)
