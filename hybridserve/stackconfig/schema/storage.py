"""Encrypted storage of the model repository (`hybridserve:storage`): KMS key, S3 bucket, Swift container.

Names left empty are derived from the stack: `<project>-<team>-<env>-models` and
`<project>-<team>-<env>-access-logs` (see `StackConfig.bucket_names`, which the program uses too).
S3 names are global (per AWS partition): the model and access-log buckets must differ from each other
(`bucket_issues`) and from every S3 bucket of the other stacks in `stacks/` (crossstack.py); Swift
container names must be unique per OpenStack cloud and region.

Encrypted by default, and not switchable off: the stack key rotates; the model bucket uses SSE-KMS
with that key; the stack's EBS volumes name the key explicitly; Cinder volumes use the cloud
operator's encrypted volume type (`cinder_volume_type`: the kit uses the type, it does not create it).
EBS encryption by default is a setting of the AWS account and region, not of a stack: one stack
per account and region may own it (`ebs_default_encryption: owner`, checked across stacks).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

# The naming rule lives without pydantic: the sync checks names without building the schema.
from hybridserve.stackconfig.bucketnames import check_bucket_name
from hybridserve.stackconfig.schema.common import ConfigModel, Issue, Loc

if TYPE_CHECKING:  # pragma: no cover
    from hybridserve.stackconfig.schema.stack import StackConfig

BucketName = Annotated[str, AfterValidator(check_bucket_name)]


def _ebs_default_choice(value: object) -> object:
    """The former true/false named what each stack did to a setting all stacks in the account and region share."""
    if isinstance(value, bool):
        raise ValueError(
            f"{str(value).lower()} is no longer accepted; EBS encryption by default is one setting per AWS account and region: "
            "set 'owner' on the one stack that manages it and 'unmanaged' (the default) on the others"
        )
    return value


class KmsKeySettings(ConfigModel):
    """The customer-managed KMS key that encrypts the bucket (SSE-KMS) and the EKS secrets."""

    deletion_window_days: int = Field(default=30, ge=7, le=30)
    enable_key_rotation: bool = True
    rotation_period_days: int = Field(default=365, ge=90, le=2560)
    multi_region: bool = False
    alias: str | None = Field(default=None, pattern=r"^alias/[A-Za-z0-9/_-]{1,250}$")  # None: alias/<project>-<team>-<env>

    def issues(self) -> Iterator[Issue]:
        if not self.enable_key_rotation:
            yield Issue(("enable_key_rotation",), "false is not allowed; the stack key always rotates (set rotation_period_days to change how often)")


class Retention(ConfigModel):
    # Old object versions are kept this long, so a bad sync can be rolled back.
    noncurrent_version_days: int = Field(default=30, ge=1, le=3650)
    abort_incomplete_upload_days: int = Field(default=7, ge=1, le=365)
    # None: no object lock. A number: S3 Object Lock in governance mode for that many days.
    object_lock_days: int | None = Field(default=None, ge=1, le=36500)


_IAM_PRINCIPAL = r"^arn:aws(-[a-z]+)*:iam::\d{12}:(root|role/[\w+=,.@/-]+|user/[\w+=,.@/-]+)$"
_ENDPOINT = re.compile(r"^(https?)://([A-Za-z0-9.-]+)(:(\d{1,5}))?/?$")


def check_endpoint(value: str) -> str:
    if not isinstance(value, str) or not _ENDPOINT.match(value):
        raise ValueError(f"{value!r} is not an S3 endpoint; expected scheme://host[:port], e.g. https://swift.example.org:8080 (no path)")
    return value.rstrip("/")


S3Endpoint = Annotated[str, AfterValidator(check_endpoint)]


def endpoint_host_port(endpoint: str) -> tuple[str, str, int]:
    """('https', 'swift.example.org', 443) from 'https://swift.example.org' (default ports filled in)."""
    m = _ENDPOINT.match(endpoint)
    if not m:
        raise ValueError(f"{endpoint!r} is not scheme://host[:port]")
    scheme, host, port = m.group(1), m.group(2), m.group(4)
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80)


class AccessLogs(ConfigModel):
    """S3 server access logs of the model bucket (audit), in a separate private bucket (SSE-S3)."""

    # None: <project>-<team>-<env>-access-logs
    bucket: BucketName | None = None
    expire_days: int = Field(default=365, ge=1, le=3650)


class StorageConfig(ConfigModel):
    model_bucket: BucketName | None = None
    swift_container: BucketName | None = None
    access_logs: AccessLogs = AccessLogs()
    # Swift's S3 API (s3api middleware) as Triton on the private cluster reaches it. None: the
    # object-store endpoint of the Keystone catalog (reading it may need more than member rights;
    # set it when `pulumi up` reports it cannot list endpoints).
    swift_s3_endpoint: S3Endpoint | None = None
    # The region Swift's s3api signs for (its `location` setting; us-east-1 unless the operator changed it).
    swift_s3_region: str = Field(default="us-east-1", pattern=r"^[A-Za-z0-9-]{1,64}$")
    # Encryption the model publication asks Swift's S3 API for: AES256 (SSE-S3; needs the cloud's
    # encryption middleware in the proxy pipeline) or none (then at-rest encryption is the cloud's disks').
    swift_sse: Literal["AES256", "none"] = "AES256"
    # Object versions in the Swift container (X-Versions-Enabled; needs a cloud with Swift >= 2.24).
    swift_versioning: bool = True
    # The cloud operator's encrypted Cinder volume type (LUKS): node volumes and the private
    # cluster's default StorageClass use it. The kit does not create it; ask the cloud operator.
    cinder_volume_type: str = Field(default="LUKS", min_length=1, max_length=255)
    # EBS encryption by default, a setting of the whole AWS account and region (every stack there shares it).
    # "owner": this stack turns it on and keeps it on (a destroy leaves it on); one owner per account and
    # region (hybridserve/stackconfig/crossstack.py). "unmanaged": the stack leaves it alone. Either way
    # the stack's own volumes are encrypted with the stack key, named in the launch templates and the StorageClass.
    ebs_default_encryption: Annotated[Literal["owner", "unmanaged"], BeforeValidator(_ebs_default_choice)] = "unmanaged"
    # Who may assume the model-writer role (`hybridserve sync` uploads with it). Empty: any principal
    # of the account that IAM allows to sts:AssumeRole it.
    writer_principals: list[Annotated[str, Field(pattern=_IAM_PRINCIPAL)]] = Field(default_factory=list)
    # Key prefix of the Triton model repository inside the bucket: s3://<bucket>/<prefix>/<model>/...
    prefix: str = Field(default="models", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,200}[A-Za-z0-9]$|^[A-Za-z0-9]$")
    versioning: bool = True
    retention: Retention = Retention()
    kms: KmsKeySettings = KmsKeySettings()
    # False: `pulumi destroy` refuses to delete a bucket that still holds models.
    force_destroy: bool = False
    # Triton's identity for the Swift container (issue 11). reader-user: a Keystone user with only the reader role,
    # admitted by the container's read ACL, with its own EC2 credential. Creating the user takes identity admin
    # or domain manager rights, and Keystone's default policy lets only a system-scoped admin create (and delete)
    # an EC2 credential for another user (keystone/common/policies/ec2_credential.py: admin with system scope, or
    # the credential's owner), so a project-scoped deployer needs that role or a cloud policy granting it. deployer: the deploying user's own EC2 credential, which reads and writes every
    # container of the project; only for deployers who may not create users (validate warns).
    triton_swift_identity: Literal["reader-user", "deployer"] = "reader-user"

    def warnings(self) -> Iterator[Issue]:
        if self.triton_swift_identity == "deployer":
            yield Issue(
                ("triton_swift_identity",),
                "'deployer': Triton reads Swift with the deploying user's EC2 credential, which can also write and delete "
                "every container of the project; use 'reader-user' once the deployer may create Keystone users",
            )

    def issues(self) -> Iterator[Issue]:
        if self.retention.object_lock_days is not None and not self.versioning:
            yield Issue(("versioning",), "false is not allowed with retention.object_lock_days; S3 Object Lock needs versioning: true")


def bucket_issues(cfg: "StackConfig") -> Iterator[Issue]:
    """No two S3 buckets of the stack share a name, judged on the exact names the program creates
    (StackConfig.bucket_names, explicit or derived). Locations from the root."""
    from hybridserve.stackconfig.schema.stack import format_loc  # stack.py imports this module

    seen: dict[str, Loc] = {}
    for loc, name in cfg.bucket_names().items():
        if loc not in S3_BUCKET_KEYS:
            continue  # the Swift container lives in the OpenStack cloud's namespace, not S3's
        if name in seen:
            yield Issue(loc, f"{name!r} is also the name of {format_loc(seen[name])}; the plan would create two S3 buckets of one name, pick another")
        seen.setdefault(name, loc)


# Keys of StackConfig.bucket_names that name S3 buckets (global per AWS partition); the rest are Swift containers.
S3_BUCKET_KEYS: frozenset[Loc] = frozenset({("storage", "model_bucket"), ("storage", "access_logs", "bucket")})


def s3_partition(region: str) -> str:
    """The AWS partition of a region: S3 bucket names are unique within one (aws, aws-cn, aws-us-gov)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
