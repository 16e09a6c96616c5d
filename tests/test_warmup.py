"""Cold starts: the models' `model_warmup` runs inside the real tritonserver before a model is ready.

Triton logs each warmup sample at verbose level 1 (core: TritonModelInstance::WarmUp) and refuses to load
a model whose warmup fails, so a load with the log proves the samples ran, and a broken sample proves
they are not ignored. How much the first request gains is a timing: bench/bench_warmup.py measures it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hybridserve.errors import UserError
from hybridserve.local.triton import TritonServer

pytestmark = pytest.mark.servers


def test_warmup_samples_run_before_ready_and_a_broken_one_stops_the_load(built_model_repo, tmp_path: Path):
    repo = tmp_path / "repo"
    shutil.copytree(built_model_repo, repo)
    broken = repo / "broken_warmup"
    shutil.copytree(repo / "text_encoder", broken)
    config = (broken / "config.pbtxt").read_text().replace('name: "text_encoder"', 'name: "broken_warmup"')
    # a warmup sample whose shape the model cannot take: dims [ 31 ] for an input of [ 32 ]
    config = config.replace("value: { data_type: TYPE_INT64 dims: [ 32 ] zero_data: true }", "value: { data_type: TYPE_INT64 dims: [ 31 ] zero_data: true }", 1)
    (broken / "config.pbtxt").write_text(config)

    log = tmp_path / "triton.log"
    server = TritonServer(repo, ["text_encoder", "image_classifier", "broken_warmup"], log_path=log, work_dir=tmp_path / "work",
                          startup_timeout=240, extra_args=["--log-verbose=1"])
    with pytest.raises(UserError) as info:
        server.start()
    assert not server.running()
    assert "broken_warmup" in str(info.value) and "warmup" in str(info.value).lower()
    assert "text_encoder:" not in str(info.value) and "image_classifier:" not in str(info.value)

    text = log.read_text(errors="replace")
    for model in ("text_encoder", "image_classifier"):
        for sample in ("one_row", "batch_16"):
            assert re.search(rf"model '{model}' instance \S+ is running warmup sample '{sample}'", text), (model, sample)
