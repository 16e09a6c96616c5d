"""The real tritonserver serves both models: HTTP and gRPC answers equal the references within tolerance.

One server for the whole module (starting it costs CPU on a shared 2-core machine).
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import time
import urllib.request

import numpy as np
import pytest

from hybridserve.local.triton import TritonServer, live_group_members
from hybridserve.models.definitions import MODEL_SPECS
from hybridserve.models.repository import ensure_valid, load_reference

pytestmark = pytest.mark.servers

BATCH = 8  # preferred batch size of this module's copy of the configs


@pytest.fixture(scope="module")
def served(tmp_path_factory, built_model_repo):
    root = tmp_path_factory.mktemp("triton")
    repo = root / "model_repo"
    shutil.copytree(built_model_repo, repo, ignore=shutil.ignore_patterns("__pycache__"))
    for name in MODEL_SPECS:
        # Only in this copy: wait up to 1 s for a batch of 8, so the 8 concurrent one-sample requests of a
        # test reliably reach execute() together instead of depending on how fast they arrive.
        config = repo / name / "config.pbtxt"
        text = config.read_text()
        text = re.sub(r"preferred_batch_size: \[[^\]]*\]", f"preferred_batch_size: [ {BATCH} ]", text)
        text = re.sub(r"max_queue_delay_microseconds: \d+", "max_queue_delay_microseconds: 1000000", text)
        config.write_text(text)
    info = ensure_valid(repo)

    server = TritonServer(repo, info.names, log_path=root / "triton.log", work_dir=root / "work")
    server.start()
    pid = server.pid
    try:
        yield server, info
    finally:
        server.stop()
    # Nothing left behind: neither tritonserver nor its Python backend stubs (same process group).
    assert not server.running()
    assert live_group_members(pid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _triton_dtype(dtype: np.dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(dtype)


def test_server_and_models_are_ready(served):
    import tritonclient.http as httpclient

    server, info = served
    assert len({server.http_port, server.grpc_port, server.metrics_port}) == 3
    assert server.http_url == f"127.0.0.1:{server.http_port}"
    assert server.running() and server.pid in live_group_members(server.pid)
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        assert client.is_server_ready()
        for name in info.names:
            assert client.is_model_ready(name)
            metadata = client.get_model_metadata(name)
            assert [i["name"] for i in metadata["inputs"]] == [t.name for t in info.model(name).inputs]
    finally:
        client.close()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{server.metrics_url}/metrics", timeout=10) as r:
        assert b"nv_inference_count" in r.read()


@pytest.mark.parametrize("model_name", list(MODEL_SPECS))
def test_http_concurrent_requests_are_batched_and_match_reference(served, model_name):
    import tritonclient.http as httpclient

    server, info = served
    model = info.model(model_name)
    inputs, outputs = load_reference(model.version_dir())
    n = len(next(iter(inputs.values())))
    assert n == BATCH
    client = httpclient.InferenceServerClient(server.http_url, concurrency=n)
    try:
        before = client.get_inference_statistics(model_name)["model_stats"][0]
        pending = []
        for i in range(n):  # one sample per request, all in flight together
            tensors = []
            for t in model.inputs:
                tensor = httpclient.InferInput(t.name, [1, *t.dims], _triton_dtype(t.dtype))
                tensor.set_data_from_numpy(inputs[t.name][i : i + 1])
                tensors.append(tensor)
            pending.append(client.async_infer(model_name, tensors))
        results = [p.get_result() for p in pending]
        # Triton updates its statistics after sending the response: wait (bounded) for the last one.
        deadline = time.monotonic() + 10
        while True:
            after = client.get_inference_statistics(model_name)["model_stats"][0]
            if int(after["inference_count"]) - int(before["inference_count"]) >= n or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        client.close()

    for t in model.outputs:
        got = np.concatenate([r.as_numpy(t.name) for r in results])
        assert got.dtype == t.dtype
        # Row i answers request i: the batch was split back in order.
        np.testing.assert_allclose(got, outputs[t.name], atol=model.atol, rtol=model.rtol)
    assert int(after["inference_count"]) - int(before["inference_count"]) == n
    executions = int(after["execution_count"]) - int(before["execution_count"])
    assert 1 <= executions < n, f"{n} concurrent requests ran in {executions} executions: no dynamic batching"


@pytest.mark.parametrize("model_name", list(MODEL_SPECS))
def test_grpc_batch_and_concurrent_requests_match_reference(served, model_name):
    import tritonclient.grpc as grpcclient

    server, info = served
    model = info.model(model_name)
    inputs, outputs = load_reference(model.version_dir())
    n = len(next(iter(inputs.values())))

    def request(rows: slice) -> list:
        tensors = []
        for t in model.inputs:
            data = inputs[t.name][rows]
            tensor = grpcclient.InferInput(t.name, list(data.shape), _triton_dtype(t.dtype))
            tensor.set_data_from_numpy(data)
            tensors.append(tensor)
        return tensors

    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        whole = client.infer(model_name, request(slice(0, n)))
        for t in model.outputs:
            np.testing.assert_allclose(whole.as_numpy(t.name), outputs[t.name], atol=model.atol, rtol=model.rtol)

        done: queue.Queue = queue.Queue()
        halves = [slice(0, n // 2), slice(n // 2, n)]  # two requests of several samples each, concurrently
        for k, rows in enumerate(halves):
            client.async_infer(model_name, request(rows), callback=lambda result, error, k=k: done.put((k, result, error)))
        answers = {}
        for _ in halves:
            k, result, error = done.get(timeout=120)
            assert error is None, error
            answers[k] = result
    finally:
        client.close()
    for t in model.outputs:
        got = np.concatenate([answers[k].as_numpy(t.name) for k in range(len(halves))])
        np.testing.assert_allclose(got, outputs[t.name], atol=model.atol, rtol=model.rtol)


def test_wrong_input_shape_is_rejected_by_triton(served):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    server, _ = served
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        tensor = httpclient.InferInput("input_ids", [1, 31], "INT64")
        tensor.set_data_from_numpy(np.ones((1, 31), dtype=np.int64))
        with pytest.raises(InferenceServerException, match="unexpected shape"):
            client.infer("text_encoder", [tensor])
    finally:
        client.close()
