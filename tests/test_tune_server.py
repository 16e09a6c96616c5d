"""`hybridserve models tune` measuring for real: a temporary local plane (SeaweedFS + tritonserver), then a
resumed run on a tritonserver of our own through --url. No timing assertions: only what was measured,
recorded and written."""

from __future__ import annotations

import json
import shutil

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hybridserve.models.repository import validate_repository
from hybridserve.tune.search import Objective, Result, best_of
from tests.cliutil import run_cli

pytestmark = pytest.mark.servers


def _results(path):
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    return lines[0], lines[1:]


def test_tune_on_the_local_plane_writes_a_valid_config_then_resumes_on_a_url(repo, tmp_path, capsys):
    from hybridserve.local.plane import read_record
    from hybridserve.local.triton import TritonServer

    # The tuned model alone: the plane serves (syncs, validates, loads) every model of the repository.
    for other in [p for p in repo.iterdir() if p.is_dir() and p.name != "text_encoder"]:
        shutil.rmtree(other)
    results = tmp_path / "tune.jsonl"
    config_path = repo / "text_encoder" / "config.pbtxt"
    original = config_path.read_text()
    common = ["--repo", str(repo), "--results", str(results), "--max-concurrency", "2", "--window", "0.3",
              "--max-p99-ms", "5000"]

    code, out, err = run_cli(["models", "tune", "text_encoder", *common, "--max-candidates", "2", "--budget", "600",
                              "--state-dir", str(tmp_path / "plane"), "--write"], capsys)
    assert code == 0, out + err
    assert read_record(tmp_path / "plane") is None  # the temporary plane is stopped, its record gone

    header, rows = _results(results)
    assert header["model"] == "text_encoder" and len(rows) == 2
    assert len({r["key"] for r in rows}) == 2
    for r in rows:
        assert r["error"] is None, r
        assert r["levels"] and all(lv["throughput"] > 0 for lv in r["levels"] if lv["p99_ms"] is not None)
    assert "best" in out and "max-candidates 2" in out

    # --write: the best candidate is in config.pbtxt, which validates; comments and other fields are kept.
    assert validate_repository(repo) == []
    written = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    before = text_format.Parse(original, model_config_pb2.ModelConfig())
    best = best_of([Result.from_record(r) for r in rows], Objective(5000))
    c = best.candidate
    assert written.instance_group[0].count == c.instances
    assert written.dynamic_batching.max_queue_delay_microseconds == c.max_queue_delay_us
    assert tuple(written.dynamic_batching.preferred_batch_size) == c.preferred_batch_sizes
    assert [x.name for x in written.model_warmup] == [x.name for x in before.model_warmup]
    assert written.input == before.input and written.output == before.output
    assert all(line in config_path.read_text() for line in original.splitlines() if line.startswith("#"))

    # The same results file on another endpoint: the known candidates are reused, only new ones measured.
    server = TritonServer(repo, ["text_encoder"], log_path=tmp_path / "triton.log", work_dir=tmp_path / "triton")
    with server:
        code, out, err = run_cli(["models", "tune", "text_encoder", *common, "--max-candidates", "1",
                                  "--url", server.grpc_url], capsys)
        assert code == 0, out + err
        assert "2 candidate(s) already measured" in out and "from results file" in out
        _, rows2 = _results(results)
        assert rows2[:2] == rows and len(rows2) == 3  # one new candidate, appended
        assert len({r["key"] for r in rows2}) == 3
        # Afterwards the server serves the repository's configuration again (not the last candidate's).
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(server.grpc_url)
        served = client.get_model_config("text_encoder").config
        client.close()
        assert served.instance_group[0].count == written.instance_group[0].count
        assert list(served.dynamic_batching.preferred_batch_size) == list(written.dynamic_batching.preferred_batch_size)
