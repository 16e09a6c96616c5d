"""The edge host's configuration (/etc/hybridserve-edge/config.json) and its file layout under a root.

Standard library only: the installer runs from the unpacked bundle with the host's python3 before any
dependency is installed, and the Pulumi component renders the same JSON at program time.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hybridserve.errors import UserError

CONFIG_FORMAT = 1
SERVICE_USER = "hybridserve-edge"
# SeaweedFS's own default ports (weed server -h), bound to loopback only: the cache is never reachable
# from the network, only Triton's ports are.
DEFAULT_CACHE_PORTS = {
    "master": 9333,
    "master.grpc": 19333,
    "volume": 8080,
    "volume.grpc": 18080,
    "filer": 8888,
    "filer.grpc": 18888,
    "s3": 8333,
    "s3.grpc": 18333,
}
_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
# 64 for the declared version (the schema's bound) plus "-" and the 12-digit content digest the bundle appends.
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,76}")


@dataclass(frozen=True)
class HubSource:
    """The published repository the cache is filled from: bucket/prefix at an S3 endpoint (None: AWS)."""

    bucket: str
    prefix: str = "models"
    region: str = "us-east-1"
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    sse: str = "aws:kms"  # how the hub stores objects; a reader only needs kms:Decrypt on AWS


@dataclass(frozen=True)
class EdgeConfig:
    """Everything the runtime on one host needs. Ports bind `listen_address`; the cache binds loopback."""

    site: str
    host: str
    models: tuple[str, ...]
    hub: HubSource
    inference_cidrs: tuple[str, ...]
    hub_cidrs: tuple[str, ...]  # SSH and metrics are admitted from here only
    ssh_cidrs: tuple[str, ...] = ()  # and SSH from here too: the deploy runner (or its jump host), the site's admins
    listen_address: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    ssh_port: int = 22
    cache_bucket: str = "hybridserve-edge-cache"
    cache_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CACHE_PORTS))
    fill_interval_minutes: int = 15
    bandwidth_limit_mbps: float | None = None  # megabits per second for the hub download; None: unlimited
    gpu: bool = False
    user: str = SERVICE_USER
    # The gate spec (smoke_tests --slos): edge SLOs are mostly p99 latency at low concurrency.
    slos: dict[str, Any] = field(default_factory=dict)
    startup_timeout: float = 180.0

    # ---- JSON

    def to_json(self) -> str:
        data = asdict(self)
        data["models"] = list(self.models)
        data["inference_cidrs"] = list(self.inference_cidrs)
        data["hub_cidrs"] = list(self.hub_cidrs)
        data["ssh_cidrs"] = list(self.ssh_cidrs)
        return json.dumps({"format": CONFIG_FORMAT, **data}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str) -> "EdgeConfig":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UserError(f"{source}: not valid JSON ({exc})", exit_code=2) from None
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a JSON object with the edge host's settings", exit_code=2)
        data = dict(data)
        fmt = data.pop("format", CONFIG_FORMAT)
        if fmt != CONFIG_FORMAT:
            raise UserError(f"{source}: format {fmt!r} is not supported; this runtime reads format {CONFIG_FORMAT}", exit_code=2)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}", exit_code=2)
        hub = data.get("hub")
        if not isinstance(hub, dict) or not isinstance(hub.get("bucket"), str):
            raise UserError(f"{source}: key 'hub' must be an object with at least 'bucket' (and prefix, region, endpoint_url)", exit_code=2)
        hub_unknown = sorted(set(hub) - set(HubSource.__dataclass_fields__))
        if hub_unknown:
            raise UserError(f"{source}: unknown key(s) hub.{', hub.'.join(hub_unknown)}", exit_code=2)
        data["hub"] = HubSource(**hub)
        for key in ("models", "inference_cidrs", "hub_cidrs"):
            if not isinstance(data.get(key), list):
                raise UserError(f"{source}: key {key!r} must be a list", exit_code=2)
            data[key] = tuple(data[key])
        if "ssh_cidrs" in data:  # absent in configs written before it existed
            if not isinstance(data["ssh_cidrs"], list):
                raise UserError(f"{source}: key 'ssh_cidrs' must be a list", exit_code=2)
            data["ssh_cidrs"] = tuple(data["ssh_cidrs"])
        try:
            config = cls(**data)
        except TypeError as exc:  # a required key missing
            raise UserError(f"{source}: {exc}".replace("__init__() ", ""), exit_code=2) from None
        config.check(source)
        return config

    # ---- checks

    def problems(self) -> list[str]:
        bad = []
        for key in ("site", "host"):
            if not _NAME.fullmatch(getattr(self, key)):
                bad.append(f"{key} {getattr(self, key)!r}: lowercase letters, digits and '-', starting with a letter, at most 31")
        if not _NAME.fullmatch(self.user):
            bad.append(f"user {self.user!r}: a system user name (lowercase letters, digits, '-')")
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            bad.append("models: at least one model name (the site's variants as published)")
        for key in ("inference_cidrs", "hub_cidrs", "ssh_cidrs"):
            values = getattr(self, key)
            if not values and key != "ssh_cidrs":
                bad.append(f"{key}: at least one network (CIDR); an empty list would admit no one")
            for cidr in values:
                try:
                    net = ipaddress.ip_network(cidr, strict=True)
                except ValueError as exc:
                    bad.append(f"{key}: {cidr!r} is not a network in CIDR form ({exc})")
                    continue
                if net.prefixlen == 0:
                    bad.append(f"{key}: {cidr} admits the whole Internet; name the networks that may connect")
        ports = {"http_port": self.http_port, "grpc_port": self.grpc_port, "metrics_port": self.metrics_port}
        ports.update({f"cache_ports.{k}": v for k, v in self.cache_ports.items()})
        missing = sorted(set(DEFAULT_CACHE_PORTS) - set(self.cache_ports))
        if missing:
            bad.append(f"cache_ports: missing {', '.join(missing)}")
        for key, port in ports.items():
            if not isinstance(port, int) or not 1 <= port <= 65535:
                bad.append(f"{key} {port!r}: a TCP port, 1-65535")
        seen: dict[int, str] = {}
        for key, port in ports.items():
            if port in seen:
                bad.append(f"{key} {port}: also used by {seen[port]}")
            seen.setdefault(port, key)
        if not isinstance(self.fill_interval_minutes, int) or self.fill_interval_minutes < 1:
            bad.append(f"fill_interval_minutes {self.fill_interval_minutes!r}: at least 1")
        if self.bandwidth_limit_mbps is not None and not (isinstance(self.bandwidth_limit_mbps, (int, float)) and self.bandwidth_limit_mbps > 0):
            bad.append(f"bandwidth_limit_mbps {self.bandwidth_limit_mbps!r}: a positive number of megabits per second, or null")
        try:
            ipaddress.ip_address(self.listen_address)
        except ValueError:
            bad.append(f"listen_address {self.listen_address!r}: an IP address (0.0.0.0: every interface, firewalled)")
        return bad

    def check(self, source: str) -> None:
        bad = self.problems()
        if bad:
            raise UserError(f"{source}: the edge host configuration has {len(bad)} problem(s):", exit_code=2, details=bad)


def check_version(version: str, source: str = "--version") -> str:
    if not _VERSION.fullmatch(version or ""):
        raise UserError(f"{source} {version!r}: a runtime version is letters, digits and . _ + - (e.g. 0.1.0-3f2a9c1d)", exit_code=2)
    return version


@dataclass(frozen=True)
class Layout:
    """Where everything lives under `root` ("/" on a host; a temporary directory in the tests)."""

    root: Path

    def at(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    @property
    def opt(self) -> Path:
        return self.at("/opt/hybridserve-edge")

    def version_dir(self, version: str) -> Path:
        return self.opt / version

    @property
    def current(self) -> Path:
        return self.opt / "current"

    @property
    def etc(self) -> Path:
        return self.at("/etc/hybridserve-edge")

    @property
    def config_file(self) -> Path:
        return self.etc / "config.json"

    @property
    def nft_file(self) -> Path:
        return self.etc / "nftables.nft"

    @property
    def state(self) -> Path:
        return self.at("/var/lib/hybridserve-edge")

    @property
    def logs(self) -> Path:
        return self.at("/var/log/hybridserve-edge")

    @property
    def units(self) -> Path:
        return self.at("/etc/systemd/system")

    @property
    def logrotate_file(self) -> Path:
        return self.at("/etc/logrotate.d/hybridserve-edge")

    @property
    def passwd_record(self) -> Path:
        """Under a temporary root the service user is recorded here (passwd format) instead of created."""
        return self.at("/etc/passwd")

    @property
    def run_dir(self) -> Path:
        """The supervised processes' record (--no-systemd), read by the local plane's stop/status helpers."""
        return self.state / "run"

    @property
    def is_system(self) -> bool:
        return self.root.resolve() == Path("/")

    def current_version(self) -> str | None:
        try:
            return Path(self.current.readlink()).name
        except (FileNotFoundError, OSError):
            return None

    @property
    def previous(self) -> Path:
        """What a rollback goes back to: the version that served before the last successful change."""
        return self.opt / "previous"

    def previous_version(self) -> str | None:
        try:
            return Path(self.previous.readlink()).name
        except (FileNotFoundError, OSError):
            return None

    def saved_host_files(self, version: str) -> Path:
        """The config, units, firewall and log rotation files `version` served with (restored on a rollback)."""
        return self.version_dir(version) / "host"


def read_config(layout: Layout) -> EdgeConfig:
    path = layout.config_file
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: no edge configuration; run `python -m hybridserve.edge install --root {layout.root} ...` first", exit_code=2) from None
    return EdgeConfig.from_json(text, source=str(path))
