"""`hybridserve sync` against real stores (moto_server SSE-KMS, SeaweedFS SSE-S3; see syncstore.py): the fast path, --verify, the validation record."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from hybridserve.errors import UserError
from hybridserve.sync import engine, scan, sync_repository
from hybridserve.sync.errors import EXIT_INVALID_REPOSITORY, EXIT_NO_BUCKET, EXIT_VERIFY_FAILED

from syncstore import PREFIX, Store, _local_files, _models, _new_bucket, _new_version, _sha, cached_sync, moto_store, repo, store  # noqa: F401 - fixtures among them

pytestmark = pytest.mark.servers


# --------------------------------------------------------------------------------------------- fast path, --verify


def _count_requests(monkeypatch) -> list[str]:
    """The S3 operations every sync from now on sends, in order (a botocore event hook on its session)."""
    from hybridserve.sync import engine

    calls: list[str] = []
    real = engine._session

    def counted(target):
        session = real(target)
        session.register("before-call.s3", lambda model, **_: calls.append(model.name))
        return session

    monkeypatch.setattr(engine, "_session", counted)
    real_get = engine._signed_request

    def counted_get(target, key):  # the fast path's GET without a client (engine._lean_manifest)
        calls.append("GetObject")
        return real_get(target, key)

    monkeypatch.setattr(engine, "_signed_request", counted_get)
    return calls


def test_an_unchanged_repository_costs_one_manifest_read_and_no_listing(store, repo, monkeypatch):
    cached_sync(repo, store.target(), show_progress=False)
    calls = _count_requests(monkeypatch)

    report = cached_sync(repo, store.target(), show_progress=False)
    assert calls == ["GetObject"]  # the manifest: no LIST, no HEAD, no write
    assert report.compared_with == "manifest" and report.uploaded == []
    assert set(report.skipped) == set(_local_files(repo)) | {f"{PREFIX}/{m}/config.pbtxt" for m in _models(repo)}
    assert report.published == {m: [1] for m in _models(repo)}


def test_a_first_sync_reads_the_missing_manifest_once(moto_store, repo, monkeypatch):
    """SSE-S3 at an endpoint: the lean GET's NoSuchKey says the bucket exists, takes these credentials and holds
    no manifest; the client's probe would only ask again."""
    calls = _count_requests(monkeypatch)
    clients: list[str] = []
    real_client = engine._client
    monkeypatch.setattr(engine, "_client", lambda session, target, service="s3", **kw: clients.append(service) or real_client(session, target, service, **kw))
    report = cached_sync(repo, moto_store.target(sse="AES256", kms_key_id=None), show_progress=False)
    assert calls.count("GetObject") == 1 and calls[0] == "GetObject" and "ListObjectsV2" in calls, calls
    assert clients == ["s3"]  # the sync's own client, no probe client
    assert report.compared_with == "store" and report.published == {m: [1] for m in _models(repo)}
    # Another bucket: the same GET says NoSuchBucket, and the client's probe reports it as before.
    calls.clear()
    with pytest.raises(UserError) as err:
        cached_sync(repo, moto_store.target(bucket="no-such-bucket-here", sse="AES256", kms_key_id=None), show_progress=False)
    assert err.value.exit_code == EXIT_NO_BUCKET and "no-such-bucket-here" in str(err.value)
    assert calls == ["GetObject", "GetObject"], calls  # the lean GET, then the probe's


def test_a_changed_file_is_still_uploaded_after_the_manifest_check(moto_store, repo, monkeypatch):
    cached_sync(repo, moto_store.target(), show_progress=False)  # the setting; the run under test is this file's uncached one
    calls = _count_requests(monkeypatch)
    vdir = _new_version(repo, "text_encoder", 2)

    report = sync_repository(repo, moto_store.target(), show_progress=False)
    assert report.compared_with == "store" and "ListObjectsV2" in calls
    assert {f"{PREFIX}/text_encoder/2/{p.name}" for p in vdir.iterdir()} <= set(report.uploaded)
    assert moto_store.published("text_encoder") == [2]


def test_a_deleted_object_is_trusted_away_by_the_fast_path_and_restored_by_verify(store, repo, monkeypatch):
    cached_sync(repo, store.target(), show_progress=False)
    gone = f"{PREFIX}/text_encoder/1/model.pt"
    store.s3.delete_object(Bucket=store.bucket, Key=gone)  # behind the sync's back (versioned: a delete marker)

    trusting = cached_sync(repo, store.target(), show_progress=False)
    assert trusting.compared_with == "manifest" and trusting.uploaded == []  # what the fast path trusts, documented

    calls = _count_requests(monkeypatch)
    verified = cached_sync(repo, store.target(), show_progress=False, verify=True)
    assert "ListObjectsV2" in calls and "HeadObject" in calls
    # A file of a published version that the manifest says was published with these bytes: a repair, no --replace.
    assert verified.uploaded == [gone]
    assert [c.note for c in verified.changes] == ["restore (missing or different in the store)"]
    assert store.head(gone)["Metadata"]["sha256"] == _sha(repo / "text_encoder" / "1" / "model.pt")


def test_an_overwrite_interrupted_then_reverted_locally_is_not_trusted(moto_store, repo):
    """A run that overwrites an object the manifest vouches for first drops it from the manifest: had it not,
    reverting the local file after an interruption would make the fast path vouch for bytes the store lost."""
    labels = repo / "text_encoder" / "labels.txt"
    labels.write_text("old\n")
    # validated (every run): the manifest's trust is the subject, and each labels.txt would be validated anew
    cached_sync(repo, moto_store.target(), show_progress=False, validated=True)
    key = f"{PREFIX}/text_encoder/labels.txt"

    labels.write_text("new\n")

    def interrupt(uploaded: str) -> None:
        raise KeyboardInterrupt(uploaded)

    with pytest.raises(KeyboardInterrupt):
        cached_sync(repo, moto_store.target(), show_progress=False, validated=True, on_uploaded=interrupt)
    assert moto_store.s3.get_object(Bucket=moto_store.bucket, Key=key)["Body"].read() == b"new\n"

    labels.write_text("old\n")
    report = cached_sync(repo, moto_store.target(), show_progress=False, validated=True)
    assert report.compared_with == "store" and key in report.uploaded
    assert moto_store.s3.get_object(Bucket=moto_store.bucket, Key=key)["Body"].read() == b"old\n"
    assert cached_sync(repo, moto_store.target(), show_progress=False, validated=True).compared_with == "manifest"


def test_validation_is_skipped_for_a_tree_that_validated_and_repeated_after_any_change(moto_store, repo, tmp_path):
    cache = tmp_path / "state" / "sync-hashes.json"

    def sync():
        return sync_repository(repo, moto_store.target(), show_progress=False, hash_cache=cache)

    assert sync().validation == "ran"
    assert sync().validation == "skipped: this very tree validated before"

    model_py = repo / "text_encoder" / "1" / "model.py"
    good = model_py.read_text()
    model_py.write_text(good + "\ndef broken(:\n")
    with pytest.raises(UserError) as refused:
        sync()
    assert refused.value.exit_code == EXIT_INVALID_REPOSITORY and "model.py" in str(refused.value)
    assert _sha(model_py) != moto_store.head(f"{PREFIX}/text_encoder/1/model.py")["Metadata"]["sha256"]  # not uploaded
    model_py.write_text(good)
    (repo / "text_encoder" / "labels.txt").write_text("a\n")  # valid again, and content that never validated
    assert sync().validation == "ran"
    # An empty directory is no file the scan hashes, yet the validator judges it: it counts too.
    (repo / "text_encoder" / "5").mkdir()
    with pytest.raises(UserError) as refused:
        sync()
    assert refused.value.exit_code == EXIT_INVALID_REPOSITORY


def test_content_that_validated_is_not_validated_again_wherever_it_lies_and_any_change_is(moto_store, repo, tmp_path):
    """The content record (hybridserve/sync/validated.py): a copy of a repository that validated (other path,
    other file times) skips; a copy with one changed byte validates; the original content restored skips."""
    cache = tmp_path / "state" / "sync-hashes.json"
    (repo / "text_encoder" / "labels.txt").write_text("a\n")
    assert sync_repository(repo, moto_store.target(), show_progress=False, hash_cache=cache).validation == "ran"

    copy = Path(shutil.copytree(repo, tmp_path / "elsewhere"))  # new inodes and times: the tree record does not match
    target = moto_store.target(prefix="copy")
    assert sync_repository(copy, target, show_progress=False, hash_cache=cache).validation == "skipped: this content validated before"

    labels = copy / "text_encoder" / "labels.txt"
    original = labels.read_bytes()
    labels.write_bytes(original + b"extra\n")
    report = sync_repository(copy, target, show_progress=False, hash_cache=cache)
    assert report.validation == "ran" and "copy/text_encoder/labels.txt" in report.uploaded

    labels.write_bytes(original)
    assert sync_repository(copy, target, show_progress=False, hash_cache=cache).validation == "skipped: this content validated before"


def test_models_validate_records_what_passed_and_the_sync_trusts_only_that(moto_store, repo, tmp_path, monkeypatch, capsys):
    from tests.cliutil import run_cli

    state = tmp_path / "state"
    monkeypatch.setenv("HYBRIDSERVE_STATE_DIR", str(state))
    # Files changed within RACY_SECONDS of their hashing are not cached: let the copy settle first.
    newest = max(max(p.stat().st_mtime, p.stat().st_ctime) for p in repo.rglob("*"))
    time.sleep(max(0.0, newest + scan.RACY_SECONDS + 0.1 - time.time()))
    code, out, _ = run_cli(["models", "validate", "--repo", str(repo)], capsys)
    assert code == 0 and "valid" in out
    cache = state / "sync-hashes.json"
    hashed: list[Path] = []
    real_hash = scan.file_digests
    monkeypatch.setattr(scan, "file_digests", lambda path: hashed.append(Path(path)) or real_hash(path))
    report = sync_repository(repo, moto_store.target(), show_progress=False, hash_cache=cache)
    assert report.validation == "skipped: this content validated before"
    assert hashed == []  # `models validate` hashed every file through the sync's cache: the sync reads none again
    monkeypatch.undo()

    # Changed after `models validate`: validated again, and an invalid change is refused as ever.
    model_py = repo / "text_encoder" / "1" / "model.py"
    model_py.write_text(model_py.read_text() + "\ndef broken(:\n")
    with pytest.raises(UserError) as refused:
        sync_repository(repo, moto_store.target(), show_progress=False, hash_cache=cache)
    assert refused.value.exit_code == EXIT_INVALID_REPOSITORY and "model.py" in str(refused.value)


def test_content_that_changed_during_its_validation_is_not_recorded(repo, tmp_path):
    from hybridserve.sync.validated import has_records, record_path, record_validated_repository, tree_fingerprint

    before = tree_fingerprint(repo)
    (repo / "text_encoder" / "labels.txt").write_text("changed while validating\n")
    record_validated_repository(repo, tmp_path, before)
    assert not has_records(record_path(tmp_path))
    record_validated_repository(repo, tmp_path, tree_fingerprint(repo))
    assert has_records(record_path(tmp_path))


def _sync_rewriting_after_the_scan(repo: Path, store: Store, monkeypatch, rewrite) -> UserError:
    """A sync (the repository validated) whose file changes right after the scan hashed it: its UserError."""
    real = engine.scan_repository

    def scan_then_rewrite(*args, **kwargs):
        models = real(*args, **kwargs)
        rewrite()
        return models

    monkeypatch.setattr(engine, "scan_repository", scan_then_rewrite)
    with pytest.raises(UserError) as err:
        sync_repository(repo, store.target(), show_progress=False, validated=True)
    assert err.value.exit_code == EXIT_VERIFY_FAILED
    return err.value


def test_a_file_rewritten_between_hashing_and_upload_is_refused_by_the_store(seaweed_endpoint, unique_bucket, repo, monkeypatch):
    """Single PUTs carry the scan's sha256 as their checksum, so the store itself refuses other bytes.

    SeaweedFS checks x-amz-checksum-sha256 as S3 does; moto_server 5.2.5 stores the body without checking it."""
    from hybridserve.sync import engine

    _new_bucket(seaweed_endpoint, unique_bucket)
    store = Store("seaweed", seaweed_endpoint, unique_bucket, None)

    changed = repo / "text_encoder" / "1" / "model.py"

    def rewrite():
        text = changed.read_text()
        changed.write_text(text.replace("def", "DEF", 1) if "def" in text else text + "#")  # same size or not: other bytes

    err = _sync_rewriting_after_the_scan(repo, store, monkeypatch, rewrite)
    assert "text_encoder/1/model.py changed while it was being synced" in str(err)
    assert f"{PREFIX}/text_encoder/1/model.py" not in store.keys()
    assert f"{PREFIX}/text_encoder/config.pbtxt" not in store.keys()  # its version was not published


# --------------------------------------------------------------------------------------------- multipart digests


def _parts_of(data: bytes) -> list[bytes]:
    return [data[i:i + scan.PART_SIZE] for i in range(0, len(data), scan.PART_SIZE)]


def test_parts_go_up_with_the_scans_digests_and_botocore_reads_none_to_hash(store, repo, monkeypatch, tmp_path):
    """A two-part file: each UploadPart carries the part's sha256 (the signed payload hash) and CRC32 the scan
    computed, botocore computes neither, and the store holds the file's bytes."""
    import base64
    import hashlib
    import os
    import zlib

    import botocore.auth

    cached_sync(repo, store.target(), show_progress=False)
    big = os.urandom(scan.PART_SIZE + 12345)
    _new_version(repo, "text_encoder", 2, extra=big)
    time.sleep(scan.RACY_SECONDS + 0.1)  # settled, so that the hash cache keeps its digests (checked at the end)
    sent: list[tuple[str, str]] = []
    real_session = engine._session

    def session(target):
        s = real_session(target)
        s.register("before-send.s3.UploadPart", lambda request, **_: sent.append(
            (request.headers["X-Amz-Content-SHA256"].decode(), request.headers["x-amz-checksum-crc32"].decode())))
        return s

    hashed: list[str] = []
    real_payload = botocore.auth.SigV4Auth.payload
    monkeypatch.setattr(engine, "_session", session)
    monkeypatch.setattr(botocore.auth.SigV4Auth, "payload", lambda self, request: hashed.append(request.url) or real_payload(self, request))
    report = sync_repository(repo, store.target(), show_progress=False, hash_cache=tmp_path / "hashes.json", validated=True)
    assert f"{PREFIX}/text_encoder/2/extra.bin" in report.uploaded
    expected = [(hashlib.sha256(p).hexdigest(), base64.b64encode(zlib.crc32(p).to_bytes(4, "big")).decode()) for p in _parts_of(big)]
    assert sorted(sent) == sorted(expected)
    assert not [u for u in hashed if "partNumber=" in u]  # no part read by botocore to hash it
    stored = store.s3.get_object(Bucket=store.bucket, Key=f"{PREFIX}/text_encoder/2/extra.bin")["Body"].read()
    assert stored == big
    # The digests are in the hash cache: the next sync of these bytes (another bucket, another cloud) reads none.
    entry = json.loads((tmp_path / "hashes.json").read_text())["files"][str(repo / "text_encoder" / "2" / "extra.bin")]
    assert entry[6]["sha256"] == [e[0] for e in expected] and entry[6]["part_size"] == scan.PART_SIZE


def test_a_large_file_rewritten_between_hashing_and_upload_is_refused_by_the_store(seaweed_endpoint, unique_bucket, repo, monkeypatch):
    """Parts carry the scan's CRC32 (SeaweedFS checks it; S3 checks it and the sha256): a part whose bytes changed
    after the scan is refused, and the version is not published. moto_server 5.2.5 checks neither."""
    import os

    _new_bucket(seaweed_endpoint, unique_bucket)
    store = Store("seaweed", seaweed_endpoint, unique_bucket, None)
    big = _new_version(repo, "text_encoder", 2, extra=os.urandom(scan.PART_SIZE + 12345)) / "extra.bin"

    def rewrite():
        with open(big, "r+b") as f:  # one byte of the second part: same size, other bytes
            f.seek(scan.PART_SIZE + 7)
            byte = f.read(1)
            f.seek(scan.PART_SIZE + 7)
            f.write(bytes([byte[0] ^ 0xFF]))

    err = _sync_rewriting_after_the_scan(repo, store, monkeypatch, rewrite)
    assert "text_encoder/2/extra.bin changed while it was being synced" in str(err)
    assert f"{PREFIX}/text_encoder/2/extra.bin" not in store.keys()
    assert store.s3.list_multipart_uploads(Bucket=unique_bucket).get("Uploads", []) == []  # aborted, not left


def test_the_hash_cache_keeps_part_digests_and_hashes_an_entry_without_them_again(tmp_path, monkeypatch):
    import hashlib
    import os
    import zlib

    data = os.urandom(2 * scan.PART_SIZE + 5)
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(data)
    small.write_bytes(b"x" * 1000)
    past = time.time() - 10  # settled: older than RACY_SECONDS, so cached
    for p in (big, small):
        os.utime(p, (past, past))
    time.sleep(scan.RACY_SECONDS + 0.1)  # ctime cannot be set back: let it settle too
    path = tmp_path / "hashes.json"
    cache = scan.HashCache(path)
    sha, size, parts = cache.digests(big)
    assert sha == hashlib.sha256(data).hexdigest() and size == len(data)
    assert parts.sha256 == tuple(hashlib.sha256(p).hexdigest() for p in _parts_of(data))
    assert parts.crc32 == tuple(zlib.crc32(p) for p in _parts_of(data))
    assert cache.digests(small)[2] is None
    cache.save()

    again = scan.HashCache(path)
    assert again.digests(big) == (sha, size, parts) and again.digests(small)[0] == hashlib.sha256(b"x" * 1000).hexdigest()
    assert again.hits == 2
    # An entry written before part digests existed (six fields) is a miss for a large file, a hit for a small one.
    entries = json.loads(path.read_text())
    entries["files"] = {k: v[:6] for k, v in entries["files"].items()}
    path.write_text(json.dumps(entries))
    old = scan.HashCache(path)
    assert old.digests(big) == (sha, size, parts) and old.hits == 0
    old.digests(small)
    assert old.hits == 1
    # Damaged part digests are not trusted either.
    good = parts.to_json()
    assert scan.PartDigests.from_json(good, len(data)) == parts
    for damaged in ({**good, "sha256": good["sha256"][:2]}, {**good, "crc32": [2**32] + good["crc32"][1:]},
                    {**good, "sha256": ["z" * 64] + good["sha256"][1:]}, {"part_size": "x"}, None):
        assert scan.PartDigests.from_json(damaged, len(data)) is None
    # `digest` (callers that upload nothing) hashes no parts, and a sha256-only entry it wrote is a miss for the sync.
    path.unlink()
    plain = scan.HashCache(path)
    calls: list[str] = []
    real = scan.file_digests
    monkeypatch.setattr(scan, "file_digests", lambda p: calls.append(str(p)) or real(p))
    assert plain.digest(big) == (sha, size) and calls == []
    assert plain.digests(big) == (sha, size, parts) and calls == [str(big)]


def test_with_checksums_when_required_parts_carry_no_crc32_but_still_the_scans_sha256(moto_store, repo, monkeypatch, tmp_path):
    """request_checksum_calculation "when_required" (AWS_REQUEST_CHECKSUM_CALCULATION or a profile): s3transfer
    creates the upload without a checksum algorithm, and S3 refuses a part checksum its upload was not created
    with, so none is added; the part is still signed with the scan's sha256 (botocore reads none to hash it)."""
    import hashlib
    import os

    import botocore.auth

    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    big = os.urandom(scan.PART_SIZE + 4321)
    _new_version(repo, "text_encoder", 2, extra=big)
    sent: list[dict[str, str]] = []
    real_session = engine._session

    def session(target):
        s = real_session(target)
        s.register("before-send.s3.UploadPart", lambda request, **_: sent.append({k.lower(): v for k, v in request.headers.items()}))
        return s

    hashed: list[str] = []
    real_payload = botocore.auth.SigV4Auth.payload
    monkeypatch.setattr(engine, "_session", session)
    monkeypatch.setattr(botocore.auth.SigV4Auth, "payload", lambda self, request: hashed.append(request.url) or real_payload(self, request))
    sync_repository(repo, moto_store.target(), show_progress=False, hash_cache=tmp_path / "hashes.json", validated=True)
    assert len(sent) == 2 and not [h for h in sent if any(k.startswith("x-amz-checksum-") for k in h)], sent
    assert sorted(h["x-amz-content-sha256"].decode() for h in sent) == sorted(hashlib.sha256(p).hexdigest() for p in _parts_of(big))
    assert not [u for u in hashed if "partNumber=" in u]
    assert moto_store.s3.get_object(Bucket=moto_store.bucket, Key=f"{PREFIX}/text_encoder/2/extra.bin")["Body"].read() == big


def test_a_presigned_part_url_on_the_syncs_client_is_left_to_botocore(moto_store, tmp_path):
    """The part-digest handlers act on the sync's own UploadPart calls only: presigning a part of a registered
    key signs as botocore does (the swapped signer has no query-string form)."""
    from hybridserve.sync.scan import PartDigests

    target = moto_store.target()
    s3 = engine._client(engine._session(target), target)
    transfers = engine._Transfers(s3, moto_store.bucket, engine._Encryption("AES256", None, None, "SSE-S3"))
    try:
        transfers._parts[(moto_store.bucket, "models/x.bin")] = PartDigests(scan.PART_SIZE, ("a" * 64,), (1,))
        url = s3.generate_presigned_url("upload_part", Params={"Bucket": moto_store.bucket, "Key": "models/x.bin", "UploadId": "u", "PartNumber": 1})
        assert "Signature=" in url and "x-amz-checksum" not in url.lower()
    finally:
        transfers.close()
