"""Triton's model repository API (explicit model control), each call bounded by a timeout.

The candidate is a model of its own name (`<model>__candidate`), loaded with the repository API's
`config` + `file:<version>/<name>` load parameters from the bytes published in the store: it is served
beside the model, not as one of its versions, so no unversioned request can reach it before its gate.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from hybridserve.errors import UserError

CANDIDATE_SUFFIX = "__candidate"


def candidate_name(model: str) -> str:
    return model + CANDIDATE_SUFFIX


class StepFailed(UserError):
    """A step of the promotion failed or timed out; the previous state was restored (exit 3)."""

    def __init__(self, message: str, *, details=None):
        super().__init__(message, exit_code=3, details=details or [])


@dataclass
class Triton:
    """tritonclient.http on `url` (host:port); every call waits at most `timeout` seconds unless told."""

    url: str
    timeout: float = 30.0

    def client(self, timeout: float | None = None):
        import tritonclient.http as httpclient

        t = self.timeout if timeout is None else timeout
        return httpclient.InferenceServerClient(self.url, connection_timeout=min(t, 30.0), network_timeout=t)

    def _call(self, what: str, fn, timeout: float | None = None):
        from tritonclient.utils import InferenceServerException

        client = self.client(timeout)
        try:
            return fn(client)
        except InferenceServerException as exc:
            raise StepFailed(f"Triton at {self.url}: {what}: {exc.message()}") from None
        except (OSError, TimeoutError) as exc:  # gevent/geventhttpclient raise socket errors and timeouts
            raise StepFailed(f"Triton at {self.url}: {what}: {type(exc).__name__}: {exc or 'timed out'}") from None
        finally:
            client.close()

    def reachable(self) -> bool:
        try:
            return bool(self._call("health", lambda c: c.is_server_live(), timeout=5))
        except StepFailed:
            return False

    def index(self) -> list[dict]:
        return self._call("repository index", lambda c: c.get_model_repository_index())

    def ready_versions(self, model: str) -> set[int]:
        return {int(e["version"]) for e in self.index() if e.get("name") == model and e.get("state") == "READY" and e.get("version")}

    def is_ready(self, model: str, version: str = "") -> bool:
        return bool(self._call(f"{model} ready", lambda c: c.is_model_ready(model, version)))

    def config(self, model: str) -> dict:
        return self._call(f"{model} config", lambda c: c.get_model_config(model))

    def load(self, model: str, *, timeout: float, config: dict | None = None, files: dict[str, bytes] | None = None) -> None:
        """Load (or reload) `model`; with `config`/`files` from those instead of the repository (an override)."""
        kwargs = {}
        if config is not None:
            kwargs["config"] = json.dumps(config)
        if files:
            kwargs["files"] = files
        self._call(f"loading {model}", lambda c: c.load_model(model, **kwargs), timeout=timeout)

    def unload(self, model: str, *, timeout: float) -> None:
        """Unload `model` and wait (bounded) until it serves nothing; in-flight requests finish first."""
        self._call(f"unloading {model}", lambda c: c.unload_model(model), timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_ready(model):
                return
            time.sleep(0.2)
        raise StepFailed(f"Triton at {self.url}: {model} still ready {timeout:g} s after it was unloaded")

    def wait_versions(self, model: str, want: set[int], *, timeout: float) -> None:
        """Wait until exactly `want` versions of `model` are READY (the others unloaded, drained first)."""
        deadline = time.monotonic() + timeout
        have: set[int] = set()
        while time.monotonic() < deadline:
            have = self.ready_versions(model)
            if have == want:
                return
            time.sleep(0.2)
        raise StepFailed(
            f"Triton at {self.url}: {model} has versions {sorted(have) or 'none'} ready, expected {sorted(want)} "
            f"within {timeout:g} s"
        )
