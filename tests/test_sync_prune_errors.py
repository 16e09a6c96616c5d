"""`hybridserve sync` against real stores (moto_server SSE-KMS, SeaweedFS SSE-S3; see syncstore.py): dry run, prune, errors, the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hybridserve.errors import UserError
from hybridserve.local.process import free_port
from hybridserve.sync import sync_repository
from hybridserve.sync.errors import (
    EXIT_ACCESS_DENIED,
    EXIT_INVALID_REPOSITORY,
    EXIT_KMS,
    EXIT_NO_BUCKET,
    EXIT_PUBLISHED_CHANGED,
    EXIT_UNREACHABLE,
)

from syncstore import PREFIX, Store, _local_files, _models, _new_bucket, _new_version, cached_sync, moto_store, repo, store, worker_state  # noqa: F401 - fixtures among them

pytestmark = pytest.mark.servers


# --------------------------------------------------------------------------------------------- dry run, prune


def _stale_objects(store: Store) -> dict[str, str]:
    """Stale keys under the prefix (delete with --prune) and keys outside it (never touched)."""
    under = {f"{PREFIX}/gone_model/config.pbtxt", f"{PREFIX}/gone_model/1/model.py", f"{PREFIX}/text_encoder/7/old.bin"}
    outside = {"other/keep.txt", f"{PREFIX}-sibling/keep.txt", "keep-at-root.txt"}
    for key in under | outside:
        store.s3.put_object(Bucket=store.bucket, Key=key, Body=b"stale", ServerSideEncryption="AES256")
    return {"under": under, "outside": outside}


def test_dry_run_shows_adds_updates_deletes_and_touches_nothing(store, repo):
    cached_sync(repo, store.target(), show_progress=False)
    stale = _stale_objects(store)
    config = repo / "text_encoder" / "config.pbtxt"
    config.write_text(config.read_text().replace('string_value: "1e-3"', 'string_value: "2e-3"'))
    _new_version(repo, "image_classifier", 2)
    before_keys, before_writes = store.keys(""), store.writes()

    report = cached_sync(repo, store.target(), dry_run=True, prune=True, show_progress=False)
    assert report.dry_run
    actions = {(c.action, c.key) for c in report.changes}
    assert ("update", f"{PREFIX}/text_encoder/config.pbtxt") in actions
    assert ("add", f"{PREFIX}/image_classifier/2/model.pt") in actions
    assert {k for a, k in actions if a == "delete"} == stale["under"]
    assert set(report.deleted) == stale["under"]
    assert report.published["image_classifier"] == [2]
    assert store.keys("") == before_keys and store.writes() == before_writes


def test_prune_deletes_only_stale_keys_under_the_prefix(store, repo):
    cached_sync(repo, store.target(), show_progress=False)
    stale = _stale_objects(store)

    trusting = cached_sync(repo, store.target(), show_progress=False)
    assert trusting.compared_with == "manifest" and trusting.deleted == []  # no listing: foreign keys unseen
    kept = cached_sync(repo, store.target(), show_progress=False, verify=True)
    assert kept.deleted == [] and stale["under"] <= store.keys("")
    assert any("--prune deletes them" in n for n in kept.notes)

    shutil.rmtree(repo / "image_classifier")
    gone = stale["under"] | store.keys(f"{PREFIX}/image_classifier/")
    report = cached_sync(repo, store.target(), prune=True, show_progress=False)
    assert set(report.deleted) == gone
    remaining = store.keys("")
    assert not gone & remaining
    assert stale["outside"] <= remaining
    assert set(_local_files(repo)) | {f"{PREFIX}/text_encoder/config.pbtxt"} <= remaining
    assert report.deleted.index(f"{PREFIX}/image_classifier/config.pbtxt") < report.deleted.index(
        f"{PREFIX}/image_classifier/1/model.pt"
    )  # the model disappears before its files


def test_pruning_inside_a_published_version_needs_replace(moto_store, repo):
    cached_sync(repo, moto_store.target(), show_progress=False)
    leftover = f"{PREFIX}/text_encoder/1/leftover.bin"
    moto_store.s3.put_object(Bucket=moto_store.bucket, Key=leftover, Body=b"old")

    with pytest.raises(UserError) as err:
        cached_sync(repo, moto_store.target(), prune=True, show_progress=False)
    assert err.value.exit_code == EXIT_PUBLISHED_CHANGED and "leftover.bin" in str(err.value)

    dry = cached_sync(repo, moto_store.target(), prune=True, dry_run=True, show_progress=False)
    assert any("leftover.bin" in c for c in dry.conflicts)

    report = cached_sync(repo, moto_store.target(), prune=True, replace=True, show_progress=False)
    assert report.deleted == [leftover] and leftover not in moto_store.keys()
    assert moto_store.published("text_encoder") == [1]
    assert moto_store.published("image_classifier") == [1]


# --------------------------------------------------------------------------------------------- errors


def test_missing_bucket(moto_store, repo):
    with pytest.raises(UserError) as err:
        sync_repository(repo, moto_store.target(bucket="no-such-bucket-here"), show_progress=False)
    assert err.value.exit_code == EXIT_NO_BUCKET
    assert "no-such-bucket-here" in str(err.value)


def test_without_a_client_the_fast_paths_read_falls_back_to_the_clients_errors(seaweed_endpoint, unique_bucket, repo, tmp_path):
    """SSE-S3 at an --endpoint-url: the manifest is read without a botocore client (engine._lean_manifest); what
    it cannot read, the client reads again and names: a missing bucket, wrong credentials, an unreachable store."""
    _new_bucket(seaweed_endpoint, unique_bucket)
    store = Store("seaweed", seaweed_endpoint, unique_bucket, None)
    with pytest.raises(UserError) as err:
        sync_repository(repo, store.target(bucket="no-such-bucket-here"), show_progress=False, validated=True)
    assert err.value.exit_code == EXIT_NO_BUCKET and "no-such-bucket-here" in str(err.value)
    with pytest.raises(UserError) as err:
        sync_repository(repo, store.target(secret_key="not-the-secret"), show_progress=False, validated=True)
    assert err.value.exit_code == EXIT_ACCESS_DENIED
    with pytest.raises(UserError) as err:
        sync_repository(repo, store.target(endpoint_url=f"http://127.0.0.1:{free_port()}"), show_progress=False, validated=True)
    assert err.value.exit_code == EXIT_UNREACHABLE


def test_unreachable_endpoint(moto_store, repo):
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: the OS just handed it out and it was closed
    with pytest.raises(UserError) as err:
        cached_sync(repo, moto_store.target(endpoint_url=closed), show_progress=False)
    assert err.value.exit_code == EXIT_UNREACHABLE
    assert closed in str(err.value)


@pytest.mark.parametrize("kind", ["missing", "disabled", "pending deletion"])
def test_unusable_kms_key_is_refused_before_any_write(moto_store, repo, kind):
    kms = moto_store.endpoint.client("kms")
    if kind == "missing":
        key_id = "00000000-1111-2222-3333-444444444444"
    else:
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        if kind == "disabled":
            kms.disable_key(KeyId=key_id)
        else:
            kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    with pytest.raises(UserError) as err:
        cached_sync(repo, moto_store.target(kms_key_id=key_id), show_progress=False)
    assert err.value.exit_code == EXIT_KMS
    assert key_id in str(err.value)
    assert moto_store.keys("") == set()


def test_kms_without_key_id_needs_a_bucket_default_key(moto_store, repo):
    with pytest.raises(UserError) as err:
        cached_sync(repo, moto_store.target(kms_key_id=None), show_progress=False)
    assert err.value.exit_code == EXIT_KMS and "--kms-key-id" in str(err.value)

    key = moto_store.kms_key
    moto_store.s3.put_bucket_encryption(
        Bucket=moto_store.bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}}]
        },
    )
    report = cached_sync(repo, moto_store.target(kms_key_id=None), show_progress=False)
    assert any("bucket default key" in n for n in report.notes)
    head = moto_store.head(f"{PREFIX}/text_encoder/1/model.pt")
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"].endswith(key["KeyId"])


def test_sse_kms_on_a_store_without_kms_says_use_aes256(seaweed_endpoint, unique_bucket, repo):
    _new_bucket(seaweed_endpoint, unique_bucket)
    store = Store("seaweed", seaweed_endpoint, unique_bucket, None)
    with pytest.raises(UserError) as err:
        cached_sync(repo, store.target(sse="aws:kms", kms_key_id="some-key"), show_progress=False)
    assert err.value.exit_code == EXIT_KMS
    assert "--sse AES256" in str(err.value)
    assert not any(k.endswith("config.pbtxt") for k in store.keys())


def test_wrong_credentials_are_access_denied(seaweed_endpoint, unique_bucket, repo):
    _new_bucket(seaweed_endpoint, unique_bucket)
    store = Store("seaweed", seaweed_endpoint, unique_bucket, None)
    wrong_secret = "not-the-secret-" + "x" * 20
    with pytest.raises(UserError) as err:
        cached_sync(repo, store.target(secret_key=wrong_secret), show_progress=False)
    assert err.value.exit_code == EXIT_ACCESS_DENIED
    assert wrong_secret not in str(err.value) and seaweed_endpoint.secret_key not in str(err.value)


def test_invalid_repository_is_never_synced(moto_store, repo):
    (repo / "text_encoder" / "1" / "model.pt").unlink()
    with pytest.raises(UserError) as err:
        sync_repository(repo, moto_store.target(), show_progress=False)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    assert "text_encoder/1/model.pt" in str(err.value)
    # Published nothing: early uploads of other files at most (tests/test_sync_early.py), no config, no manifest.
    assert {k.removeprefix(PREFIX + "/") for k in moto_store.keys("")} <= {
        p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file() and p.name != "config.pbtxt"
    }


# --------------------------------------------------------------------------------------------- CLI


def test_cli_syncs_with_credentials_from_the_environment_and_never_prints_them(
    seaweed_endpoint, unique_bucket, repo, monkeypatch, capsys, tmp_path
):
    from hybridserve.cli import main

    _new_bucket(seaweed_endpoint, unique_bucket)
    for name, value in seaweed_endpoint.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HYBRIDSERVE_STATE_DIR", str(worker_state()))  # the hash cache goes there (see cached_sync)
    argv = ["sync", "--bucket", unique_bucket, "--endpoint-url", seaweed_endpoint.url, "--sse", "AES256",
            "--repo", str(repo), "--no-progress"]

    main(argv + ["--dry-run"])
    out = capsys.readouterr().out
    assert "Would change (dry run)" in out and "text_encoder" in out
    assert Store("seaweed", seaweed_endpoint, unique_bucket, None).keys("") == set()

    main(argv)
    out = capsys.readouterr()
    assert "published text_encoder: versions 1" in out.out
    for secret in (seaweed_endpoint.secret_key, seaweed_endpoint.access_key):
        assert secret not in out.out + out.err

    with pytest.raises(SystemExit) as exit_:
        main(argv + ["--sse", "aws:kms"])  # no --kms-key-id and no bucket default key
    assert exit_.value.code == EXIT_KMS
    assert "--kms-key-id" in capsys.readouterr().err


def test_an_unchanged_cli_sync_imports_neither_botocore_nor_rich_nor_protobuf(seaweed_endpoint, unique_bucket, repo, tmp_path):
    """The unchanged path's fixed cost (hybridserve/sync/command.py, engine._stdlib_get, scan.ConfigCache): its GET
    is signed without botocore, its report printed without rich, its configs' digests come from the cache. The
    text is what rich prints; a store that refuses the stdlib's GET would have made the sync import botocore."""
    _new_bucket(seaweed_endpoint, unique_bucket)
    env = dict(os.environ, **seaweed_endpoint.env(), PYTHONPATH=str(Path(__file__).resolve().parent.parent),
               HYBRIDSERVE_STATE_DIR=str(tmp_path / "state"))
    for name in [n for n in env if n.lower().endswith("_proxy")]:
        del env[name]
    argv = ["sync", "--bucket", unique_bucket, "--endpoint-url", seaweed_endpoint.url, "--sse", "AES256",
            "--repo", str(repo), "--no-progress"]
    # The first sync in this process (it imports everything anyway); what `models validate` records, planted.
    from hybridserve.sync.validated import record_validated_repository, tree_fingerprint

    state = tmp_path / "state"
    record_validated_repository(repo, state, tree_fingerprint(repo))
    store = Store("seaweed", seaweed_endpoint, unique_bucket, None)
    sync_repository(repo, store.target(), show_progress=False, hash_cache=state / "sync-hashes.json")

    # As installed: `python -m hybridserve` ends through command.exit_now, which must still flush every line.
    unchanged = subprocess.run([sys.executable, "-X", "importtime", "-m", "hybridserve", *argv], env=env,
                               capture_output=True, text=True, timeout=300)
    assert unchanged.returncode == 0 and "Traceback" not in unchanged.stderr, unchanged.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in unchanged.stderr.splitlines() if line.startswith("import time:")}
    assert "hybridserve.sync.engine" in imported
    assert not {m for m in imported if m.split(".")[0] in ("botocore", "rich", "boto3", "s3transfer")} | {
        m for m in imported if m.startswith("google.protobuf")}
    lines = unchanged.stdout.splitlines()
    assert re.fullmatch(
        rf"s3://{unique_bucket}/{PREFIX}/: uploaded 0 objects \(0 bytes\), \d+ unchanged, deleted 0 - up to date in \d+\.\d s",
        lines[0],
    ), lines
    assert lines[1:] == ["encryption: SSE-S3 (AES256)"] + [f"published {m}: versions 1" for m in _models(repo)]


def test_the_stdlib_signed_get_reads_keys_that_need_escaping_and_is_refused_a_wrong_secret(seaweed_endpoint, unique_bucket):
    """engine._stdlib_get signs as botocore does (SigV4, S3's URI encoding): the store accepts it, for keys with
    spaces, '+', '%' and non-ASCII too; a wrong secret is a refusal (None: the client path then reports it)."""
    from hybridserve.sync import engine

    _new_bucket(seaweed_endpoint, unique_bucket)
    store = Store("seaweed", seaweed_endpoint, unique_bucket, None)
    keys = ["models/plain.txt", "models/a b+c%d/\u00fcber=1&x~y.txt"]
    for key in keys:
        store.s3.put_object(Bucket=unique_bucket, Key=key, Body=key.encode())
    target = store.target()
    assert engine._plain_request_settings(target) is not None  # explicit credentials, http: the stdlib path
    for key in keys:
        assert engine._signed_get(target, key) == key.encode()
        assert engine._botocore_get(target, key) == (200, key.encode())
    assert engine._signed_get(target, "models/no-such-key") is None
    status, body = engine._signed_request(target, "models/no-such-key")
    assert status == 404 and b"<Code>NoSuchKey</Code>" in body  # what lets a full sync skip the probe's GET
    assert engine._signed_get(store.target(secret_key="not-the-secret"), keys[0]) is None


def test_cli_help_explains_every_option():
    from typer.testing import CliRunner

    from hybridserve.cli import app

    result = CliRunner().invoke(app, ["sync", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--bucket", "--prefix", "--endpoint-url", "--region", "--sse", "--kms-key-id", "--repo",
                   "--dry-run", "--prune", "--replace", "--verify", "--timings"):
        assert option in result.output
