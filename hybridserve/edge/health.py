"""Per-host health of edge sites, seen from the hub (issue 15, part 4): healthy, down, or SLO missed.

`check_hosts` probes each host's Triton over the VPN (live, ready, every model ready) and, when it serves,
runs a short smoke gate against it with the site's SLOs (edge SLOs: p99 at low concurrency). It is the
function behind a `hybridserve edge status --stack NAME` (the stack gives the hosts, addresses and SLOs).

The gate runs as `python -m smoke_tests` in a subprocess, bounded by a timeout: one stuck host never holds the
others up, and the verdict is the gate's own exit code and JSON report (no timing judged here).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))
State = Literal["healthy", "down", "slo_missed"]


@dataclass(frozen=True)
class HostTarget:
    site: str
    host: str
    address: str
    models: tuple[str, ...]
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    slos: Mapping[str, Any] = field(default_factory=dict)  # the gate spec (smoke_tests --slos): {"slos": {...}}


@dataclass(frozen=True)
class HostHealth:
    site: str
    host: str
    address: str
    state: State
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"site": self.site, "host": self.host, "address": self.address, "state": self.state, "detail": self.detail}


def _ready(url: str, timeout: float) -> bool:
    try:
        with _http.open(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


# How long the gate waits for the host's Triton and models (its --wait-ready): the probes found them ready just before.
GATE_WAIT_READY_S = 5.0


def _gate_profile(profile: str, concurrency: str, window: float | None):
    from smoke_tests.options import profile_of

    levels = tuple(sorted({int(c) for c in concurrency.split(",") if c.strip()}))
    return profile_of(profile, window_s=window, concurrencies=levels)


def gate_seconds(target: HostTarget, *, concurrency: str = "1", profile: str = "quick", window: float | None = None) -> tuple[float, float]:
    """(least, most) seconds `check_host`'s gate on `target` takes once started, from the code it runs
    (smoke_tests.options.run_seconds, the profile built as its command line builds it): every model at the levels
    `concurrency` and its SLO's, the readiness wait; no correctness check (--no-correctness)."""
    from smoke_tests.gatespec import parse_gate_spec
    from smoke_tests.options import resolve_slos, run_seconds

    spec = parse_gate_spec({"models": list(target.models) or None, **dict(target.slos)})
    slos = [resolve_slos([m.name], spec.slos, {})[m.name] for m in spec.models or ()]
    return run_seconds(_gate_profile(profile, concurrency, window), slos, GATE_WAIT_READY_S)


def check_host(target: HostTarget, *, gate: bool = True, probe_timeout: float = 5.0, gate_timeout: float = 300.0,
               concurrency: str = "1", profile: str = "quick", window: float | None = None) -> HostHealth:
    """One host's state. down: Triton unreachable, not ready, or a model not ready; slo_missed: the gate's SLO
    check failed (exit 1); healthy otherwise. `gate=False` only probes readiness. `window`: the gate's
    measurement window in seconds (None: the profile's)."""
    def result(state: State, detail: str) -> HostHealth:
        return HostHealth(target.site, target.host, target.address, state, detail)

    base = f"http://{target.address}:{target.http_port}"
    if not _ready(f"{base}/v2/health/live", probe_timeout):
        return result("down", f"Triton at {base} does not answer")
    missing = [m for m in target.models if not _ready(f"{base}/v2/models/{m}/ready", probe_timeout)]
    if missing:
        return result("down", f"not ready: {', '.join(missing)}")
    if not gate:
        return result("healthy", f"{len(target.models)} model(s) ready (SLOs not checked)")
    with tempfile.TemporaryDirectory(prefix="hybridserve-edge-health-") as tmp:
        report_path = Path(tmp) / "smoke.json"
        spec = {"models": list(target.models), **dict(target.slos)}
        argv = [sys.executable, "-m", "smoke_tests", "--url", f"{target.address}:{target.grpc_port}",
                "--slos", json.dumps(spec), "--no-correctness", "--profile", profile, "--concurrency", concurrency,
                "--client-processes", "1", "--wait-ready", f"{GATE_WAIT_READY_S:g}", "--json", str(report_path),
                *(["--window", f"{window:g}"] if window is not None else [])]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=gate_timeout)
        except subprocess.TimeoutExpired:
            return result("down", f"the smoke gate did not finish within {gate_timeout:.0f} s")
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            report = {}
    messages = [v.get("message", "") for v in report.get("violations", [])]
    if proc.returncode == 0:
        return result("healthy", f"{len(target.models)} model(s) ready, SLOs met")
    if proc.returncode == 1:
        return result("slo_missed", "; ".join(messages) or "SLO violated")
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return result("down", "; ".join(messages) or f"smoke gate exit {proc.returncode}: {tail}")


def check_hosts(targets: Sequence[HostTarget], *, parallel: int = 4, **kwargs: Any) -> list[HostHealth]:
    """Every host's state, in the order given (a few at a time: each gate loads its host, not this machine much)."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets)))) as pool:
        return list(pool.map(lambda t: check_host(t, **kwargs), targets))


def health_table(results: Sequence[HostHealth]):
    """A rich Table: site, host, address, state (colour), detail."""
    from rich.table import Table

    table = Table(title="edge hosts", title_justify="left")
    for col in ("site", "host", "address", "state", "detail"):
        table.add_column(col, overflow="fold")
    style = {"healthy": "green", "down": "red", "slo_missed": "yellow"}
    for r in results:
        table.add_row(r.site, r.host, r.address, f"[{style[r.state]}]{r.state.replace('_', ' ')}[/]", r.detail)
    return table
