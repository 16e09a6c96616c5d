"""Model publication (hybridserve/publish, infra/components/publication.py): per-target rendering, the
content digest, and the Pulumi dynamic provider against real stores.

The provider is exercised the way the dynamic-provider host calls it (check, diff, create, update,
delete with the wire-format property bags) against a real SeaweedFS (SSE-S3, the identity's key pair) and
a real moto (SSE-KMS under a moto KMS key, the role assumed through moto's STS); what it left in the
bucket is read back with boto3. The resource itself registers under the SDK's mock engine.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from hybridserve.errors import UserError
from hybridserve.paths import model_repo_dir
from hybridserve.publish import (
    Store,
    Target,
    delete_version,
    list_versions,
    publish,
    render_repository,
    repository_digest,
    triton_uri,
)
from infra.components.publication import (
    TYPE_TOKEN,
    ModelPublication,
    ModelPublicationArgs,
    ModelPublicationError,
    ModelPublicationProvider,
    check_inputs,
)

MODELS = ("image_classifier", "text_encoder")
GPU = Target("aws", gpu=True, instances_per_gpu=2)
CPU = Target("local", gpu=False)


def _config(path_or_bytes):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    text = path_or_bytes.read_text() if isinstance(path_or_bytes, Path) else path_or_bytes.decode()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _without(config, *fields):
    from tritonclient.grpc import model_config_pb2

    copy = model_config_pb2.ModelConfig()
    copy.CopyFrom(config)
    for f in fields:
        copy.ClearField(f)
    return copy


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def repo(built_model_repo, tmp_path) -> Path:
    """A built copy this test may change."""
    copy = tmp_path / "model_repo"
    shutil.copytree(built_model_repo, copy)
    return copy


def _touch_model_py(repo: Path, revision: str) -> None:
    """A content change Triton would notice (model.py of both models), without a rebuild."""
    for m in MODELS:
        path = repo / m / "1" / "model.py"
        text = path.read_text()
        marker = "\n# publication test revision"
        path.write_text(text.split(marker)[0] + (f"{marker} {revision}\n" if revision else ""))


# --------------------------------------------------------------------------------------------- render


def test_gpu_target_serves_the_same_model_pt_with_the_pytorch_backend(repo, tmp_path):
    """GPU copies: KIND_GPU instances, the PyTorch backend on model.pt (cluster_backend), GPU tolerances; the rest as written."""
    from tritonclient.grpc import model_config_pb2

    rendered = render_repository(repo, tmp_path / "gpu", GPU)
    # The int8 variant's config is rewritten too (CPU instances on a GPU target: hybridserve.models.variants.CPU_ONLY_METHODS).
    assert sorted(rendered.rewritten) == [f"{m}/config.pbtxt" for m in (*MODELS, "text_encoder_int8")]
    source, out = _files(repo), _files(tmp_path / "gpu")
    assert set(out) == set(source) == set(rendered.files)
    for rel, data in source.items():
        if rel.endswith("config.pbtxt"):
            continue
        assert out[rel] == data, rel  # model.py, model.pt, reference.npz: what the local plane served
    changed = ("instance_group", "backend", "default_model_filename", "parameters")
    for m in MODELS:
        src, got = _config(repo / m / "config.pbtxt"), _config(tmp_path / "gpu" / m / "config.pbtxt")
        assert [(g.kind, g.count) for g in got.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 2)]
        assert (src.backend, got.backend, got.default_model_filename) == ("python", "pytorch", "model.pt")
        # the smoke gate reads reference_* from the served config: the GPU tolerances there
        for key in ("atol", "rtol"):
            assert got.parameters[f"reference_{key}"].string_value == src.parameters[f"gpu_reference_{key}"].string_value
        assert _without(got, *changed) == _without(src, *changed)  # tensors, batching, warmup untouched
        assert len(got.model_warmup) == 2 and list(got.input) == list(src.input) and list(got.output) == list(src.output)
        assert [g.kind for g in src.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    # Deterministic: a second rendering has the same bytes.
    render_repository(repo, tmp_path / "gpu2", GPU)
    assert _files(tmp_path / "gpu2") == out


def test_pytorch_backend_naming_rules_are_checked_against_model_pt(repo, tmp_path):
    """The PyTorch backend maps inputs by forward() names, <name>__<index>, or the config's order (one input here)."""
    from hybridserve.publish.render import libtorch_io_problems

    rendered = render_repository(repo, tmp_path / "gpu", GPU)
    text = _config(rendered.path / "text_encoder" / "config.pbtxt")
    pt = repo / "text_encoder" / "1" / "model.pt"
    assert libtorch_io_problems(text, pt, "t") == []  # input_ids is forward()'s argument name
    two = _config(rendered.path / "text_encoder" / "config.pbtxt")
    extra = two.input.add()
    extra.CopyFrom(two.input[0])
    extra.name = "mask"
    problems = libtorch_io_problems(two, pt, "text_encoder/config.pbtxt")
    assert len(problems) == 1 and "['input_ids', 'mask']" in problems[0] and "forward()'s arguments ['input_ids']" in problems[0]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a zip")
    assert "does not load as TorchScript" in libtorch_io_problems(text, broken, "x")[0]


def test_cpu_target_keeps_the_repository_as_written(repo, tmp_path):
    rendered = render_repository(repo, tmp_path / "cpu", CPU)
    assert rendered.rewritten == ()
    assert _files(tmp_path / "cpu") == _files(repo)


def test_invalid_target_combinations_are_clear_errors(repo, tmp_path):
    with pytest.raises(UserError, match="instances_per_gpu 2 on CPU target 'local'"):
        Target("local", gpu=False, instances_per_gpu=2)
    with pytest.raises(UserError) as exc:
        Target("aws", gpu=True, instances_per_gpu=0)
    assert "instances_per_gpu 0: an integer from 1 to 16" in str(exc.value)
    with pytest.raises(UserError, match="name 'AWS'"):
        Target("AWS", gpu=True)

    # A GPU instance group in model_repo/ cannot be served by the CPU-only local plane.
    config = repo / "text_encoder" / "config.pbtxt"
    config.write_text(config.read_text().replace("KIND_CPU", "KIND_GPU"))
    with pytest.raises(UserError) as exc:
        render_repository(repo, tmp_path / "cpu", CPU)
    text = str(exc.value)
    assert "text_encoder/config.pbtxt: instance_group[0].kind: KIND_GPU on CPU target 'local'" in text
    with pytest.raises(UserError, match=r"instance_group\[0\]\.kind: KIND_GPU on CPU target"):
        repository_digest(repo, CPU)
    # ... while every GPU target renders it (and any other kind) as KIND_GPU.
    render_repository(repo, tmp_path / "gpu", GPU)


def test_render_refuses_a_directory_that_is_not_empty(repo, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.txt").write_text("x")
    with pytest.raises(UserError, match="not an empty directory"):
        render_repository(repo, tmp_path / "out", GPU)


# --------------------------------------------------------------------------------------------- digest


def test_digest_is_stable_and_follows_content(repo, tmp_path, monkeypatch):
    first = repository_digest(repo, GPU)
    assert first.version == "v" + first.digest[:16]
    assert repository_digest(repo, GPU) == first
    moved = tmp_path / "elsewhere" / "repo"
    shutil.copytree(repo, moved)
    assert repository_digest(moved, GPU).digest == first.digest  # the location is not content

    # Files the sync never uploads are not content either.
    (repo / "text_encoder" / ".notes").write_text("x")
    (repo / "text_encoder" / "1" / "__pycache__").mkdir()
    (repo / "text_encoder" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"x")
    assert repository_digest(repo, GPU).digest == first.digest

    config = repo / "text_encoder" / "config.pbtxt"
    original = config.read_text()
    config.write_text(original.replace("max_queue_delay_microseconds: 2000", "max_queue_delay_microseconds: 3000"))
    assert repository_digest(repo, GPU).digest != first.digest
    config.write_text(original)

    _touch_model_py(repo, "1")
    assert repository_digest(repo, GPU).digest != first.digest
    _touch_model_py(repo, "")
    assert repository_digest(repo, GPU).digest == first.digest

    # A changed model definition changes the build fingerprint, so the (future) model.pt.
    from hybridserve.models import build

    real = build._definitions_source()
    monkeypatch.setattr(build, "_definitions_source", lambda: real + b"\n# changed\n")
    changed = repository_digest(repo, GPU)
    assert changed.digest != first.digest
    assert changed.files["text_encoder/1/model.pt"] != first.files["text_encoder/1/model.pt"]


def test_digest_needs_no_built_artifacts(repo, tmp_path):
    unbuilt = tmp_path / "unbuilt"
    shutil.copytree(model_repo_dir(), unbuilt, ignore=shutil.ignore_patterns("__pycache__", "model.pt", "reference.npz"))
    assert not list(unbuilt.rglob("model.pt"))
    built = repository_digest(repo, GPU)
    assert repository_digest(unbuilt, GPU) == built
    assert built.files["text_encoder/1/model.pt"].startswith("build:")
    assert built.files["text_encoder/1/reference.npz"] == built.files["text_encoder/1/model.pt"]


def test_digest_depends_on_the_target_settings_not_its_name(repo):
    gpu1 = repository_digest(repo, Target("aws", gpu=True))
    assert repository_digest(repo, Target("openstack", gpu=True)) == gpu1  # same copy, same version
    assert repository_digest(repo, Target("aws", gpu=True, instances_per_gpu=2)).digest != gpu1.digest
    cpu = repository_digest(repo, CPU)
    assert cpu.digest != gpu1.digest
    assert cpu.files["text_encoder/1/model.py"] == gpu1.files["text_encoder/1/model.py"]
    assert cpu.files["text_encoder/config.pbtxt"] != gpu1.files["text_encoder/config.pbtxt"]


# --------------------------------------------------------------------------------------------- URIs and checks


def test_triton_uris():
    from infra.components import storage

    v = "v0123456789abcdef"
    assert triton_uri(Store("models-bkt", "models", "eu-west-1"), v) == f"s3://models-bkt/models/{v}"
    assert triton_uri(Store("c", "teams/vision", "us-east-1", endpoint_url="http://127.0.0.1:8333"), v) == (
        f"s3://127.0.0.1:8333/c/teams/vision/{v}"
    )
    assert triton_uri(Store("c", "", "us-east-1", endpoint_url="https://swift.example.org"), v) == f"s3://https://swift.example.org:443/c/{v}"
    assert storage.triton_s3_uri("https://swift.example.org:8080", "c", "models") == "s3://https://swift.example.org:8080/c/models"
    with pytest.raises(UserError, match="not a published version name"):
        triton_uri(Store("b", "models", "us-east-1"), "../etc")


def _props(repo: Path, store: Store, *, target: Target = GPU, keep: int = 2) -> dict:
    """The property bag the resource registers (wire names), for a repository and store."""
    d = repository_digest(repo, target)
    return {
        "source": str(repo),
        "target": {"name": target.name, "gpu": target.gpu, "instancesPerGpu": float(target.instances_per_gpu)},
        "store": {
            "bucket": store.bucket,
            "prefix": store.prefix,
            "region": store.region,
            "endpointUrl": store.endpoint_url,
            "sse": store.sse,
            "kmsKeyId": store.kms_key_id,
            "roleArn": store.role_arn,
        },
        "credentials": {"accessKey": store.access_key, "secretKey": store.secret_key} if store.access_key else None,
        "digest": d.digest,
        "version": d.version,
        "uri": triton_uri(store, d.version),
        "keep": float(keep),  # numbers arrive as doubles
    }


def test_check_names_each_bad_property(repo):
    provider = ModelPublicationProvider()
    good = _props(repo, Store("bkt", "models", "us-east-1", endpoint_url="http://127.0.0.1:8333", sse="AES256"))
    result = provider.check({}, dict(good, history=None, publishedAt=None))
    assert result.failures == []
    assert result.inputs["keep"] == 2 and "history" not in result.inputs

    bad = dict(good, keep=1.0, digest="abc", store=dict(good["store"], sse="aws:kmss", kmsKeyId="k"))
    failures = {(f.property, f.reason) for f in provider.check({}, bad).failures}
    props = {p for p, _ in failures}
    assert {"keep", "digest", "store"} <= props
    assert any("sse 'aws:kmss': valid values are 'aws:kms', 'AES256', 'none'" in r for _, r in failures)
    assert any(">= 2" in r for p, r in failures if p == "keep")

    wrong_uri = dict(good, uri="s3://elsewhere/models/" + good["version"])
    assert [(p) for p, _ in check_inputs(wrong_uri)] == ["uri"]
    missing = dict(good, source=str(repo / "nope"))
    assert [p for p, _ in check_inputs(missing)] == ["source"]
    half = dict(good, credentials={"accessKey": "AK", "secretKey": ""})
    (failure,) = check_inputs(half)
    assert failure[0] == "" and failure[1].startswith("credentials:")  # never a property whose value is secret


def test_diff_cases(repo):
    provider = ModelPublicationProvider()
    store = Store("bkt", "models", "us-east-1", endpoint_url="http://127.0.0.1:8333", sse="AES256", access_key="A", secret_key="S")
    news = provider.check({}, _props(repo, store)).inputs
    olds = dict(news, keep=2.0, history=[news["version"]], publishedAt="2026-01-01T00:00:00+00:00")
    same = provider.diff("bkt/models", olds, news)
    assert same.changes is False and same.replaces == []

    keys = provider.diff("bkt/models", olds, dict(news, credentials={"accessKey": "A2", "secretKey": "S2"}))
    assert keys.changes is True and keys.replaces == []

    _touch_model_py(repo, "diff")
    changed = provider.diff("bkt/models", olds, provider.check({}, _props(repo, store)).inputs)
    assert changed.changes is True and changed.replaces == []

    for key, value in (("bucket", "other-bkt"), ("prefix", "models2"), ("endpointUrl", "http://127.0.0.1:9999")):
        moved = dict(news, store=dict(news["store"], **{key: value}))
        result = provider.diff("bkt/models", olds, moved)
        assert result.changes is True and result.replaces == ["store"] and result.delete_before_replace is False, key


def test_the_provider_pickles_by_reference():
    import base64

    import dill
    from pulumi.dynamic.dynamic import serialize_provider

    raw = base64.b64decode(serialize_provider(ModelPublicationProvider()))
    assert len(raw) < 200 and b"infra.components.publication" in raw  # no code, no state: a class reference
    assert isinstance(dill.loads(raw), ModelPublicationProvider)


# --------------------------------------------------------------------------------------------- real stores


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", []) or []]
    return sorted(keys)


def _assert_published(s3, bucket: str, prefix: str, version: str, repo: Path, check_encryption) -> None:
    """Every file of the GPU copy under prefix/version/, encrypted as asked; Triton's configs are the GPU ones."""
    from tritonclient.grpc import model_config_pb2

    base = f"{prefix}/{version}/"
    keys = _keys(s3, bucket, base)
    expected = {base + rel for rel in _files(repo)} | {base + ".hybridserve-manifest.json"}
    assert set(keys) == expected
    for key in keys:
        check_encryption(s3.head_object(Bucket=bucket, Key=key), key)
    for m in MODELS:
        obj = s3.get_object(Bucket=bucket, Key=f"{base}{m}/1/model.pt")["Body"].read()
        assert obj == (repo / m / "1" / "model.pt").read_bytes()
        published = _config(s3.get_object(Bucket=bucket, Key=f"{base}{m}/config.pbtxt")["Body"].read())
        source = _config(repo / m / "config.pbtxt")
        assert [(g.kind, g.count) for g in published.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_GPU, 2)]
        assert list(published.version_policy.specific.versions) == [1]
        assert (published.backend, published.default_model_filename) == ("pytorch", "model.pt")  # the GPU rendering
        rendered = ("instance_group", "version_policy", "backend", "default_model_filename", "parameters")
        assert _without(published, *rendered) == _without(source, *rendered)


def _exercise_provider(repo: Path, store: Store, s3, check_encryption) -> None:
    """create, diff, updates beyond keep=2, a rollback, delete: the provider as `pulumi up` drives it."""
    provider = ModelPublicationProvider()
    bucket, prefix = store.bucket, store.prefix
    # Objects that are not this resource's: never touched.
    foreign = [f"{prefix}/unrelated/notes.txt", f"{prefix}/v00000000000000ff/other-stack.txt", f"{prefix}-sibling/v1/x"]
    for key in foreign:
        s3.put_object(Bucket=bucket, Key=key, Body=b"not ours", **({"ServerSideEncryption": "AES256"} if store.sse == "AES256" else {}))

    def inputs() -> dict:
        result = provider.check({}, _props(repo, store))
        assert result.failures == []
        return result.inputs

    first = inputs()
    created = provider.create(first)
    assert created.id == f"{bucket}/{prefix}"
    v1 = first["version"]
    state = created.outs
    assert state["history"] == [v1] and state["uri"] == triton_uri(store, v1) and state["publishedAt"]
    _assert_published(s3, bucket, prefix, v1, repo, check_encryption)
    assert list_versions(store) == sorted([v1, "v00000000000000ff"])

    # Unchanged: no change in preview or update; publishing again uploads nothing.
    assert provider.diff(created.id, state, inputs()).changes is False
    again = publish(repo, store, GPU, expected_digest=first["digest"])
    assert again.uploaded == 0 and again.version == v1

    # Only keep changes: an update that uploads nothing.
    kept = provider.update(created.id, state, dict(first, keep=3)).outs
    assert kept["history"] == [v1] and kept["publishedAt"] == state["publishedAt"] and kept["keep"] == 3

    # A moved bucket or prefix is a replacement (the new one is created first).
    assert provider.diff(created.id, state, dict(first, store=dict(first["store"], prefix=prefix + "-b"))).replaces == ["store"]

    # A changed repository: a new version prefix, the previous one kept.
    _touch_model_py(repo, "2")
    second = inputs()
    assert provider.diff(created.id, state, second).changes is True
    state = provider.update(created.id, state, second).outs
    v2 = second["version"]
    assert v2 != v1 and state["history"] == [v2, v1]
    _assert_published(s3, bucket, prefix, v2, repo, check_encryption)
    assert _keys(s3, bucket, f"{prefix}/{v1}/")

    # One more: beyond keep=2 the oldest goes; the current and the kept one stay, nothing else is touched.
    _touch_model_py(repo, "3")
    third = inputs()
    state = provider.update(created.id, state, third).outs
    v3 = third["version"]
    assert state["history"] == [v3, v2]
    assert _keys(s3, bucket, f"{prefix}/{v1}/") == []
    assert _keys(s3, bucket, f"{prefix}/{v2}/") and _keys(s3, bucket, f"{prefix}/{v3}/")
    for key in foreign:
        assert _keys(s3, bucket, key) == [key]
    assert list_versions(store) == sorted([v2, v3, "v00000000000000ff"])

    # Rollback to the first content: its version is published again and becomes current; v2 goes.
    _touch_model_py(repo, "")
    back = inputs()
    assert back["version"] == v1
    state = provider.update(created.id, state, back).outs
    assert state["history"] == [v1, v3]
    _assert_published(s3, bucket, prefix, v1, repo, check_encryption)
    assert _keys(s3, bucket, f"{prefix}/{v2}/") == []

    # Refresh after the current version vanished from the store: the next update publishes it again.
    delete_version(store, v1)
    refreshed = provider.read(created.id, state)
    assert refreshed.id == created.id and refreshed.outs["history"] == [v3] and refreshed.outs["digest"] == ""
    assert provider.diff(created.id, refreshed.outs, back).changes is True
    state = provider.update(created.id, refreshed.outs, back).outs
    assert state["history"] == [v1, v3] and state["digest"] == back["digest"]
    _assert_published(s3, bucket, prefix, v1, repo, check_encryption)
    assert provider.read(created.id, state).outs == state

    # delete: every version it published, and only those.
    provider.delete(created.id, state)
    assert _keys(s3, bucket, f"{prefix}/{v1}/") == [] and _keys(s3, bucket, f"{prefix}/{v3}/") == []
    assert list_versions(store) == ["v00000000000000ff"]
    assert sorted(_keys(s3, bucket, "")) == sorted(foreign)


@pytest.mark.servers
def test_provider_on_seaweedfs_with_sse_s3_and_keys(repo, seaweed_endpoint, unique_bucket):
    ep = seaweed_endpoint
    s3 = ep.client()
    s3.create_bucket(Bucket=unique_bucket)
    store = Store(unique_bucket, "models", ep.region, endpoint_url=ep.url, sse="AES256", access_key=ep.access_key, secret_key=ep.secret_key)

    def check_encryption(head, key):
        assert head.get("ServerSideEncryption") == "AES256", key

    _exercise_provider(repo, store, s3, check_encryption)


@pytest.mark.servers
def test_provider_on_moto_with_sse_kms_under_an_assumed_role(repo, moto_endpoint, unique_bucket):
    ep = moto_endpoint
    s3 = ep.client()
    s3.create_bucket(Bucket=unique_bucket)
    key_arn = ep.client("kms").create_key(Description="stack key")["KeyMetadata"]["Arn"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
    role_arn = ep.client("iam").create_role(RoleName=f"writer-{unique_bucket}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    store = Store(
        unique_bucket, "teams/vision/models", ep.region, endpoint_url=ep.url, sse="aws:kms", kms_key_id=key_arn,
        access_key=ep.access_key, secret_key=ep.secret_key, role_arn=role_arn,
    )

    def check_encryption(head, key):
        assert head.get("ServerSideEncryption") == "aws:kms", key
        assert head.get("SSEKMSKeyId") == key_arn, key

    _exercise_provider(repo, store, s3, check_encryption)


@pytest.mark.servers
def test_publish_refuses_a_repository_that_changed_since_the_program_read_it(repo, seaweed_endpoint, unique_bucket):
    ep = seaweed_endpoint
    ep.client().create_bucket(Bucket=unique_bucket)
    store = Store(unique_bucket, "models", ep.region, endpoint_url=ep.url, sse="AES256", access_key=ep.access_key, secret_key=ep.secret_key)
    digest = repository_digest(repo, GPU).digest
    _touch_model_py(repo, "after preview")
    with pytest.raises(UserError, match="the model repository changed since the program read it; run pulumi up again"):
        publish(repo, store, GPU, expected_digest=digest)
    # Through the provider, the same as one short message for `pulumi up`.
    props = dict(_props(repo, store), digest=digest, version="v" + digest[:16])
    with pytest.raises(ModelPublicationError) as exc:
        ModelPublicationProvider().create(dict(props, uri=triton_uri(store, props["version"])))
    assert "run pulumi up again" in str(exc.value) and exc.value.__cause__ is None and exc.value.__suppress_context__
    assert list_versions(store) == []


@pytest.mark.servers
def test_publish_without_build_names_the_missing_artifacts(tmp_path, seaweed_endpoint, unique_bucket):
    ep = seaweed_endpoint
    ep.client().create_bucket(Bucket=unique_bucket)
    unbuilt = tmp_path / "unbuilt"
    shutil.copytree(model_repo_dir(), unbuilt, ignore=shutil.ignore_patterns("__pycache__", "model.pt", "reference.npz"))
    store = Store(unique_bucket, "models", ep.region, endpoint_url=ep.url, sse="AES256", access_key=ep.access_key, secret_key=ep.secret_key)
    with pytest.raises(UserError) as exc:
        publish(unbuilt, store, GPU, expected_digest=repository_digest(unbuilt, GPU).digest, build=False)
    assert "model.pt" in str(exc.value) and "hybridserve models build" in str(exc.value)


@pytest.mark.servers
def test_delete_version_refuses_what_is_not_a_version(seaweed_endpoint, unique_bucket):
    ep = seaweed_endpoint
    s3 = ep.client()
    s3.create_bucket(Bucket=unique_bucket)
    s3.put_object(Bucket=unique_bucket, Key="models/keep/x", Body=b"x")
    store = Store(unique_bucket, "models", ep.region, endpoint_url=ep.url, sse="AES256", access_key=ep.access_key, secret_key=ep.secret_key)
    for bad in ("", "keep", "../models", "v0123"):
        with pytest.raises(UserError, match="not a published version name"):
            delete_version(store, bad)
    assert delete_version(store, "v0123456789abcdef") == 0
    assert _keys(s3, unique_bucket, "") == ["models/keep/x"]


def test_sync_cli_role_arn_is_checked_and_named(capsys, monkeypatch, tmp_path):
    from cliutil import run_cli

    monkeypatch.setenv("HYBRIDSERVE_STATE_DIR", str(tmp_path / "state"))
    code, out, err = run_cli(
        ["sync", "--bucket", "models", "--sse", "AES256", "--endpoint-url", "http://127.0.0.1:1", "--role-arn", "model-writer"], capsys
    )
    text = " ".join((out + err).split())
    assert code == 2 and "role_arn (--role-arn) 'model-writer': not an IAM role ARN" in text and "modelWriterRoleArn" in text


# --------------------------------------------------------------------------------------------- STS, with IAM enforced


@pytest.mark.servers
def test_assume_role_retries_access_denied_then_publishes_under_the_role(repo, tmp_path, monkeypatch):
    """A moto that enforces IAM: the deployer may only assume the writer role, which alone may use S3 and KMS.

    AssumeRole is denied until the deployer's permission appears, and the uploads until the role's policy
    does (as right after IAM changes in the same `pulumi up`); the publication retries and then uploads
    under the role. Without the permission it fails with one message naming the role.
    """
    import hybridserve.sync.engine as engine
    from hybridserve.local.objectstore import MotoServer, S3Endpoint

    allow_all = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    # moto answers this many requests unauthenticated (the readiness probe and the setup below), then enforces IAM.
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "7")
    with MotoServer(log_path=tmp_path / "moto-iam.log") as server:
        ep = server.endpoint
        iam = ep.client("iam")
        iam.create_user(UserName="admin")  # 2
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(allow_all))  # 3
        admin_key = iam.create_access_key(UserName="admin")["AccessKey"]  # 4
        deployer = iam.create_user(UserName="deployer")["User"]["Arn"]  # 5
        deployer_key = iam.create_access_key(UserName="deployer")["AccessKey"]  # 6
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": deployer}, "Action": "sts:AssumeRole"}]}
        role_arn = iam.create_role(RoleName="model-writer", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]  # 7

        admin = S3Endpoint(ep.url, admin_key["AccessKeyId"], admin_key["SecretAccessKey"], ep.region)
        admin.client("s3").create_bucket(Bucket="models-bucket")
        key_arn = admin.client("kms").create_key(Description="stack key")["KeyMetadata"]["Arn"]
        store = Store(
            "models-bucket", "models", ep.region, endpoint_url=ep.url, sse="aws:kms", kms_key_id=key_arn,
            access_key=deployer_key["AccessKeyId"], secret_key=deployer_key["SecretAccessKey"], role_arn=role_arn,
        )
        deployer_s3 = S3Endpoint(ep.url, store.access_key, store.secret_key, ep.region).client("s3")
        with pytest.raises(Exception, match="AccessDenied"):
            deployer_s3.list_objects_v2(Bucket="models-bucket")  # IAM is enforced: only the role may

        # Denied and never granted: one clear error after the bounded retries.
        monkeypatch.setattr(engine, "ASSUME_ROLE_TIMEOUT_S", 2.0)
        with pytest.raises(UserError) as exc:
            list_versions(store)
        assert f"cannot assume role {role_arn}" in str(exc.value) and "AccessDenied" in str(exc.value)

        # Granted while the publication waits, as IAM changes of the same `pulumi up` propagate: first the
        # deployer's right to assume the role, later the role's own policy. It retries both and publishes.
        monkeypatch.setattr(engine, "ASSUME_ROLE_TIMEOUT_S", 60.0)
        assume = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}]}
        # The role's own policy is granted after the first sync under the role was denied (not on a timer: on a
        # loaded machine a timer could fire before that first attempt, and then nothing would be retried).
        grant_role = lambda: admin.client("iam").put_role_policy(RoleName="model-writer", PolicyName="s3-kms", PolicyDocument=json.dumps(allow_all))
        attempts: list[str] = []
        real_sync = engine.sync_repository

        def sync_then_grant(*a, **k):
            try:
                result = real_sync(*a, **k)
            except Exception as exc:
                attempts.append(f"denied: {exc}")
                if len(attempts) == 1:
                    grant_role()
                raise
            attempts.append("ok")
            return result

        monkeypatch.setattr(engine, "sync_repository", sync_then_grant)
        timer = threading.Timer(2.0, lambda: admin.client("iam").put_user_policy(UserName="deployer", PolicyName="assume", PolicyDocument=json.dumps(assume)))
        timer.start()
        try:
            digest = repository_digest(repo, GPU)
            provider = ModelPublicationProvider()
            created = provider.create(provider.check({}, _props(repo, store)).inputs)
            # the first sync under the role was denied (the role had no policy yet), a later one went through
            assert len(attempts) >= 2 and "AccessDenied" in attempts[0] and attempts[-1] == "ok", attempts
        finally:
            timer.cancel()
        assert created.outs["history"] == [digest.version]
        keys = _keys(admin.client("s3"), "models-bucket", f"models/{digest.version}/")
        assert f"models/{digest.version}/text_encoder/1/model.pt" in keys
        head = admin.client("s3").head_object(Bucket="models-bucket", Key=f"models/{digest.version}/text_encoder/1/model.pt")
        assert head["SSEKMSKeyId"] == key_arn


# --------------------------------------------------------------------------------------------- the resource


def test_resource_registers_under_the_mock_engine_with_program_time_digest(repo):
    """`pulumi preview` sees digest, version and URI as values; the credentials only as a secret."""
    import asyncio
    import contextvars

    import pulumi
    from google.protobuf import json_format
    from pulumi.runtime import rpc, settings
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.sync_await import _sync_await

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            return f"{args.name}-id", dict(args.inputs)

        def call(self, args):
            return {}

    class Recording(MockMonitor):
        def __init__(self, mocks):
            super().__init__(mocks)
            self.requests = []

        def RegisterResource(self, request):
            self.requests.append(request)
            return super().RegisterResource(request)

    monitor = Recording(Mocks())
    expected = repository_digest(repo, GPU)
    seen: dict = {}

    def program():
        settings.ROOT.set(None)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            pulumi.runtime.set_mocks(Mocks(), project="hybridserve", stack="test", preview=True, monitor=monitor)
            pub = ModelPublication(
                "aws-models",
                ModelPublicationArgs(
                    source=repo, target=GPU, bucket=pulumi.Output.from_input("models-bkt"), prefix="models", region="eu-west-1",
                    sse="aws:kms", kms_key_id=pulumi.Output.from_input("arn:aws:kms:eu-west-1:123456789012:key/k"),
                    role_arn="arn:aws:iam::123456789012:role/writer", access_key="AKIAEXAMPLE", secret_key=pulumi.Output.secret("s3cr3t"),
                    keep=3,
                ),
            )

            @pulumi.runtime.test
            def check():
                return pulumi.Output.all(pub.digest, pub.version, pub.uri, pub.keep, pub.store).apply(lambda v: seen.update(values=v))

            check()
            seen["credentials_secret"] = _sync_await(pub.credentials.is_secret())
            seen["uri_known"] = _sync_await(pub.uri.is_known())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    contextvars.copy_context().run(program)

    digest, version, uri, keep, store = seen["values"]
    assert (digest, version) == (expected.digest, expected.version)
    assert uri == f"s3://models-bkt/models/{expected.version}" and seen["uri_known"]
    assert keep == 3 and store["roleArn"] == "arn:aws:iam::123456789012:role/writer"
    assert seen["credentials_secret"] is True

    (request,) = [r for r in monitor.requests if r.type == TYPE_TOKEN]
    assert request.type == "pulumi-python:dynamic/hybridserve:ModelPublication"
    inputs = json_format.MessageToDict(request.object)
    # Concrete at program time, in a preview: what `pulumi preview` shows.
    assert inputs["digest"] == expected.digest and inputs["version"] == expected.version
    assert inputs["uri"] == f"s3://models-bkt/models/{expected.version}"
    assert inputs["credentials"][rpc._special_sig_key] == rpc._special_secret_sig
    assert "s3cr3t" not in json.dumps(inputs["store"]) and "credentials" in request.additionalSecretOutputs
    assert inputs["__provider"][rpc._special_sig_key] == rpc._special_secret_sig
    # The engine's own provider of the dynamic package (the stacks list packages in
    # pulumi:disable-default-providers rather than "*", which would deny it).
    assert request.provider == ""


def test_resource_refuses_an_invalid_repository_at_program_time(repo):
    import pulumi

    (repo / "text_encoder" / "config.pbtxt").write_text('name: "text_encoder"\nbogus_field: 1\n')
    with pytest.raises(pulumi.RunError, match="ModelPublication 'aws-models'"):
        ModelPublication("aws-models", ModelPublicationArgs(source=repo, target=GPU, bucket="b", prefix="models", region="us-east-1"))
    with pytest.raises(pulumi.RunError, match="keep 1"):
        ModelPublication("aws-models", ModelPublicationArgs(source=repo, target=GPU, bucket="b", prefix="models", region="us-east-1", keep=1))
