"""`hybridserve sync` against real stores (see syncstore.py): early uploads (engine module docstring, Early uploads).

Pure additions are uploaded while the rest of the repository is still being hashed, planned and validated;
nothing is published (no config.pbtxt, no manifest) until all of that passed. Each test holds the sync at the
point under test until an early upload is in the store (waiting for the store, never for a duration), so what
is asserted is what happens after early uploads, whatever the machine's speed.
"""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from hybridserve.errors import UserError
from hybridserve.sync import sync_repository
from hybridserve.sync import engine, scan
from hybridserve.sync.engine import MANIFEST_NAME
from hybridserve.sync.errors import EXIT_INVALID_REPOSITORY, EXIT_PUBLISHED_CHANGED

from syncstore import PREFIX, Store, _local_files, _models, _new_version, _sha, cached_sync, moto_store, repo, store  # noqa: F401 - fixtures among them

pytestmark = pytest.mark.servers


def _wait_for_upload(store: Store, timeout: float = 120.0) -> bool:
    """Until an object is in the store (an early upload completed); False if none came within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.keys():
            return True
        time.sleep(0.05)
    return False


def _nothing_published(store: Store, repo: Path) -> set[str]:
    """No config.pbtxt, no manifest; every object is a repository file with its own bytes. Returns the keys."""
    files = _local_files(repo)
    present = store.keys()
    assert not any(key.endswith("/config.pbtxt") for key in present), present
    assert f"{PREFIX}/{MANIFEST_NAME}" not in present
    assert present <= set(files), present - set(files)
    for key in present:
        assert store.head(key)["Metadata"]["sha256"] == _sha(files[key]), key
    return present


def test_additions_are_uploaded_before_the_scan_ends_and_reported_as_before(store, repo, monkeypatch):
    """The largest file (hashed last) waits until an early upload is in the store: uploads overlap the scan."""
    last = repo / "text_encoder" / "1" / "model.pt"
    real = scan.HashCache.digests
    seen: list[bool] = []

    def digest(self, path):
        if Path(path) == last:
            seen.append(_wait_for_upload(store))
        return real(self, path)

    monkeypatch.setattr(scan.HashCache, "digests", digest)
    out = io.StringIO()
    report = sync_repository(repo, store.target(), show_progress=True, console=Console(file=out, width=200))
    assert seen == [True]
    # The bar (it appears once the plan is made) counts the bytes sent before it too: it ends full.
    done, total = re.findall(r"([0-9.]+)/([0-9.]+ [kMG]?B)", out.getvalue())[-1]
    assert f"{done} {total.split()[1]}" == total, out.getvalue()

    files = _local_files(repo)
    configs = {f"{PREFIX}/{m}/config.pbtxt" for m in _models(repo)}
    assert set(report.uploaded) == set(files) | configs and len(report.uploaded) == len(files) + len(configs)
    assert report.bytes_uploaded >= sum(p.stat().st_size for p in files.values())
    assert report.skipped == [] and report.published == {m: [1] for m in _models(repo)}
    assert store.keys() == set(files) | configs | {f"{PREFIX}/{MANIFEST_NAME}"}
    assert "read the store (alongside the scan)" in report.timings


def _hold_scan_until_uploaded(monkeypatch, store: Store, before: str) -> list[bool]:
    """`before` ("config" or "validation"): hold the sync there until an early upload is in the store."""
    seen: list[bool] = []
    if before == "config":
        real_fill = scan.ConfigCache.fill

        def fill(self, m):
            if not seen:
                seen.append(_wait_for_upload(store))
            return real_fill(self, m)

        monkeypatch.setattr(scan.ConfigCache, "fill", fill)
    else:
        real_wait = engine._Validation.wait

        def wait(self):
            if not seen:
                seen.append(_wait_for_upload(store))
            return real_wait(self)

        monkeypatch.setattr(engine._Validation, "wait", wait)
    return seen


def test_a_bad_config_in_the_last_model_publishes_nothing_and_is_the_same_error(moto_store, repo, monkeypatch):
    config = repo / _models(repo)[-1] / "config.pbtxt"
    config.write_text(config.read_text() + "\nnot_a_field: 1\n")
    seen = _hold_scan_until_uploaded(monkeypatch, moto_store, "config")

    with pytest.raises(UserError) as err:
        sync_repository(repo, moto_store.target(), show_progress=False)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    # As before early uploads: the validator's verdict (it reads the configs too) names the file and the field.
    assert "not publishing" in str(err.value) and f"{config.parent.name}/config.pbtxt" in str(err.value)
    assert 'has no field named "not_a_field"' in str(err.value)
    assert seen == [True]
    assert _nothing_published(moto_store, repo)  # early uploads, and nothing else


def test_a_file_unreadable_when_hashed_publishes_nothing_and_is_the_same_error(moto_store, repo, monkeypatch):
    """Removed between the walk and its hashing (as root, permissions cannot make a file unreadable)."""
    gone = repo / "text_encoder" / "1" / "model.pt"
    real = scan.HashCache.digests
    seen: list[bool] = []

    def digest(self, path):
        if Path(path) == gone:
            seen.append(_wait_for_upload(moto_store))
            gone.unlink()
        return real(self, path)

    monkeypatch.setattr(scan.HashCache, "digests", digest)
    with pytest.raises(UserError) as err:
        # validated: the scan's own error (the validator would report the missing artifact first, as ever).
        sync_repository(repo, moto_store.target(), show_progress=False, validated=True)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    assert "some files cannot be read; nothing was published" in str(err.value)
    assert "text_encoder/1/model.pt: cannot read" in str(err.value)
    assert seen == [True]
    assert _nothing_published(moto_store, repo)


def test_a_repository_the_validator_refuses_publishes_nothing(moto_store, repo, monkeypatch):
    (repo / "image_classifier" / "1" / "model.pt").write_text("oops\n")  # the scan takes it; the validator does not
    seen = _hold_scan_until_uploaded(monkeypatch, moto_store, "validation")

    with pytest.raises(UserError) as err:
        sync_repository(repo, moto_store.target(), show_progress=False)
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    assert "does not load as TorchScript" in str(err.value)
    assert seen == [True]
    assert _nothing_published(moto_store, repo)


def test_a_conflict_found_after_early_uploads_publishes_nothing_and_replace_completes(moto_store, repo, monkeypatch):
    store = moto_store
    cached_sync(repo, store.target(), show_progress=False)  # the setting: the subject is the run after it
    manifest_key, config_key = f"{PREFIX}/{MANIFEST_NAME}", f"{PREFIX}/text_encoder/config.pbtxt"
    before = {key: store.head(key)["ETag"] for key in (manifest_key, config_key)}
    changed = repo / "image_classifier" / "1" / "model.pt"
    changed.write_bytes(changed.read_bytes() + b"\0")  # in place, in a published version
    vdir = _new_version(repo, "text_encoder", 2)  # a pure addition: uploaded early
    added = {f"{PREFIX}/text_encoder/2/{p.name}" for p in vdir.iterdir()}
    held = store.keys()
    seen: list[bool] = []
    real_wait = engine._Validation.wait

    def wait(self):
        deadline = time.monotonic() + 120
        while not seen and not store.keys() - held and time.monotonic() < deadline:
            time.sleep(0.05)
        if not seen:
            seen.append(bool(store.keys() - held))
        return real_wait(self)

    monkeypatch.setattr(engine._Validation, "wait", wait)
    with pytest.raises(UserError) as err:
        # validated: the plan's refusal is the subject (wait, held above, is called whether or not validation runs)
        sync_repository(repo, store.target(), show_progress=False, validated=True)
    assert err.value.exit_code == EXIT_PUBLISHED_CHANGED and "image_classifier/1/model.pt" in str(err.value)
    assert seen == [True]
    assert store.keys() - held <= added  # early uploads of the new version, nothing else
    assert {key: store.head(key)["ETag"] for key in (manifest_key, config_key)} == before
    assert store.published("text_encoder") == [1]
    early = store.keys() - held

    monkeypatch.undo()
    report = cached_sync(repo, store.target(), show_progress=False, replace=True, validated=True)
    assert not early & set(report.uploaded)  # found by HEAD, not uploaded again
    assert f"{PREFIX}/image_classifier/1/model.pt" in report.uploaded and added - early <= set(report.uploaded)
    assert store.published("text_encoder") == [2] and store.published("image_classifier") == [1]
    assert store.head(f"{PREFIX}/image_classifier/1/model.pt")["Metadata"]["sha256"] == _sha(changed)


def test_an_interrupted_full_sync_reruns_uploading_only_what_is_missing(store, repo, monkeypatch):
    real_wait = engine._Validation.wait

    def fail(self):
        assert _wait_for_upload(store)
        real_wait(self)
        raise RuntimeError("injected: the sync dies after its early uploads began")

    monkeypatch.setattr(engine._Validation, "wait", fail)
    with pytest.raises(RuntimeError, match="injected"):
        cached_sync(repo, store.target(), show_progress=False)  # (wait is called whether or not validation runs)
    present = _nothing_published(store, repo)
    assert present

    monkeypatch.undo()
    report = cached_sync(repo, store.target(), show_progress=False)
    files = _local_files(repo)
    configs = {f"{PREFIX}/{m}/config.pbtxt" for m in _models(repo)}
    assert set(report.uploaded) == (set(files) - present) | configs
    assert set(report.skipped) == present
    assert store.keys() == set(files) | configs | {f"{PREFIX}/{MANIFEST_NAME}"}
    assert report.published == {m: [1] for m in _models(repo)}


def test_objects_the_repository_lacks_in_a_version_published_now_are_deleted_before_it_is(moto_store, repo):
    """A failed run can leave an early upload in an unpublished version; were the file then renamed, the next run
    would publish the version with the old, never validated file in it, and Triton loads every file there."""
    target = moto_store.target()
    cached_sync(repo, target, show_progress=False)
    _new_version(repo, "text_encoder", 2)
    stray = f"{PREFIX}/text_encoder/2/helper_v2.py"
    moto_store.s3.put_object(Bucket=moto_store.bucket, Key=stray, Body=b"raise SystemExit('never validated')\n")

    # validated: the stray is in the store, not the repository; what the sync deletes is the subject
    dry = cached_sync(repo, target, dry_run=True, show_progress=False, validated=True)
    assert stray in dry.deleted and stray in moto_store.keys()
    assert moto_store.published("text_encoder") == [1]

    report = cached_sync(repo, target, show_progress=False, validated=True)
    assert report.deleted == [stray] and stray not in moto_store.keys()
    assert moto_store.published("text_encoder") == [2]
    assert any("version directories published now" in note for note in report.notes)
    assert not any("--prune deletes them" in note for note in report.notes)  # nothing else is left over


def test_only_pure_additions_go_early_not_files_of_a_published_version_nor_of_a_model_with_a_foreign_config(moto_store, repo, monkeypatch):
    """A file added to a served version, or a new version of a model whose config the sync did not write (its own
    policy may serve a new version at once), waits for the plan: here the plan refuses, so neither reaches the store."""
    store = moto_store
    cached_sync(repo, store.target(), show_progress=False)  # the setting: the subject is the run after it
    foreign_key = f"{PREFIX}/image_classifier/config.pbtxt"
    body = store.s3.get_object(Bucket=store.bucket, Key=foreign_key)["Body"].read()
    store.s3.put_object(Bucket=store.bucket, Key=foreign_key, Body=body)  # no versions metadata: not the sync's
    (repo / "text_encoder" / "1" / "extra.bin").write_bytes(b"added to a published version")
    foreign_new = {f"{PREFIX}/image_classifier/2/{p.name}" for p in _new_version(repo, "image_classifier", 2).iterdir()}
    added = {f"{PREFIX}/text_encoder/2/{p.name}" for p in _new_version(repo, "text_encoder", 2).iterdir()}
    held = store.keys()
    seen: list[bool] = []
    real_wait = engine._Validation.wait

    def wait(self):  # after the plan: until every pure addition is in the store
        deadline = time.monotonic() + 120
        while not added <= store.keys() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(added <= store.keys())
        return real_wait(self)

    monkeypatch.setattr(engine._Validation, "wait", wait)
    with pytest.raises(UserError) as err:
        sync_repository(repo, store.target(), show_progress=False, validated=True)  # (as above: the plan is the subject)
    assert err.value.exit_code == EXIT_PUBLISHED_CHANGED and "text_encoder/1/extra.bin" in str(err.value)
    assert seen and all(seen)  # (the sync may wait for the validation again while it reports the error)
    assert store.keys() - held == added
    assert f"{PREFIX}/text_encoder/1/extra.bin" not in store.keys() and not foreign_new & store.keys()


def test_files_hashed_before_the_store_is_read_go_largest_first(moto_store, repo, monkeypatch):
    """The scan hashes the smallest files first; those that wait for the store's reads are then submitted largest
    first, so that the big files' parts keep the store busy while the small ones fill the gaps."""
    hashed = []
    real_read, real_hashed, real_submit = engine._EarlyUploads._read_store, engine._EarlyUploads.hashed, engine._Transfers.submit
    done = threading.Event()

    def hashed_(self, f):
        hashed.append(f.size)
        return real_hashed(self, f)

    def read_store(self):  # the store is read once every file is hashed: all wait for it
        done.wait(120)
        return real_read(self)

    real_wait = engine._EarlyUploads.wait_started

    def wait_started(self):  # every file is hashed: the store may be read now
        done.set()
        return real_wait(self)

    submitted = []

    def submit(self, item):
        submitted.append(item.size)
        return real_submit(self, item)

    monkeypatch.setattr(engine._EarlyUploads, "hashed", hashed_)
    monkeypatch.setattr(engine._EarlyUploads, "wait_started", wait_started)
    monkeypatch.setattr(engine._EarlyUploads, "_read_store", read_store)
    monkeypatch.setattr(engine._Transfers, "submit", submit)
    report = cached_sync(repo, moto_store.target(), show_progress=False)
    files = _local_files(repo)
    assert len(hashed) == len(files) + len(_models(repo)) and hashed != sorted(hashed, reverse=True)
    early = len(files)  # every repository file is a pure addition; the configs are the executor's
    assert len(submitted) == early and submitted == sorted(submitted, reverse=True), submitted
    assert len(set(submitted)) > 1  # (sizes differ: the order is a real one)
    assert set(report.uploaded) >= set(files)


def test_the_configs_are_parsed_once_the_first_uploads_are_on_their_way(moto_store, repo, monkeypatch):
    """Parsing the configs holds the GIL the store's reads need (botocore's import, the client): the scan parses
    them once the first early uploads are submitted, not before."""
    events: list[str] = []
    real_fill, real_submit = scan.ConfigCache.fill, engine._Transfers.submit

    def fill(self, m):
        events.append("parse")
        return real_fill(self, m)

    def submit(self, item):
        events.append("submit")
        return real_submit(self, item)

    monkeypatch.setattr(engine, "STARTED_WAIT_S", 120.0)  # however slow the machine: the order, not a race
    monkeypatch.setattr(scan.ConfigCache, "fill", fill)
    monkeypatch.setattr(engine._Transfers, "submit", submit)
    report = cached_sync(repo, moto_store.target(), show_progress=False)
    assert events[0] == "submit" and "parse" in events, events
    assert report.published == {m: [1] for m in _models(repo)}
    assert engine.STARTED_WAIT_PHASE in report.timings


def test_a_store_that_does_not_answer_delays_a_bad_config_s_error_only_briefly(moto_store, repo, monkeypatch):
    """The scan's wait for the first uploads is bounded: with the store's reads stuck, a bad config is still
    refused (naming the file), and nothing reaches the store."""
    config = repo / _models(repo)[0] / "config.pbtxt"
    config.write_text(config.read_text() + "\nnot_a_field: 1\n")
    release = threading.Event()
    real_read = engine._EarlyUploads._read_store

    def read_store(self):
        release.wait(120)
        return real_read(self)

    monkeypatch.setattr(engine, "STARTED_WAIT_S", 0.2)
    monkeypatch.setattr(engine._EarlyUploads, "_read_store", read_store)
    try:
        with pytest.raises(UserError) as err:
            cached_sync(repo, moto_store.target(), show_progress=False)
    finally:
        release.set()
    assert err.value.exit_code == EXIT_INVALID_REPOSITORY
    assert f"{config.parent.name}/config.pbtxt" in str(err.value) and "not_a_field" in str(err.value)
    assert not moto_store.keys()
