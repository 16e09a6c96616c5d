"""Stack values for tests: every stack must say how the deployer reaches both clusters (deploy_access)."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

DEPLOY_ACCESS = {"via": "public_endpoint", "runner_cidrs": ["198.51.100.0/24"]}
_PATHS = (("hybridserve:aws", "eks"), ("hybridserve:openstack", "magnum"))


def reachable(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with a public deploy path to both clusters where they set none (JSON text stays JSON text)."""
    out = copy.deepcopy(values)
    for key, cluster in _PATHS:
        section = out.get(key, {})
        as_text = isinstance(section, str)
        if as_text:
            try:
                section = json.loads(section)
            except json.JSONDecodeError:
                continue  # a malformed value is the test's subject: leave it
        if not isinstance(section, dict):
            continue
        inner = section.setdefault(cluster, {})
        if isinstance(inner, dict):
            inner.setdefault("deploy_access", copy.deepcopy(DEPLOY_ACCESS))
        out[key] = json.dumps(section) if as_text else section
    return out


@contextlib.contextmanager
def triton_health_stub(ready_models: set[str], host: str = "127.0.0.1"):
    """A real HTTP server on 127.0.0.1 answering Triton's health API as a host serving `ready_models` would:
    /v2/health/live and /v2/health/ready 200, /v2/models/<m>/ready 200 for those models, 400 for others (as
    Triton does for a model it does not serve). Yields its port."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the stdlib's name)
            path = self.path.split("?")[0]
            parts = path.strip("/").split("/")
            ok = path in ("/v2/health/live", "/v2/health/ready") or (
                len(parts) == 4 and parts[:2] == ["v2", "models"] and parts[3] == "ready" and parts[2] in ready_models)
            self.send_response(200 if ok else 400)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def silent_port(host: str = "127.0.0.1", port: int = 0):
    """A port that accepts connections (the kernel completes them from the backlog) and never answers: a host
    whose Triton hangs, which a probe must give up on."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, port))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
