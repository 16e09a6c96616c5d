"""The AWS path end to end on real processes: sync under SSE-KMS to moto's S3 + KMS, the real
tritonserver loading the repository straight from s3://, inference equal to the torch reference.

The local plane covers the same path on SeaweedFS with SSE-S3 (tests/test_local_plane.py); this one
covers what only a KMS-speaking store can show: every object encrypted under the stack's key, and
Triton reading through it.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybridserve.local.triton import TritonServer
from hybridserve.models.repository import describe_repository, load_reference
from hybridserve.sync import SyncTarget, sync_repository

pytestmark = pytest.mark.servers


def _infer(grpc_url: str, model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    client = grpcclient.InferenceServerClient(grpc_url)
    try:
        tensors = []
        for t in model.inputs:
            tensor = grpcclient.InferInput(t.name, list(inputs[t.name].shape), np_to_triton_dtype(t.dtype))
            tensor.set_data_from_numpy(inputs[t.name])
            tensors.append(tensor)
        result = client.infer(model.name, tensors, client_timeout=120)
        return {t.name: result.as_numpy(t.name) for t in model.outputs}
    finally:
        client.close()


def test_triton_serves_models_synced_under_sse_kms_and_matches_the_reference(built_model_repo, moto_endpoint, unique_bucket, tmp_path):
    ep = moto_endpoint
    key_arn = ep.client("kms").create_key(Description="stack key")["KeyMetadata"]["Arn"]
    s3 = ep.client("s3")
    s3.create_bucket(Bucket=unique_bucket)

    report = sync_repository(
        built_model_repo,
        SyncTarget(bucket=unique_bucket, prefix="models", endpoint_url=ep.url, region=ep.region,
                   access_key=ep.access_key, secret_key=ep.secret_key, sse="aws:kms", kms_key_id=key_arn),
        show_progress=False,
    )
    info = describe_repository(built_model_repo)
    assert report.published == {m.name: list(m.versions) for m in info.models}

    # Every object Triton will read is encrypted under the stack key, not merely "some" key.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=unique_bucket, Prefix="models/")["Contents"]]
    assert any(k.endswith("/1/model.pt") for k in keys)
    for key in keys:
        head = s3.head_object(Bucket=unique_bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == key_arn, key

    server = TritonServer(ep.triton_uri(unique_bucket, "models"), info.names, log_path=tmp_path / "triton.log",
                          env=ep.env(), work_dir=tmp_path / "work", startup_timeout=240)
    with server:
        for model in info.models:
            inputs, expected = load_reference(model.version_dir())
            got = _infer(server.grpc_url, model, inputs)
            for name, want in expected.items():
                np.testing.assert_allclose(got[name], want, atol=model.atol, rtol=model.rtol, err_msg=f"{model.name}:{name}")
        pid = server.pid
    assert not server.running()
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
