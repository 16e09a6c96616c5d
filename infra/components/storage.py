"""Encrypted storage of the model repository (issue 7, part 1): the stack key, the S3 bucket, the Swift container.

Components (built by `build`, before the clusters; see the order in infra/components/__init__.py):

- `StackKey` ("hybridserve:storage:StackKey"): a customer-managed KMS key per stack, rotation on,
  an alias, and a key policy that grants *use* only to the roles that need it: the account root may
  administer the key but not use it; the EKS cluster role encrypts Kubernetes secrets; EBS volumes
  (node group launches through the Auto Scaling service-linked role, the node role, the EBS CSI
  driver) through EC2 only; the model-reader role decrypts and the model-writer role encrypts through
  S3 only. Roles are named by ARN in
  `aws:PrincipalArn` conditions (infra/components/policies.py), which is what lets the key exist
  before the cluster component creates the roles: EKS needs the key at cluster creation.
  Also, only in the stack that owns it (`storage.ebs_default_encryption: owner`, one per account and
  region, checked across stacks): EBS encryption by default in the account and region, retained on
  delete. The region's default key is left as the account has it (AWS's aws/ebs unless changed): the
  stack key's policy grants use to this stack's roles only, so as the region default it would break
  other stacks' volumes that name no key, and it is deleted with its stack.
- `ModelBucket` ("hybridserve:storage:ModelBucket"): SSE-KMS with the stack key and S3 bucket keys,
  versioning, every public access block on, object ownership enforced (no ACLs), a bucket policy that
  denies non-TLS requests and uploads that ask for any encryption but the stack key, lifecycle that
  expires noncurrent versions after `storage.retention.noncurrent_version_days`, optional Object Lock,
  and server access logs into a separate log bucket that is itself encrypted (SSE-S3, what AWS documents
  for log destinations), versioned and private.
  Plus the model-writer role (`hybridserve sync` assumes it to upload models).
- `SwiftRepository` ("hybridserve:storage:SwiftRepository"): a private Swift container (versioned
  where the cloud supports it) and EC2-style credentials for Swift's S3 API, kept only as Pulumi
  secrets: the deployer's (the publication writes with them) and a read-only user's that the
  container's read ACL admits (Triton reads with them; creating that user needs identity admin rights), so Triton on the private cluster reads `s3://https://<swift-host>:<port>/<container>/<prefix>`
  the way it reads S3 on AWS.

`build` returns the typed `StorageParts` (infra/program.py hands it to the clusters and Triton). Stack outputs: `bucketUris`
(`aws`, `openstack`), `kmsKeyArn`, `modelWriterRoleArn`, `accessLogBucket`, `swiftS3Credentials` (secret).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_openstack as openstack

from hybridserve.publish.store import triton_s3_uri  # Triton's s3:// form: the data plane owns it
from hybridserve.stackconfig.edgemodels import aws_linked_edge_sites
from infra.components import type_token
from infra.components.policies import (
    KMS_ADMIN_ACTIONS,
    KMS_EKS_SECRETS_ACTIONS,
    KMS_VOLUME_ACTIONS,
    Account,
    RoleNames,
    document,
    edge_reader_name,
    statement,
)
from infra.context import StackContext

S3_LOG_DELIVERY = "logging.s3.amazonaws.com"


# --- the stack key ----------------------------------------------------------------------------------


@dataclass
class StackKeyArgs:
    description: str
    alias: str
    deletion_window_days: int
    rotation_period_days: int
    multi_region: bool
    ebs_default_encryption: str  # "owner" | "unmanaged" (StorageConfig.ebs_default_encryption)
    roles: RoleNames
    account: Account
    # IAM users of the edge sites that read from the AWS hub (infra/components/edge_sites.py): decrypt through S3.
    edge_readers: tuple[str, ...] = ()


def key_policy(args: StackKeyArgs) -> pulumi.Output[str]:
    """Who may do what with the stack key. Use is granted per role; nothing else in the account may use it."""
    acct, roles = args.account, args.roles
    region = acct.region

    def only(*role_arns: Any, via: str | None = None) -> dict[str, Any]:
        cond: dict[str, Any] = {"StringEquals": {"kms:CallerAccount": acct.id}, "ArnEquals": {"aws:PrincipalArn": list(role_arns)}}
        if via:
            cond["StringEquals"]["kms:ViaService"] = f"{via}.{region}.amazonaws.com"
        return cond

    return document(
        # The account administers the key through IAM (rotation, policy, deletion) but cannot use it.
        statement("KeyAdministration", "Allow", KMS_ADMIN_ACTIONS, "*", {"AWS": acct.root}),
        # Grants only for AWS services acting for a caller (EKS at cluster creation, EC2 for volumes).
        statement(
            "GrantsForAwsServicesOnly", "Allow", ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "*", {"AWS": acct.root},
            {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        # Envelope encryption of Kubernetes secrets by the EKS control plane.
        statement("EksSecretsEncryption", "Allow", KMS_EKS_SECRETS_ACTIONS, "*", {"AWS": "*"}, only(acct.role_arn(roles.cluster))),
        # Encrypted EBS volumes: node root volumes (launched by the Auto Scaling service-linked role
        # for the managed node groups) and persistent volumes (EBS CSI driver); through EC2 only.
        statement(
            "EbsVolumesThroughEc2", "Allow", KMS_VOLUME_ACTIONS, "*", {"AWS": "*"},
            only(acct.autoscaling_service_role, acct.role_arn(roles.node), acct.role_arn(roles.ebs_csi), via="ec2"),
        ),
        # Triton reads models: decrypt, through S3 only.
        statement("ModelReaderDecryptThroughS3", "Allow", ["kms:Decrypt"], "*", {"AWS": "*"}, only(acct.role_arn(roles.model_reader), via="s3")),
        # `hybridserve sync` writes models: encrypt (data keys) and decrypt, through S3 only.
        statement(
            "ModelWriterThroughS3", "Allow", ["kms:GenerateDataKey", "kms:Decrypt"], "*", {"AWS": "*"},
            only(acct.role_arn(roles.model_writer), via="s3"),
        ),
        # Edge sites' hosts fill their caches from the AWS hub: decrypt, through S3 only.
        *([statement("EdgeReadersDecryptThroughS3", "Allow", ["kms:Decrypt"], "*", {"AWS": "*"},
                     only(*(acct.user_arn(u) for u in args.edge_readers), via="s3"))] if args.edge_readers else []),
    )


class StackKey(pulumi.ComponentResource):
    """The stack's customer-managed KMS key, its alias, and (owner stack only) EBS encryption by default."""

    def __init__(self, name: str, args: StackKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("storage", "StackKey"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(
            "key",
            description=args.description,
            key_usage="ENCRYPT_DECRYPT",
            customer_master_key_spec="SYMMETRIC_DEFAULT",
            enable_key_rotation=True,
            rotation_period_in_days=args.rotation_period_days,
            deletion_window_in_days=args.deletion_window_days,
            multi_region=args.multi_region,
            policy=key_policy(args),
            opts=child,
        )
        self.alias = aws.kms.Alias("alias", name=args.alias, target_key_id=self.key.key_id, opts=child)
        self.arn: pulumi.Output[str] = self.key.arn
        if args.ebs_default_encryption == "owner":
            # Account- and region-wide. Deleting the resource turns encryption by default off (provider docs),
            # so a destroy, or handing ownership to another stack, leaves it on: retained, not deleted.
            aws.ebs.EncryptionByDefault(
                "ebs-encryption-by-default", enabled=True, opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True)
            )
        self.register_outputs({"arn": self.arn, "alias": self.alias.name})


# --- the model bucket ----------------------------------------------------------------------------


@dataclass
class ModelBucketArgs:
    bucket: str
    log_bucket: str
    prefix: str
    key_arn: pulumi.Input[str]
    versioning: bool
    noncurrent_version_days: int
    abort_incomplete_upload_days: int
    object_lock_days: int | None
    log_expire_days: int
    force_destroy: bool
    roles: RoleNames
    account: Account
    writer_principals: list[str]


def deny_insecure_transport(bucket_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    objects = pulumi.Output.concat(bucket_arn, "/*")
    return [
        statement("DenyInsecureTransport", "Deny", "s3:*", [bucket_arn, objects], "*", {"Bool": {"aws:SecureTransport": "false"}}),
        # A number, not "1.2": s3:TlsVersion is a numeric key (AWS: repost.aws/knowledge-center/s3-enforce-modern-tls).
        statement("DenyOldTls", "Deny", "s3:*", [bucket_arn, objects], "*", {"NumericLessThan": {"s3:TlsVersion": 1.2}}),
    ]


def model_bucket_policy(bucket_arn: pulumi.Input[str], key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """TLS only; an upload may ask for no encryption header (the default, SSE-KMS with the stack key) or for exactly that."""
    objects = pulumi.Output.concat(bucket_arn, "/*")
    return document(
        *deny_insecure_transport(bucket_arn),
        statement(
            "DenyUploadsNotSseKms", "Deny", "s3:PutObject", objects, "*",
            {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
        ),
        statement(
            "DenyUploadsWithAnotherKey", "Deny", "s3:PutObject", objects, "*",
            {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn}},
        ),
    )


def log_bucket_policy(log_bucket_arn: pulumi.Input[str], source_bucket_arn: pulumi.Input[str], account_id: pulumi.Input[str]) -> pulumi.Output[str]:
    return document(
        *deny_insecure_transport(log_bucket_arn),
        statement(
            "AllowS3AccessLogDelivery", "Allow", "s3:PutObject", pulumi.Output.concat(log_bucket_arn, "/*"), {"Service": S3_LOG_DELIVERY},
            {"ArnLike": {"aws:SourceArn": source_bucket_arn}, "StringEquals": {"aws:SourceAccount": account_id}},
        ),
    )


def model_writer_policy(bucket_arn: pulumi.Input[str], prefix: str, key_arn: pulumi.Input[str]) -> pulumi.Output[str]:
    """What `hybridserve sync` needs under the prefix: list, read, write, delete (old versions stay: versioning)."""
    return document(
        statement("ListThePrefix", "Allow", "s3:ListBucket", bucket_arn, None, {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}),
        statement("LocateTheBucket", "Allow", "s3:GetBucketLocation", bucket_arn),
        statement(
            "ReadWriteThePrefix", "Allow", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
            pulumi.Output.concat(bucket_arn, f"/{prefix}/*"),
        ),
        statement("UseTheStackKey", "Allow", ["kms:GenerateDataKey", "kms:Decrypt"], key_arn),
    )


class ModelBucket(pulumi.ComponentResource):
    """The S3 model repository (SSE-KMS with the stack key) and its access-log bucket (SSE-S3), private, TLS-only."""

    def __init__(self, name: str, args: ModelBucketArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("storage", "ModelBucket"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Server access logs (audit). S3 delivers them under the log bucket's policy (object ownership enforced).
        self.log_bucket = aws.s3.Bucket("access-logs", bucket=args.log_bucket, force_destroy=args.force_destroy, opts=child)
        # SSE-S3, not the stack key: AWS documents SSE-S3 (AES256) as the default encryption of a server access
        # log destination ("Enabling Amazon S3 server access logging"), and log delivery gets no key grant.
        log_controls = self._harden(
            "access-logs", self.log_bucket, None, versioning=True,
            lifecycle=[
                {"id": "expire-access-logs", "status": "Enabled", "filter": {"prefix": ""}, "expiration": {"days": args.log_expire_days},
                 "noncurrent_version_expiration": {"noncurrent_days": 1}},
            ],
        )
        self.log_bucket_policy = aws.s3.BucketPolicy(
            "access-logs-policy",
            bucket=self.log_bucket.id,
            policy=log_bucket_policy(self.log_bucket.arn, pulumi.Output.format("arn:{0}:s3:::{1}", args.account.partition, args.bucket), args.account.id),
            opts=pulumi.ResourceOptions(parent=self, depends_on=log_controls),
        )

        self.bucket = aws.s3.Bucket(
            "models", bucket=args.bucket, force_destroy=args.force_destroy, object_lock_enabled=args.object_lock_days is not None, opts=child
        )
        controls = self._harden(
            "models", self.bucket, args.key_arn, versioning=args.versioning,
            lifecycle=[
                {"id": "expire-noncurrent-versions", "status": "Enabled", "filter": {"prefix": ""},
                 "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days}},
                {"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {"prefix": ""},
                 "abort_incomplete_multipart_upload": {"days_after_initiation": args.abort_incomplete_upload_days}},
            ],
        )
        if args.object_lock_days is not None:
            controls.append(
                aws.s3.BucketObjectLockConfiguration(
                    "models-object-lock", bucket=self.bucket.id,
                    rule={"default_retention": {"mode": "GOVERNANCE", "days": args.object_lock_days}},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=controls),
                )
            )
        self.policy = aws.s3.BucketPolicy(
            "models-policy", bucket=self.bucket.id, policy=model_bucket_policy(self.bucket.arn, args.key_arn),
            opts=pulumi.ResourceOptions(parent=self, depends_on=controls),
        )
        self.logging = aws.s3.BucketLogging(
            "models-access-logging",
            bucket=self.bucket.id,
            target_bucket=self.log_bucket.id,
            target_prefix=f"{args.bucket}/",
            target_object_key_format={"partitioned_prefix": {"partition_date_source": "EventTime"}},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_bucket_policy]),
        )

        # The writer: `hybridserve sync` assumes it; no static keys. Trusted by the listed principals, or by
        # the account (then IAM decides who may assume it).
        trusted: Any = args.writer_principals or args.account.root
        self.writer_role = aws.iam.Role(
            "model-writer",
            name=args.roles.model_writer,
            description="Uploads models to the stack's model bucket (hybridserve sync)",
            assume_role_policy=document(
                {"Sid": "TrustOperators", "Effect": "Allow", "Principal": {"AWS": trusted}, "Action": ["sts:AssumeRole", "sts:TagSession"]}
            ),
            max_session_duration=3600,
            opts=child,
        )
        aws.iam.RolePolicy(
            "model-writer-policy", role=self.writer_role.id, policy=model_writer_policy(self.bucket.arn, args.prefix, args.key_arn), opts=child
        )

        self.uri: pulumi.Output[str] = pulumi.Output.concat("s3://", self.bucket.bucket, f"/{args.prefix}")
        self.register_outputs({"uri": self.uri, "bucket_arn": self.bucket.arn, "log_bucket": self.log_bucket.bucket, "writer_role_arn": self.writer_role.arn})

    def _harden(self, name: str, bucket: aws.s3.Bucket, key_arn: pulumi.Input[str] | None, *, versioning: bool, lifecycle: list[dict]) -> list[pulumi.Resource]:
        """Public access blocked, owner-enforced, encrypted by default (SSE-KMS under key_arn, or SSE-S3 when None), versioned, lifecycle."""
        child = pulumi.ResourceOptions(parent=self)
        block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=bucket.id,
            block_public_acls=True, block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True, opts=child,
        )
        ownership = aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[
                {"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": key_arn}, "bucket_key_enabled": True}
                if key_arn is not None
                else {"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}
            ],
            opts=child,
        )
        versions = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled" if versioning else "Suspended"}, opts=child
        )
        rules = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id, rules=lifecycle, opts=pulumi.ResourceOptions(parent=self, depends_on=[versions])
        )
        return [block, ownership, encryption, versions, rules]


# --- Swift ------------------------------------------------------------------------------------------


@dataclass
class SwiftRepositoryArgs:
    container: str
    prefix: str
    versioning: bool
    force_destroy: bool
    # scheme://host[:port] of Swift's S3 API; None: the object-store endpoint of the Keystone catalog
    s3_endpoint: str | None
    region: str | None
    # Triton reads with a read-only user of its own (storage.triton_swift_identity 'reader-user'), else the deployer's.
    reader_user: bool = True


def _catalog_s3_endpoint(url: str) -> str:
    """'https://swift.example:8080/v1/AUTH_x' -> 'https://swift.example:8080' (s3api listens at the root)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


# Keystone's default read-only role (since Rocky; keystone bootstrap creates admin, member, reader).
READER_ROLE = "reader"


class SwiftRepository(pulumi.ComponentResource):
    """The private site's model repository: a private, versioned Swift container and S3-API credentials (secret)."""

    def __init__(self, name: str, args: SwiftRepositoryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(type_token("storage", "SwiftRepository"), name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        scope = openstack.identity.get_auth_scope_output(name="current", opts=invoke)

        # Triton's own identity, read-only (issue 11): a Keystone user with only the `reader` role on the project
        # (not one of Swift's operator roles, which get the whole account: keystoneauth `operator_roles`, by
        # default admin and swiftoperator) that the container's read ACL admits, and an EC2 credential of that
        # user for Swift's S3 API. Why not an application credential of the deployer: Keystone lets only an
        # unrestricted application credential create EC2 credentials, and only with the member role (Keystone's
        # 2026-04 security fixes, Related-Bug #2142138; backported e.g. in stackhpc/keystone#21 "Prevent
        # unauthorized EC2 credential creation and deletion"), so its keys would carry the deployer's member rights. Creating a user and another user's EC2 credential needs identity admin (or domain
        # manager) rights on the cloud (storage.triton_swift_identity 'deployer' is the warned way round that).
        # The user has no password: its EC2 credential is its only key.
        self.reader: openstack.identity.User | None = None
        self.reader_role: openstack.identity.RoleAssignment | None = None
        self.reader_credential: openstack.identity.Ec2CredentialV3 | None = None
        acl: dict[str, Any] = {}
        if args.reader_user:
            self.reader = openstack.identity.User(
                "triton-reader",
                name=f"{args.container}-triton-reader",
                default_project_id=scope.project_id,
                description=f"hybridserve: Triton reads Swift container {args.container} (read ACL only)",
                opts=child,
            )
            reader_role = openstack.identity.get_role_output(name=READER_ROLE, opts=invoke)
            self.reader_role = openstack.identity.RoleAssignment(
                "triton-reader-role", user_id=self.reader.id, project_id=scope.project_id, role_id=reader_role.id, opts=child
            )
            # Swift keystoneauth ACL syntax <project_id>:<user_id>: read (GET/HEAD objects, list) for that user only.
            acl["container_read"] = pulumi.Output.concat(scope.project_id, ":", self.reader.id)
        # No write ACL: only the project's operator-role users (the deployer) write.
        self.container = openstack.objectstorage.Container(
            "models",
            name=args.container,
            versioning=args.versioning,
            force_destroy=args.force_destroy,
            metadata={"purpose": "triton-model-repository"},
            **acl,
            opts=child,
        )
        # EC2-style credentials of the deploying user on this project (the publication writes with them).
        # The provider marks `secret` secret; `access` is wrapped too: both stay Pulumi secrets.
        self.credential = openstack.identity.Ec2CredentialV3("s3-credentials", project_id=scope.project_id, opts=child)
        self.access_key: pulumi.Output[str] = pulumi.Output.secret(self.credential.access)
        self.secret_key: pulumi.Output[str] = pulumi.Output.secret(self.credential.secret)
        # Triton's: the reader's, made once its role is assigned (EC2 tokens carry the roles the user has);
        # the deployer's where storage.triton_swift_identity is 'deployer' (validate warns).
        self.read_access_key, self.read_secret_key = self.access_key, self.secret_key
        if self.reader is not None:
            self.reader_credential = openstack.identity.Ec2CredentialV3(
                "s3-read-credentials",
                user_id=self.reader.id,
                project_id=scope.project_id,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.reader_role]),
            )
            self.read_access_key = pulumi.Output.secret(self.reader_credential.access)
            self.read_secret_key = pulumi.Output.secret(self.reader_credential.secret)

        if args.s3_endpoint:
            self.endpoint: pulumi.Output[str] = pulumi.Output.from_input(args.s3_endpoint)
        else:
            found = openstack.identity.get_endpoint_output(service_type="object-store", interface="public", endpoint_region=args.region, opts=invoke)
            self.endpoint = found.url.apply(_catalog_s3_endpoint)
        self.uri: pulumi.Output[str] = pulumi.Output.all(self.endpoint, self.container.name).apply(lambda a: triton_s3_uri(a[0], a[1], args.prefix))
        self.register_outputs({"uri": self.uri, "endpoint": self.endpoint})


# --- the builder ---------------------------------------------------------------------------------


@dataclass
class StorageParts:
    """What later components take from the storage (returned by `build`)."""

    key: StackKey
    bucket: ModelBucket
    swift: SwiftRepository
    roles: RoleNames
    account: Account
    prefix: str


def build(ctx: StackContext) -> StorageParts:
    cfg = ctx.config
    st = cfg.storage
    names = cfg.bucket_names()
    roles = RoleNames.of(ctx.name)
    account = Account.lookup(ctx.providers.aws, cfg.aws.region)

    key = StackKey(
        "stack-key",
        StackKeyArgs(
            description=f"{cfg.prefix}: model bucket, EKS secrets, EBS volumes",
            alias=cfg.kms_alias(),
            deletion_window_days=st.kms.deletion_window_days,
            rotation_period_days=st.kms.rotation_period_days,
            multi_region=st.kms.multi_region,
            ebs_default_encryption=st.ebs_default_encryption,
            roles=roles,
            account=account,
            edge_readers=tuple(edge_reader_name(ctx.name, site.name) for site in aws_linked_edge_sites(cfg)),
        ),
        opts=ctx.component_opts(),
    )
    bucket = ModelBucket(
        "model-bucket",
        ModelBucketArgs(
            bucket=names[("storage", "model_bucket")],
            log_bucket=names[("storage", "access_logs", "bucket")],  # the name the checks judged
            prefix=st.prefix,
            key_arn=key.arn,
            versioning=st.versioning,
            noncurrent_version_days=st.retention.noncurrent_version_days,
            abort_incomplete_upload_days=st.retention.abort_incomplete_upload_days,
            object_lock_days=st.retention.object_lock_days,
            log_expire_days=st.access_logs.expire_days,
            force_destroy=st.force_destroy,
            roles=roles,
            account=account,
            writer_principals=list(st.writer_principals),
        ),
        opts=ctx.component_opts(),
    )
    swift = SwiftRepository(
        "swift-repository",
        SwiftRepositoryArgs(
            container=names[("storage", "swift_container")],
            prefix=st.prefix,
            versioning=st.swift_versioning,
            force_destroy=st.force_destroy,
            s3_endpoint=st.swift_s3_endpoint,
            region=cfg.openstack.region,
            reader_user=st.triton_swift_identity == "reader-user",
        ),
        opts=ctx.component_opts(),
    )
    parts = StorageParts(key=key, bucket=bucket, swift=swift, roles=roles, account=account, prefix=st.prefix)

    ctx.outputs.bucket_uris["aws"] = bucket.uri
    ctx.outputs.bucket_uris["openstack"] = swift.uri
    ctx.outputs.extra["kmsKeyArn"] = key.arn
    ctx.outputs.extra["modelWriterRoleArn"] = bucket.writer_role.arn
    ctx.outputs.extra["accessLogBucket"] = bucket.log_bucket.bucket
    ctx.outputs.extra["swiftS3Credentials"] = pulumi.Output.secret(
        {"endpoint": swift.endpoint, "accessKeyId": swift.access_key, "secretAccessKey": swift.secret_key}
    )
    return parts
