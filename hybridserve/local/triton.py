"""The real `tritonserver` from the nvidia-pytriton wheel, started and stopped as a context manager.

What a working start needs on these machines (see the local-plane notes): a backend directory of
our own holding `python/` with the Python backend and the stub for the running Python version, the
venv's `bin/` first on PATH (the stub takes its Python prefix from `python3` there, so `import torch`
works in model.py), the wheel's library directories on LD_LIBRARY_PATH, explicit model control.

    with TritonServer("model_repo", ["text_encoder"], log_path=..., work_dir=...) as server:
        tritonclient.http.InferenceServerClient(server.http_url)

Only stdlib imports here: the CLI imports this module for `--help`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hybridserve.errors import UserError
from hybridserve.local.process import ManagedProcess, free_ports, read_since
from hybridserve.tritonargs import Listen, server_arguments

LOG_TAIL_LINES = 40
LOG_LINE_WIDTH = 240  # Triton logs its model and option tables as very wide lines
STOP_SWEEP_TIMEOUT = 5.0
_PORT_ATTEMPTS = 3  # free ports can be taken by someone else between picking and binding
# No proxy for loopback health checks, whatever HTTP(S)_PROXY says.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class TritonInstallation:
    """The parts of the nvidia-pytriton wheel a server start needs."""

    binary: Path
    lib_dirs: tuple[Path, ...]
    python_backend: tuple[Path, ...]  # libtriton_python.so, triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this Python version


def triton_installation() -> TritonInstallation:
    """Locate tritonserver and its Python backend in the installed wheel; UserError when absent."""
    spec = importlib.util.find_spec("pytriton")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"tritonserver is not installed: the nvidia-pytriton wheel (which ships it) is missing from "
            f"this Python environment ({sys.prefix}). Run `make install`."
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    binary = root / "bin" / "tritonserver"
    backend = root / "backends" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    needed = [binary, backend / "libtriton_python.so", backend / "triton_python_backend_utils.py"]
    missing = [p for p in needed if not p.is_file()]
    if missing:
        raise UserError(
            f"the nvidia-pytriton wheel in {sys.prefix} is incomplete (missing {', '.join(map(str, missing))}). "
            "Reinstall it: `make install`."
        )
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").glob("*") if p.is_dir())
        raise UserError(
            f"nvidia-pytriton has no Python backend stub for Python {version} (it has: {', '.join(have) or 'none'}); "
            "use one of those Python versions for the venv."
        )
    return TritonInstallation(
        binary=binary,
        lib_dirs=(root.parent.parent / "nvidia_pytriton.libs", root / "lib"),
        python_backend=(backend / "libtriton_python.so", backend / "triton_python_backend_utils.py"),
        stub=stub,
    )


def tritonserver_binary() -> Path:
    """Path of the tritonserver binary in the nvidia-pytriton wheel; UserError with a fix when missing."""
    return triton_installation().binary


def prepare_backend_directory(work_dir: Path, installation: TritonInstallation | None = None) -> Path:
    """`work_dir/backends` holding `python/` with the backend library, its utils and the stub; returns it.

    The wheel keeps the stub apart from the backend, and Triton looks for it next to the backend
    library, so the three files are copied together (only when changed; replaced atomically, so a
    server already running from this directory is not disturbed).
    """
    inst = installation or triton_installation()
    target = Path(work_dir) / "backends" / "python"
    target.mkdir(parents=True, exist_ok=True)
    for src in (*inst.python_backend, inst.stub):
        dst = target / src.name
        s = src.stat()
        try:
            d = dst.stat()
            if d.st_size == s.st_size and int(d.st_mtime) == int(s.st_mtime):
                continue
        except FileNotFoundError:
            pass
        tmp = target / f".{src.name}.{os.getpid()}.tmp"
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    return target.parent


def _get(url: str, timeout: float = 2.0) -> bool:
    try:
        with _http.open(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def repository_index(http_port: int, host: str = "127.0.0.1") -> list[dict]:
    """Triton's model repository index: [{name, version?, state?, reason?}, ...]."""
    request = urllib.request.Request(
        f"http://{host}:{http_port}/v2/repository/index",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _http.open(request, timeout=5) as r:
        return json.loads(r.read() or b"[]")


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes in process group `pgid` that are still running (zombies excluded; Linux /proc)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp ...": comm may contain spaces and parentheses, so split after the last ")".
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


class _PortTaken(Exception):
    pass


class TritonServer:
    """A tritonserver serving `models` from `model_repository` (a directory or s3://host:port/bucket/prefix).

    `start()` picks free ports, starts the server with explicit model control and waits until the
    server and every model are ready; on failure it stops the server and raises UserError with the
    log tail and Triton's reason for each model that failed to load. `stop()` is idempotent.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike,
        models: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        work_dir: Path,
        startup_timeout: float = 180,
        extra_args: Sequence[str] = (),
    ):
        repo = str(model_repository)
        if "://" not in repo:
            path = Path(repo)
            if not path.is_dir():
                raise UserError(f"model repository {repo} is not a directory")
            repo = str(path.resolve())
        self.model_repository = repo
        self.models = list(models)
        self.log_path = Path(log_path)
        self.extra_env = dict(env or {})
        self.work_dir = Path(work_dir)
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)  # e.g. --log-verbose=1 (tests, benchmarks)
        self._proc: ManagedProcess | None = None
        self._ports: tuple[int, int, int] | None = None
        self.last_pid: int | None = None  # kept after stop() so callers can check the process is gone

    # -- endpoints (host:port, as tritonclient takes them; metrics are served under /metrics) --

    def _port(self, i: int) -> int:
        if self._ports is None:
            raise RuntimeError("TritonServer is not running; call start() first")
        return self._ports[i]

    @property
    def http_port(self) -> int:
        return self._port(0)

    @property
    def grpc_port(self) -> int:
        return self._port(1)

    @property
    def metrics_port(self) -> int:
        return self._port(2)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def process(self) -> ManagedProcess | None:
        """The supervised server process while running (e.g. to hand it over past this process's exit)."""
        return self._proc

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    # -- life cycle --

    def environment(self) -> dict[str, str]:
        """The server's environment: ours, the extra `env`, venv bin first on PATH, the wheel's libraries."""
        inst = triton_installation()
        env = dict(os.environ)
        env.update(self.extra_env)
        env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "bin"), env.get("PATH")]))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [*map(str, inst.lib_dirs), env.get("LD_LIBRARY_PATH")]))
        return env

    def argv(self, backend_dir: Path, ports: tuple[int, int, int]) -> list[str]:
        http, grpc, metrics = ports
        # The same argument set as the clusters' Triton Deployment (hybridserve/tritonargs.py).
        return [
            str(tritonserver_binary()),
            *server_arguments(
                self.model_repository,
                self.models,
                Listen("127.0.0.1", http, grpc, metrics),
                exit_timeout_s=10,
                gpu_metrics=False,
                backend_directory=str(backend_dir),
            ),
            *self.extra_args,
        ]

    def start(self) -> "TritonServer":
        if self._proc is not None:
            raise RuntimeError("TritonServer already started")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        backend_dir = prepare_backend_directory(self.work_dir)
        env = self.environment()
        for _ in range(_PORT_ATTEMPTS):
            ports = tuple(free_ports(3))
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            proc = ManagedProcess(
                "tritonserver", self.argv(backend_dir, ports), log_path=self.log_path, env=env, cwd=self.work_dir, term_timeout=15
            )
            proc.start()
            self.last_pid = proc.pid
            try:
                self._wait_ready(proc, ports, log_offset)
            except _PortTaken:
                proc.stop()
                continue
            except BaseException:
                proc.stop()
                raise
            self._proc, self._ports = proc, ports
            return self
        raise UserError(f"tritonserver could not bind free ports in {_PORT_ATTEMPTS} attempts; see {self.log_path}", exit_code=3)

    def _tail(self, offset: int) -> str:
        lines = read_since(self.log_path, offset).splitlines()[-LOG_TAIL_LINES:]
        return "\n".join(line[:LOG_LINE_WIDTH] for line in lines) or "(empty log)"

    def _wait_ready(self, proc: ManagedProcess, ports: tuple[int, int, int], log_offset: int) -> None:
        http = ports[0]
        deadline = time.monotonic() + self.startup_timeout
        try:
            proc.wait_until(
                lambda: _get(f"http://127.0.0.1:{http}/v2/health/live"),
                timeout=self.startup_timeout,
                what="live (HTTP /v2/health/live)",
            )
        except UserError:
            if not proc.running() and "already in use" in read_since(self.log_path, log_offset).lower():
                raise _PortTaken from None
            raise

        # Startup loads happen before the endpoints open, but poll anyway: a model may still be LOADING.
        failed: dict[str, str] = {}
        ready: set[str] = set()

        def settled() -> bool:
            index = repository_index(http)
            for model in self.models:
                if model in ready or model in failed:
                    continue
                entries = [e for e in index if e.get("name") == model]
                states = {e.get("state") for e in entries}
                if "READY" in states and _get(f"http://127.0.0.1:{http}/v2/models/{model}/ready"):
                    ready.add(model)
                elif not entries:
                    failed[model] = f"no such model in {self.model_repository}"
                elif "UNAVAILABLE" in states:
                    failed[model] = "; ".join(e.get("reason") or "unavailable" for e in entries if e.get("state") == "UNAVAILABLE")
            return len(ready) + len(failed) == len(self.models)

        proc.wait_until(settled, timeout=max(1.0, deadline - time.monotonic()), what="ready with all models loaded")
        if failed:
            reasons = "\n".join(f"  {m}: {reason}" for m, reason in failed.items())
            raise UserError(
                f"tritonserver could not load {len(failed)} model(s) from {self.model_repository}:\n{reasons}\n"
                f"Last log lines ({self.log_path}):\n{self._tail(log_offset)}",
                exit_code=3,
            )

    def stop(self) -> None:
        """Stop the server and its Python backend stubs (the whole process group). Idempotent.

        Returns once no process of the group is left: the stubs receive the final SIGKILL a moment
        after tritonserver has exited, and a caller may start another server right away.
        """
        proc, self._proc, self._ports = self._proc, None, None
        if proc is None:
            return
        pgid = proc.pid
        proc.stop()
        deadline = time.monotonic() + STOP_SWEEP_TIMEOUT
        while live_group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
