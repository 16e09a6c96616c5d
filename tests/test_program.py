"""infra/: the entry point the plan runs, the context components get, the config read under Pulumi."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pulumi
import pytest
import yaml

import infra.components
import infra.program
from hybridserve.paths import repo_root
from infra.mocks import PlanMocks
from stackutil import reachable
from infra.plan import PROGRAM_DIR, RecordingMonitor, _run_program, plan_stack_file, runtime_config_of

EXAMPLES = repo_root() / "stacks"


def test_pulumi_yaml_main_is_what_the_plan_runs():
    project = yaml.safe_load((repo_root() / "Pulumi.yaml").read_text())
    assert (repo_root() / project["main"]).resolve() == PROGRAM_DIR
    assert project["stackConfigDir"] == "stacks"
    assert (PROGRAM_DIR / "__main__.py").read_text().strip().endswith("run()")


def test_the_plan_executes_infra_main(monkeypatch):
    """infra/__main__.py imports infra.program.run at run time: replacing it shows in the plan."""
    calls = []
    real_run = infra.program.run

    def spy():
        calls.append("run")
        ctx = real_run()
        pulumi.export("spy", "seen")
        return ctx

    monkeypatch.setattr(infra.program, "run", spy)
    plan = plan_stack_file(EXAMPLES / "Pulumi.search-dev.yaml")
    assert calls == ["run"]
    assert plan.outputs["spy"] == "seen"


def test_components_take_typed_parts_not_lookups():
    """The program wires components by typed parts (issue 10, section 5): no string-keyed registry is left."""
    import inspect

    from infra.components import cluster, serving, vpn
    from infra.components.cluster import ClusterParts
    from infra.components.network import NetworkParts
    from infra.components.storage import StorageParts
    from infra.context import StackContext

    assert not hasattr(StackContext, "get") and not hasattr(StackContext, "put")
    assert not hasattr(infra.components, "COMPONENTS")
    hints = {fn.__name__ + "." + fn.__module__: inspect.get_annotations(fn, eval_str=True) for fn in (vpn.build, cluster.build, serving.build)}
    assert hints["build.infra.components.vpn"]["net"] is NetworkParts
    assert hints["build.infra.components.cluster"]["network"] is NetworkParts and hints["build.infra.components.cluster"]["storage"] is StorageParts
    assert hints["build.infra.components.serving"]["clusters"] is ClusterParts
    assert infra.components.type_token("network", "Network") == "hybridserve:network:Network"


def _run_with_config(values: dict[str, str], secret_keys: list[str] | None = None, stack: str = "acme-dev") -> RecordingMonitor:
    monitor = RecordingMonitor(PlanMocks("us-east-1", stack))
    _run_program(stack, values, secret_keys or [], monitor, logging.getLogger("test"))
    return monitor


def test_program_reads_config_through_pulumi_config():
    """What `pulumi up` passes: strings, JSON text for objects, secret keys listed."""
    values = {
        "hybridserve:team": "acme",
        "hybridserve:environment": "dev",
        "hybridserve:cost_center": "CC-7",
        "hybridserve:aws": json.dumps({"vpc": {"cidr": "10.44.0.0/16"}}),
        "hybridserve:openstack": json.dumps({"cloud": "acme-cloud"}),
        "hybridserve:openstack_password": "s3cret-value",
        "aws:region": "ap-southeast-2",
    }
    monitor = _run_with_config(reachable(values), ["hybridserve:openstack_password"])
    by_name = {r.name: r for r in monitor.recorded}
    assert by_name["aws"].inputs["region"] == "ap-southeast-2"
    assert json.loads(by_name["aws"].inputs["defaultTags"])["tags"]["cost-center"] == "CC-7"
    assert by_name["openstack"].inputs == {"cloud": "acme-cloud", "password": "[secret]"}
    assert monitor.stack_outputs["team"] == "acme"


def test_program_stops_with_a_run_error_naming_every_bad_key():
    values = {
        "hybridserve:team": "acme",
        "hybridserve:environment": "dev",
        "hybridserve:aws": json.dumps({"eks": {"gpu_pools": [{"name": "g", "min_size": 3, "max_size": 1}]}}),
        "hybridserve:awz": "{}",
        "hybridserve:vpn_psk": "plain",
    }
    with pytest.raises(pulumi.RunError) as info:
        _run_with_config(values)
    text = str(info.value)
    assert "hybridserve:cost_center: is required but not set" in text
    assert "hybridserve:aws.eks.gpu_pools[0].min_size: 3 is greater than max_size (1)" in text
    assert "hybridserve:awz: is not a known key" in text
    assert "hybridserve:vpn_psk: is stored in plain text" in text


def test_offline_config_is_fed_like_the_cli(tmp_path: Path):
    path = tmp_path / "Pulumi.acme-dev.yaml"
    path.write_text(yaml.safe_dump({"config": {
        "hybridserve:team": "acme", "hybridserve:cost_center": 42, "hybridserve:aws": {"vpc": {"az_count": 3}},
        "hybridserve:vpn_psk": {"secure": "v1:abc"}, "pulumi:disable-default-providers": ["aws", "kubernetes"],
    }}))
    values, secret_keys, placeholders = runtime_config_of(path)
    assert values["hybridserve:cost_center"] == "42"
    assert json.loads(values["hybridserve:aws"]) == {"vpc": {"az_count": 3}}
    assert values["pulumi:disable-default-providers"] == '["aws", "kubernetes"]'
    assert secret_keys == ["hybridserve:vpn_psk"] and values["hybridserve:vpn_psk"] == placeholders[0] != "v1:abc"


def test_kubernetes_provider_per_cluster_and_exports(monkeypatch):
    def build(ctx):
        ctx.kubernetes_provider("aws", "apiVersion: v1")
        with pytest.raises(ValueError, match="already exists"):
            ctx.kubernetes_provider("aws", "again")
        ctx.outputs.triton_endpoints["aws"] = {"grpc": "triton.example:8001"}
        ctx.outputs.bucket_uris["s3"] = f"s3://{ctx.config.storage.model_bucket}/{ctx.config.storage.prefix}"

    monkeypatch.setattr(infra.program, "build", build)
    plan = plan_stack_file(EXAMPLES / "Pulumi.vision-dev.yaml")
    assert [r.name for r in plan.resources if r.type == "pulumi:providers:kubernetes"] == ["k8s-aws"]
    assert plan.outputs["kubeconfigs"] == "[secret]"
    assert plan.outputs["tritonEndpoints"] == {"aws": {"grpc": "triton.example:8001"}}
    assert plan.outputs["bucketUris"] == {"s3": "s3://acme-vision-dev-triton-models/models"}


def test_a_gate_that_cannot_pass_in_time_with_the_repositorys_models_stops_the_program():
    """serving.models empty: the schema judges the gate's time on one model (it does not read the repository);
    the program, which publishes the repository's models, judges it on those and stops before the gate."""
    from hybridserve.stackconfig.edgemodels import cluster_models
    from hybridserve.stackconfig.loader import build_stack_config
    from infra.components.serving import model_repository

    models = cluster_models(model_repository())
    assert len(models) >= 2
    values = {
        "hybridserve:team": "acme",
        "hybridserve:environment": "dev",
        "hybridserve:cost_center": "CC-7",
    }

    def with_gate(gate: dict) -> dict:
        return reachable({**values, "hybridserve:serving": json.dumps({"gate": gate})})

    serving = build_stack_config(with_gate({"window_seconds": 30})).serving
    one, every = serving.gate_seconds().least, serving.gate_seconds(repository=models).least
    timeout = max(120, int(one) + 1)  # one model fits, the repository's do not
    assert 120 <= timeout < every, (one, every)
    gate = {"window_seconds": 30, "timeout_seconds": timeout}
    assert build_stack_config(with_gate(gate)).serving.gate_time_issues()[0] is None  # the schema alone lets it pass
    monitor = RecordingMonitor(PlanMocks("us-east-1", "acme-dev"))
    with pytest.raises(pulumi.RunError) as info:
        _run_program("acme-dev", with_gate(gate), [], monitor, logging.getLogger("test"))
    assert "hybridserve:serving.gate.window_seconds" in str(info.value) and f"({timeout} s)" in str(info.value)
    assert [r.type for r in monitor.recorded if not r.type.startswith("pulumi:")] == []  # the stack and providers only
