"""The AWS path end to end on real processes: sync under SSE-KMS to moto's S3 + KMS, the real
tritonserver loading the repository straight from s3://, inference equal to the torch reference.

The local plane covers the same path on SeaweedFS with SSE-S3 (tests/test_local_plane.py); this one
covers what only a KMS-speaking store can show: every object encrypted under the stack's key, and
Triton reading through it.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybridserve.models.repository import describe_repository, load_reference

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


def test_triton_serves_models_synced_under_sse_kms_and_matches_the_reference(built_model_repo, kit_server):
    # The session's server (tests/conftest.py): the repository synced under SSE-KMS with a key of its own, then
    # served from s3://; that it stops with its Python backend stubs is checked as the session ends.
    ep, bucket = kit_server.endpoint, kit_server.bucket
    s3 = ep.client("s3")
    info = describe_repository(built_model_repo)
    assert kit_server.report.published == {m.name: list(m.versions) for m in info.models}

    # Every object Triton will read is encrypted under the stack key, not merely "some" key.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=kit_server.prefix + "/")["Contents"]]
    assert any(k.endswith("/1/model.pt") for k in keys)
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == kit_server.key_arn, key

    server = kit_server.server
    assert server.model_repository == ep.triton_uri(bucket, kit_server.prefix) and sorted(server.models) == sorted(info.names)
    for model in info.models:
        inputs, expected = load_reference(model.version_dir())
        got = _infer(server.grpc_url, model, inputs)
        for name, want in expected.items():
            np.testing.assert_allclose(got[name], want, atol=model.atol, rtol=model.rtol, err_msg=f"{model.name}:{name}")
