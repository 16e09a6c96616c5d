"""Control calls to a Triton endpoint (health, metadata, config, statistics, single inferences), every one bounded.

One small interface over tritonclient's gRPC and HTTP clients; failures are classified into the gate's exit
codes: no connection / deadline exceeded -> UNREACHABLE (3), unknown model -> NOT_READY (4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smoke_tests.errors import ExitCode, SmokeFatal

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

_UNREACHABLE_GRPC = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}


class EndpointError(Exception):
    """A control call failed; `code` is the exit code it maps to (None: the server answered with an error)."""

    def __init__(self, message: str, code: ExitCode | None, status: str | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass
class ModelStats:
    """Triton's cumulative statistics of one model version (counts and nanoseconds); subtract two for a window."""

    inference_count: int = 0
    execution_count: int = 0
    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    queue_count: int = 0
    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    compute_count: int = 0
    busy_ns: int = 0  # sum over batch executions of compute input + infer + output: instance busy time
    batches: dict[int, int] = field(default_factory=dict)  # batch size -> executions

    def __sub__(self, other: "ModelStats") -> "ModelStats":
        out = ModelStats(**{k: getattr(self, k) - getattr(other, k) for k in _COUNTERS})
        out.batches = {b: n - other.batches.get(b, 0) for b, n in self.batches.items() if n - other.batches.get(b, 0)}
        return out

    def __add__(self, other: "ModelStats") -> "ModelStats":
        out = ModelStats(**{k: getattr(self, k) + getattr(other, k) for k in _COUNTERS})
        out.batches = dict(self.batches)
        for b, n in other.batches.items():
            out.batches[b] = out.batches.get(b, 0) + n
        return out


_COUNTERS = (
    "inference_count", "execution_count", "success_count", "success_ns", "fail_count", "queue_count", "queue_ns",
    "compute_input_ns", "compute_infer_ns", "compute_output_ns", "compute_count", "busy_ns",
)


def _i(value: Any) -> int:
    return int(value or 0)


def _stats_from_json(entry: dict) -> ModelStats:
    inf = entry.get("inference_stats", {}) or {}

    def pair(key):
        d = inf.get(key, {}) or {}
        return _i(d.get("count")), _i(d.get("ns"))

    s = ModelStats()
    s.inference_count = _i(entry.get("inference_count"))
    s.execution_count = _i(entry.get("execution_count"))
    s.success_count, s.success_ns = pair("success")
    s.fail_count, _ = pair("fail")
    s.queue_count, s.queue_ns = pair("queue")
    s.compute_count, s.compute_input_ns = pair("compute_input")
    _, s.compute_infer_ns = pair("compute_infer")
    _, s.compute_output_ns = pair("compute_output")
    for b in entry.get("batch_stats", []) or []:
        size = _i(b.get("batch_size"))
        execs = _i((b.get("compute_infer") or {}).get("count"))
        s.batches[size] = s.batches.get(size, 0) + execs
        s.busy_ns += sum(_i((b.get(k) or {}).get("ns")) for k in ("compute_input", "compute_infer", "compute_output"))
    return s


class Endpoint:
    """Synchronous control client for `host:port` over "grpc" or "http"; each call is bounded by `timeout` s."""

    def __init__(self, protocol: str, address: str, *, ssl: bool = False, timeout: float = 5.0, infer_timeout: float = 30.0):
        self.protocol = protocol
        self.address = address
        self.ssl = ssl
        self.timeout = timeout
        self.infer_timeout = infer_timeout
        self._client = None
        self._infer_client = None

    # -- plumbing -------------------------------------------------------------------------------------

    def _make(self, timeout: float):
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            return grpcclient.InferenceServerClient(self.address, ssl=self.ssl)
        import tritonclient.http as httpclient

        return httpclient.InferenceServerClient(
            self.address, ssl=self.ssl, connection_timeout=timeout, network_timeout=timeout, concurrency=1
        )

    @property
    def client(self):
        if self._client is None:
            self._client = self._make(self.timeout)
        return self._client

    def close(self) -> None:
        for c in (self._client, self._infer_client):
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        self._client = self._infer_client = None

    def __enter__(self) -> "Endpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, what: str, fn, *args, infer: bool = False, **kwargs):
        """Run one client call; map every failure to an EndpointError with a clear message."""
        timeout = self.infer_timeout if infer else self.timeout
        if self.protocol == "grpc":
            kwargs["client_timeout"] = timeout
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise self._classify(what, exc, timeout) from None
        except BaseException as exc:  # gevent.Timeout (http client) derives from BaseException
            if type(exc).__name__ == "Timeout":
                raise EndpointError(f"{what}: no answer from {self.address} within {timeout:g} s", ExitCode.UNREACHABLE) from None
            raise

    def _classify(self, what: str, exc: Exception, timeout: float) -> EndpointError:
        from tritonclient.utils import InferenceServerException

        where = f"{self.protocol}://{self.address}"
        if isinstance(exc, InferenceServerException):
            status = str(exc.status()) if exc.status() is not None else ""
            text = exc.message() or str(exc) or status
            if status in _UNREACHABLE_GRPC:
                if status == "StatusCode.DEADLINE_EXCEEDED":
                    return EndpointError(f"{what}: no answer from {where} within {timeout:g} s", ExitCode.UNREACHABLE, status)
                return EndpointError(f"{what}: cannot reach {where} ({_short(text)})", ExitCode.UNREACHABLE, status)
            if status in ("StatusCode.NOT_FOUND", "404") or "unknown model" in text.lower():
                return EndpointError(f"{what}: {_short(text)}", ExitCode.NOT_READY, status)
            return EndpointError(f"{what}: {_short(text)}", None, status)
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            reason = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
            if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
                return EndpointError(f"{what}: no answer from {where} within {timeout:g} s", ExitCode.UNREACHABLE)
            return EndpointError(f"{what}: cannot reach {where} ({reason or type(exc).__name__})", ExitCode.UNREACHABLE)
        return EndpointError(f"{what}: {type(exc).__name__}: {_short(str(exc))}", None)

    def _json(self, response) -> Any:
        if self.protocol == "grpc":
            from google.protobuf.json_format import MessageToDict

            return MessageToDict(response, preserving_proto_field_name=True)
        return response

    # -- health -------------------------------------------------------------------------------------

    def server_metadata(self) -> dict:
        return self._json(self._call("server metadata", self.client.get_server_metadata))

    def server_live(self) -> bool:
        return bool(self._call("server liveness", self.client.is_server_live))

    def server_ready(self) -> bool:
        return bool(self._call("server readiness", self.client.is_server_ready))

    def wait_server(self, wait_s: float) -> dict:
        """Server metadata once live and ready; fails with 3 (unreachable) or 4 (not ready) after `wait_s`."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                if not self.server_live():
                    raise EndpointError(f"server at {self.address} answers but is not live", ExitCode.NOT_READY)
                if not self.server_ready():
                    raise EndpointError(
                        f"server at {self.address} is live but not ready (a model failed to load, or it is still starting)",
                        ExitCode.NOT_READY,
                    )
                return self.server_metadata()
            except EndpointError as exc:
                if time.monotonic() >= deadline:
                    code = exc.code or ExitCode.UNREACHABLE
                    hint = f" (waited {wait_s:g} s)" if wait_s else ""
                    raise SmokeFatal(f"{exc}{hint}", code) from None
                time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    # -- host metrics -------------------------------------------------------------------------------

    def host_cpu(self, metrics_url: str | None) -> float | None:
        """Triton's `nv_cpu_utilization` gauge (0..1, the server host's CPU), or None if unavailable.

        Optional evidence for the saturation verdict: a failure here never fails the run.
        """
        if not metrics_url:
            return None
        import urllib.request

        url = metrics_url.strip().rstrip("/")
        if "://" not in url:
            url = "http://" + url
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url + "/metrics", timeout=self.timeout) as response:
                text = response.read(4_000_000).decode(errors="replace")
        except Exception:
            return None
        for line in text.splitlines():
            if line.startswith("nv_cpu_utilization"):
                try:
                    return float(line.split()[-1])
                except ValueError:
                    return None
        return None

    # -- models -------------------------------------------------------------------------------------

    def repository_index(self) -> list[dict]:
        raw = self._call("model repository index", self.client.get_model_repository_index)
        data = self._json(raw)
        if isinstance(data, dict):
            data = data.get("models", [])
        return [dict(m) for m in data or []]

    def model_ready(self, name: str, version: str = "") -> bool:
        return bool(self._call(f"model {name} readiness", self.client.is_model_ready, name, version or ""))

    def model_metadata(self, name: str, version: str = "") -> dict:
        data = self._json(self._call(f"model {name} metadata", self.client.get_model_metadata, name, version or ""))
        for key in ("inputs", "outputs"):
            for t in data.get(key, []) or []:
                t["shape"] = [int(d) for d in t.get("shape", [])]
        return data

    def model_config(self, name: str, version: str = "") -> dict:
        data = self._json(self._call(f"model {name} config", self.client.get_model_config, name, version or ""))
        return data.get("config", data) if isinstance(data, dict) else {}

    def statistics(self, name: str, version: str = "") -> ModelStats:
        data = self._json(self._call(f"model {name} statistics", self.client.get_inference_statistics, name, version or ""))
        entries = data.get("model_stats", []) if isinstance(data, dict) else []
        total = ModelStats()
        for entry in entries:
            if entry.get("name") == name and (not version or str(entry.get("version")) == str(version)):
                total = total + _stats_from_json(entry)
        return total

    def infer(self, name: str, version: str, inputs: dict[str, "np.ndarray"], outputs: list[str]) -> dict[str, "np.ndarray"]:
        """One inference; outputs as numpy arrays (None for an output the server did not return)."""
        from tritonclient.utils import np_to_triton_dtype

        if self.protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
        if self._infer_client is None:
            self._infer_client = self._make(self.infer_timeout)
        tensors = []
        for key, value in inputs.items():
            t = mod.InferInput(key, list(value.shape), np_to_triton_dtype(value.dtype))
            t.set_data_from_numpy(value)
            tensors.append(t)
        requested = [mod.InferRequestedOutput(k) for k in outputs]
        result = self._call(f"model {name} inference", self._infer_client.infer, name, tensors,
                            model_version=version or "", outputs=requested, infer=True)
        return {k: result.as_numpy(k) for k in outputs}


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
