"""The local object stores: real weed and moto_server processes, real S3 calls through boto3."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from hybridserve.errors import UserError
from hybridserve.local.objectstore import (
    MotoServer,
    S3Endpoint,
    SeaweedFS,
    ensure_bucket,
    load_or_create_kek,
)


def _gone(pid: int) -> bool:
    """True when no process (nor a process group led by it) with this id is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        pass
    else:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _payload(marker: bytes) -> bytes:
    # Random bytes around the marker: nothing a store could compress the marker away in.
    return os.urandom(32 * 1024) + marker + os.urandom(32 * 1024)


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


# --------------------------------------------------------------------------------------------- pure


def test_endpoint_derives_host_port_and_triton_uri():
    ep = S3Endpoint(url="http://127.0.0.1:8333", access_key="ak", secret_key="sk")
    assert ep.host_port == "127.0.0.1:8333"
    assert ep.triton_uri("bucket", "models") == "s3://127.0.0.1:8333/bucket/models"
    assert ep.triton_uri("bucket", "/models/") == "s3://127.0.0.1:8333/bucket/models"
    assert ep.env() == {"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "sk", "AWS_DEFAULT_REGION": "us-east-1"}
    assert S3Endpoint.from_dict(ep.to_dict()) == ep


def test_kek_is_generated_once_with_mode_0600(tmp_path):
    path = tmp_path / "state" / "objectstore.kek"
    first = load_or_create_kek(path)
    assert len(first) == 64 and int(first, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_kek(path) == first


def test_kek_with_loose_mode_is_tightened(tmp_path):
    path = tmp_path / "k"
    path.write_text("ab" * 32)
    path.chmod(0o644)
    assert load_or_create_kek(path) == "ab" * 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_malformed_kek_is_a_user_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.kek"
    path.write_text("not-hex")
    with pytest.raises(UserError, match="bad.kek.*64 hex"):
        load_or_create_kek(path)


# --------------------------------------------------------------------------------------------- seaweed


@pytest.mark.servers
def test_seaweed_encrypts_at_rest_and_reads_back(seaweed, seaweed_endpoint, unique_bucket):
    summary = ensure_bucket(seaweed_endpoint, unique_bucket, sse="AES256")
    s3 = seaweed_endpoint.client()

    secret_marker = f"HS-SECRET-{uuid.uuid4().hex}".encode()
    secret = _payload(secret_marker)
    # One object relies on the bucket default, one asks for SSE-S3 explicitly.
    s3.put_object(Bucket=unique_bucket, Key="models/default.bin", Body=secret)
    s3.put_object(Bucket=unique_bucket, Key="models/explicit.bin", Body=secret, ServerSideEncryption="AES256")

    # Control: an unencrypted bucket in the same store, so the scan below is shown able to find plaintext.
    control_bucket = unique_bucket + "-plain"
    s3.create_bucket(Bucket=control_bucket)
    plain_marker = f"HS-PLAIN-{uuid.uuid4().hex}".encode()
    s3.put_object(Bucket=control_bucket, Key="plain.bin", Body=_payload(plain_marker))

    assert summary.encryption == "AES256"
    for key in ("models/default.bin", "models/explicit.bin"):
        assert s3.head_object(Bucket=unique_bucket, Key=key)["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket=unique_bucket, Key=key)["Body"].read() == secret

    assert _files_containing(seaweed.data_dir, plain_marker), "control: plaintext should be visible on disk"
    assert _files_containing(seaweed.data_dir, secret_marker) == []


@pytest.mark.servers
def test_seaweed_bucket_is_versioned_and_encrypted_by_default(seaweed_endpoint, unique_bucket):
    first = ensure_bucket(seaweed_endpoint, unique_bucket, sse="AES256")
    again = ensure_bucket(seaweed_endpoint, unique_bucket, sse="AES256")
    assert (first.created, again.created) == (True, False)

    s3 = seaweed_endpoint.client()
    assert s3.get_bucket_versioning(Bucket=unique_bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=unique_bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # SeaweedFS has no public access blocks: reported, not fatal.
    assert first.public_access_block == "not supported by this store"
    assert first.notes

    s3.put_object(Bucket=unique_bucket, Key="k", Body=b"one")
    s3.put_object(Bucket=unique_bucket, Key="k", Body=b"two")
    versions = s3.list_object_versions(Bucket=unique_bucket, Prefix="k")["Versions"]
    assert len(versions) == 2
    (older,) = [v for v in versions if not v["IsLatest"]]
    assert s3.get_object(Bucket=unique_bucket, Key="k", VersionId=older["VersionId"])["Body"].read() == b"one"
    assert s3.get_object(Bucket=unique_bucket, Key="k")["Body"].read() == b"two"


@pytest.mark.servers
def test_seaweed_refuses_other_credentials(seaweed_endpoint):
    stranger = S3Endpoint(url=seaweed_endpoint.url, access_key="someone", secret_key="else")
    with pytest.raises(ClientError) as info:
        stranger.client().list_buckets()
    assert info.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    with pytest.raises(UserError, match="refused the credentials"):
        ensure_bucket(stranger, "any-bucket")


@pytest.mark.servers
def test_seaweed_persists_across_restarts_and_leaves_no_process(tmp_path):
    store = SeaweedFS(tmp_path / "objectstore", kek_path=tmp_path / "kek", log_path=tmp_path / "weed.log")
    body = os.urandom(4096)
    with store:
        first_url = store.endpoint.url
        first_pid = store.pid
        ensure_bucket(store.endpoint, "persisted", sse="AES256")
        store.endpoint.client().put_object(Bucket="persisted", Key="models/a.bin", Body=body)
    assert _gone(first_pid)
    assert stat.S_IMODE((tmp_path / "kek").stat().st_mode) == 0o600
    assert stat.S_IMODE(store.identity_path.stat().st_mode) == 0o600

    with store:
        second_pid = store.pid
        assert store.endpoint.url != first_url or second_pid != first_pid
        s3 = store.endpoint.client()
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["persisted"]
        assert s3.get_object(Bucket="persisted", Key="models/a.bin")["Body"].read() == body
        assert ensure_bucket(store.endpoint, "persisted").created is False
    assert _gone(second_pid)
    with pytest.raises(RuntimeError):
        store.endpoint  # noqa: B018 - stopped stores have no endpoint


# --------------------------------------------------------------------------------------------- moto


@pytest.mark.servers
def test_moto_bucket_with_kms_default_and_public_access_block(moto_endpoint, unique_bucket):
    key_id = moto_endpoint.client("kms").create_key(Description="hybridserve test")["KeyMetadata"]["KeyId"]
    summary = ensure_bucket(moto_endpoint, unique_bucket, sse="aws:kms", kms_key_id=key_id)
    assert summary.created and summary.versioning == "Enabled"
    assert summary.encryption == f"aws:kms (key {key_id})"
    assert summary.public_access_block == "all blocked"

    s3 = moto_endpoint.client()
    s3.put_object(Bucket=unique_bucket, Key="x", Body=b"data")
    head = s3.head_object(Bucket=unique_bucket, Key="x")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]


def test_ensure_bucket_rejects_unknown_sse():
    ep = S3Endpoint(url="http://127.0.0.1:9", access_key="a", secret_key="b")
    with pytest.raises(UserError, match="AES256.*aws:kms"):
        ensure_bucket(ep, "bucket", sse="aws:fancy")  # type: ignore[arg-type]


@pytest.mark.servers
def test_ensure_bucket_invalid_name_is_a_user_error(moto_endpoint):
    with pytest.raises(UserError, match="'Not_A_Bucket!'"):
        ensure_bucket(moto_endpoint, "Not_A_Bucket!")


@pytest.mark.servers
def test_moto_server_starts_and_stops_without_leftovers(tmp_path):
    server = MotoServer(log_path=tmp_path / "moto.log")
    with server:
        pid = server.pid
        assert server.endpoint.client().list_buckets()["Buckets"] == []
    assert _gone(pid)
