"""Encrypted storage of the model repository (`hybridserve:storage`): KMS key, S3 bucket, Swift container.

Names left empty are derived from the stack: `<project>-<team>-<env>-models` (see
`StackConfig.bucket_names`). Bucket names must be unique across every stack in `stacks/`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator, Field

from hybridserve.stackconfig.schema.common import ConfigModel, Issue

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket_name(value: str) -> str:
    """S3 bucket naming rules (Swift containers follow them too, so both work through the S3 API)."""
    rule = "3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit"
    if not isinstance(value, str) or not _BUCKET.match(value):
        raise ValueError(f"{value!r} is not a valid bucket name; use {rule}")
    if ".." in value or ".-" in value or "-." in value:
        raise ValueError(f"{value!r} is not a valid bucket name; no '..', '.-' or '-.'")
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        pass
    else:
        raise ValueError(f"{value!r} is not a valid bucket name; it must not look like an IP address")
    if value.startswith(("xn--", "sthree-")) or value.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3")):
        raise ValueError(f"{value!r} uses a prefix or suffix S3 reserves (xn--, sthree-, -s3alias, --ol-s3, .mrap, --x-s3)")
    return value


BucketName = Annotated[str, AfterValidator(check_bucket_name)]


class KmsKeySettings(ConfigModel):
    """The customer-managed KMS key that encrypts the bucket (SSE-KMS) and the EKS secrets."""

    deletion_window_days: int = Field(default=30, ge=7, le=30)
    enable_key_rotation: bool = True
    rotation_period_days: int = Field(default=365, ge=90, le=2560)
    multi_region: bool = False
    alias: str | None = Field(default=None, pattern=r"^alias/[A-Za-z0-9/_-]{1,250}$")  # None: alias/<project>-<team>-<env>


class Retention(ConfigModel):
    # Old object versions are kept this long, so a bad sync can be rolled back.
    noncurrent_version_days: int = Field(default=30, ge=1, le=3650)
    abort_incomplete_upload_days: int = Field(default=7, ge=1, le=365)
    # None: no object lock. A number: S3 Object Lock in governance mode for that many days.
    object_lock_days: int | None = Field(default=None, ge=1, le=36500)


class StorageConfig(ConfigModel):
    model_bucket: BucketName | None = None
    swift_container: BucketName | None = None
    # Key prefix of the Triton model repository inside the bucket: s3://<bucket>/<prefix>/<model>/...
    prefix: str = Field(default="models", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}[A-Za-z0-9]$|^[A-Za-z0-9]$")
    versioning: bool = True
    retention: Retention = Retention()
    kms: KmsKeySettings = KmsKeySettings()
    # False: `pulumi destroy` refuses to delete a bucket that still holds models.
    force_destroy: bool = False

    def issues(self) -> Iterator[Issue]:
        if self.retention.object_lock_days is not None and not self.versioning:
            yield Issue(("versioning",), "false is not allowed with retention.object_lock_days; S3 Object Lock needs versioning: true")
