"""EdgeHosts under the Pulumi SDK's mock engine: the remote resources, their order, the secrets, and that the
scripts they run are the ones tests/test_edge_runtime.py runs for real (hybridserve.edge.render)."""

from __future__ import annotations

import asyncio
import contextvars
import json

import pulumi
import pytest
from pulumi.runtime import settings
from pulumi.runtime.rpc_manager import RPCManager
from pulumi.runtime.stack import wait_for_rpcs
from pulumi.runtime.sync_await import _sync_await

from hybridserve.edge import render
from hybridserve.edge.bundle import build_bundle
from hybridserve.edge.config import EdgeConfig
from infra.components.edge import REMOTE_BUNDLE_DIR, EdgeHostArgs, EdgeHosts, EdgeHostsArgs, EdgeHubArgs
from infra.mocks import PlanMocks
from infra.plan import SECRET_MARKER, RecordingMonitor

SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAmock-edge-key\n-----END OPENSSH PRIVATE KEY-----\n"
HUB_SECRET = "hub-read-secret-0123456789abcdef"


def site_args(tmp_path, **changes) -> EdgeHostsArgs:
    values = dict(
        site="plant-a",
        hosts=[EdgeHostArgs("edge-1", "10.30.0.11"), EdgeHostArgs("edge-2", "10.30.0.12", gpu=True),
               EdgeHostArgs("edge-3", "10.30.0.13", ssh_user="ops", ssh_port=2222)],
        models=["text_encoder", "image_classifier"],
        inference_cidrs=["10.30.0.0/24"], hub_cidrs=["10.0.0.0/16"],
        ssh_private_key=SSH_KEY, bundle_dir=tmp_path / "bundles",
    )
    values.update(changes)
    if "hub" not in values:  # an Output (as from the storage component) needs the program's event loop
        values["hub"] = EdgeHubArgs(bucket=pulumi.Output.from_input("hybridserve-acme-dev-models"), prefix="models",
                                    region="eu-west-1", access_key="AKIAEDGEREADER", secret_key=HUB_SECRET)
    return EdgeHostsArgs(**values)


def plan(make) -> tuple[RecordingMonitor, dict]:
    """Run `make()` as a program under the mock engine; returns the monitor and what `make` put in `seen`."""
    monitor = RecordingMonitor(PlanMocks("eu-west-1", "acme-dev"))
    seen: dict = {}

    def program():
        settings.ROOT.set(None)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            pulumi.runtime.set_mocks(monitor.mocks, project="hybridserve", stack="acme-dev", preview=False, monitor=monitor)
            # Fresh per run (as infra.plan does): a refused program leaves RPCs of its closed loop behind.
            settings.SETTINGS.rpc_manager = RPCManager()
            settings.SETTINGS.outputs = set()
            make(seen)
            _sync_await(wait_for_rpcs())  # every registration recorded before the loop closes
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    contextvars.copy_context().run(program)
    return monitor, seen


def build(tmp_path, **changes):
    def make(seen):
        site = EdgeHosts("plant-a", site_args(tmp_path, **changes))
        seen["site"] = site
        first = site.host_resources[0]
        seen["connection_secret"] = _sync_await(first.runtime.connection.is_secret())
        seen["stdin_secret"] = _sync_await(first.runtime.stdin.is_secret())
        seen["stdin"] = _sync_await(first.runtime.stdin.future())
        seen["gate_create"] = _sync_await(first.gate.create.future())
        seen["gate_secret"] = _sync_await(first.gate.create.is_secret())
        seen["verdict"] = _sync_await(pulumi.Output.from_input(site.hosts[0]["gateVerdict"]).future())
        seen["gate_command"] = _sync_await(pulumi.Output.from_input(site.hosts[2]["gateCommand"]).future())

    return plan(make)


def by_name(monitor: RecordingMonitor) -> dict:
    return {r.name: r for r in monitor.recorded}


def test_each_host_gets_a_bundle_copy_a_runtime_command_and_a_gate(tmp_path):
    monitor, seen = build(tmp_path)
    res = by_name(monitor)
    site = seen["site"]
    assert res["plant-a"].type == "hybridserve:edge:EdgeHosts"
    provider = res["plant-a-command"]
    assert provider.type == "pulumi:providers:command"
    for host in ("edge-1", "edge-2", "edge-3"):
        copy, runtime, gate = (res[f"plant-a-{host}-{part}"] for part in ("bundle", "runtime", "gate"))
        assert copy.type == "command:remote:CopyToRemote" and runtime.type == "command:remote:Command" and gate.type == "command:remote:Command"
        for r in (copy, runtime, gate):
            assert r.provider == provider.urn and r.parent == res["plant-a"].urn  # explicit provider, as the plan rules require
        assert copy.inputs["remotePath"] == f"{REMOTE_BUNDLE_DIR}/hybridserve-edge-{site.bundle.version}.tar.gz"
        assert copy.inputs["source"]["$asset"]["path"] == str(site.bundle.path)
        assert copy.inputs["triggers"] == [site.bundle.digest]
    assert site.bundle.path.is_file() and site.bundle.path.parent == tmp_path / "bundles"


def test_the_commands_run_exactly_the_scripts_the_runtime_tests_ran(tmp_path):
    """Same function, same arguments: the create/update/delete texts are render's output byte for byte."""
    monitor, seen = build(tmp_path)
    res = by_name(monitor)
    bundle = seen["site"].bundle
    expected_apply = render.apply_script(f"{REMOTE_BUNDLE_DIR}/{bundle.path.name}", bundle.version, bundle.digest)
    runtime = res["plant-a-edge-1-runtime"].inputs
    assert runtime["create"] == runtime["update"] == expected_apply
    assert runtime["delete"] == render.uninstall_script()
    # No triggers on the runtime: a trigger replaces the resource, and a replacement runs the uninstall script.
    assert "triggers" not in runtime
    assert bundle.digest in expected_apply and f"--version {bundle.version}" in expected_apply
    gate = seen["gate_create"]
    config_sha = __import__("hashlib").sha256(seen["stdin"].encode()).hexdigest()[:16]
    assert gate == render.gate_script(stamp=f"runtime {bundle.version} bundle {bundle.digest[:16]} config {config_sha}",
                                      version=bundle.version, config_sha=config_sha)
    # A failed gate rolls the host back before the update fails (the runtime tests run that path for real), and the
    # gate checks that the host serves what it gates (a host rolled back earlier fails instead of passing).
    command = gate.strip().splitlines()[-1]
    assert "--rollback-on-fail" in command and f"--expect-version {bundle.version}" in command and f"--expect-config {config_sha}" in command
    assert not seen["gate_secret"]  # visible in a diff
    # The config on stdin is what the runtime tests feed the same script: a valid config.json for this host.
    cfg = EdgeConfig.from_json(seen["stdin"], source="stdin")
    assert (cfg.site, cfg.host, cfg.models) == ("plant-a", "edge-1", ("text_encoder", "image_classifier"))
    assert cfg.hub.bucket == "hybridserve-acme-dev-models" and cfg.hub.secret_key == HUB_SECRET
    assert cfg.inference_cidrs == ("10.30.0.0/24",) and cfg.slos["slos"]["*"]["p99_concurrency"] == 1


def test_hosts_are_upgraded_one_at_a_time_each_after_the_previous_gate(tmp_path):
    monitor, _ = build(tmp_path)
    res = by_name(monitor)
    urn = {n: r.urn for n, r in res.items()}
    deps = {n: set(r.dependencies) for n, r in res.items()}
    assert not deps["plant-a-edge-1-bundle"]
    assert urn["plant-a-edge-1-bundle"] in deps["plant-a-edge-1-runtime"]
    assert urn["plant-a-edge-1-runtime"] in deps["plant-a-edge-1-gate"]
    for prev, host in (("edge-1", "edge-2"), ("edge-2", "edge-3")):
        gate = urn[f"plant-a-{prev}-gate"]
        assert gate in deps[f"plant-a-{host}-bundle"] and gate in deps[f"plant-a-{host}-runtime"]
    # Without a gate the chain goes through the runtime commands.
    monitor, _ = build_without_gate(tmp_path)
    res = by_name(monitor)
    assert res["plant-a-edge-1-runtime"].urn in set(res["plant-a-edge-2-runtime"].dependencies)
    assert "plant-a-edge-1-gate" not in res


def build_without_gate(tmp_path):
    return plan(lambda seen: seen.update(site=EdgeHosts("plant-a", site_args(tmp_path, gate=False))))


def test_the_ssh_key_and_hub_secret_never_reach_the_state_in_plain_text(tmp_path):
    monitor, seen = build(tmp_path)
    assert seen["connection_secret"] and seen["stdin_secret"]
    dumped = json.dumps([r.inputs for r in monitor.recorded])
    assert "mock-edge-key" not in dumped and HUB_SECRET not in dumped
    for r in monitor.recorded:
        if r.type.startswith("command:remote:"):
            assert r.inputs["connection"] == SECRET_MARKER, r.name
        if r.name.endswith("-runtime"):
            assert r.inputs["stdin"] == SECRET_MARKER


def test_outputs_per_host(tmp_path):
    monitor, seen = build(tmp_path)
    hosts = seen["site"].hosts
    assert [h["host"] for h in hosts] == ["edge-1", "edge-2", "edge-3"]
    assert hosts[0]["address"] == "10.30.0.11" and hosts[0]["runtimeVersion"] == seen["site"].bundle.version
    assert seen["verdict"] == "no verdict"  # the mock engine runs no command: the real gate's last line replaces it
    assert seen["gate_command"] == "ssh -p 2222 ops@10.30.0.13 sudo -n /opt/hybridserve-edge/current/bin/hybridserve-edge gate --root /"


def test_a_gpu_host_gets_gpu_groups_in_its_config(tmp_path):
    from infra.components.edge import host_config
    from hybridserve.edge.config import HubSource, Layout

    args = site_args(tmp_path, hub=EdgeHubArgs(bucket="b"))
    cfg = host_config(args, args.hosts[1], HubSource(bucket="b"))
    assert cfg.gpu and "SupplementaryGroups=video render" in render.unit_files(cfg, Layout(tmp_path))[render.TRITON_UNIT]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inference_cidrs": ["0.0.0.0/0"]}, "edge site 'plant-a': inference_cidrs: 0.0.0.0/0 admits the whole Internet"),
        ({"hosts": [EdgeHostArgs("edge-1", "10.0.0.1"), EdgeHostArgs("edge-1", "10.0.0.2")]}, "host 'edge-1' is listed twice"),
        ({"hosts": [EdgeHostArgs("Edge_1", "10.0.0.1")]}, "edge site 'plant-a': host 'Edge_1': lowercase letters"),
        ({"hosts": []}, "edge site 'plant-a': no hosts"),
        ({"models": []}, "models: at least one model name"),
    ],
)
# The refused program's own registration RPC is left unawaited when its loop closes: the SDK's, not a leak of ours.
@pytest.mark.filterwarnings("ignore:coroutine 'RPCManager.do_rpc.<locals>.rpc_wrapper' was never awaited")
def test_an_unacceptable_site_is_refused_at_program_time(tmp_path, changes, message):
    with pytest.raises(pulumi.RunError, match=__import__("re").escape(message)) as raised:
        plan(lambda seen: EdgeHosts("plant-a", site_args(tmp_path, **changes)))
    assert str(raised.value).count(message) == 1  # a site-wide problem once, not once per host


def test_the_runtime_version_follows_the_bundle_content(tmp_path):
    a = build_bundle(tmp_path / "a")
    b = build_bundle(tmp_path / "b", replace={"app/hybridserve/edge/extra.txt": b"changed"})
    assert a.version != b.version and a.digest != b.digest
    _, seen = plan(lambda seen: seen.update(site=EdgeHosts("plant-a", site_args(tmp_path, runtime_version="1.2.3"))))
    bundle = seen["site"].bundle
    assert bundle.declared == "1.2.3" and bundle.version.startswith("1.2.3-") and len(bundle.version) == len("1.2.3-") + 12


def test_changed_code_under_the_same_declared_version_is_a_new_version_and_a_new_apply(tmp_path):
    """A host skips unpacking a version it has: changed code under the same runtime_version must get a new name
    (and so a new apply text, which Pulumi runs again); the same code keeps its name and text (a no-op)."""
    same = build_bundle(tmp_path / "x", version="1.2.3")
    again = build_bundle(tmp_path / "y", version="1.2.3")
    changed = build_bundle(tmp_path / "z", version="1.2.3", replace={"app/hybridserve/edge/extra.txt": b"changed"})
    assert same.version == again.version and same.declared == changed.declared == "1.2.3"
    assert changed.version != same.version and changed.version.startswith("1.2.3-")

    def apply_text(b):
        return render.apply_script(f"{REMOTE_BUNDLE_DIR}/{b.path.name}", b.version, b.digest)

    assert apply_text(same) == apply_text(again) and apply_text(changed) != apply_text(same)
    assert f"--version {changed.version}" in apply_text(changed)
