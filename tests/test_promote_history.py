"""The promotion history on a real store (SeaweedFS): atomic appends, and a plain sync honouring it."""

from __future__ import annotations

import json
import shutil

import pytest

from hybridserve.errors import UserError
from hybridserve.local.objectstore import ensure_bucket
from hybridserve.promote import history
from hybridserve.sync.engine import MANIFEST_NAME, SyncTarget, sync_repository

pytestmark = pytest.mark.servers

MODEL = "text_encoder"


@pytest.fixture
def store(seaweed_endpoint, unique_bucket):
    ep = seaweed_endpoint
    ensure_bucket(ep, unique_bucket, sse="AES256")
    target = SyncTarget(bucket=unique_bucket, prefix="models", endpoint_url=ep.url, region=ep.region,
                        access_key=ep.access_key, secret_key=ep.secret_key, sse="AES256")
    return ep.client("s3"), target


def _entry(action: str, version: int, before: int | None, verdict: str = "pass") -> dict:
    return {"at": history.now(), "who": history.who(), "action": action, "version": version, "from_version": before,
            "verdict": verdict, "summary": {}}


def test_seaweedfs_refuses_a_put_whose_if_match_names_another_etag(store):
    s3, target = store
    assert history.probe_conditional_writes(s3, target.bucket, target.base + ".probe")


def test_a_concurrent_writer_loses_no_entry(store):
    s3, target = store
    history.append(s3, target.bucket, target.base, MODEL, _entry("promote", 2, 1))
    from hybridserve.promote.store import Store

    rival = Store(target).s3
    raced = []

    def write_in_between(params, **kwargs):
        # Between our read and our conditional PUT, another promotion records its entry.
        if not raced and params.get("Key", "").endswith(".hybridserve-history.text_encoder.json"):
            raced.append(True)
            history.append(rival, target.bucket, target.base, MODEL, _entry("promote", 3, 2, "fail"))

    s3.meta.events.register("before-parameter-build.s3.PutObject", write_in_between)
    h = history.append(s3, target.bucket, target.base, MODEL, _entry("rollback", 1, 2))
    assert raced
    assert [(e["action"], e["version"], e["verdict"]) for e in h.entries] == [
        ("promote", 2, "pass"), ("promote", 3, "fail"), ("rollback", 1, "pass")]
    again = history.read(s3, target.bucket, target.base, MODEL)
    assert again.entries == h.entries and again.served == 1 and again.stack == [1]


def test_rollback_target_is_the_previous_passing_version():
    h = history.History(MODEL)
    h.apply(_entry("promote", 2, 1))
    h.apply(_entry("promote", 3, 2, "fail"))
    h.apply(_entry("promote", 4, 2))
    assert h.served == 4 and h.previous(4) == 2
    h.apply(_entry("rollback", 2, 4))
    assert h.served == 2 and h.previous(2) == 1


def test_plain_sync_keeps_the_recorded_version_and_never_prunes_the_record(store, repo):
    s3, target = store
    shutil.copytree(repo / MODEL / "1", repo / MODEL / "2")  # the local policy (latest 1) would publish 2
    sync_repository(repo, target, show_progress=False, validated=True, pins={MODEL: [1]})
    history.append(s3, target.bucket, target.base, MODEL, _entry("rollback", 1, 2))

    report = sync_repository(repo, target, show_progress=False, validated=True, prune=True)
    assert report.published[MODEL] == [1]
    note = next(n for n in report.notes if n.startswith(MODEL + ":"))
    assert "served one as promoted" in note and "versions 2 are uploaded, not served" in note and "models promote" in note
    head = s3.head_object(Bucket=target.bucket, Key=f"{target.base}{MODEL}/config.pbtxt")
    assert head["Metadata"]["hybridserve-versions"] == "1"
    assert history.read(s3, target.bucket, target.base, MODEL).served == 1  # --prune left it alone


def test_sync_refuses_when_the_recorded_version_is_gone_locally(store, repo):
    s3, target = store
    sync_repository(repo, target, show_progress=False, validated=True)
    history.append(s3, target.bucket, target.base, MODEL, _entry("promote", 5, 1))
    # Nothing changed locally: the fast path (one manifest read) writes nothing, so it undoes nothing either.
    config_before = s3.get_object(Bucket=target.bucket, Key=f"{target.base}{MODEL}/config.pbtxt")["Body"].read()
    assert sync_repository(repo, target, show_progress=False, validated=True).compared_with == "manifest"
    assert s3.get_object(Bucket=target.bucket, Key=f"{target.base}{MODEL}/config.pbtxt")["Body"].read() == config_before
    # A sync that compares with the store (here --verify; any local change does too) reads the history and refuses.
    with pytest.raises(UserError) as info:
        sync_repository(repo, target, show_progress=False, validated=True, verify=True)
    assert info.value.exit_code == 2
    detail = " ".join(info.value.details)
    assert "version 5" in detail and ".hybridserve-history.text_encoder.json" in detail and "models promote" in detail




def test_a_failed_first_promotion_pins_what_served_before_it():
    # Without that pin, the next plain sync would publish the version its gate just refused.
    h = history.History(MODEL)
    h.apply(_entry("promote", 3, 2, "fail"))
    assert h.served == 2 and h.stack == [2]


def test_promotes_config_write_drops_its_manifest_entry_so_the_next_sync_compares_with_the_store(store, repo):
    from hybridserve.promote.store import Store

    s3, target = store
    sync_repository(repo, target, show_progress=False, validated=True)
    assert sync_repository(repo, target, show_progress=False, validated=True).compared_with == "manifest"
    Store(target).publish_versions(MODEL, [1], "promote")
    manifest = json.loads(s3.get_object(Bucket=target.bucket, Key=target.base + MANIFEST_NAME)["Body"].read())
    assert f"{MODEL}/config.pbtxt" not in manifest["objects"] and "image_classifier/config.pbtxt" in manifest["objects"]
    assert sync_repository(repo, target, show_progress=False, validated=True).compared_with == "store"


def test_replacing_a_pinned_version_unpublishes_it_meanwhile(store, repo):
    s3, target = store
    sync_repository(repo, target, show_progress=False, validated=True, pins={MODEL: [1]})
    with open(repo / MODEL / "1" / "model.py", "a") as f:
        f.write("\n# changed in place\n")
    report = sync_repository(repo, target, show_progress=False, validated=True, replace=True, pins={MODEL: [1]})
    assert any(n.startswith(f"{MODEL}: unpublished versions [1] while they are replaced") for n in report.notes), report.notes
    head = s3.head_object(Bucket=target.bucket, Key=f"{target.base}{MODEL}/config.pbtxt")
    assert head["Metadata"]["hybridserve-versions"] == "1"  # published again once replaced


def test_a_switch_that_times_out_is_undone_only_after_its_late_config_write(monkeypatch):
    """The switch step times out while its config write hangs; the undo must not race it: the write that lands
    late must not leave the store publishing the new version after the undo restored the old one."""
    import threading

    from hybridserve.promote import flow
    from hybridserve.sync.engine import SyncTarget

    monkeypatch.setattr(flow, "STEP_SLACK_S", 0.3)
    monkeypatch.setattr(flow, "LATE_STEP_GRACE_S", 20.0)
    calls: list[tuple] = []
    release = threading.Event()

    class HangingStore:
        def publish_versions(self, model, versions, action):
            if not calls:  # the switch's write hangs until released, well after its step timed out
                calls.append(("publish started", list(versions)))
                release.wait(10)
            calls.append(("publish", list(versions)))

    class RecordingTriton:
        def load(self, model, timeout):
            calls.append(("load", model))

        def wait_versions(self, model, versions, timeout):
            calls.append(("ready", sorted(versions)))

    options = flow.PromoteOptions(model="text_encoder", version=2, triton_url="127.0.0.1:1",
                                  store=SyncTarget(bucket="b", prefix="p"),
                                  timeouts=flow.Timeouts(switch=0.1, drain=0.1))
    run = flow._Run(options, say=lambda step: None)
    run.store, run.triton = HangingStore(), RecordingTriton()
    wait_for_late = run._wait_for_timed_out_step

    def release_then_wait():  # the step has timed out by now: let its hung write land late, during the wait
        release.set()
        wait_for_late()

    run._wait_for_timed_out_step = release_then_wait
    with pytest.raises(flow.StepFailed, match="switch"):
        run.switch([1], 2)
    assert calls == [("publish started", [2]), ("publish", [2]),  # the late write landed first ...
                     ("publish", [1]), ("load", "text_encoder"), ("ready", [1])], calls  # ... then the undo; no reload of 2
    assert [(s.name, s.status) for s in run.result.steps] == [("switch", "timeout"), ("undo switch", "ok")]
