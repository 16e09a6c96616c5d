"""The edge runtime, for real on this machine: the very scripts the Pulumi component sends to a host
(hybridserve.edge.render) run under a temporary root with supervised processes instead of systemd.

One module-scoped host: a hub bucket (SeaweedFS, the published repository written by the real sync), the
runtime installed and started by the apply script (SeaweedFS cache + tritonserver), then status, inference,
re-apply (unchanged), fill, gate, status from the hub (also `hybridserve edge status --stack`), a new publication (filled while the old one serves, then Triton alone
restarts), upgrade with rollback of the version and its files, a failed gate's rollback; uninstall at the end
leaves no process behind. The tests run in file order on that one host: each starts where the previous left it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hybridserve.edge import render
from hybridserve.edge.bundle import build_bundle
from hybridserve.edge.config import DEFAULT_CACHE_PORTS, EdgeConfig, HubSource, Layout
from hybridserve.local.process import free_ports

pytestmark = pytest.mark.servers

MODELS = ("text_encoder", "image_classifier")
PREFIX = "models"
PREFIX_V2 = "models-v2"  # a second publication: PREFIX's objects plus one new one
EXTRA = ("text_encoder/NOTES.txt", b"publication 2: one changed object\n")
PREFIX_V3 = "models-v3"  # a third publication, which the hub later prunes (a rollback then takes it from the cache)
EXTRA_V3 = ("text_encoder/NOTES.txt", b"publication 3: one changed object\n")
DECLARED = "1.0.0"  # the stack's runtime_version
STRICT_SLOS = {"slos": {"*": {"max_p99_ms": 0.001, "p99_concurrency": 1}}}  # no CPU host meets it
# The gates here judge SLOs far from what the host measures (60 s or 10 s against a few ms, or 0.001 ms): the verdict,
# not the figure, is under test, so they measure in short windows (the product's --window; the quick profile's is 2 s):
# at concurrency 1 a request takes ~5 ms here (p99 ~20 ms under load), so a window still holds tens of them.
GATE_WINDOW_S = 0.25


def processes_under(root: Path) -> list[str]:
    """Command lines of live processes that mention the root (ours: launcher, weed, tritonserver, stubs)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root) in cmd and state != "Z":
            found.append(f"{entry.name}: {cmd[:200]}")
    return found


def host_config(hub_endpoint, bucket: str, **changes) -> EdgeConfig:
    ports = free_ports(3 + len(DEFAULT_CACHE_PORTS))
    values = dict(
        site="plant-a", host="edge-1", models=MODELS,
        hub=HubSource(bucket=bucket, prefix=PREFIX, endpoint_url=hub_endpoint.url, region=hub_endpoint.region,
                      access_key=hub_endpoint.access_key, secret_key=hub_endpoint.secret_key, sse="AES256"),
        inference_cidrs=("10.20.0.0/16", "fd00:20::/64"), hub_cidrs=("10.0.0.0/16",), listen_address="127.0.0.1",
        http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2], cache_ports=dict(zip(DEFAULT_CACHE_PORTS, ports[3:])),
        slos={"slos": {"*": {"max_p99_ms": 60000, "p99_concurrency": 1}}},
    )
    values.update(changes)
    return EdgeConfig(**values)


def script_env(root: Path) -> dict[str, str]:
    """What tells one script text it runs under a temporary root: the environment, never the text."""
    return {render.ROOT_ENV: str(root), render.SYSTEMD_ENV: "0",
            render.DEPS_PYTHON_ENV: sys.executable, render.BOOTSTRAP_PYTHON_ENV: sys.executable}


class Host:
    def __init__(self, root: Path, config: EdgeConfig, bundles: Path):
        self.root, self.config, self.bundles = root, config, bundles
        self.layout = Layout(root)
        self.env = script_env(root)

    def apply(self, bundle, config: EdgeConfig | None = None) -> subprocess.CompletedProcess:
        return render.run_script(render.apply_script(str(bundle.path), bundle.version, bundle.digest), env=self.env,
                                 stdin=(config or self.config).to_json())

    def edge(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hybridserve.edge", *args, "--root", str(self.root), "--no-systemd"],
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict:
        return json.loads(self.edge("status", "--json").stdout)

    def pids(self) -> dict[str, int]:
        record = json.loads((self.layout.run_dir / "plane.json").read_text())
        return {p["name"]: p["pid"] for p in record["processes"]}


@pytest.fixture(scope="module")
def hub(seaweed_endpoint, built_model_repo):
    """The hub bucket holding the published repository, written by the kit's own sync."""
    import uuid

    from hybridserve.local.objectstore import ensure_bucket
    from hybridserve.sync import SyncTarget, sync_repository

    bucket = f"hub-{uuid.uuid4().hex[:10]}"
    ensure_bucket(seaweed_endpoint, bucket, sse="AES256")
    ep = seaweed_endpoint
    sync_repository(built_model_repo, SyncTarget(bucket=bucket, prefix=PREFIX, endpoint_url=ep.url, access_key=ep.access_key,
                                                 secret_key=ep.secret_key, sse="AES256"), show_progress=False, validated=True)
    return bucket


def publish_copy(s3, bucket: str, source: str, target: str, extra: tuple[str, bytes]) -> None:
    """A new publication at `target`: `source`'s objects copied, one object added, the manifest (written last) listing it."""
    from hybridserve.sync.engine import MANIFEST_NAME, SHA_META

    manifest = json.loads(s3.get_object(Bucket=bucket, Key=f"{source}/{MANIFEST_NAME}")["Body"].read())
    for rel in manifest["objects"]:
        s3.copy_object(Bucket=bucket, Key=f"{target}/{rel}", CopySource={"Bucket": bucket, "Key": f"{source}/{rel}"})
    rel, data = extra
    sha = hashlib.sha256(data).hexdigest()
    s3.put_object(Bucket=bucket, Key=f"{target}/{rel}", Body=data, Metadata={SHA_META: sha})
    manifest["objects"][rel] = {**next(iter(manifest["objects"].values())), "sha256": sha, "size": len(data)}
    s3.put_object(Bucket=bucket, Key=f"{target}/{MANIFEST_NAME}", Body=json.dumps(manifest).encode())


@pytest.fixture(scope="module")
def hub_v2(seaweed_endpoint, hub):
    publish_copy(seaweed_endpoint.client(), hub, PREFIX, PREFIX_V2, EXTRA)
    return hub


def with_prefix(config: EdgeConfig, prefix: str) -> EdgeConfig:
    return dataclasses.replace(config, hub=dataclasses.replace(config.hub, prefix=prefix))


def cached_keys(host) -> set[str]:
    from hybridserve.edge.runtime import cache_endpoint

    s3 = cache_endpoint(host.layout, host.config).client()
    return {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=host.config.cache_bucket)
            for o in page.get("Contents", [])}


@pytest.fixture(scope="module")
def host(tmp_path_factory, seaweed_endpoint, hub):
    base = tmp_path_factory.mktemp("edge")
    h = Host(base / "root", host_config(seaweed_endpoint, hub), base / "bundles")
    h.bundle = build_bundle(h.bundles, version=DECLARED)  # as EdgeHosts builds it with the site's runtime_version
    h.first_apply = h.apply(h.bundle)
    try:
        yield h
    finally:
        render.run_script(render.uninstall_script(), env=h.env)
        left = processes_under(h.root)
        for line in left:  # never leave a server behind, even when the assertion below fails
            try:
                os.kill(int(line.split(":", 1)[0]), 9)
            except ProcessLookupError:
                pass
        assert not left, f"processes left after uninstall: {left}"


# --------------------------------------------------------------------------------------------- install + start


def test_apply_installs_the_layout_and_starts_a_healthy_runtime(host):
    r = host.first_apply
    assert r.returncode == 0, r.stdout + r.stderr
    lay, v = host.layout, host.bundle.version
    assert "running and healthy" in r.stdout
    assert lay.current_version() == v and (lay.version_dir(v) / "bin" / "hybridserve-edge").is_file()
    assert os.readlink(lay.current) == v  # relative: the tree is valid wherever the root is
    assert stat.S_IMODE(lay.config_file.stat().st_mode) == 0o640
    assert EdgeConfig.from_json(lay.config_file.read_text(), source="x") == host.config
    for name in render.UNITS:
        assert (lay.units / name).read_text() == render.unit_files(host.config, lay)[name]
    assert lay.nft_file.read_text() == render.nftables_rules(host.config)
    assert lay.logrotate_file.read_text() == render.logrotate_config(host.config, lay)
    # The service user is recorded under the temporary root, the system's passwd is untouched.
    assert lay.passwd_record.read_text() == render.passwd_line(host.config, lay)
    assert "would run: useradd --system" in r.stdout
    assert "hybridserve-edge" not in Path("/etc/passwd").read_text()
    # The cache's key-encryption key and identity are private.
    for secret in ("cache.kek", "cache.s3.json"):
        assert stat.S_IMODE((lay.state / secret).stat().st_mode) == 0o600
    st = host.status()
    assert st["healthy"] and st["version"] == v, st
    assert st["services"] == {"cache": True, "triton": True}


def test_the_cache_holds_the_hub_objects_encrypted_under_its_kek(host, seaweed_endpoint, hub):
    from hybridserve.edge.runtime import cache_endpoint

    cache = cache_endpoint(host.layout, host.config).client()
    hub_s3 = seaweed_endpoint.client()
    hub_keys = {o["Key"] for o in hub_s3.list_objects_v2(Bucket=hub, Prefix=PREFIX + "/")["Contents"]}
    cached = {o["Key"] for o in cache.list_objects_v2(Bucket=host.config.cache_bucket, Prefix=PREFIX + "/")["Contents"]}
    assert cached == hub_keys
    head = cache.head_object(Bucket=host.config.cache_bucket, Key=f"{PREFIX}/text_encoder/config.pbtxt")
    assert head["ServerSideEncryption"] == "AES256" and head["Metadata"]["sha256"]
    # The cache answers only its own generated key pair.
    from hybridserve.local.objectstore import S3Endpoint

    stranger = S3Endpoint(url=f"http://127.0.0.1:{host.config.cache_ports['s3']}", access_key="AKIDSTRANGER", secret_key="nope")
    with pytest.raises(Exception, match="InvalidAccessKeyId|AccessDenied|SignatureDoesNotMatch"):
        stranger.client().list_objects_v2(Bucket=host.config.cache_bucket)


def test_the_runtime_serves_an_inference_matching_the_reference(host, built_model_repo):
    import tritonclient.http as httpclient

    from smoke_tests.references import load_model_reference

    ref = load_model_reference(built_model_repo, "text_encoder")
    client = httpclient.InferenceServerClient(f"127.0.0.1:{host.config.http_port}")
    inputs = []
    for decl in ref.declared_inputs:
        data = ref.inputs[decl.name][:1]
        tensor = httpclient.InferInput(decl.name, list(data.shape), decl.datatype)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    result = client.infer("text_encoder", inputs)
    for decl in ref.declared_outputs:
        assert np.allclose(result.as_numpy(decl.name), ref.outputs[decl.name][:1], atol=ref.atol, rtol=ref.rtol)


def test_apply_again_changes_nothing_and_restarts_nothing(host):
    before = host.pids()
    r = host.apply(host.bundle)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "install: unchanged" in r.stdout and "changed:" not in r.stdout
    assert host.pids() == before
    r = host.edge("install", "--bundle", str(host.bundle.path), "--config", str(host.layout.config_file))
    assert r.returncode == 0 and "install: unchanged" in r.stdout, r.stdout + r.stderr


# --------------------------------------------------------------------------------------------- fill


def test_fill_copies_only_what_changed_and_resumes_a_partial_cache(host):
    from hybridserve.edge.runtime import cache_endpoint

    r = host.edge("run", "fill")
    assert r.returncode == 0 and "copied 0 objects" in r.stdout, r.stdout + r.stderr
    # An interrupted fill: objects missing from the cache (its manifest still lists them) are copied again, only they.
    cache = cache_endpoint(host.layout, host.config).client()
    lost = f"{PREFIX}/image_classifier/config.pbtxt"
    cache.delete_object(Bucket=host.config.cache_bucket, Key=lost)
    r = host.edge("run", "fill")
    assert r.returncode == 0 and "copied 1 objects" in r.stdout, r.stdout + r.stderr
    assert "reloaded image_classifier" in r.stdout  # its config changed in the cache: Triton reloads it
    assert cache.head_object(Bucket=host.config.cache_bucket, Key=lost)["ContentLength"] > 0
    assert host.status()["healthy"]


def test_fill_with_a_bandwidth_limit_copies_verified_objects(seaweed_endpoint, hub, tmp_path, unique_bucket):
    from hybridserve.edge.fill import fill_cache

    hub_src = HubSource(bucket=hub, prefix=PREFIX, endpoint_url=seaweed_endpoint.url, access_key=seaweed_endpoint.access_key,
                        secret_key=seaweed_endpoint.secret_key)
    report = fill_cache(hub_src, seaweed_endpoint, unique_bucket, bandwidth_limit_mbps=80, work_dir=tmp_path)
    assert report.copied and not report.skipped
    s3 = seaweed_endpoint.client()
    for key in report.copied:
        a = s3.get_object(Bucket=hub, Key=key)["Body"].read()
        b = s3.get_object(Bucket=unique_bucket, Key=key)["Body"].read()
        assert a == b
    # Configs after the files they name, so the cache never publishes an incomplete version.
    configs = [i for i, k in enumerate(report.copied) if k.endswith("/config.pbtxt")]
    assert configs and min(configs) > max(i for i, k in enumerate(report.copied) if not k.endswith("/config.pbtxt"))
    again = fill_cache(hub_src, seaweed_endpoint, unique_bucket, work_dir=tmp_path)
    assert not again.copied and len(again.skipped) == len(report.copied)


def test_fill_from_an_unpublished_hub_says_so(seaweed_endpoint, unique_bucket, tmp_path):
    from hybridserve.edge.fill import fill_cache
    from hybridserve.errors import UserError
    from hybridserve.local.objectstore import ensure_bucket

    ensure_bucket(seaweed_endpoint, unique_bucket)
    hub_src = HubSource(bucket=unique_bucket, endpoint_url=seaweed_endpoint.url, access_key=seaweed_endpoint.access_key,
                        secret_key=seaweed_endpoint.secret_key)
    with pytest.raises(UserError, match="no sync manifest.*publish the repository first"):
        fill_cache(hub_src, seaweed_endpoint, unique_bucket + "-c", work_dir=tmp_path)


def test_a_new_publication_reuses_the_cached_objects_and_prune_keeps_only_the_named_ones(seaweed_endpoint, hub_v2, tmp_path, unique_bucket):
    from hybridserve.edge.fill import fill_cache, prune_cache
    from hybridserve.sync.engine import MANIFEST_NAME

    def source(prefix):
        return HubSource(bucket=hub_v2, prefix=prefix, endpoint_url=seaweed_endpoint.url, access_key=seaweed_endpoint.access_key,
                         secret_key=seaweed_endpoint.secret_key)

    first = fill_cache(source(PREFIX), seaweed_endpoint, unique_bucket, work_dir=tmp_path)
    second = fill_cache(source(PREFIX_V2), seaweed_endpoint, unique_bucket, work_dir=tmp_path)
    # Only the changed object crosses the link; the rest is copied inside the cache, encrypted like the others.
    assert sorted(second.reused) == sorted(k.replace(PREFIX + "/", PREFIX_V2 + "/", 1) for k in first.copied)
    assert sorted(set(second.copied) - set(second.reused)) == [f"{PREFIX_V2}/{EXTRA[0]}"]
    assert second.bytes_copied == len(EXTRA[1]) and "reused from another publication" in second.summary()
    s3 = seaweed_endpoint.client()
    for key in second.reused:
        head = s3.head_object(Bucket=unique_bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256" and head["Metadata"]["sha256"]
        assert s3.get_object(Bucket=unique_bucket, Key=key)["Body"].read() == s3.get_object(Bucket=hub_v2, Key=key)["Body"].read()
    s3.put_object(Bucket=unique_bucket, Key="models-old/text_encoder/config.pbtxt", Body=b"stale")
    deleted = prune_cache(seaweed_endpoint, unique_bucket, keep=[PREFIX_V2])
    assert "models-old/text_encoder/config.pbtxt" in deleted and f"{PREFIX}/{MANIFEST_NAME}" in deleted
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=unique_bucket)["Contents"]}
    assert left == set(second.copied) | {f"{PREFIX_V2}/{MANIFEST_NAME}"}


# --------------------------------------------------------------------------------------------- gate


def config_sha(config: EdgeConfig) -> str:
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:16]


def test_gate_script_passes_with_the_site_slos(host):
    # What the component sends: the gated version and config, a rollback when it fails (covered further down).
    # One concurrency level (the component sends 1,2) and short windows: the verdict, not the sweep, is under test here.
    r = render.run_script(render.gate_script(version=host.bundle.version, config_sha=config_sha(host.config), concurrency="1",
                                             window=GATE_WINDOW_S), env=host.env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "hybridserve-edge gate: PASS plant-a/edge-1 (exit 0)"


# --------------------------------------------------------------------------------------------- status from the hub


def test_status_helper_says_healthy_slo_missed_or_down_per_host(host):
    from hybridserve.edge.health import HostTarget, check_hosts, health_table

    c = host.config
    same = dict(address="127.0.0.1", models=MODELS, http_port=c.http_port, grpc_port=c.grpc_port)
    (closed,) = free_ports(1)
    targets = [
        HostTarget("plant-a", "edge-1", slos=c.slos, **same),
        HostTarget("plant-a", "edge-2", slos={"slos": {"*": {"max_p99_ms": 0.001, "p99_concurrency": 1}}}, **same),
        HostTarget("plant-a", "edge-3", "127.0.0.1", MODELS, http_port=closed, grpc_port=closed),
        HostTarget("plant-a", "edge-4", "127.0.0.1", ("no_such_model",), http_port=c.http_port, grpc_port=c.grpc_port),
    ]
    results = check_hosts(targets, parallel=2, window=GATE_WINDOW_S)
    assert [r.state for r in results] == ["healthy", "slo_missed", "down", "down"], [r.as_dict() for r in results]
    assert "max_p99_ms" in results[1].detail or "p99" in results[1].detail
    assert "does not answer" in results[2].detail and "not ready: no_such_model" in results[3].detail
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(health_table(results))
    text = console.export_text()
    assert "slo missed" in text and "edge-3" in text


def test_status_says_healthy_slo_missed_or_down_per_host_from_the_stack(host, tmp_path, capsys):
    """`hybridserve edge status --stack NAME` against this runtime (tests/test_edge_status.py's stack: store-berlin
    with an SLO the host meets, store-munich with one no host can meet, store-lyon at a closed port)."""
    from cliutil import run_cli
    from test_edge_status import status_stack

    c = host.config
    (closed,) = free_ports(1)
    path = status_stack(tmp_path, c.http_port, c.grpc_port, closed)
    via = ["--address", "store-berlin/edge-1=127.0.0.1", "--address", "store-lyon/edge-1=127.0.0.1", "--address", "store-munich/edge-1=127.0.0.1"]
    window = ["--window", f"{GATE_WINDOW_S:g}"]
    code, out, err = run_cli(["edge", "status", "--stack", "search-dev", "--stacks-dir", str(path.parent), "--json", *window, *via], capsys)
    assert code == 1, out + err  # a host is not healthy
    states = {(r["site"], r["host"]): r for r in json.loads(out)}
    assert {k: r["state"] for k, r in states.items()} == {
        ("store-berlin", "edge-1"): "healthy", ("store-lyon", "edge-1"): "down", ("store-munich", "edge-1"): "slo_missed"}, states
    assert states[("store-lyon", "edge-1")]["detail"] == f"Triton at http://127.0.0.1:{closed} does not answer"
    assert "p99" in states[("store-munich", "edge-1")]["detail"]

    # Only the healthy site: exit 0, and the table (not JSON) says so.
    code, out, err = run_cli(["edge", "status", "--stack", "search-dev", "--stacks-dir", str(path.parent), "--site", "store-berlin",
                              *window, *via[:2]], capsys)
    assert code == 0, out + err
    assert "healthy" in out and "store-berlin" in out and "1 edge hosts healthy" in out


# --------------------------------------------------------------------------------------------- a new publication


def test_a_new_publication_is_filled_while_the_old_one_serves_then_only_triton_restarts(host, hub_v2):
    before = host.pids()
    from hybridserve.edge.runtime import cache_endpoint

    cache_endpoint(host.layout, host.config).client().put_object(
        Bucket=host.config.cache_bucket, Key="models-gone/text_encoder/config.pbtxt", Body=b"a publication nothing serves")
    v2 = with_prefix(host.config, PREFIX_V2)
    r = host.apply(host.bundle, v2)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # The fill ran before anything restarted, reusing what the cache held: only the changed object came from the hub.
    assert out.index("fill --no-reload") < out.index("running restart")
    reused = re.search(r"copied (\d+) objects \((\S+) MB from the hub, (\d+) reused", out)
    assert reused and int(reused.group(1)) == int(reused.group(3)) + 1, out
    after = host.pids()
    assert after["cache"] == before["cache"] and after["triton"] != before["triton"]  # Triton alone restarted
    st = host.status()
    assert st["healthy"] and st["version"] == host.bundle.version
    assert json.loads(host.layout.config_file.read_text())["hub"]["prefix"] == PREFIX_V2
    # What served before is kept for a rollback: the version, its files, its publication in the cache.
    assert host.layout.previous_version() == host.bundle.version
    saved = json.loads((host.layout.saved_host_files(host.bundle.version) / "config.json").read_text())
    assert saved["hub"]["prefix"] == PREFIX
    keys = cached_keys(host)
    assert f"{PREFIX_V2}/{EXTRA[0]}" in keys and f"{PREFIX}/text_encoder/config.pbtxt" in keys
    assert not any(k.startswith("models-gone/") for k in keys)  # pruned once the new one served
    host.config = v2


def test_a_publication_whose_fill_fails_leaves_the_old_one_serving(host):
    before, files = host.pids(), {p: p.read_bytes() for p in (host.layout.config_file, host.layout.units / render.TRITON_UNIT)}
    r = host.apply(host.bundle, with_prefix(host.config, "models-unpublished"))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "no sync manifest" in r.stdout  # the fill's own error
    assert (f"filling the cache with hub prefix 'models-unpublished' failed (exit 3): nothing was restarted, runtime "
            f"{host.bundle.version} keeps serving hub prefix '{PREFIX_V2}'") in r.stdout
    assert host.pids() == before and {p: p.read_bytes() for p in files} == files
    assert host.status()["healthy"]


def test_a_change_of_what_triton_does_not_read_restarts_nothing(host):
    before = host.pids()
    tuned = dataclasses.replace(host.config, slos={"slos": {"*": {"max_p99_ms": 50000, "p99_concurrency": 1}}}, fill_interval_minutes=10)
    r = host.apply(host.bundle, tuned)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Triton and the cache keep running" in r.stdout and "running restart" not in r.stdout
    assert host.pids() == before and host.layout.config_file.read_text() == tuned.to_json()
    assert "OnUnitActiveSec=10min" in (host.layout.units / render.FILL_TIMER).read_text()
    host.config = tuned


def test_an_interrupted_publication_change_is_finished_by_the_next_apply(host, seaweed_endpoint, hub, tmp_path):
    from hybridserve.edge.runtime import snapshot_host_files

    serving = host.config.hub.prefix
    publish_copy(seaweed_endpoint.client(), hub, PREFIX, PREFIX_V3, EXTRA_V3)
    v3 = with_prefix(host.config, PREFIX_V3)
    # An apply interrupted after install (the runner cancelled, SSH dropped): its snapshot of what serves is left,
    # the new files are in place, the fill never ran and Triton still serves the old prefix.
    snapshot_host_files(host.layout, host.layout.opt / ".host-before")
    cfg = tmp_path / "config.json"
    cfg.write_text(v3.to_json())
    r = host.edge("install", "--bundle", str(host.bundle.path), "--config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    before = host.pids()
    r = host.apply(host.bundle, v3)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    # The retry sees the change the interrupted apply did not finish: fill, then Triton restarts onto the new prefix.
    assert "resuming an interrupted change" in out and "fill --no-reload" in out and "running restart" in out, out
    assert out.index("fill --no-reload") < out.index("running restart"), out
    after = host.pids()
    assert after["cache"] == before["cache"] and after["triton"] != before["triton"]
    assert host.status()["healthy"]
    # What Triton served until the restart is the rollback's publication: recorded and still in the cache.
    saved = json.loads((host.layout.saved_host_files(host.bundle.version) / "config.json").read_text())
    assert saved["hub"]["prefix"] == serving
    keys = cached_keys(host)
    assert f"{PREFIX_V3}/{EXTRA_V3[0]}" in keys and f"{serving}/text_encoder/config.pbtxt" in keys
    host.config = v3


# --------------------------------------------------------------------------------------------- upgrade


def test_a_failed_upgrade_rolls_back_the_version_and_the_config_and_units_it_served_with(host):
    first = host.bundle.version
    served = {name: path.read_bytes() for name, path in _host_files(host).items()}
    # A runtime whose Triton does not come up (its fill works), with a changed config (a newer runtime's config an
    # older one may refuse).
    cli = Path(render.__file__).with_name("cli.py").read_bytes()
    broken_cli = cli + (b"\n_main = main\n\ndef main(argv=None):\n    import sys\n    if {'run', 'triton'} <= set(argv or sys.argv):\n"
                        b"        raise SystemExit('broken runtime')\n    return _main(argv)\n")
    broken = build_bundle(host.bundles, version="3.0.0-broken", replace={"app/hybridserve/edge/cli.py": broken_cli})
    r = host.apply(broken, dataclasses.replace(host.config, fill_interval_minutes=7, slos=STRICT_SLOS))
    assert r.returncode == 3, r.stdout + r.stderr
    assert f"upgrading {first} -> {broken.version}" in r.stdout
    assert f"failed its health check: rolling back to {first}" in r.stdout
    assert f"rolled back to runtime {first} (hub prefix '{host.config.hub.prefix}'): healthy" in r.stdout
    assert host.layout.current_version() == first
    assert {name: path.read_bytes() for name, path in _host_files(host).items()} == served
    assert "OnUnitActiveSec=10min" in (host.layout.units / render.FILL_TIMER).read_text()
    st = host.status()
    assert st["healthy"] and st["version"] == first


def test_changed_code_under_the_same_declared_version_is_rolled_out(host):
    first = host.bundle.version
    # The same declared runtime_version as the first bundle, different code: a new version, unpacked and switched to.
    host.second = second = build_bundle(host.bundles, version=DECLARED, replace={"app/hybridserve/edge/NOTES.txt": b"a fix"})
    assert second.declared == host.bundle.declared == DECLARED and second.version != first
    host.strict = strict = dataclasses.replace(host.config, slos=STRICT_SLOS)  # the gate of the next test fails with it
    before = host.pids()
    r = host.apply(second, strict)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"upgrading {first} -> {second.version}" in r.stdout and f"changed to runtime {second.version}: healthy" in r.stdout
    assert host.layout.current_version() == second.version and host.pids() != before
    # Kept for a rollback: the version it replaced and its files; only those two versions stay.
    assert host.layout.previous_version() == first
    assert (host.layout.saved_host_files(first) / "config.json").read_text() == host.config.to_json()
    assert sorted(p.name for p in host.layout.opt.iterdir() if not p.name.startswith(".")) == sorted(
        [first, second.version, "current", "previous"])
    assert "removed runtime 3.0.0-broken-" in r.stdout
    assert host.status()["healthy"]


def test_a_gate_that_cannot_judge_the_host_rolls_nothing_back(host):
    # Bad gate input (exit 2) says nothing about the host: the healthy change stays.
    for bad in (["--concurrency", "none"], ["--window", "0"]):
        r = host.edge("gate", *bad, "--rollback-on-fail")
        last = r.stdout.strip().splitlines()[-1]
        assert r.returncode == 2 and last.startswith("hybridserve-edge gate: FAIL plant-a/edge-1 (exit 2): bad gate input"), r.stdout + r.stderr
        assert "not rolled back" in last and "rolling back" not in r.stdout
    assert host.layout.current_version() == host.second.version and host.layout.previous_version() == host.bundle.version


def test_a_failed_gate_rolls_the_host_back_and_names_the_host_and_the_slo(host, seaweed_endpoint, hub):
    first = host.bundle.version
    # The hub has pruned the publication the host serves and rolls back to: the rollback takes it from the cache.
    assert host.strict.hub.prefix == PREFIX_V3
    hub_s3 = seaweed_endpoint.client()
    for page in hub_s3.get_paginator("list_objects_v2").paginate(Bucket=hub, Prefix=PREFIX_V3 + "/"):
        for obj in page.get("Contents", []):
            hub_s3.delete_object(Bucket=hub, Key=obj["Key"])
    script = render.gate_script(version=host.second.version, config_sha=config_sha(host.strict), concurrency="1", window=GATE_WINDOW_S)
    r = render.run_script(script, env=host.env)
    assert "the hub was not read" in r.stdout, r.stdout[-3000:]
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("hybridserve-edge gate: FAIL plant-a/edge-1 (exit 1): SLO missed: ") and "p99" in last, last
    assert last.endswith(f"rolled back to runtime {first}: healthy"), last
    # The version and the config it served before the failed change.
    assert host.layout.current_version() == first
    assert host.layout.config_file.read_text() == host.config.to_json()
    st = host.status()
    assert st["healthy"] and st["version"] == first
    # Re-run (the next `pulumi up`): the host does not serve what is gated, so it fails instead of passing on the old one.
    r = render.run_script(script, env=host.env)
    assert r.returncode == 3 and f"the host serves runtime {first}" in r.stdout.strip().splitlines()[-1], r.stdout[-2000:]
    # The record is used once.
    r = host.edge("rollback")
    assert r.returncode == 3 and "no previous version recorded" in r.stdout, r.stdout + r.stderr


def _host_files(host) -> dict[str, Path]:
    from hybridserve.edge.runtime import host_files

    return host_files(host.layout)


# --------------------------------------------------------------------------------------------- rendered files


def _system_tool(name: str) -> str | None:
    """The tool's path; sbin too, which a non-root PATH (a CI runner's, a clean shell's) often leaves out."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def test_triton_starts_only_behind_the_firewall(host):
    # Were `nft -f` to fail at boot, Triton would listen with inference open to every network.
    unit = render.unit_files(host.config, host.layout)[render.TRITON_UNIT]
    requires = next(line for line in unit.splitlines() if line.startswith("Requires="))
    after = next(line for line in unit.splitlines() if line.startswith("After="))
    assert render.FIREWALL_UNIT in requires.split("=", 1)[1].split() and render.FIREWALL_UNIT in after.split("=", 1)[1].split()


def test_rendered_units_pass_systemd_analyze_verify(host):
    analyze = _system_tool("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed: install systemd to verify the units")
    units = [str(host.layout.units / n) for n in render.UNITS]
    r = subprocess.run([analyze, "verify", *units], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nftables_rules_admit_inference_only_from_the_configured_networks(host, tmp_path):
    text = host.layout.nft_file.read_text()
    c = host.config
    assert "elements = { 10.20.0.0/16 }" in text and "elements = { fd00:20::/64 }" in text
    assert f"tcp dport {{ {c.http_port}, {c.grpc_port} }} ip saddr @inference_v4 accept" in text
    assert f"tcp dport {{ {c.http_port}, {c.grpc_port} }} drop" in text
    assert f"tcp dport {{ {c.ssh_port}, {c.metrics_port} }} ip saddr @hub_v4 accept" in text
    assert text.index("accept\n    iif lo") < text.index("drop")  # every accept comes before the drops
    nft = _system_tool("nft")
    if nft is None:
        pytest.skip("nft is not installed (`make systools` installs nftables when it may): the rules file is checked only by the assertions above")
    r = subprocess.run([nft, "-c", "-f", str(host.layout.nft_file)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.nft"
    bad.write_text(text.replace("accept", "acept", 1))
    assert subprocess.run([nft, "-c", "-f", str(bad)], capture_output=True).returncode != 0  # the check can fail


def test_logrotate_config_parses(host, tmp_path):
    logrotate = _system_tool("logrotate")
    if logrotate is None:
        pytest.skip("logrotate is not installed (`make systools` installs it when it may)")
    # logrotate looks the `su` user up: the service user exists only in the temporary root's passwd record, so the
    # check runs on a copy naming root instead (the one line that differs).
    text = host.layout.logrotate_file.read_text()
    assert f"  su {host.config.user} {host.config.user}\n" in text
    checked = tmp_path / "hybridserve-edge"
    checked.write_text(text.replace(f"su {host.config.user} {host.config.user}", "su root root"))
    r = subprocess.run([logrotate, "-d", "-s", str(tmp_path / "state"), str(checked)], capture_output=True, text=True)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stderr
    assert str(host.layout.logs) in r.stderr


# --------------------------------------------------------------------------------------------- bad input


def test_a_bad_config_is_refused_naming_the_key_before_anything_is_written(tmp_path, seaweed_endpoint):
    cfg = json.loads(host_config(seaweed_endpoint, "b").to_json())
    cfg["inference_cidrs"] = ["10.20.0.0/33", "0.0.0.0/0"]
    cfg["http_port"] = cfg["grpc_port"]
    bundle = build_bundle(tmp_path / "bundles")
    root = tmp_path / "root"
    r = render.run_script(render.apply_script(str(bundle.path), bundle.version, bundle.digest), env=script_env(root), stdin=json.dumps(cfg))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "inference_cidrs: '10.20.0.0/33' is not a network" in r.stderr
    assert "inference_cidrs: 0.0.0.0/0 admits the whole Internet" in r.stderr
    assert "http_port" in r.stderr and "also used by" in r.stderr
    assert "Traceback" not in r.stderr and not root.exists()


def test_systemd_under_a_temporary_root_is_refused(tmp_path, seaweed_endpoint):
    bundle = build_bundle(tmp_path / "bundles")
    cfg = tmp_path / "config.json"
    cfg.write_text(host_config(seaweed_endpoint, "b").to_json())
    r = subprocess.run([sys.executable, "-m", "hybridserve.edge", "install", "--root", str(tmp_path / "root"), "--bundle", str(bundle.path),
                        "--config", str(cfg)], capture_output=True, text=True, env={**os.environ, render.SYSTEMD_ENV: "1"})
    assert r.returncode == 2 and "--no-systemd" in r.stderr and "Traceback" not in r.stderr


def test_a_corrupted_bundle_copy_is_never_unpacked(tmp_path, seaweed_endpoint):
    bundle = build_bundle(tmp_path / "bundles")
    data = bundle.path.read_bytes()
    bundle.path.write_bytes(data[: len(data) // 2])  # a truncated copy
    root = tmp_path / "root"
    r = render.run_script(render.apply_script(str(bundle.path), bundle.version, bundle.digest), env=script_env(root),
                          stdin=host_config(seaweed_endpoint, "b").to_json())
    assert r.returncode != 0 and "FAILED" in r.stdout + r.stderr
    assert not root.exists()


def test_the_bundle_is_reproducible(tmp_path):
    a = build_bundle(tmp_path / "a")
    b = build_bundle(tmp_path / "b")
    assert (a.version, a.digest) == (b.version, b.digest) and a.path.read_bytes() == b.path.read_bytes()


def test_without_a_dependency_interpreter_install_builds_a_venv_in_the_version_directory(tmp_path, seaweed_endpoint):
    """A host's path: the version gets its own venv with the bundle's pinned requirements (here one small package,
    so the test does not download tritonserver), built in the staging directory and moved into place."""
    bundle = build_bundle(tmp_path / "bundles", version="1.0.0-venv", replace={"requirements.txt": b"six\n"})
    root = tmp_path / "root"
    cfg = tmp_path / "config.json"
    cfg.write_text(host_config(seaweed_endpoint, "b").to_json())
    env = {k: v for k, v in os.environ.items() if k != render.DEPS_PYTHON_ENV}
    r = subprocess.run([sys.executable, "-m", "hybridserve.edge", "install", "--root", str(root), "--no-systemd",
                        "--bundle", str(bundle.path), "--config", str(cfg)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    vdir = Layout(root).version_dir(bundle.version)
    venv_python = vdir / "venv" / "bin" / "python"
    launcher = (vdir / "bin" / "hybridserve-edge").read_text()
    assert str(venv_python) in launcher
    assert ".partial" not in (vdir / "venv" / "pyvenv.cfg").read_text() + (vdir / "venv" / "bin" / "pip").read_text()
    assert subprocess.run([str(venv_python), "-c", "import six"], capture_output=True).returncode == 0
    r = subprocess.run([str(vdir / "bin" / "hybridserve-edge"), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "install" in r.stdout


# --------------------------------------------------------------------------------------------- bounds (no servers)


def _offline_change(tmp_path, monkeypatch, *, fill_exit: int, record: bool, status_exit: int = 0):
    """`_change` on a laid-out temporary root with the launcher calls recorded (no runtime runs): the old files in
    `.host-before` name hub prefix PREFIX, the files in place name `models-next`."""
    from types import SimpleNamespace

    from hybridserve.edge import runtime

    hub = SimpleNamespace(url="http://127.0.0.1:9", region="us-east-1", access_key="AKID", secret_key="secret")
    layout = Layout(tmp_path / "root")
    old = host_config(hub, "hub")
    new = with_prefix(old, "models-next")
    before = layout.opt / ".host-before"
    for cfg, target in ((old, before / "config.json"), (new, layout.config_file)):
        runtime.write_if_changed(target, cfg.to_json())
    for name, text in render.unit_files(new, layout).items():
        runtime.write_if_changed(layout.units / name, text)
        runtime.write_if_changed(before / "units" / name, text)
    calls = []

    def launcher_call(layout, step, *args, version=None, timeout=900):
        calls.append((step, args, timeout))
        return subprocess.CompletedProcess([step], fill_exit if args[:1] == ("fill",) else status_exit if step == "status" else 0)

    monkeypatch.setattr(runtime, "_launcher_call", launcher_call)
    code = runtime._change(layout, new, serving="1.0.0", target="1.0.0", before=before, running=True, code="1.0.0",
                           systemd=False, record=record)
    return code, calls, layout


def test_the_apply_waits_for_its_fill_as_long_as_the_fill_unit_does(tmp_path, monkeypatch):
    # A first or new publication of ~1 GB over a bandwidth-limited link: the apply must not give up before the unit.
    code, calls, layout = _offline_change(tmp_path, monkeypatch, fill_exit=1, record=True)
    assert code == 3
    fills = [timeout for step, args, timeout in calls if args[:1] == ("fill",)]
    unit = (layout.units / render.FILL_UNIT).read_text()
    limit = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("TimeoutStartSec="))
    assert limit == f"{render.FILL_TIMEOUT_S}s" and fills == [render.FILL_TIMEOUT_S] and render.FILL_TIMEOUT_S >= 6 * 3600


def test_a_failed_restore_during_the_health_rollback_still_restarts_what_served(tmp_path, monkeypatch, capsys):
    # On a host, restoring the files runs `systemctl daemon-reload` / the firewall's restart (check=True): were one
    # to fail, the rollback must still point `current` back and restart, not leave the host down.
    from hybridserve.edge import runtime

    def failing_restore(layout, saved, *, systemd):
        raise subprocess.CalledProcessError(1, ["systemctl", "daemon-reload"])

    monkeypatch.setattr(runtime, "restore_host_files", failing_restore)
    code, calls, layout = _offline_change(tmp_path, monkeypatch, fill_exit=0, record=True, status_exit=3)
    out = capsys.readouterr().out
    assert code == 3 and "restoring the files runtime 1.0.0 served with failed" in out, out
    steps = [step for step, _, _ in calls]
    assert steps.count("restart") == 2 and steps.index("restart") < len(steps) - 1 - steps[::-1].index("restart"), steps
    assert os.readlink(layout.current) == "1.0.0" and "rolled back to runtime 1.0.0" in out
    assert (layout.opt / ".host-before" / "config.json").is_file()  # kept: the next apply restores it
