"""The edge sites wired into the program (issue 15): one EdgeHosts per edge site after its VPN links, the variant
each site chooses, its gate SLOs, the hub it reads from with a least-privilege identity, the SSH key as a required
secret, and the clusters and the local plane loading base models only (variants are each site's choice).

On the recorded plan of search-dev (store-berlin: linked to both hubs, text_encoder_int8; store-lyon: OpenStack
only, text_encoder full) and edited copies, under the SDK's mock engine.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path

import pulumi
import pytest
from cliutil import run_cli
from stackutil import silent_port, triton_health_stub
from test_network import EXAMPLES, PlanView, variant

from hybridserve.models.variants import base_models, find_variants
from hybridserve.stackconfig.edgemodels import gate_slos, served_models, site_problems
from hybridserve.errors import UserError
from hybridserve.stackconfig.loader import load_stack_file
from hybridserve.stackconfig.schema.stack import format_loc
from infra.mocks import PlanMocks
from infra.plan import SECRET_MARKER, RecordingMonitor, _run_program, plan_stack_file, runtime_config_of

EDGE_HOSTS = "hybridserve:edge:EdgeHosts"
COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
SEARCH_DEV = EXAMPLES / "Pulumi.search-dev.yaml"


@pytest.fixture(scope="module")
def edge_plan(example_plans) -> PlanView:
    return PlanView(copy.deepcopy(example_plans["search-dev"]))  # planned once per test run (conftest)


def _children(v: PlanView, component: str) -> list:
    return [r for r in v.plan.resources if f"{EDGE_HOSTS}${COMMAND}::" in r.urn or f"{EDGE_HOSTS}${COPY}::" in r.urn if r.name.startswith(component)]


# --------------------------------------------------------------------------------------------- the program


def test_one_edge_hosts_per_edge_site_with_its_hosts_after_its_vpn_links(edge_plan):
    v = edge_plan
    components = [r for r in v.plan.resources if r.type == EDGE_HOSTS]
    assert sorted(r.name for r in components) == ["edge-hosts-store-berlin", "edge-hosts-store-lyon"]
    berlin = {r.name: r for r in _children(v, "edge-hosts-store-berlin")}
    assert sorted(berlin) == sorted(f"edge-hosts-store-berlin-{h}-{part}" for h in ("edge-1", "edge-2") for part in ("bundle", "runtime", "gate"))
    first_copy = berlin["edge-hosts-store-berlin-edge-1-bundle"]
    # Reached over the site's VPN links: the first thing done to a host waits for both of them.
    assert any(d.endswith("::edge-store-berlin-connection") for d in first_copy.dependencies), first_copy.dependencies
    assert any(d.endswith("::edge-store-berlin-openstack") for d in first_copy.dependencies), first_copy.dependencies
    lyon_copy = next(r for r in _children(v, "edge-hosts-store-lyon") if r.name.endswith("edge-1-bundle"))
    assert any(d.endswith("::edge-store-lyon-openstack") for d in lyon_copy.dependencies)
    # Rolling: the second host waits for the first one's gate.
    assert any(d.endswith("::edge-hosts-store-berlin-edge-1-gate") for d in berlin["edge-hosts-store-berlin-edge-2-bundle"].dependencies)
    # Hosts from the schema: the SSH connection goes to each host's address as its user, with a secret key.
    runtime = berlin["edge-hosts-store-berlin-edge-2-runtime"]
    assert runtime.inputs["connection"] == SECRET_MARKER or runtime.inputs["connection"]["privateKey"] == SECRET_MARKER
    assert runtime.inputs["stdin"] == SECRET_MARKER  # the host's config: it holds the hub read key


def test_stack_outputs_per_site_and_host(edge_plan):
    out = edge_plan.plan.outputs["edgeHosts"]
    assert out["store-berlin"]["hub"] == "aws" and out["store-lyon"]["hub"] == "openstack"  # linked to AWS: AWS preferred
    assert out["store-berlin"]["models"] == ["text_encoder_int8"] and out["store-lyon"]["models"] == ["text_encoder"]
    hosts = {(site, h["host"]): h for site, entry in out.items() for h in entry["hosts"]}
    assert sorted(hosts) == [("store-berlin", "edge-1"), ("store-berlin", "edge-2"), ("store-lyon", "edge-1")]
    h = hosts[("store-berlin", "edge-2")]
    assert h["address"] == "192.168.50.11" and h["runtimeVersion"].startswith("1.0.0-")  # the declared version and the content digest
    assert h["gateCommand"].startswith("ssh -p 22 hybridserve@192.168.50.11 ") and "gate" in h["gateCommand"]
    assert "gateVerdict" in h
    assert out["store-berlin"]["publication"]["prefix"] == "models/edge-store-berlin"



def test_lyon_is_reached_through_its_jump_host_and_every_host_key_is_pinned(edge_plan):
    # The runner is in the AWS VPC and store-lyon is linked to OpenStack only: through the jump host there.
    out = edge_plan.plan.outputs["edgeHosts"]
    lyon, berlin = out["store-lyon"]["ssh"], out["store-berlin"]["ssh"]
    assert lyon["proxy"] == "jump@10.120.0.10:22" and lyon["admitted"] == ["10.120.0.0/22", "10.120.0.10/32", "192.168.60.0/24"]
    assert berlin["proxy"] is None and "10.20.0.0/16" in berlin["admitted"]
    assert all(k and k.startswith("ssh-ed25519 ") for k in [*lyon["hostKeys"].values(), *berlin["hostKeys"].values()])

def test_the_site_choices_become_models_and_gate_slos():
    cfg = load_stack_file(SEARCH_DEV)
    berlin, lyon = cfg.site("store-berlin"), cfg.site("store-lyon")
    repo = Path("model_repo")
    assert served_models(berlin, repo) == ["text_encoder_int8"] and served_models(lyon, repo) == ["text_encoder"]
    assert gate_slos(berlin) == {"slos": {"text_encoder_int8": {"max_p99_ms": 60.0, "p99_concurrency": 1, "max_error_rate": 0.0}}}
    assert gate_slos(lyon) == {"slos": {"text_encoder": {"max_p99_ms": 120.0, "p99_concurrency": 2, "max_error_rate": 0.0}}}


def test_an_aws_linked_site_reads_with_its_own_read_only_user(edge_plan):
    v = edge_plan
    users = [r for r in v.plan.resources if r.type == "aws:iam/user:User" and "edge" in r.name]
    assert [u.name for u in users] == ["edge-store-berlin-reader"]  # store-lyon reads from OpenStack
    policy = next(r for r in v.plan.resources if r.type == "aws:iam/userPolicy:UserPolicy" and r.name == "edge-store-berlin-reader-policy")
    doc = json.loads(policy.inputs["policy"])
    actions = sorted(a for s in doc["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    assert actions == ["kms:Decrypt", "s3:GetObject", "s3:ListBucket"]  # read only: no Put, no Delete, no GenerateDataKey
    by_sid = {s["Sid"]: s for s in doc["Statement"]}
    assert by_sid["ReadTheSitePrefix"]["Resource"].endswith(":::acme-search-dev-triton-models/models/edge-store-berlin/*")
    assert by_sid["ListTheSitePrefix"]["Condition"]["StringLike"]["s3:prefix"] == ["models/edge-store-berlin", "models/edge-store-berlin/*"]
    assert by_sid["DecryptThroughS3"]["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com"}}
    # The key policy names the user: KMS refuses a principal the key policy does not allow, whatever IAM says.
    key = next(r for r in v.plan.resources if r.type == "aws:kms/key:Key" and "StackKey" in r.urn)
    stmt = {s["Sid"]: s for s in json.loads(key.inputs["policy"])["Statement"]}["EdgeReadersDecryptThroughS3"]
    assert stmt["Action"] == ["kms:Decrypt"]
    assert stmt["Condition"]["ArnEquals"]["aws:PrincipalArn"] == [f"arn:aws:iam::123456789012:user/{users[0].inputs['name']}"]
    assert stmt["Condition"]["StringEquals"]["kms:ViaService"] == "s3.us-west-2.amazonaws.com"
    access_key = next(r for r in v.plan.resources if r.type == "aws:iam/accessKey:AccessKey")
    assert access_key.inputs["user"] == users[0].inputs["name"]


def test_each_site_publication_is_rendered_for_the_edge_and_holds_the_variant(edge_plan):
    pubs = {r.name: r for r in edge_plan.plan.resources if r.type.endswith(":ModelPublication")}
    berlin, lyon = pubs["models-edge-store-berlin"], pubs["models-edge-store-lyon"]
    assert berlin.inputs["target"]["gpu"] is False and berlin.inputs["store"]["prefix"] == "models/edge-store-berlin"
    # store-berlin's edge-1 has an NVIDIA GPU: it reads a GPU rendering (the Python backend kept), under the site's prefix.
    gpu = pubs["models-edge-store-berlin-gpu"]
    assert gpu.inputs["target"] == {"name": "edge-gpu", "gpu": True, "instancesPerGpu": 1, "keepBackend": True}
    assert gpu.inputs["store"]["prefix"] == "models/edge-store-berlin/gpu" and gpu.inputs["store"]["bucket"] == berlin.inputs["store"]["bucket"]
    assert "models-edge-store-lyon-gpu" not in pubs  # CPU hosts only
    out = edge_plan.plan.outputs["edgeHosts"]
    assert out["store-berlin"]["gpuPublication"]["hosts"] == ["edge-1"] and out["store-lyon"]["gpuPublication"] is None
    assert berlin.inputs["store"]["sse"] == "aws:kms" and lyon.inputs["store"]["endpointUrl"]  # Swift's S3 API
    assert lyon.inputs["credentials"] == SECRET_MARKER


def test_the_plan_json_masks_the_ssh_key_and_the_edge_access_key(edge_plan):
    text = json.dumps(edge_plan.plan.as_json())
    assert "offline-secret-" not in text and "PRIVATE KEY" not in text
    secret_outputs = [r for r in edge_plan.plan.resources if r.type == COMMAND]
    assert secret_outputs and all(r.inputs["stdin"] == SECRET_MARKER for r in secret_outputs if "runtime" in r.name)
    assert any("edge_ssh_private_key is not set: planned with a placeholder" in w for w in edge_plan.plan.warnings)


def test_the_cluster_triton_loads_base_models_only(edge_plan):
    deployments = [r for r in edge_plan.plan.resources if r.type == "kubernetes:apps/v1:Deployment" and r.name.startswith("triton-")]
    assert len(deployments) == 2
    for d in deployments:
        loads = sorted(a for a in json.dumps(d.inputs).split('"') if a.startswith("--load-model="))
        assert loads == ["--load-model=image_classifier", "--load-model=text_encoder"], d.name


def test_without_the_ssh_key_the_program_stops_naming_it():
    values, secret_keys, _ = runtime_config_of(SEARCH_DEV)
    assert "hybridserve:edge_ssh_private_key" not in values
    monitor = RecordingMonitor(PlanMocks("us-west-2", "search-dev"))
    with pytest.raises(pulumi.RunError) as info:
        _run_program("search-dev", values, secret_keys, monitor, logging.getLogger("test"))
    text = str(info.value)
    assert "hybridserve:edge_ssh_private_key is not set" in text and "pulumi config set --secret hybridserve:edge_ssh_private_key" in text
    assert not [r for r in monitor.recorded if r.type.startswith("command:")]


def test_with_the_ssh_key_set_as_a_secret_it_reaches_the_connections_masked(tmp_path):
    path = variant(tmp_path, "search-dev", lambda c: c.update({"hybridserve:edge_ssh_private_key": {"secure": "v1:c3No:a2V5"}}))
    plan = plan_stack_file(path)
    assert not any("edge_ssh_private_key is not set" in w for w in plan.warnings)
    runtimes = [r for r in plan.resources if r.type == COMMAND and r.name.endswith("-runtime")]
    assert len(runtimes) == 3


def test_the_ssh_key_in_plain_text_is_refused(tmp_path, capsys):
    path = variant(tmp_path, "search-dev", lambda c: c.update({"hybridserve:edge_ssh_private_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}))
    code, _, err = run_cli(["validate", "--stack", "search-dev", "--stacks-dir", str(path.parent)], capsys)
    assert code == 2 and "hybridserve:edge_ssh_private_key: is stored in plain text" in err


def test_edge_sites_require_command_among_the_disabled_default_providers(tmp_path, capsys):
    path = variant(tmp_path, "search-dev", lambda c: c.update({"pulumi:disable-default-providers": ["aws", "openstack", "kubernetes", "random"]}))
    code, _, err = run_cli(["validate", "--stack", "search-dev", "--stacks-dir", str(path.parent)], capsys)
    assert code == 2 and "pulumi:disable-default-providers" in err and "does not list 'command'" in err, err
    # A stack without edge sites needs no such entry (the others keep planning as before).
    load_stack_file(EXAMPLES / "Pulumi.vision-dev.yaml")


# --------------------------------------------------------------------------------------------- variants


def test_the_repository_holds_the_int8_variant_search_dev_chooses(built_model_repo):
    infos = {i.variant.name: i for i in find_variants(built_model_repo, "text_encoder")}
    assert infos["text_encoder_int8"].variant.method == "int8-dynamic"
    assert infos["text_encoder_int8"].accuracy["drop"] <= load_stack_file(SEARCH_DEV).site("store-berlin").models["text_encoder"].max_accuracy_drop
    assert "text_encoder_int8" not in base_models(built_model_repo, ["text_encoder", "text_encoder_int8", "image_classifier"])
    assert Path("model_repo/text_encoder_int8/config.pbtxt").is_file() and Path("model_repo/text_encoder_int8/1/model.py").is_file()


def _choose(tmp_path, variant_name: str, drop: float = 0.01) -> Path:
    def edit(c):
        for site in c["hybridserve:sites"]:
            if site.get("name") == "store-berlin":
                site["models"]["text_encoder"].update(variant=variant_name, max_accuracy_drop=drop)
    return variant(tmp_path, "search-dev", edit)


@pytest.mark.parametrize(("name", "drop", "words"), [
    ("text_encoder_int9", 0.01, "'text_encoder_int9' is not in"),
    ("image_classifier", 0.01, "is a model of"),
    ("text_encoder_int8", 0.00001, "more than the site's max_accuracy_drop 1e-05"),
])
def test_a_variant_the_repository_cannot_serve_is_refused_naming_the_key(tmp_path, capsys, name, drop, words):
    path = _choose(tmp_path, name, drop)
    code, _, err = run_cli(["validate", "--stack", "search-dev", "--stacks-dir", str(path.parent)], capsys)
    assert code == 2, err
    assert f"{format_loc(('sites', 2, 'models', 'text_encoder', 'variant'))}:" in err and words in err, err


def test_an_unbuilt_variant_is_judged_by_the_bound_its_build_enforces(tmp_path, built_model_repo):
    # A fresh checkout has no built weights: validate must not need them. The build refuses a variant beyond the
    # bound its config.pbtxt records, so a bound no looser than the site's is enough; a looser one is named.
    repo = tmp_path / "repo"
    shutil.copytree(built_model_repo, repo)
    (repo / "text_encoder_int8" / "1" / "model.pt").unlink()
    config = load_stack_file(SEARCH_DEV)
    assert site_problems(config, repo, "search-dev") == []  # both bounds are 0.01
    tight = _choose(tmp_path, "text_encoder_int8", 0.001)
    problems = site_problems(load_stack_file(tight), repo, "search-dev")
    assert problems == [f"search-dev: {format_loc(('sites', 2, 'models', 'text_encoder', 'variant'))}: 'text_encoder_int8' is not built "
                        "and its config.pbtxt allows an accuracy drop of 0.01, more than the site's max_accuracy_drop 0.001; build it to "
                        "measure the drop (hybridserve models build), or make it with --max-accuracy-drop 0.001"]


def test_the_program_refuses_a_variant_the_repository_lacks(tmp_path):
    path = _choose(tmp_path, "text_encoder_int9")
    with pytest.raises(UserError) as info:
        plan_stack_file(path)
    assert info.value.exit_code == 2
    assert "the edge sites' models are not acceptable" in str(info.value) and "'text_encoder_int9' is not in" in str(info.value)


def test_triton_ports_of_a_site_must_differ(tmp_path, capsys):
    def edit(c):
        c["hybridserve:sites"][3].update(http_port=9000, grpc_port=9000)
    path = variant(tmp_path, "search-dev", edit)
    code, _, err = run_cli(["validate", "--stack", "search-dev", "--stacks-dir", str(path.parent)], capsys)
    assert code == 2 and f"{format_loc(('sites', 3, 'grpc_port'))}: 9000 is already http_port" in err, err


def test_plan_json_lists_the_edge_hosts_with_secrets_masked_and_the_text_their_live_state(tmp_path, capsys):
    # The hosts answer for real on loopback: store-berlin's edge-1 a Triton health API with its model ready, its edge-2 a
    # port that accepts and never answers (a hung host: the probe gives up), store-lyon's a Triton without its model.
    with triton_health_stub({"text_encoder_int8"}) as berlin_port, silent_port("127.0.0.2", berlin_port), triton_health_stub(set()) as lyon_port:
        def edit(c):
            c["hybridserve:sites"][2].update(http_port=berlin_port, grpc_port=berlin_port + 1 if berlin_port < 65535 else 1024, metrics_port=1025)
            c["hybridserve:sites"][3].update(http_port=lyon_port, grpc_port=lyon_port + 1 if lyon_port < 65535 else 1024, metrics_port=1025)
        path = variant(tmp_path, "search-dev", edit)
        out = tmp_path / "plan.json"
        via = ["--address", "store-berlin/edge-1=127.0.0.1", "--address", "store-berlin/edge-2=127.0.0.2", "--address", "store-lyon/edge-1=127.0.0.1"]
        code, text, err = run_cli(["plan", "--stack", "search-dev", "--stacks-dir", str(path.parent), "--json", str(out),
                                   "--probe-timeout", "1", *via], capsys)
    assert code == 0, err
    cells = [[c.strip() for c in line.split("│")] for line in text.splitlines() if line.strip().startswith(("store-berlin ", "store-lyon "))]
    rows = {(c[0], c[1]): c for c in cells}  # site, host, address, state, detail
    assert rows[("store-berlin", "edge-1")][3] == "ready", text
    assert rows[("store-berlin", "edge-2")][3] == "unreachable" and "does not answer within 1s" in rows[("store-berlin", "edge-2")][4], text
    assert rows[("store-lyon", "edge-1")][3] == "down" and rows[("store-lyon", "edge-1")][4] == "not ready: text_encoder", text
    assert "2 of 3 edge hosts of search-dev not ready" in " ".join(text.split())
    doc = json.loads(out.read_text())
    # The JSON contract is unchanged: one object per resource, nothing about the hosts' live state.
    assert all(set(r) == {"urn", "type", "name", "parent", "provider", "inputs"} for r in doc["resources"])
    assert all(set(h) == {"host", "address", "runtimeVersion", "gateVerdict", "gateCommand"}
               for site in doc["outputs"]["edgeHosts"].values() for h in site["hosts"])
    types = [r["type"] for r in doc["resources"]]
    assert types.count(EDGE_HOSTS) == 2 and types.count(COMMAND) == 6 and types.count(COPY) == 3
    text = out.read_text()
    assert "offline-secret-" not in text and SECRET_MARKER in text
    keys = [r for r in doc["resources"] if r["type"] == "aws:iam/accessKey:AccessKey"]
    assert len(keys) == 1
    assert doc["outputs"]["edgeHosts"]["store-berlin"]["hosts"][0]["address"] == "192.168.50.10"


@pytest.mark.parametrize(("args", "words"), [
    (["--address", "store-berlin/edge-9=127.0.0.1"], "--address store-berlin/edge-9: no such host"),
    (["--address", "store-berlin=127.0.0.1"], "--address 'store-berlin=127.0.0.1': expected SITE/HOST=ADDRESS"),
    (["--address", "store-berlin/edge-1=127.0.0.1", "--no-probe"], "--address is for the edge hosts' probe, which --no-probe turns off"),
])
def test_plan_probe_flags_are_checked_before_the_plan(capsys, args, words):
    code, _, err = run_cli(["plan", "--stack", "search-dev", *args], capsys)
    assert code == 2 and words in err, err


def test_the_smoke_gate_checks_variants_only_when_named(built_model_repo):
    """A server loads the base models unless asked (`--model-repo` alone checks those); a variant is checked by name."""
    from smoke_tests.references import load_model_reference, models_with_references

    assert models_with_references(built_model_repo) == ["image_classifier", "text_encoder"]
    assert load_model_reference(built_model_repo, "text_encoder_int8") is not None
