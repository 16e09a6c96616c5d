"""The stack configuration schema: defaults, the two reading paths, key paths, secrets, examples."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest
import yaml

from hybridserve.paths import repo_root
from hybridserve.stackconfig import StackConfigError, build_stack_config, format_loc, load_stack_file, read_stack_config, stack_files
from hybridserve.stackconfig.catalog import AWS_INSTANCE_TYPES, OPENSTACK_FLAVORS
from hybridserve.stackconfig.schema.common import collect_issues
from stackutil import reachable

REQUIRED = {"hybridserve:team": "acme", "hybridserve:environment": "dev", "hybridserve:cost_center": "CC-1"}
EXAMPLES = sorted(stack_files(repo_root() / "stacks"))


def build(extra: dict | None = None, **kw):
    return build_stack_config(reachable({**REQUIRED, **(extra or {})}), **kw)


def problems_of(values: dict, **kw) -> list[str]:
    with pytest.raises(StackConfigError) as info:
        build_stack_config(reachable(values), **kw)
    assert info.value.exit_code == 2
    return info.value.problems


# --- defaults -------------------------------------------------------------------------------------


def test_only_team_environment_cost_center_are_required():
    problems = problems_of({})
    assert [p.split(": ")[1] for p in problems] == ["hybridserve:team", "hybridserve:environment", "hybridserve:cost_center"]
    assert all("pulumi config set hybridserve:" in p for p in problems)


def test_defaults_are_safe_and_consistent():
    cfg = build()
    assert collect_issues(cfg) == []
    assert cfg.aws.vpc.nat_gateways == "single" and cfg.aws.vpc.zones("us-east-1") == ["us-east-1a", "us-east-1b"]
    pool = cfg.aws.eks.gpu_pools[0]
    assert (pool.min_size, pool.desired_size, pool.max_size) == (0, 1, 2)
    assert [(t.key, t.effect) for t in pool.taints] == [("nvidia.com/gpu", "NoSchedule")]
    assert pool.instance_types[0] in AWS_INSTANCE_TYPES and AWS_INSTANCE_TYPES[pool.instance_types[0]].is_gpu
    assert OPENSTACK_FLAVORS[cfg.openstack.magnum.gpu_pools[0].flavor].is_gpu
    assert cfg.storage.versioning and cfg.storage.kms.enable_key_rotation and not cfg.storage.force_destroy
    assert cfg.vpn.ike.version == "ikev2" and cfg.vpn.ike.encryption == "aes-256"
    assert cfg.serving.slo.max_error_rate == 0.0 and cfg.serving.replicas.min >= 1
    assert cfg.bucket_names()[("storage", "model_bucket")] == "hybridserve-acme-dev-models"
    assert cfg.kms_alias() == "alias/hybridserve-acme-dev"
    nets = [ipaddress.IPv4Network(c) for _, c in cfg.all_networks()]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[:i])


def test_naming_and_tags():
    cfg = build({"hybridserve:tags": {"owner": "me"}})
    assert cfg.resource_name("vpc") == "hybridserve-acme-dev-vpc"
    assert cfg.common_tags() == {
        "owner": "me", "project": "hybridserve", "team": "acme", "environment": "dev",
        "cost-center": "CC-1", "managed-by": "pulumi", "stack": "acme-dev",
    }


def test_subnet_plan_fits_the_vpc_without_overlap():
    cfg = build({"hybridserve:aws": {"vpc": {"cidr": "10.5.0.0/16", "az_count": 3}}})
    plan = cfg.aws.vpc.subnet_plan("eu-west-1")
    assert [p.availability_zone for p in plan] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    subnets = [ipaddress.IPv4Network(c) for p in plan for c in (p.public_cidr, p.private_cidr)]
    vpc = ipaddress.IPv4Network("10.5.0.0/16")
    assert all(s.subnet_of(vpc) for s in subnets)
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[:i])


def test_slo_per_model_override_keeps_the_rest():
    cfg = build({"hybridserve:serving": {"slo": {"min_throughput": 10, "max_p99_ms": 100}, "model_slos": {"resnet": {"max_p99_ms": 40}}}})
    assert cfg.serving.slo_for("resnet").max_p99_ms == 40
    assert cfg.serving.slo_for("resnet").min_throughput == 10
    assert cfg.serving.slo_for("other").max_p99_ms == 100


# --- the two reading paths --------------------------------------------------------------------------


def test_runtime_strings_and_yaml_objects_build_the_same_model():
    """Under `pulumi up` structured values arrive as JSON text and scalars as strings."""
    objects = {
        **REQUIRED,
        "aws:region": "eu-west-1",
        "hybridserve:aws": {"vpc": {"cidr": "10.9.0.0/16", "az_count": 3}},
        "hybridserve:serving": {"replicas": {"min": 1, "max": 2}},
    }
    as_strings = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in objects.items()}
    assert build_stack_config(reachable(objects)) == build_stack_config(reachable(as_strings))
    assert build_stack_config(reachable(objects)).aws.region == "eu-west-1"


def test_yaml_number_for_a_string_key_is_accepted_like_pulumi_does():
    assert build({"hybridserve:cost_center": 4100}).cost_center == "4100"


def test_region_only_in_aws_region():
    problems = problems_of({**REQUIRED, "aws:region": "eu-west-1", "hybridserve:aws": {"region": "us-east-1"}})
    assert any("aws:region: 'eu-west-1' conflicts with hybridserve:aws.region" in p for p in problems)


def test_unknown_keys_name_the_valid_ones():
    problems = problems_of({**REQUIRED, "hybridserve:awss": {}, "hybridserve:aws": {"vpc": {"cidrr": "10.0.0.0/16"}}})
    assert any(p.startswith("config: hybridserve:awss: is not a known key; known keys: hybridserve:team") for p in problems)
    assert any("hybridserve:aws.vpc.cidrr: is not a known key; valid keys here: cidr, availability_zones" in p for p in problems)


def test_a_dotted_key_set_without_path_gets_a_hint():
    problems = problems_of({**REQUIRED, "hybridserve:aws.vpc.cidr": "10.1.0.0/16"})
    assert problems == ["config: hybridserve:aws.vpc.cidr: is not a known key; a nested value needs --path: pulumi config rm hybridserve:aws.vpc.cidr; pulumi config set --path hybridserve:aws.vpc.cidr <value>"]


def test_a_gpu_pool_takes_instance_types_of_one_size():
    pool = {"name": "a10g", "instance_types": ["g5.xlarge", "g5.2xlarge"]}
    problems = problems_of({**REQUIRED, "hybridserve:aws": {"eks": {"gpu_pools": [pool]}}})
    assert any(
        "hybridserve:aws.eks.gpu_pools[0].instance_types: g5.xlarge (4 vCPU, 16 GiB, 1 GPU), g5.2xlarge (8 vCPU, 32 GiB, 1 GPU) differ in size" in p
        for p in problems
    ), problems
    assert build({"hybridserve:aws": {"eks": {"gpu_pools": [{**pool, "instance_types": ["g5.xlarge"]}]}}}).aws.eks.gpu_pools[0].instance_types == ["g5.xlarge"]


def test_other_namespaces_are_not_judged():
    assert build({"pulumi:disable-default-providers": ["aws", "kubernetes"], "aws:profile": "x"}).team == "acme"


@pytest.mark.parametrize("denied", [["*"], ["aws", "pulumi-python"], '["*"]'])
def test_disabling_every_default_provider_is_refused(denied):
    """The model publication is a Python dynamic resource: "*" would deny its provider on the first real `pulumi up`."""
    problems = problems_of({**REQUIRED, "pulumi:disable-default-providers": denied})
    assert len(problems) == 1
    assert problems[0].startswith("config: pulumi:disable-default-providers: ")
    assert "denies the default provider of 'pulumi-python'" in problems[0] and '["aws", "openstack", "kubernetes", "random"]' in problems[0]


# --- secrets ----------------------------------------------------------------------------------------


def test_secrets_are_recorded_as_set_but_never_held():
    cfg = build({"hybridserve:vpn_psk": {"secure": "v1:abc"}})
    assert cfg.secrets_set == frozenset({"vpn_psk"})
    assert "v1:abc" not in cfg.model_dump_json()


def test_runtime_secret_keys_count_as_encrypted():
    cfg = build({"hybridserve:openstack_password": "(set)"}, secret_keys=["hybridserve:openstack_password"])
    assert cfg.secrets_set == frozenset({"openstack_password"})


def test_plaintext_secret_is_rejected():
    problems = problems_of({**REQUIRED, "hybridserve:vpn_psk": "hunter2"})
    assert problems == ["config: hybridserve:vpn_psk: is stored in plain text; store it encrypted: pulumi config set --secret hybridserve:vpn_psk <value>"]


def test_secret_on_a_plain_key_is_rejected():
    problems = problems_of({**REQUIRED, "hybridserve:team": {"secure": "v1:x"}})
    assert any(p.startswith("config: hybridserve:team: is a secret") for p in problems)


# --- key paths and messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        (("aws", "eks", "gpu_pools", 0, "min_size"), "hybridserve:aws.eks.gpu_pools[0].min_size"),
        (("aws", "region"), "aws:region"),
        (("team",), "hybridserve:team"),
        (("vpn", "tunnel_inside_cidrs", 1), "hybridserve:vpn.tunnel_inside_cidrs[1]"),
    ],
)
def test_format_loc(loc, text):
    assert format_loc(loc) == text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"hybridserve:aws": {"eks": {"gpu_pools": [{"name": "a", "min_size": 5, "max_size": 2}]}}},
         "hybridserve:aws.eks.gpu_pools[0].min_size: 5 is greater than max_size (2); min ≤ desired ≤ max"),
        ({"hybridserve:aws": {"vpc": {"cidr": "10.0.0.1/16"}}}, "hybridserve:aws.vpc.cidr: '10.0.0.1/16' has host bits set; the network is 10.0.0.0/16"),
        ({"hybridserve:aws": {"vpc": {"cidr": "10.0.0.0/8"}}}, "hybridserve:aws.vpc.cidr: 10.0.0.0/8 has prefix /8; an AWS VPC must be between /16 and /24"),
        ({"hybridserve:aws": {"vpc": {"cidr": "10.0.0.0/24", "az_count": 3}}}, "hybridserve:aws.vpc.private_subnet_prefix: /20 is not smaller than the VPC"),
        ({"hybridserve:aws": {"vpc": {"nat_gateways": "many"}}}, "hybridserve:aws.vpc.nat_gateways: 'many' is not valid; expected 'single' or 'per_az'"),
        ({"hybridserve:aws": {"eks": {"service_cidr": "100.64.0.0/16"}}}, "hybridserve:aws.eks.service_cidr: 100.64.0.0/16 is not valid for EKS"),
        ({"hybridserve:openstack": {"magnum": {"template": {"master_flavor": "huge"}}}}, "hybridserve:openstack.magnum.template.master_flavor: 'huge' is not a known flavor"),
        ({"hybridserve:openstack": {"magnum": {"gpu_pools": [{"name": "g", "flavor": "m1.large"}]}}}, "hybridserve:openstack.magnum.gpu_pools[0].flavor: 'm1.large' is not a known GPU flavor"),
        ({"hybridserve:vpn": {"tunnel_inside_cidrs": ["169.254.10.0/30"]}}, "hybridserve:vpn.tunnel_inside_cidrs: ['169.254.10.0/30'] has 1 entries; an AWS VPN connection has exactly 2 tunnels"),
        ({"hybridserve:vpn": {"tunnel_inside_cidrs": ["169.254.1.0/30", "169.254.10.4/30"]}}, "hybridserve:vpn.tunnel_inside_cidrs[0]: 169.254.1.0/30 is reserved by AWS"),
        ({"hybridserve:vpn": {"tunnel_inside_cidrs": ["10.0.0.0/30", "169.254.10.4/30"]}}, "hybridserve:vpn.tunnel_inside_cidrs[0]: 10.0.0.0/30 is not valid; each tunnel needs a /30 inside 169.254.0.0/16"),
        ({"hybridserve:storage": {"model_bucket": "Bad_Bucket"}}, "hybridserve:storage.model_bucket: 'Bad_Bucket' is not a valid bucket name"),
        ({"hybridserve:storage": {"versioning": False, "retention": {"object_lock_days": 5}}}, "hybridserve:storage.versioning: false is not allowed with retention.object_lock_days"),
        ({"hybridserve:serving": {"slo": {"max_error_rate": 1.5}}}, "hybridserve:serving.slo.max_error_rate: 1.5 is out of range; must be less than 1"),
        ({"hybridserve:serving": {"slo": {"min_throughput": None, "max_p99_ms": None, "max_error_rate": None}}}, "hybridserve:serving.slo.min_throughput: null, and so are max_p99_ms and max_error_rate"),
        ({"hybridserve:serving": {"resources": {"memory_request": "32Gi", "memory_limit": "16Gi"}}}, "hybridserve:serving.resources.memory_request: 32Gi is greater than memory_limit (16Gi)"),
        ({"hybridserve:serving": {"replicas": {"max": 9}}}, "hybridserve:serving.replicas.max: 9 replicas × 1 GPU need 9 GPUs on aws, but its GPU pools reach only 2"),
        ({"hybridserve:tags": {"team": "x"}}, "hybridserve:tags.team: 'team' is set by the kit"),
        ({"hybridserve:openstack": {"network": {"cidr": "172.20.0.0/22"}}}, "hybridserve:aws.eks.service_cidr: 172.20.0.0/16 overlaps hybridserve:openstack.network.cidr (172.20.0.0/22)"),
        ({"hybridserve:aws": {"eks": {"pod_cidr": "10.0.128.0/17"}}}, "hybridserve:aws.eks.pod_cidr: 10.0.128.0/17 overlaps hybridserve:aws.vpc.cidr (10.0.0.0/16)"),
        ({"hybridserve:aws": {"eks": {"version": 1.3}}}, "hybridserve:aws.eks.version: 1.3 is a number; quote the version so YAML keeps it as text"),
        ({"hybridserve:aws": {"eks": {"version": "1.31.2"}}}, "hybridserve:aws.eks.version: '1.31.2' is not a Kubernetes minor version; expected e.g. '1.31'"),
    ],
)
def test_each_problem_names_its_key_the_value_and_what_is_valid(extra, expected):
    problems = problems_of({**REQUIRED, **extra}, source="stacks/Pulumi.acme-dev.yaml")
    assert any(p.startswith("stacks/Pulumi.acme-dev.yaml: " + expected) for p in problems), problems


def test_problems_from_every_section_are_collected_together():
    problems = problems_of({
        **REQUIRED,
        "hybridserve:aws": {"vpc": {"cidr": "10.0.0.0/33"}},
        "hybridserve:openstack": {"magnum": {"gpu_pools": [{"name": "g", "min_size": 3, "max_size": 1}]}},
        "hybridserve:serving": {"replicas": {"min": 3, "max": 2}},
    })
    text = "\n".join(problems)
    assert "hybridserve:aws.vpc.cidr: '10.0.0.0/33' is not a valid IPv4 CIDR" in text
    assert "hybridserve:openstack.magnum.gpu_pools[0].min_size: 3 is greater than max_size (1)" in text
    assert "hybridserve:serving.replicas.min: 3 is greater than max (2)" in text


def test_stack_name_must_be_team_environment():
    problems = problems_of(REQUIRED, stack_name="other-prod")
    assert any("hybridserve:team: team 'acme' and environment 'dev' make stack 'acme-dev', but this is stack 'other-prod'" in p for p in problems)


# --- example stacks --------------------------------------------------------------------------------


def test_there_are_two_teams_times_two_environments():
    assert {"vision-dev", "vision-prod", "search-dev", "search-prod"} <= set(EXAMPLES)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_stack_validates(name):
    path = repo_root() / "stacks" / f"Pulumi.{name}.yaml"
    cfg = load_stack_file(path)
    assert cfg.stack_name == name
    raw = yaml.safe_load(path.read_text())["config"]
    # Examples must work for a real `pulumi up` without anyone's encrypted values.
    assert not any(isinstance(v, dict) and "secure" in v for v in raw.values())
    # Explicit providers everywhere, yet not "*": that would deny the model publication's dynamic provider.
    # Stacks with edge sites also deny pulumi-command's default provider (the edge hosts take an explicit one).
    expected = ["aws", "openstack", "kubernetes", "random", *(["command"] if cfg.edge_sites() else [])]
    assert raw["pulumi:disable-default-providers"] == expected


def test_dev_is_small_and_prod_is_highly_available():
    for team in ("vision", "search"):
        dev = load_stack_file(repo_root() / "stacks" / f"Pulumi.{team}-dev.yaml")
        prod = load_stack_file(repo_root() / "stacks" / f"Pulumi.{team}-prod.yaml")
        assert dev.aws.vpc.zone_count() == 2 and dev.aws.vpc.nat_gateways == "single"
        assert all(p.min_size == 0 for p in (*dev.aws.eks.gpu_pools, *dev.openstack.magnum.gpu_pools))
        assert prod.aws.vpc.zone_count() == 3 and prod.aws.vpc.nat_gateways == "per_az"
        assert prod.openstack.magnum.master_count == 3
        assert all(p.min_size >= 2 for p in (*prod.aws.eks.gpu_pools, *prod.openstack.magnum.gpu_pools))
        assert prod.serving.replicas.min >= 2


def test_project_file_defaults_apply_offline(tmp_path: Path):
    (tmp_path / "Pulumi.yaml").write_text("name: hybridserve\nruntime: python\nconfig:\n  cost_center:\n    type: string\n    default: CC-9\n")
    (tmp_path / "stacks").mkdir()
    path = tmp_path / "stacks" / "Pulumi.acme-dev.yaml"
    path.write_text(yaml.safe_dump({"config": reachable({"hybridserve:team": "acme", "hybridserve:environment": "dev"})}))
    assert read_stack_config(path)["hybridserve:cost_center"] == "CC-9"
    assert load_stack_file(path).cost_center == "CC-9"


def test_schema_imports_without_pulumi():
    import subprocess
    import sys

    code = (
        "import sys; import hybridserve.stackconfig, hybridserve.stackconfig.cli, hybridserve.stackconfig.cost, "
        "hybridserve.stackconfig.validation; from hybridserve.stackconfig import load_stack; "
        "assert load_stack('vision-dev').serving.slo.min_throughput == 10; "
        "assert not [m for m in sys.modules if m == 'pulumi' or m.startswith('pulumi_')], 'pulumi imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root())


# --- the smoke gate's windows against its Job's deadline ------------------------------------------------------

GATE_KEY = "hybridserve:serving.gate.window_seconds"


def gate_stack(gate: dict, **serving):
    return {**REQUIRED, "hybridserve:serving": {"gate": gate, **serving}}


def gate_problems(values: dict) -> list[str]:
    try:
        build_stack_config(reachable(values))
    except StackConfigError as exc:
        return [p for p in exc.problems if "serving.gate." in p]
    return []


def gate_warnings(values: dict) -> list[str]:
    from hybridserve.stackconfig.loader import stack_warnings

    return [w for w in stack_warnings(build_stack_config(reachable(values))) if "serving.gate." in w]


def suggested(text: str, key: str) -> float:
    return float(re.search(rf"{key} at (?:most|least) ([0-9.]+)", text).group(1))


def test_a_gate_window_no_run_could_finish_in_the_deadline_is_an_error_naming_both_keys_and_what_fits():
    # Quick profile: a passing run measures concurrency 1 to at least 3 stable windows: 180 s of 60 s windows.
    [problem] = gate_problems(gate_stack({"window_seconds": 60, "timeout_seconds": 120}))
    assert problem.startswith(f"config: {GATE_KEY}: 60: even the shortest gate run that can pass takes 180 s, "
                              "more than timeout_seconds (120 s)"), problem
    assert "3 windows of 60 s" in problem and "every model of the repository" in problem
    window, timeout = suggested(problem, "window_seconds"), suggested(problem, "timeout_seconds")
    assert (window, timeout) == (40, 180)
    # What it suggests is valid, and the first window past it is not.
    assert gate_problems(gate_stack({"window_seconds": window, "timeout_seconds": 120})) == []
    assert gate_problems(gate_stack({"window_seconds": 60, "timeout_seconds": int(timeout)})) == []
    assert gate_problems(gate_stack({"window_seconds": window + 0.1, "timeout_seconds": 120}))


def test_the_gate_time_counts_each_listed_model_and_version_with_its_slo_concurrencies():
    # Three runs (a, b:1, b:2); b's SLO also asks for concurrency 4, a level the run measures on top of concurrency 1.
    serving = {"models": [{"name": "a"}, {"name": "b", "versions": [1, 2]}],
               "model_slos": {"b": {"min_throughput": 5, "throughput_concurrency": 4}}}
    [problem] = gate_problems(gate_stack({"window_seconds": 10, "timeout_seconds": 120}, **serving))
    # (1 + 2 + 2) levels of 3 windows of 10 s: 150 s; at most 120 / 15 = 8 s windows.
    assert f"{GATE_KEY}: 10: even the shortest gate run that can pass takes 150 s" in problem and "3 model(s)" in problem
    assert suggested(problem, "window_seconds") == 8 and suggested(problem, "timeout_seconds") == 150


def test_a_gate_whose_worst_case_may_pass_the_deadline_is_a_warning_naming_the_figures():
    # Quick profile, 30 s windows: the search's budget grows to 600 s per model (40 s for 2 s windows); 3 listed
    # models: 1800 s measuring, 600 s readiness wait: 2400 s, past the default 1800 s deadline. It can pass: no error.
    values = gate_stack({"window_seconds": 30}, models=[{"name": m} for m in ("a", "b", "c")])
    assert gate_problems(values) == []
    [warning] = gate_warnings(values)
    assert warning.startswith(f"config: {GATE_KEY}: 30: the gate's worst case may not fit timeout_seconds (1800 s): "
                              "up to 600 s readiness wait (slo.wait_ready_seconds) and 1800 s measuring 3 model(s)"), warning
    assert "the capacity search's budget 600 s per model" in warning and "2400 s in all" in warning
    window, timeout = suggested(warning, "window_seconds"), suggested(warning, "timeout_seconds")
    assert timeout == 2400
    assert gate_warnings({**values, "hybridserve:serving": {**values["hybridserve:serving"], "gate": {"window_seconds": window}}}) == []
    assert gate_warnings({**values, "hybridserve:serving": {**values["hybridserve:serving"], "gate": {"window_seconds": window + 0.1}}})
    assert gate_warnings({**values, "hybridserve:serving": {**values["hybridserve:serving"],
                                                             "gate": {"window_seconds": 30, "timeout_seconds": int(timeout)}}}) == []


def test_a_readiness_wait_longer_than_the_deadline_is_named_as_what_to_shorten():
    values = gate_stack({"timeout_seconds": 300}, slo={"wait_ready_seconds": 600})
    [warning] = gate_warnings(values)
    # No window fits (the wait alone is longer), so the key is the deadline's; one model's quick search: 40 s.
    assert warning.startswith("config: hybridserve:serving.gate.timeout_seconds: 300 (with the quick profile's 2 s windows): "
                              "the gate's worst case may not fit"), warning
    assert "window_seconds at most" not in warning and "timeout_seconds at least 640" in warning
    assert "slo.wait_ready_seconds at most 260" in warning


def test_the_fixed_ladder_without_a_window_set_is_judged_on_the_deadline():
    # The default profile measures every level 1, 2, 4, ... 256 (9 levels of at least 3 windows of 5 s: 135 s).
    [problem] = gate_problems(gate_stack({"profile": "default", "max_concurrency": 256, "timeout_seconds": 120}))
    assert problem.startswith("config: hybridserve:serving.gate.timeout_seconds: 120 (with the default profile's 5 s windows): "
                              "even the shortest gate run that can pass takes 135 s"), problem


def test_the_gate_time_comes_from_the_profile_the_gate_command_builds():
    from smoke_tests.cli import build_parser
    from smoke_tests.options import profile_of

    from hybridserve.gatejob import gate_command

    cfg = build(gate_stack({"window_seconds": 7.5, "max_concurrency": 32}))
    command = gate_command({}, profile=cfg.serving.gate.profile, max_concurrency=cfg.serving.gate.max_concurrency,
                           client_processes=2, window_s=cfg.serving.gate.window_seconds)
    args = build_parser().parse_args(command[3:])
    from_command = profile_of(args.profile, window_s=args.window, max_concurrency=args.max_concurrency)
    assert cfg.serving.gate_seconds().profile == from_command
    assert from_command.window_s == 7.5 and from_command.time_budget_s == 150  # the search's 40 s budget, scaled


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_stacks_gates_fit_their_deadlines(name):
    cfg = load_stack_file(repo_root() / "stacks" / f"Pulumi.{name}.yaml")
    assert cfg.serving.gate_seconds().most <= cfg.serving.gate.timeout_seconds
    assert not [i for i in collect_issues(cfg, method="warnings") if i.loc[:2] == ("serving", "gate")]
