"""Encrypted model storage (issue 7): what a cloud would check, asserted on the recorded offline plan.

The plan is the real program under the mock engine (infra/plan.py); policies are parsed from the
JSON text the resources receive, exactly what `pulumi up` would send.
"""

from __future__ import annotations

import json
import re
import shutil
from functools import cache
from pathlib import Path

import pytest
import yaml

from hybridserve.paths import repo_root
from hybridserve.stackconfig import StackConfigError, build_stack_config, stack_files
from infra.plan import SECRET_MARKER, Plan, PlannedResource, plan_stack_file
from cliutil import run_cli
from stackutil import reachable

EXAMPLES = repo_root() / "stacks"
NAMES = sorted(stack_files(EXAMPLES))
REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}
# Triton's own pattern for a non-AWS S3 model repository (src/filesystem/implementations/s3.h).
TRITON_S3 = re.compile(r"s3://(http://|https://|)([0-9a-zA-Z\-.]+):([0-9]+)/([0-9a-z.\-]+)(((/[0-9a-zA-Z.\-_]+)*)?)")


@cache
def plan_of(name: str) -> Plan:
    return plan_stack_file(EXAMPLES / f"Pulumi.{name}.yaml")


def of_type(plan: Plan, type_: str) -> list[PlannedResource]:
    return [r for r in plan.resources if r.type == type_]


def one(plan: Plan, type_: str, name: str | None = None) -> PlannedResource:
    found = [r for r in of_type(plan, type_) if name is None or r.name == name]
    assert len(found) == 1, (type_, name, [r.name for r in found])
    return found[0]


def per_bucket(plan: Plan, type_: str) -> dict[str, PlannedResource]:
    """Bucket-level settings resources by the bucket they configure."""
    return {r.inputs["bucket"]: r for r in of_type(plan, type_)}


def key_arn(plan: Plan) -> str:
    arn = plan.outputs["kmsKeyArn"]
    assert arn.startswith("arn:aws:kms:") and ":key/" in arn
    return arn


def statements(doc: str) -> dict[str, dict]:
    parsed = json.loads(doc)
    assert parsed["Version"] == "2012-10-17"
    return {s["Sid"]: s for s in parsed["Statement"]}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- S3 -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_bucket_is_encrypted_versioned_private_and_tls_only(name):
    plan = plan_of(name)
    buckets = {r.inputs["bucket"] for r in of_type(plan, "aws:s3/bucket:Bucket")}
    cfg = plan.config
    assert buckets == {cfg.storage.model_bucket, f"hybridserve-{cfg.team}-{cfg.environment}-access-logs"}

    encryption = per_bucket(plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    versioning = per_bucket(plan, "aws:s3/bucketVersioning:BucketVersioning")
    blocks = per_bucket(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    ownership = per_bucket(plan, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    policies = per_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy")
    for bucket in buckets:
        [rule] = encryption[bucket].inputs["rules"]
        if bucket == cfg.storage.model_bucket:  # models: SSE-KMS with the stack key
            assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn(plan)}, bucket
            assert rule["bucketKeyEnabled"] is True
        else:  # access logs: SSE-S3, what AWS documents for a server access log destination
            assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}, bucket
        assert versioning[bucket].inputs["versioningConfiguration"]["status"] == "Enabled"
        block = blocks[bucket].inputs
        assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")), bucket
        assert ownership[bucket].inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}

        sts = statements(policies[bucket].inputs["policy"])
        tls = sts["DenyInsecureTransport"]
        assert (tls["Effect"], tls["Principal"], tls["Action"]) == ("Deny", "*", "s3:*")
        assert set(tls["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        # nothing in a bucket policy allows anyone but the S3 log delivery service
        for s in sts.values():
            if s["Effect"] == "Allow":
                assert s["Principal"] == {"Service": "logging.s3.amazonaws.com"}, (bucket, s)


@pytest.mark.parametrize("name", NAMES)
def test_model_bucket_denies_uploads_not_encrypted_with_the_stack_key(name):
    plan = plan_of(name)
    bucket = plan.config.storage.model_bucket
    sts = statements(per_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy")[bucket].inputs["policy"])
    not_kms, other_key = sts["DenyUploadsNotSseKms"], sts["DenyUploadsWithAnotherKey"]
    for s in (not_kms, other_key):
        assert (s["Effect"], s["Principal"], s["Action"], s["Resource"]) == ("Deny", "*", "s3:PutObject", f"arn:aws:s3:::{bucket}/*")
    assert not_kms["Condition"] == {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}}
    assert other_key["Condition"] == {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn(plan)}}


@pytest.mark.parametrize("name", NAMES)
def test_lifecycle_expires_noncurrent_versions_and_access_logs_are_delivered(name):
    plan = plan_of(name)
    st = plan.config.storage
    lifecycle = per_bucket(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    rules = {r["id"]: r for r in lifecycle[st.model_bucket].inputs["rules"]}
    assert rules["expire-noncurrent-versions"]["status"] == "Enabled"
    assert rules["expire-noncurrent-versions"]["noncurrentVersionExpiration"] == {"noncurrentDays": st.retention.noncurrent_version_days}
    assert rules["abort-incomplete-uploads"]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": st.retention.abort_incomplete_upload_days}

    logging_ = one(plan, "aws:s3/bucketLogging:BucketLogging")
    log_bucket = plan.outputs["accessLogBucket"]
    assert logging_.inputs["bucket"] == st.model_bucket and logging_.inputs["targetBucket"] == log_bucket != st.model_bucket
    delivery = statements(per_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy")[log_bucket].inputs["policy"])["AllowS3AccessLogDelivery"]
    assert delivery["Action"] == "s3:PutObject" and delivery["Resource"] == f"arn:aws:s3:::{log_bucket}/*"
    assert delivery["Condition"]["ArnLike"] == {"aws:SourceArn": f"arn:aws:s3:::{st.model_bucket}"}
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}


def test_object_lock_only_where_configured():
    prod, dev = plan_of("vision-prod"), plan_of("vision-dev")
    lock = one(prod, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock.inputs["rule"] == {"defaultRetention": {"mode": "GOVERNANCE", "days": 30}}
    assert one(prod, "aws:s3/bucket:Bucket", "models").inputs["objectLockEnabled"] is True
    assert not of_type(dev, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")


# --- the key ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_stack_key_rotates_and_has_its_alias(name):
    plan = plan_of(name)
    kms = plan.config.storage.kms
    key = one(plan, "aws:kms/key:Key", "key")
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["rotationPeriodInDays"] == kms.rotation_period_days
    assert key.inputs["deletionWindowInDays"] == kms.deletion_window_days
    alias = one(plan, "aws:kms/alias:Alias", "alias")
    assert alias.inputs["name"] == plan.config.kms_alias()
    assert alias.inputs["targetKeyId"] == key_arn(plan).rsplit("/", 1)[1]


# --- EBS encryption by default: one owner per account and region -----------------------------------------


def test_only_the_owner_stack_of_a_region_declares_ebs_encryption_by_default_and_a_destroy_leaves_it_on():
    owners = {}
    for name in NAMES:
        plan = plan_of(name)
        declared = of_type(plan, "aws:ebs/encryptionByDefault:EncryptionByDefault")
        # the region's default key stays AWS's (aws/ebs): the stack key as region default would refuse
        # other stacks' volumes that name no key, and it is deleted with its stack
        assert not of_type(plan, "aws:ebs/defaultKmsKey:DefaultKmsKey"), name
        if plan.config.storage.ebs_default_encryption == "owner":
            [setting] = declared
            assert setting.inputs["enabled"] is True
            # the provider disables encryption by default when the resource is deleted: retained instead
            assert setting.retain_on_delete is True
            owners.setdefault(plan.config.aws.region, []).append(name)
        else:
            assert declared == [], name
    # the examples: per region the prod stack owns it, the dev stack leaves it alone
    assert owners == {"eu-central-1": ["vision-prod"], "us-west-2": ["search-prod"]}


@pytest.mark.parametrize("name", ["vision-dev", "vision-prod"])
def test_the_stacks_volumes_name_the_stack_key_whoever_owns_the_region_default(name):
    plan = plan_of(name)
    templates = of_type(plan, "aws:ec2/launchTemplate:LaunchTemplate")
    assert templates
    for template in templates:
        [root] = template.inputs["blockDeviceMappings"]
        assert (root["ebs"]["encrypted"], root["ebs"]["kmsKeyId"]) == ("true", key_arn(plan)), template.name
    [gp3] = [r for r in of_type(plan, "kubernetes:storage.k8s.io/v1:StorageClass") if r.inputs["metadata"]["name"] == "gp3-encrypted"]
    assert (gp3.inputs["parameters"]["encrypted"], gp3.inputs["parameters"]["kmsKeyId"]) == ("true", key_arn(plan))


def test_a_declared_account_is_enforced_by_the_aws_provider(stacks: Path):
    plan = plan_stack_file(edit(stacks, "vision-dev", "hybridserve:aws", account_id="210987654321"))
    provider = one(plan, "pulumi:providers:aws", "aws")
    allowed = provider.inputs["allowedAccountIds"]
    assert (json.loads(allowed) if isinstance(allowed, str) else allowed) == ["210987654321"]
    assert "allowedAccountIds" not in one(plan_of("vision-dev"), "pulumi:providers:aws", "aws").inputs


def test_key_policy_grants_use_only_to_the_roles_that_need_it():
    plan = plan_of("vision-dev")
    sts = statements(one(plan, "aws:kms/key:Key", "key").inputs["policy"])
    role = "arn:aws:iam::123456789012:role/hybridserve-vision-dev-{}".format
    use = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey", "kms:GenerateDataKey*"}

    admin = sts["KeyAdministration"]
    assert admin["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert not use & set(admin["Action"]) and "kms:*" not in admin["Action"]  # the account administers, never uses
    assert sts["GrantsForAwsServicesOnly"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}

    def who(sid: str) -> set[str]:
        s = sts[sid]
        assert s["Principal"] == {"AWS": "*"} and s["Condition"]["StringEquals"]["kms:CallerAccount"] == "123456789012"
        return set(s["Condition"]["ArnEquals"]["aws:PrincipalArn"])

    assert who("EksSecretsEncryption") == {role("eks-cluster")}
    assert who("EbsVolumesThroughEc2") == {
        role("eks-node"), role("ebs-csi"),
        "arn:aws:iam::123456789012:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
    }
    assert sts["EbsVolumesThroughEc2"]["Condition"]["StringEquals"]["kms:ViaService"] == "ec2.eu-central-1.amazonaws.com"
    assert who("ModelReaderDecryptThroughS3") == {role("model-reader")}
    assert sts["ModelReaderDecryptThroughS3"]["Action"] == ["kms:Decrypt"]
    assert sts["ModelReaderDecryptThroughS3"]["Condition"]["StringEquals"]["kms:ViaService"] == "s3.eu-central-1.amazonaws.com"
    assert who("ModelWriterThroughS3") == {role("model-writer")}
    # the log bucket is SSE-S3 (what AWS documents for access-log destinations): log delivery gets no key use
    assert "S3AccessLogDelivery" not in sts and not any("Service" in s["Principal"] for s in sts.values())
    # administration is listed action by action: no wildcard could include kms:CreateGrant (and so decrypt)
    assert not any("*" in a for a in admin["Action"]) and "kms:CreateGrant" not in admin["Action"]
    # every statement that allows use is tied to named principals or to a service
    for sid, s in sts.items():
        if use & set(as_list(s["Action"])):
            assert s["Principal"] != {"AWS": "arn:aws:iam::123456789012:root"}, sid
            assert "ArnEquals" in s.get("Condition", {}) or "Service" in s["Principal"], sid


def test_model_writer_role_is_assumed_not_keyed_and_writes_only_its_prefix():
    plan = plan_of("search-prod")
    bucket = plan.config.storage.model_bucket
    writer = one(plan, "aws:iam/role:Role", "model-writer")
    trust = json.loads(writer.inputs["assumeRolePolicy"])["Statement"]
    assert [s["Principal"] for s in trust] == [{"AWS": "arn:aws:iam::123456789012:root"}]
    sts = statements(one(plan, "aws:iam/rolePolicy:RolePolicy", "model-writer-policy").inputs["policy"])
    assert sts["ReadWriteThePrefix"]["Resource"] == f"arn:aws:s3:::{bucket}/models/*"
    assert sts["ListThePrefix"]["Condition"] == {"StringLike": {"s3:prefix": ["models", "models/*"]}}
    assert sts["UseTheStackKey"]["Resource"] == key_arn(plan)
    assert not of_type(plan, "aws:iam/accessKey:AccessKey")  # no static access keys anywhere
    assert plan.outputs["modelWriterRoleArn"] == "arn:aws:iam::123456789012:role/hybridserve-search-prod-model-writer"


# --- Swift ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_swift_container_is_private_versioned_and_its_credentials_secret(name):
    plan = plan_of(name)
    container = one(plan, "openstack:objectstorage/container:Container")
    assert container.inputs["name"] == plan.config.storage.swift_container
    assert container.inputs["versioning"] is True
    # Read for Triton's read-only user alone (keystoneauth <project_id>:<user_id>; no referrer, no wildcard), no write ACL.
    project, _, user = container.inputs["containerRead"].partition(":")
    assert re.fullmatch(r"[0-9a-f]{32}", project) and re.fullmatch(r"[0-9a-f]{32}", user) and "containerWrite" not in container.inputs
    assert plan.outputs["swiftS3Credentials"] == SECRET_MARKER

    uri = plan.outputs["bucketUris"]["openstack"]
    match = TRITON_S3.fullmatch(uri)
    assert match, uri
    assert match.group(1) == "https://" and match.group(4) == plan.config.storage.swift_container
    assert match.group(5) == f"/{plan.config.storage.prefix}"
    assert plan.outputs["bucketUris"]["aws"] == f"s3://{plan.config.storage.model_bucket}/{plan.config.storage.prefix}"


def test_no_credential_value_reaches_the_plan_json():
    from infra.mocks import MockContext

    plan = plan_of("vision-dev")
    text = json.dumps(plan.as_json())
    mock = MockContext("eu-central-1", "vision-dev", "openstack:identity/ec2CredentialV3:Ec2CredentialV3", "s3-credentials")
    assert mock.digest("secret", length=32) not in text
    assert mock.digest("access", length=32) not in text


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    copy = tmp_path / "stacks"
    shutil.copytree(EXAMPLES, copy)
    return copy


def edit(stacks: Path, name: str, key: str, **values) -> Path:
    path = stacks / f"Pulumi.{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"].setdefault(key, {}).update(values)
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_configured_swift_endpoint_shapes_the_triton_uri_and_ebs_default_can_be_left_to_another_stack(stacks: Path):
    path = edit(stacks, "search-prod", "hybridserve:storage", swift_s3_endpoint="https://swift.search.example:8443", ebs_default_encryption="unmanaged")
    plan = plan_stack_file(path)
    assert plan.outputs["bucketUris"]["openstack"] == "s3://https://swift.search.example:8443/search-prod-triton-models/models"
    assert not of_type(plan, "aws:ebs/encryptionByDefault:EncryptionByDefault")
    assert not [w for w in plan.warnings if "no mock for invoke" in w]


# --- schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "storage, problem",
    [
        ({"kms": {"enable_key_rotation": False}}, "hybridserve:storage.kms.enable_key_rotation: false is not allowed; the stack key always rotates"),
        ({"swift_s3_endpoint": "swift.example.org/v1"}, "hybridserve:storage.swift_s3_endpoint: 'swift.example.org/v1' is not an S3 endpoint"),
        ({"writer_principals": ["arn:aws:iam::123:role/x"]}, "hybridserve:storage.writer_principals[0]"),
        ({"access_logs": {"bucket": "Logs!"}}, "hybridserve:storage.access_logs.bucket: 'Logs!' is not a valid bucket name"),
    ],
)
def test_bad_storage_settings_name_the_key(storage, problem):
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, "hybridserve:storage": storage}))
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_storage_defaults_are_encrypted_and_name_the_cinder_type():
    st = build_stack_config(reachable(REQUIRED)).storage
    assert st.kms.enable_key_rotation and st.swift_versioning
    # the account-wide setting is left alone unless a stack is made its owner
    assert st.ebs_default_encryption == "unmanaged"
    assert st.cinder_volume_type == "LUKS" and st.writer_principals == []


@pytest.mark.parametrize(
    "values, problem",
    [
        ({"hybridserve:storage": {"ebs_default_encryption": True}},
         "hybridserve:storage.ebs_default_encryption: true is no longer accepted; EBS encryption by default is one setting per AWS account and region: "
         "set 'owner' on the one stack that manages it and 'unmanaged' (the default) on the others"),
        ({"hybridserve:storage": {"ebs_default_encryption": "yes"}}, "hybridserve:storage.ebs_default_encryption: 'yes' is not valid; expected 'owner' or 'unmanaged'"),
        ({"hybridserve:aws": {"account_id": "12345"}}, "hybridserve:aws.account_id: '12345' is not an AWS account id; expected its 12 digits"),
    ],
)
def test_bad_ebs_ownership_settings_name_the_key(values, problem):
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable({**REQUIRED, **values}))
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_an_unquoted_account_id_reads_as_its_digits():
    assert build_stack_config(reachable({**REQUIRED, "hybridserve:aws": {"account_id": 210987654321}})).aws.account_id == "210987654321"


# --- across stacks ---------------------------------------------------------------------------------------


@pytest.fixture
def in_checkout(stacks: Path, monkeypatch) -> Path:
    """The copied stacks as a checkout (Pulumi.yaml beside them), run from its root like a user would."""
    shutil.copy(repo_root() / "Pulumi.yaml", stacks.parent / "Pulumi.yaml")
    monkeypatch.chdir(stacks.parent)
    monkeypatch.setenv("HYBRIDSERVE_ROOT", str(stacks.parent))
    return stacks


def test_two_owners_of_ebs_encryption_by_default_in_one_region_are_refused(in_checkout: Path, capsys):
    edit(in_checkout, "vision-dev", "hybridserve:storage", ebs_default_encryption="owner")
    expected = (
        "stacks/Pulumi.vision-prod.yaml: hybridserve:storage.ebs_default_encryption: 'owner', but stacks/Pulumi.vision-dev.yaml owns "
        "EBS encryption by default in region eu-central-1 too; it is one setting per AWS account and region (destroying one owner "
        "would turn it off for the other): keep 'owner' on one stack and set 'unmanaged' on the others "
        "(if they deploy to different AWS accounts, set hybridserve:aws.account_id in both)"
    )
    code, _, err = run_cli(["validate"], capsys)
    assert code == 2 and expected in err
    plan_json = in_checkout.parent / "plan.json"
    code, out, err = run_cli(["plan", "--stack", "vision-dev", "--json", str(plan_json)], capsys)
    assert code == 2 and expected in err
    assert out == "" and not plan_json.exists()  # nothing planned
    # the other region's owner is no conflict
    assert "search-prod" not in err


def test_owners_in_different_declared_accounts_pass_and_the_same_account_is_named(in_checkout: Path, capsys):
    edit(in_checkout, "vision-dev", "hybridserve:storage", ebs_default_encryption="owner")
    edit(in_checkout, "vision-dev", "hybridserve:aws", account_id="111111111111")
    edit(in_checkout, "vision-prod", "hybridserve:aws", account_id="222222222222")
    code, _, err = run_cli(["validate"], capsys)
    assert code == 0, err

    edit(in_checkout, "vision-dev", "hybridserve:aws", account_id="222222222222")
    code, _, err = run_cli(["validate"], capsys)
    assert code == 2
    assert "owns EBS encryption by default in account 222222222222 and region eu-central-1 too" in err
    assert "set hybridserve:aws.account_id in both" not in err  # both are declared: no hint to declare them
