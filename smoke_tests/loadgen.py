"""The load generator: closed-loop concurrency from several processes, each an asyncio client.

Why it keeps up with the server on a 2-core machine:
- the request is encoded once (a serialized gRPC `ModelInferRequest`, or the HTTP binary-tensor body) and
  the same bytes are sent by every coroutine: no per-request tensor copies or protobuf building;
- gRPC responses are not decoded (a response with status OK is a success; correctness is checked apart);
- N coroutines per process share one HTTP/2 channel (gRPC) or one connection pool (HTTP, aiohttp);
- the concurrency is spread over `processes` OS processes (fresh interpreters, not forks: gRPC is not fork-safe),
  so the Python client never is the one core that limits throughput.

Each request's start and end come from `time.perf_counter_ns()` (CLOCK_MONOTONIC, the same clock in every
process on Linux), so the coordinator can cut the records into wall-clock windows.

Coordinator <-> worker protocol (multiprocessing Connection over a socket pair, every wait bounded):
  ("prepare", target, payload)  -> ("ok",)
  ("start", n)                  -> ("ok",)       n coroutines in closed loop
  ("collect",)                  -> ("records", Records)   everything finished since the last collect
  ("stop", grace_s)             -> ("records", Records)   stop issuing, wait in-flight up to grace, cancel
  ("exit",)
"""

from __future__ import annotations

import os
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

GRPC_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Records:
    """Finished requests: start and end times (ns, perf_counter) of successes and of failures."""

    ok_start: array = field(default_factory=lambda: array("q"))
    ok_end: array = field(default_factory=lambda: array("q"))
    err_start: array = field(default_factory=lambda: array("q"))
    err_end: array = field(default_factory=lambda: array("q"))
    errors: Counter = field(default_factory=Counter)  # message -> count
    cpu_s: float = 0.0  # CPU time the worker used since the previous hand-over (user + system)

    def extend(self, other: "Records") -> None:
        self.ok_start.extend(other.ok_start)
        self.ok_end.extend(other.ok_end)
        self.err_start.extend(other.err_start)
        self.err_end.extend(other.err_end)
        self.errors.update(other.errors)
        self.cpu_s += other.cpu_s

    def take(self) -> "Records":
        out = Records(self.ok_start, self.ok_end, self.err_start, self.err_end, self.errors, self.cpu_s)
        self.ok_start, self.ok_end, self.err_start, self.err_end = array("q"), array("q"), array("q"), array("q")
        self.errors, self.cpu_s = Counter(), 0.0
        return out

    def __len__(self) -> int:
        return len(self.ok_end) + len(self.err_end)


# --------------------------------------------------------------------------------------------- payloads


@dataclass(frozen=True)
class Payload:
    """One encoded request: for gRPC the serialized ModelInferRequest, for HTTP the path, body and headers."""

    protocol: str
    model: str
    rows: int  # inferences per request (batch size)
    body: bytes
    path: str = ""
    headers: tuple[tuple[str, str], ...] = ()


def encode_payload(protocol: str, model: str, version: str, inputs: dict, outputs: list[str]) -> Payload:
    """Encode a request once (inputs: name -> numpy array with the batch dimension first)."""
    from tritonclient.utils import np_to_triton_dtype

    rows = int(next(iter(inputs.values())).shape[0]) if inputs else 1
    if protocol == "grpc":
        import numpy as np
        from tritonclient.grpc import service_pb2
        from tritonclient.utils import serialize_byte_tensor

        request = service_pb2.ModelInferRequest(model_name=model, model_version=version or "")
        for name, value in inputs.items():
            datatype = np_to_triton_dtype(value.dtype)
            request.inputs.extend([service_pb2.ModelInferRequest.InferInputTensor(
                name=name, datatype=datatype, shape=list(value.shape))])
            if datatype == "BYTES":
                packed = serialize_byte_tensor(value)
                raw = packed.item() if packed.size > 0 else b""
            else:
                raw = np.ascontiguousarray(value).tobytes()
            request.raw_input_contents.extend([raw])
        for name in outputs:
            request.outputs.extend([service_pb2.ModelInferRequest.InferRequestedOutputTensor(name=name)])
        return Payload("grpc", model, rows, request.SerializeToString())

    import tritonclient.http as httpclient

    tensors = []
    for name, value in inputs.items():
        t = httpclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        t.set_data_from_numpy(value, binary_data=True)
        tensors.append(t)
    requested = [httpclient.InferRequestedOutput(n, binary_data=True) for n in outputs]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(tensors, outputs=requested)
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    headers = [("Content-Type", "application/octet-stream")]
    if json_size is not None:
        headers.append(("Inference-Header-Content-Length", str(json_size)))
    return Payload("http", model, rows, bytes(body), path, tuple(headers))


# --------------------------------------------------------------------------------------------- worker


def _worker_main(conn, address: str, protocol: str, ssl: bool, request_timeout: float) -> None:
    """Entry point of a load process: an asyncio loop serving the coordinator's commands."""
    import asyncio

    try:
        asyncio.run(_Worker(conn, address, protocol, ssl, request_timeout).run())
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


class _Worker:
    def __init__(self, conn, address, protocol, ssl, request_timeout):
        self.conn = conn
        self.address = address
        self.protocol = protocol
        self.ssl = ssl
        self.timeout = request_timeout
        self.records = Records()
        self.payload: Payload | None = None
        self.tasks: list = []
        self.stopping = False
        self._cpu_mark = _cpu_now()

    async def run(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()

        def readable() -> None:
            try:
                inbox.put_nowait(self.conn.recv())
            except (EOFError, OSError):
                loop.remove_reader(self.conn.fileno())
                inbox.put_nowait(("exit",))

        loop.add_reader(self.conn.fileno(), readable)
        await self._open()
        try:
            while True:
                msg = await inbox.get()
                op = msg[0]
                if op == "exit":
                    break
                if op == "prepare":
                    self.payload = msg[1]
                    self.conn.send(("ok",))
                elif op == "start":
                    self.stopping = False
                    self.tasks = [asyncio.ensure_future(self._loop()) for _ in range(msg[1])]
                    self.conn.send(("ok",))
                elif op == "collect":
                    self.conn.send(("records", self._hand_over()))
                elif op == "stop":
                    await self._stop(msg[1])
                    self.conn.send(("records", self._hand_over()))
        finally:
            await self._stop(0.0)
            await self._close()

    def _hand_over(self) -> Records:
        now = _cpu_now()
        self.records.cpu_s += now - self._cpu_mark
        self._cpu_mark = now
        return self.records.take()

    async def _stop(self, grace: float) -> None:
        import asyncio

        self.stopping = True
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=max(grace, 0.0))
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        self.tasks = []

    async def _open(self) -> None:
        if self.protocol == "grpc":
            import grpc

            options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
            if self.ssl:
                self.channel = grpc.aio.secure_channel(self.address, grpc.ssl_channel_credentials(), options=options)
            else:
                self.channel = grpc.aio.insecure_channel(self.address, options=options)
            # No serializers: the prepared bytes go out as they are, the response stays bytes.
            self.call = self.channel.unary_unary(GRPC_INFER_METHOD)
            self.session = None
        else:
            import aiohttp

            scheme = "https" if self.ssl else "http"
            self.base = f"{scheme}://{self.address}"
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )

    async def _close(self) -> None:
        if self.protocol == "grpc":
            await self.channel.close()
        elif self.session is not None:
            await self.session.close()

    async def _loop(self) -> None:
        """One closed-loop client: send, wait for the answer, send again."""
        import asyncio

        payload = self.payload
        now = time.perf_counter_ns
        rec = self.records  # the same object for good: a hand-over swaps its arrays, not the object
        if self.protocol == "grpc":
            import grpc

            call, body, timeout = self.call, payload.body, self.timeout
            while not self.stopping:
                t0 = now()
                try:
                    await call(body, timeout=timeout)
                except grpc.aio.AioRpcError as exc:
                    t1 = now()
                    rec.err_start.append(t0)
                    rec.err_end.append(t1)
                    rec.errors[f"{exc.code().name}: {_short(exc.details())}"] += 1
                    await asyncio.sleep(0.05 if exc.code() == grpc.StatusCode.UNAVAILABLE else 0.001)
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # anything else still counts as a failed request, never a lost client
                    t1 = now()
                    rec.err_start.append(t0)
                    rec.err_end.append(t1)
                    rec.errors[f"{type(exc).__name__}: {_short(str(exc))}"] += 1
                    await asyncio.sleep(0.01)
                    continue
                t1 = now()
                rec.ok_start.append(t0)
                rec.ok_end.append(t1)
        else:
            url = self.base + payload.path
            body, headers = payload.body, dict(payload.headers)
            session = self.session
            while not self.stopping:
                t0 = now()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        data = await resp.read()
                        status = resp.status
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # aiohttp.ClientError, timeouts, OS errors: a failed request
                    t1 = now()
                    rec.err_start.append(t0)
                    rec.err_end.append(t1)
                    kind = "timeout" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__
                    rec.errors[f"{kind}: {_short(str(exc))}"] += 1
                    await asyncio.sleep(0.05)
                    continue
                t1 = now()
                if status == 200:
                    rec.ok_start.append(t0)
                    rec.ok_end.append(t1)
                else:
                    rec.err_start.append(t0)
                    rec.err_end.append(t1)
                    rec.errors[f"HTTP {status}: {_short(data[:300].decode(errors='replace'))}"] += 1
                    await asyncio.sleep(0.001)


def _cpu_now() -> float:
    t = os.times()
    return t.user + t.system


def _short(text: str | None, limit: int = 160) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------- coordinator side


class LoadGeneratorError(RuntimeError):
    """A load process died or stopped answering the coordinator (a fault of this machine, not of the server)."""


class LoadGenerator:
    """`processes` worker processes driving one endpoint; use as a context manager (workers always end)."""

    def __init__(self, protocol: str, address: str, *, ssl: bool = False, processes: int = 2,
                 request_timeout: float = 10.0, reply_timeout: float = 15.0):
        self.protocol = protocol
        self.address = address
        self.ssl = ssl
        self.n = processes
        self.request_timeout = request_timeout
        self.reply_timeout = reply_timeout
        self._workers: list[tuple[object, object]] = []  # (Popen, Connection)
        self._active: list[int] = []  # worker indices running the current level

    def __enter__(self) -> "LoadGenerator":
        self.start_processes()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def kind(self) -> str:
        return "grpc.aio" if self.protocol == "grpc" else "aiohttp"

    def start_processes(self) -> None:
        """Start the workers as `python -m smoke_tests._worker` children (not multiprocessing's spawn, which
        re-imports the caller's __main__), each talking over its own socket pair."""
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        for i in range(self.n):
            parent, child = socket.socketpair()
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "smoke_tests._worker", str(child.fileno()), self.address, self.protocol,
                     "1" if self.ssl else "0", repr(self.request_timeout)],
                    pass_fds=(child.fileno(),),
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            finally:
                child.close()
            self._workers.append((proc, Connection(parent.detach())))

    def _send(self, i: int, msg) -> None:
        proc, conn = self._workers[i]
        try:
            conn.send(msg)
        except (BrokenPipeError, OSError) as exc:
            raise LoadGeneratorError(f"load process {i} is gone (exit code {proc.poll()}): {exc}") from None

    def _recv(self, i: int, timeout: float | None = None):
        proc, conn = self._workers[i]
        wait = self.reply_timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            try:
                if conn.poll(max(0.0, min(left, 0.5))):
                    return conn.recv()
            except (EOFError, OSError) as exc:
                raise LoadGeneratorError(f"load process {i} is gone (exit code {proc.poll()}): {exc}") from None
            if proc.poll() is not None:
                raise LoadGeneratorError(f"load process {i} exited (code {proc.returncode})")
            if left <= 0:
                raise LoadGeneratorError(f"load process {i} did not answer within {wait:g} s")

    def _all(self, indices, msg, timeout: float | None = None) -> list:
        for i in indices:
            self._send(i, msg)
        return [self._recv(i, timeout) for i in indices]

    def prepare(self, payload: Payload) -> None:
        self._all(range(self.n), ("prepare", payload))

    def start(self, concurrency: int) -> None:
        """Run `concurrency` closed-loop clients spread over min(processes, concurrency) processes."""
        procs = min(self.n, concurrency)
        share = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
        self._active = list(range(procs))
        for i, k in enumerate(share):
            self._send(i, ("start", k))
        for i in self._active:
            self._recv(i)

    def collect(self) -> Records:
        out = Records()
        for reply in self._all(self._active, ("collect",)):
            out.extend(reply[1])
        return out

    def stop(self, grace: float) -> Records:
        """Stop the level: in-flight requests get up to `grace` s, then are cancelled. Returns the rest."""
        out = Records()
        for reply in self._all(self._active, ("stop", grace), timeout=grace + self.reply_timeout):
            out.extend(reply[1])
        self._active = []
        return out

    def close(self) -> None:
        """End every worker: ask, wait briefly, then terminate and kill. Never leaves a process behind."""
        import subprocess

        for proc, conn in self._workers:
            try:
                conn.send(("exit",))
            except Exception:
                pass
        deadline = time.monotonic() + 5.0
        for proc, conn in self._workers:
            try:
                proc.wait(max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc, conn in self._workers:
            for signal_it in (proc.terminate, proc.kill):
                if proc.poll() is not None:
                    break
                signal_it()
                try:
                    proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    pass
            try:
                conn.close()
            except Exception:
                pass
        self._workers = []
