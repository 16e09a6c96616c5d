"""TritonServer failure paths: a model that fails to load, a missing repository, a missing wheel."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hybridserve.errors import UserError
from hybridserve.local.triton import TritonServer, live_group_members, prepare_backend_directory, tritonserver_binary

ROOT = Path(__file__).resolve().parents[1]

BROKEN_CONFIG = """
name: "broken"
backend: "python"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
instance_group [ { kind: KIND_CPU count: 1 } ]
"""

BROKEN_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("deliberately broken for the test")
"""


@pytest.mark.servers
def test_a_model_failing_to_load_fails_start_with_tritons_reason(tmp_path):
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text(BROKEN_CONFIG)
    (repo / "broken" / "1" / "model.py").write_text(BROKEN_MODEL)
    log = tmp_path / "triton.log"

    server = TritonServer(repo, ["broken", "absent"], log_path=log, work_dir=tmp_path / "work", startup_timeout=240)
    try:
        with pytest.raises(UserError) as info:
            server.start()
    finally:
        server.stop()
    message = str(info.value)
    # Triton's reason, read from its repository index, for each model.
    assert "broken: " in message and "RuntimeError: deliberately broken for the test" in message
    assert "absent: no such model" in message
    assert str(log) in message and "Last log lines" in message
    assert info.value.exit_code == 3
    # start() stopped the server it could not use: nothing of its process group is left.
    pid = server.last_pid
    assert pid is not None and not server.running()
    assert live_group_members(pid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_repository_must_exist(tmp_path):
    with pytest.raises(UserError, match="is not a directory"):
        TritonServer(tmp_path / "nope", ["m"], log_path=tmp_path / "log", work_dir=tmp_path)


def test_endpoints_need_a_running_server(tmp_path):
    server = TritonServer(tmp_path, [], log_path=tmp_path / "log", work_dir=tmp_path)
    with pytest.raises(RuntimeError, match="not running"):
        server.http_url
    server.stop()  # idempotent, also before start


def test_backend_directory_holds_backend_and_stub(tmp_path):
    backends = prepare_backend_directory(tmp_path)
    python = backends / "python"
    assert sorted(p.name for p in python.iterdir()) == [
        "libtriton_python.so",
        "triton_python_backend_stub",
        "triton_python_backend_utils.py",
    ]
    assert os.stat(python / "triton_python_backend_stub").st_mode & stat.S_IXUSR
    first = (python / "libtriton_python.so").stat().st_ino
    prepare_backend_directory(tmp_path)  # unchanged files are not copied again
    assert (python / "libtriton_python.so").stat().st_ino == first
    assert os.access(tritonserver_binary(), os.X_OK)


def test_missing_wheel_is_a_user_error():
    # A Python that cannot see site-packages stands for an environment without nvidia-pytriton.
    code = (
        "import sys\n"
        "sys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from hybridserve.errors import UserError\n"
        "from hybridserve.local.triton import tritonserver_binary\n"
        "try:\n"
        "    tritonserver_binary()\n"
        "except UserError as exc:\n"
        "    print('USERERROR', exc)\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("USERERROR tritonserver is not installed")
    assert "make install" in out.stdout
