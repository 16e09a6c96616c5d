"""The edge runtime's steps: install, apply (install + switch + start + health, rollback), start, stop,
status, uninstall, and the services themselves (`run cache|triton|fill`) and the per-host gate.

Two ways to run the services, one set of command lines (render.service_argv):
- systemd (a host): the units in /etc/systemd/system run them as the dedicated user;
- supervised (`--no-systemd`, a temporary root in the tests): they run as the local plane runs its servers
  (hybridserve/local/process.py, own process group, bounded stop), recorded in <state>/run/plane.json so
  `stop` and `status` find them from another process (the local plane's record helpers).

The install path (install, apply up to the switch) uses the standard library only: it runs from the unpacked
bundle with the host's python3. Everything that needs the dependencies runs under the installed launcher.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hybridserve.edge import render
from hybridserve.edge.bundle import read_bundle_version
from hybridserve.edge.config import EdgeConfig, Layout, check_version, read_config
from hybridserve.errors import UserError

EXIT_UNHEALTHY = 3
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback probes ignore HTTP(S)_PROXY


def say(line: str) -> None:
    print(f"hybridserve-edge: {line}", flush=True)


# --------------------------------------------------------------------------------------------- files


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write atomically when the content or mode differs; True when something changed."""
    data = text.encode()
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def switch_current(layout: Layout, version: str | None, *, link: Path | None = None) -> None:
    """Point `current` (or `link`) at `version` in one rename (a reader sees the old or the new target, never none)."""
    link = link or layout.current
    if version is None:
        link.unlink(missing_ok=True)
        return
    tmp = layout.opt / f".{link.name}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(version)  # relative: the tree stays valid when the root is moved (tests, images)
    os.replace(tmp, link)


# The files a version serves with, besides its code: kept with the version, restored on a rollback (a runtime
# refuses config keys it does not know, so going back to its code means going back to its config too).
def host_files(layout: Layout) -> dict[str, Path]:
    files = {"config.json": layout.config_file, "nftables.nft": layout.nft_file, "logrotate": layout.logrotate_file}
    files.update({f"units/{name}": layout.units / name for name in render.UNITS})
    return files


def snapshot_host_files(layout: Layout, dest: Path) -> None:
    """Copy the host files (modes kept) into `dest` (0700: the config holds the hub's read key), replacing it."""
    stage = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True, mode=0o700)
    for name, path in host_files(layout).items():
        if path.is_file():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, stage / name)
    shutil.rmtree(dest, ignore_errors=True)
    stage.rename(dest)


def snapshot_before(layout: Layout, before: Path) -> bool:
    """Record the files what runs serves with, before a change overwrites them. A `before` left by an interrupted
    change (fill cancelled, SSH dropped) is kept: the files in place are then the unfinished change's, and the
    leftover is what Triton actually serves (taking it again would make the retry see no change and prune the
    publication Triton reads)."""
    if before.is_dir() and (before / "config.json").is_file():
        say(f"resuming an interrupted change: {before} holds the files the running services use")
        return True
    snapshot_host_files(layout, before)
    return False


def restore_host_files(layout: Layout, saved: Path, *, systemd: bool) -> list[Path]:
    """Write the files saved in `saved` back (a file it does not hold is removed); reload systemd when one changed."""
    changed = []
    for name, path in host_files(layout).items():
        copy = saved / name
        if copy.is_file():
            if write_if_changed(path, copy.read_text(), stat.S_IMODE(copy.stat().st_mode)):
                changed.append(path)
        elif path.exists():
            path.unlink()
            changed.append(path)
    if layout.is_system and layout.config_file.exists():
        shutil.chown(layout.config_file, "root", read_config(layout).user)
    if systemd and changed:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        if layout.nft_file in changed:
            subprocess.run(["systemctl", "restart", render.FIREWALL_UNIT], check=True)
    return changed


# --------------------------------------------------------------------------------------------- install


@dataclass
class InstallResult:
    version: str
    changed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not self.changed


def _unpack(layout: Layout, bundle: Path, version: str, deps_python: str | None, result: InstallResult) -> None:
    vdir = layout.version_dir(version)
    if not (vdir / "bin" / "hybridserve-edge").is_file():
        stage = layout.opt / f".{version}.partial"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        with tarfile.open(bundle, "r:gz") as tar:
            try:
                tar.extractall(stage, filter="data")  # no absolute paths, links out of the tree or device files
            except TypeError:  # pragma: no cover - Python before 3.11.4
                tar.extractall(stage)
        python = deps_python or _create_venv(stage, vdir)
        write_if_changed(stage / "bin" / "edge_main.py", render.ENTRY_POINT)
        write_if_changed(stage / "bin" / "hybridserve-edge", render.launcher_script(vdir, python), 0o755)
        shutil.rmtree(vdir, ignore_errors=True)
        stage.rename(vdir)  # a version directory is complete or absent
        result.changed.append(f"installed runtime {version} in {vdir}")
    elif deps_python:
        if write_if_changed(vdir / "bin" / "hybridserve-edge", render.launcher_script(vdir, deps_python), 0o755):
            result.changed.append(f"{vdir}/bin/hybridserve-edge: dependencies from {deps_python}")


def _create_venv(stage: Path, vdir: Path) -> str:
    """A venv with the pinned dependencies: from the bundle's wheels/ when present (offline hosts), else the index."""
    venv = stage / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    source = ["--no-index", "--find-links", str(stage / "wheels")] if (stage / "wheels").is_dir() else []
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *source, "-c", str(stage / "constraints.txt"),
                    "-r", str(stage / "requirements.txt")], check=True)
    # The venv's scripts name the staging path: rewrite them to the final one before the rename.
    for script in (venv / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text()
            except UnicodeDecodeError:
                continue
            if str(stage) in text:
                script.write_text(text.replace(str(stage), str(vdir)))
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(cfg.read_text().replace(str(stage), str(vdir)))
    return str(vdir / "venv" / "bin" / "python")


def _ensure_user(config: EdgeConfig, layout: Layout, result: InstallResult) -> None:
    argv = render.useradd_argv(config, layout)
    if layout.is_system:
        if subprocess.run(["getent", "passwd", config.user], capture_output=True).returncode != 0:
            subprocess.run(argv, check=True)
            result.changed.append(f"created system user {config.user}")
        return
    # A temporary root: the user is recorded in <root>/etc/passwd, the system is not touched.
    record = layout.passwd_record
    lines = record.read_text().splitlines(keepends=True) if record.exists() else []
    if not any(line.split(":", 1)[0] == config.user for line in lines):
        write_if_changed(record, "".join(lines) + render.passwd_line(config, layout))
        result.changed.append(f"recorded system user {config.user} in {record} (would run: {' '.join(argv)})")


def install(layout: Layout, bundle: Path, config: EdgeConfig, *, version: str | None = None, systemd: bool = True,
            deps_python: str | None = None) -> InstallResult:
    """Lay the runtime out under the root. Idempotent: a second run with the same inputs changes nothing.

    Installs the bundle's version beside the others; points `current` at it only when there is none yet
    (switching is `apply`'s job, with its health check and rollback).
    """
    bundle = Path(bundle)
    if not bundle.is_file():
        raise UserError(f"--bundle {bundle}: no such file (the runtime bundle, hybridserve-edge-<version>.tar.gz)", exit_code=2)
    declared = read_bundle_version(bundle)
    if version is not None and check_version(version) != declared:
        raise UserError(f"--version {version}: the bundle {bundle} holds runtime {declared}", exit_code=2)
    if systemd and not layout.is_system:
        raise UserError(f"--root {layout.root}: systemd units can only be enabled on the system root; pass --no-systemd "
                        "to run the services as supervised processes under a temporary root", exit_code=2)
    result = InstallResult(version=declared)
    for d in (layout.opt, layout.etc, layout.state, layout.logs, layout.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.state, 0o750)
    _unpack(layout, bundle, declared, deps_python, result)
    if layout.current_version() is None:
        switch_current(layout, declared)
        result.changed.append(f"{layout.current} -> {declared}")
    _ensure_user(config, layout, result)

    files: dict[Path, tuple[str, int]] = {
        layout.config_file: (config.to_json(), 0o640),  # holds the hub's read key: root and the service group only
        layout.nft_file: (render.nftables_rules(config), 0o644),
        layout.logrotate_file: (render.logrotate_config(config, layout), 0o644),
    }
    for name, text in render.unit_files(config, layout).items():
        files[layout.units / name] = (text, 0o644)
    changed_files = [path for path, (text, mode) in files.items() if write_if_changed(path, text, mode)]
    result.changed.extend(str(p) for p in changed_files)
    _secrets(layout)
    if layout.is_system:
        # The services run as the user: their directories and the cache's key and identity are theirs.
        for path in (layout.state, layout.logs, layout.run_dir, layout.state / "cache.kek", layout.state / "cache.s3.json"):
            shutil.chown(path, config.user, config.user)
        shutil.chown(layout.config_file, "root", config.user)
    if systemd and changed_files:
        subprocess.run(["systemctl", "daemon-reload"], check=True)
        if layout.nft_file in changed_files:
            subprocess.run(["systemctl", "enable", "--now", render.FIREWALL_UNIT], check=True)
            subprocess.run(["systemctl", "restart", render.FIREWALL_UNIT], check=True)
    return result


def _secrets(layout: Layout) -> None:
    """The cache's key-encryption key and S3 identity, created once (0600) by the local plane's helpers."""
    from hybridserve.local.objectstore import load_or_create_identity, load_or_create_kek

    load_or_create_kek(layout.state / "cache.kek")
    load_or_create_identity(layout.state / "cache.s3.json")


# --------------------------------------------------------------------------------------------- apply / upgrade


def _launcher_call(layout: Layout, step: str, *args: str, version: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    argv = [str(render.launcher(layout, version=version)), step, "--root", str(layout.root), *args]
    say(f"running {' '.join(argv[1:])}")
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, text=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(argv, 124, exc.stdout or "", (exc.stderr or "") + f"\n{step}: timed out after {timeout:.0f} s")
    for line in (proc.stdout + proc.stderr).splitlines():
        print(f"  | {line}", flush=True)
    say(f"{step}: exit {proc.returncode} after {time.monotonic() - started:.1f} s")
    return proc


def _systemd_flag(systemd: bool) -> list[str]:
    return [] if systemd else ["--no-systemd"]


def apply(layout: Layout, bundle: Path, config: EdgeConfig | None, *, version: str | None = None, systemd: bool = True,
          deps_python: str | None = None) -> int:
    """Install, then run `version` healthy with `config`: start it, or change to it while the old one serves.

    A change (new version, new config: a new publication is a new hub prefix) fills the cache first while the
    running Triton keeps serving; a failed fill changes nothing that runs (the previous files are put back).
    Then Triton alone restarts (the cache too on a new version or new cache ports; nothing when only the gate,
    fill or firewall settings changed), and the health check
    (the installed launcher's `status --wait`: both services, the cache's S3, Triton and every model ready)
    decides: healthy, and what served before is recorded for `rollback` (its version and files), publications
    other than the new and the previous one leave the cache, versions other than those two leave the disk;
    not healthy, and the previous version and files are restored and started again, exit 3.
    """
    config = config or read_config(layout)
    previous = layout.current_version()
    before = layout.opt / ".host-before"
    resumed = False
    if previous is not None and layout.config_file.exists():
        resumed = snapshot_before(layout, before)  # taken before install overwrites them
    result = install(layout, bundle, config, version=version, systemd=systemd, deps_python=deps_python)
    target = result.version
    for line in result.changed:
        say(f"changed: {line}")
    flag = _systemd_flag(systemd)
    running = previous is not None and _launcher_call(layout, "status", *flag).returncode == 0
    # Unchanged files are a change still when an interrupted one left them: what runs serves the files in `before`.
    if previous in (None, target) and ((result.unchanged and not resumed) or not before.is_dir()):
        shutil.rmtree(before, ignore_errors=True)
        if running:
            say(f"install: unchanged; runtime {target} running and healthy")
            return 0
        started = _launcher_call(layout, "start", *flag)
        if started.returncode == 0 and _healthy(layout, config, flag):
            say(f"runtime {target} running and healthy")
            return 0
        say(f"runtime {target} is NOT healthy (no previous version to roll back to); see {layout.logs}")
        return EXIT_UNHEALTHY
    if previous != target:
        say(f"upgrading {previous} -> {target}")
    else:
        say(f"applying the changed configuration of runtime {target}")
    return _change(layout, config, serving=previous, target=target, before=before, running=running, code=target,
                   systemd=systemd, record=True)


def rollback(layout: Layout, *, systemd: bool = True) -> int:
    """Go back to what served before the last successful change: its version (`current`), its config and units,
    filled and health-checked like any change. The record is used once (a second rollback has nothing to do)."""
    serving, back = layout.current_version(), layout.previous_version()
    saved = layout.saved_host_files(back) if back else None
    if serving is None:
        raise UserError(f"rollback: nothing is installed under {layout.root}", exit_code=2)
    if saved is None or not (saved / "config.json").is_file() or not (layout.version_dir(back) / "bin" / "hybridserve-edge").is_file():
        say(f"rollback: no previous version recorded in {layout.previous}: runtime {serving} keeps serving")
        return EXIT_UNHEALTHY
    before = layout.opt / ".host-before"
    snapshot_before(layout, before)
    restore_host_files(layout, saved, systemd=systemd)
    flag = _systemd_flag(systemd)
    running = _launcher_call(layout, "status", *flag).returncode == 0
    say(f"rolling back {serving} -> {back} and the configuration it served with")
    code = _change(layout, read_config(layout), serving=serving, target=back, before=before, running=running, code=serving,
                   systemd=systemd, record=False)
    if code == 0:
        switch_current(layout, None, link=layout.previous)
    return code


def _healthy(layout: Layout, config: EdgeConfig, flag: list[str]) -> bool:
    return _launcher_call(layout, "status", *flag, "--wait", str(int(config.startup_timeout))).returncode == 0


def _saved_config(saved: Path) -> dict:
    """A saved config.json as plain JSON (it may be another runtime version's: no schema applied)."""
    try:
        data = json.loads((saved / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _prefix_of(saved: Path) -> str:
    hub = _saved_config(saved).get("hub")
    return str(hub.get("prefix")) if isinstance(hub, dict) else "?"


def _change(layout: Layout, config: EdgeConfig, *, serving: str, target: str, before: Path, running: bool, code: str,
            systemd: bool, record: bool) -> int:
    """From `serving` with the files in `before` to `target` with the files in place now (see `apply`).

    `code`: the version whose launcher fills and prunes (the newer code: it knows both configs)."""
    flag = _systemd_flag(systemd)
    old = _saved_config(before)
    old_prefix = _prefix_of(before)
    new = json.loads(config.to_json())
    cache_moves = old.get("cache_ports") != new["cache_ports"] or _unit_changed(layout, before, render.CACHE_UNIT)
    moved_prefix = (old_prefix, old.get("cache_bucket")) != (config.hub.prefix, config.cache_bucket)
    triton_moves = moved_prefix or _unit_changed(layout, before, render.TRITON_UNIT) or any(
        old.get(k) != new[k] for k in TRITON_KEYS)
    if running and not cache_moves:
        # The new publication into the cache while Triton serves the old one (which it must not reload from).
        # A rollback takes its publication from the cache when it is complete there (prune keeps it for this):
        # the hub may no longer hold it.
        filled = _launcher_call(layout, "run", "fill", *(["--no-reload"] if moved_prefix else []),
                                *([] if record else ["--cached-ok"]), *flag, version=code, timeout=render.FILL_TIMEOUT_S)
        if filled.returncode != 0:
            if _restore_or_report(layout, before, systemd=systemd, serving=serving):
                shutil.rmtree(before, ignore_errors=True)
            say(f"filling the cache with hub prefix {config.hub.prefix!r} failed (exit {filled.returncode}): nothing was "
                f"restarted, runtime {serving} keeps serving hub prefix {old_prefix!r} with its previous configuration; "
                "the next apply retries (a fill resumes where it stopped)")
            return EXIT_UNHEALTHY
    how = "start" if not running or serving != target or cache_moves else "restart" if triton_moves else None
    if how == "start":
        if running:
            _launcher_call(layout, "stop", *flag, version=serving)
        switch_current(layout, target)
        started = _launcher_call(layout, "start", *flag)
    elif how == "restart":
        started = _launcher_call(layout, "restart", *flag)  # Triton only: the cache keeps its ports and objects
    else:
        # Only what the gate, the fill or the firewall read changed: nothing that serves restarts.
        say("only the gate, fill or firewall settings changed: Triton and the cache keep running")
        if systemd and _unit_changed(layout, before, render.FILL_TIMER):
            subprocess.run(["systemctl", "restart", render.FILL_TIMER], check=False)
        started = subprocess.CompletedProcess([], 0)
    if started.returncode == 0 and _healthy(layout, config, flag):
        if record:
            # What served before is what `rollback` goes back to: its version and files, its publication in the cache.
            saved = layout.saved_host_files(serving)
            if before.is_dir():
                shutil.rmtree(saved, ignore_errors=True)
                before.rename(saved)
                switch_current(layout, serving, link=layout.previous)
            what = f"runtime {target}" + (f" (hub prefix {config.hub.prefix!r})" if old_prefix != config.hub.prefix else "")
            say(f"changed to {what}: healthy ({serving} and its files kept in {layout.version_dir(serving)} for a rollback)")
            for old in prune_versions(layout, keep={target, serving}):
                say(f"removed runtime {old} (only the current and the previous version are kept)")
        else:
            shutil.rmtree(before, ignore_errors=True)
            say(f"rolled back to runtime {target}: healthy")
        _prune_cache(layout, flag, code)
        return 0
    say(f"runtime {target} failed its health check: rolling back to {serving} and its previous configuration")
    # Each step is tried whatever the one before did (a host left down is worse than a step reported failed);
    # `current` first, so the start below and the next apply run what should serve.
    if how == "start":
        _launcher_call(layout, "stop", *flag)
    switch_current(layout, serving)
    if _restore_or_report(layout, before, systemd=systemd, serving=serving):
        shutil.rmtree(before, ignore_errors=True)  # else kept: the next apply starts from the files that should serve
    again = _launcher_call(layout, how, *flag) if how else subprocess.CompletedProcess([], 0)
    state = "healthy" if again.returncode == 0 and _healthy(layout, read_config(layout), flag) else "NOT healthy either"
    say(f"rolled back to runtime {serving} (hub prefix {old_prefix!r}): {state}; the failed version stays in "
        f"{layout.version_dir(target)} for inspection")
    return EXIT_UNHEALTHY


def _restore_or_report(layout: Layout, before: Path, *, systemd: bool, serving: str) -> bool:
    """restore_host_files, a failure reported instead of raised (the caller's later steps still run)."""
    try:
        restore_host_files(layout, before, systemd=systemd)
    except (subprocess.CalledProcessError, OSError) as exc:
        say(f"warning: restoring the files runtime {serving} served with failed ({exc}); they stay in {before}, "
            "the next apply restores them")
        return False
    return True


# What Triton's command line and unit are made of (hybridserve.tritonargs via run_service, render.unit_files): a change
# restarts Triton. The rest (SLOs, fill interval and bandwidth, hub credentials, firewall networks) does not.
TRITON_KEYS = ("models", "listen_address", "http_port", "grpc_port", "metrics_port", "gpu", "user", "cache_bucket")


def _unit_changed(layout: Layout, before: Path, unit: str) -> bool:
    saved, now = before / "units" / unit, layout.units / unit
    return (saved.read_bytes() if saved.is_file() else None) != (now.read_bytes() if now.is_file() else None)


def _prune_cache(layout: Layout, flag: list[str], code: str) -> None:
    pruned = _launcher_call(layout, "prune", *flag, version=code)
    if pruned.returncode != 0:
        say(f"warning: pruning the cache failed (exit {pruned.returncode}); the next successful apply retries")


def prune_versions(layout: Layout, *, keep: set[str]) -> list[str]:
    """Remove installed versions other than `keep` (edge disks are small; a rollback needs only the previous one)."""
    removed = []
    for vdir in sorted(layout.opt.iterdir()):
        if vdir.is_dir() and not vdir.is_symlink() and not vdir.name.startswith(".") and vdir.name not in keep:
            shutil.rmtree(vdir)
            removed.append(vdir.name)
    return removed


# --------------------------------------------------------------------------------------------- services


def probe_host(config: EdgeConfig) -> str:
    return "127.0.0.1" if config.listen_address in ("0.0.0.0", "::") else config.listen_address


def cache_endpoint(layout: Layout, config: EdgeConfig):
    from hybridserve.local.objectstore import S3Endpoint, load_or_create_identity

    access_key, secret_key = load_or_create_identity(layout.state / "cache.s3.json")
    return S3Endpoint(url=f"http://127.0.0.1:{config.cache_ports['s3']}", access_key=access_key, secret_key=secret_key)


def model_repository(config: EdgeConfig) -> str:
    path = "/".join(p.strip("/") for p in (config.cache_bucket, config.hub.prefix) if p.strip("/"))
    return f"s3://127.0.0.1:{config.cache_ports['s3']}/{path}"


def _get(url: str, timeout: float = 3.0) -> bool:
    try:
        with _http.open(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def run_service(layout: Layout, service: str, *, reload: bool = True, cached_ok: bool = False) -> None:
    """Become the service (exec): systemd or the supervisor then holds the server process itself."""
    config = read_config(layout)
    if service == "cache":
        from hybridserve.local.objectstore import SeaweedFS, load_or_create_kek, venv_binary

        store = SeaweedFS(layout.state / "cache", kek_path=layout.state / "cache.kek", identity_path=layout.state / "cache.s3.json")
        store.ports = dict(config.cache_ports)
        (store.data_dir / "master").mkdir(parents=True, exist_ok=True, mode=0o700)
        # The local plane's weed command line, on the configured ports. One master, no peers: the raft election
        # timeout (default 10 s) only delays the master taking its own lead again after a restart (an upgrade, a
        # rollback), measured 14-20 s before S3 answered, 3-4 s with 1 s.
        argv = [*store._argv(venv_binary("weed")), "-master.electionTimeout=1s"]
        env = dict(os.environ, WEED_S3_SSE_KEK=load_or_create_kek(store.kek_path))
        os.execve(argv[0], argv, env)
    elif service == "triton":
        from hybridserve.local.triton import prepare_backend_directory, triton_installation
        from hybridserve.tritonargs import CREDENTIALS_FILE_ENV, Listen, s3_credentials_file, server_arguments

        inst = triton_installation()
        work = layout.state / "triton"
        backend = prepare_backend_directory(work, inst)
        endpoint = cache_endpoint(layout, config)
        creds = work / "s3-credentials.json"
        write_if_changed(creds, s3_credentials_file(endpoint.access_key, endpoint.secret_key, endpoint.region), 0o600)
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "bin"), env.get("PATH")]))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [*map(str, inst.lib_dirs), env.get("LD_LIBRARY_PATH")]))
        env[CREDENTIALS_FILE_ENV] = str(creds)
        argv = [str(inst.binary), *server_arguments(
            model_repository(config), config.models,
            Listen(config.listen_address, config.http_port, config.grpc_port, config.metrics_port),
            exit_timeout_s=10, gpu_metrics=config.gpu, backend_directory=str(backend))]
        os.chdir(work)
        os.execve(argv[0], argv, env)
    elif service == "fill":
        report = fill(layout, config, reload=reload, cached_ok=cached_ok)
        say(f"fill: {report.summary()}")
    else:
        raise UserError(f"run {service!r}: expected cache, triton or fill", exit_code=2)


def fill(layout: Layout, config: EdgeConfig, *, reload: bool = True, cached_ok: bool = False):
    """One cache fill (one at a time: the timer and `start` may overlap); Triton reloads the models it changed
    (`reload` False: a new publication filled while Triton still serves the previous one)."""
    from hybridserve.edge.fill import fill_cache

    layout.state.mkdir(parents=True, exist_ok=True)
    with open(layout.state / "fill.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = fill_cache(config.hub, cache_endpoint(layout, config), config.cache_bucket,
                            bandwidth_limit_mbps=config.bandwidth_limit_mbps, work_dir=layout.state / "fill", cached_ok=cached_ok)
    host = probe_host(config)
    if reload and report.changed_models and _get(f"http://{host}:{config.http_port}/v2/health/live"):
        for model in sorted(set(report.changed_models) & set(config.models)):
            request = urllib.request.Request(f"http://{host}:{config.http_port}/v2/repository/models/{model}/load",
                                             data=b"{}", headers={"Content-Type": "application/json"}, method="POST")
            try:
                with _http.open(request, timeout=config.startup_timeout):
                    say(f"fill: reloaded {model}")
            except (urllib.error.URLError, OSError) as exc:
                say(f"fill: reloading {model} failed: {exc}")
    return report


def start(layout: Layout, *, systemd: bool = True) -> str:
    config = read_config(layout)
    if systemd:
        for argv in (["systemctl", "enable", "--now", render.FIREWALL_UNIT, render.CACHE_UNIT],
                     ["systemctl", "start", render.FILL_UNIT],
                     ["systemctl", "enable", "--now", render.TRITON_UNIT, render.FILL_TIMER]):
            subprocess.run(argv, check=True)
        return "started the systemd units"
    return _start_supervised(layout, config)


# How long a supervised stop waits for weed after SIGTERM before SIGKILL. weed's filer first waits 15 s for its gRPC
# streams to end (its own S3 gateway's metadata subscription never does), and shuts nothing else down before that
# (weed 4.48, measured: the volume server stops at 15 s): any shorter wait only delays the kill, which every upgrade,
# rollback and stop paid (its stores are crash-safe, see local/objectstore.py).
CACHE_TERM_WAIT_S = 0


def _start_supervised(layout: Layout, config: EdgeConfig) -> str:
    from hybridserve.local.plane import _write_record, read_record, recorded_alive, stop_recorded
    from hybridserve.local.process import ManagedProcess, tail

    record = read_record(layout.run_dir)
    if record is not None:
        alive = recorded_alive(record)
        if len(alive) == len(record["processes"]) == len(render.SERVICES):
            return "already running"
        stop_recorded(layout.run_dir)  # a half-started or crashed set: start afresh
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    record = {"format": 1, "kind": "hybridserve-edge", "root": str(layout.root), "processes": []}
    procs: list[ManagedProcess] = []
    try:
        cache = ManagedProcess("edge cache", render.service_argv(layout, "cache"), log_path=layout.logs / "cache.log",
                               term_timeout=CACHE_TERM_WAIT_S)
        procs.append(cache.start())
        # "hybridserve" is in every command line of the group: launcher path, `-m hybridserve.edge`, weed's and
        # tritonserver's state paths; it guards the later stop against a recycled process id.
        record["processes"].append({"name": "cache", "pid": cache.pid, "pgid": cache.pid, "match": "hybridserve",
                                   "term_wait": CACHE_TERM_WAIT_S})
        _write_record(layout.run_dir, record)
        client = cache_endpoint(layout, config).client()
        cache.wait_until(lambda: _cache_readable(client, config.cache_bucket), timeout=60, what="serving its cached objects")
        report = fill(layout, config)
        say(f"fill: {report.summary()}")
        _start_triton(layout, config, record, procs)
    except BaseException as exc:
        for p in reversed(procs):
            p.stop()
        (layout.run_dir / "plane.json").unlink(missing_ok=True)
        if isinstance(exc, UserError):
            raise UserError(f"{exc.message}\ntriton log ({layout.logs / 'triton.log'}):\n{tail(layout.logs / 'triton.log', 15)}",
                            exit_code=EXIT_UNHEALTHY) from None
        raise
    for p in procs:
        p.detach()  # they outlive this command; `stop` finds them through the record
    return f"started cache (pid {record['processes'][0]['pid']}) and triton (pid {record['processes'][1]['pid']})"


def _cache_readable(client, bucket: str) -> bool:
    """The cache answers S3 and a cached object reads back. A restarted weed answers S3 (the filer's metadata)
    a few seconds before its volume server has re-registered with the master; reads fail with InternalError until
    then, and the fill and Triton's model load right after the start read objects."""
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        return True  # a first start: nothing cached yet
    sized = [o for o in client.list_objects_v2(Bucket=bucket, MaxKeys=100).get("Contents", []) if o.get("Size", 0) > 0]
    if sized:
        key = min(sized, key=lambda o: o["Size"])["Key"]
        client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].read()
    return True


def _start_triton(layout: Layout, config: EdgeConfig, record: dict, procs: list) -> None:
    """Start the supervised Triton, record it, wait until every model is ready (the caller stops `procs` on failure)."""
    from hybridserve.local.plane import _write_record
    from hybridserve.local.process import ManagedProcess

    triton = ManagedProcess("edge triton", render.service_argv(layout, "triton"), log_path=layout.logs / "triton.log", term_timeout=15)
    procs.append(triton.start())
    record["processes"] = [p for p in record["processes"] if p["name"] != "triton"]
    record["processes"].append({"name": "triton", "pid": triton.pid, "pgid": triton.pid, "match": "hybridserve", "term_wait": 15})
    _write_record(layout.run_dir, record)
    host = probe_host(config)
    triton.wait_until(lambda: all(_get(f"http://{host}:{config.http_port}/v2/models/{m}/ready") for m in config.models),
                      timeout=config.startup_timeout, what=f"ready with {', '.join(config.models)}")


def restart(layout: Layout, *, systemd: bool = True) -> str:
    """Restart Triton only (the cache keeps running): it picks up a new config, e.g. a new publication's prefix."""
    config = read_config(layout)
    if systemd:
        subprocess.run(["systemctl", "restart", render.TRITON_UNIT, render.FILL_TIMER], check=True)
        return "restarted the Triton unit (and the fill timer)"
    from hybridserve.local.plane import _signal_group, _write_record, group_members, read_record, recorded_alive
    from hybridserve.local.process import tail

    record = read_record(layout.run_dir)
    if record is None or "cache" not in recorded_alive(record):
        raise UserError(f"restart: the cache is not running under {layout.root}; use `start`", exit_code=EXIT_UNHEALTHY)
    for proc in [p for p in record["processes"] if p["name"] == "triton"]:
        _signal_group(proc["pgid"], signal.SIGTERM)
        deadline = time.monotonic() + proc.get("term_wait", 15)
        while time.monotonic() < deadline and group_members(proc["pgid"], proc["match"]):
            time.sleep(0.1)
        if group_members(proc["pgid"], proc["match"]):
            _signal_group(proc["pgid"], signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and group_members(proc["pgid"], proc["match"]):
                time.sleep(0.1)  # the new one binds the same ports
    procs: list = []
    try:
        _start_triton(layout, config, record, procs)
    except BaseException as exc:
        for p in procs:
            p.stop()
        record["processes"] = [p for p in record["processes"] if p["name"] != "triton"]
        _write_record(layout.run_dir, record)
        if isinstance(exc, UserError):
            raise UserError(f"{exc.message}\ntriton log ({layout.logs / 'triton.log'}):\n{tail(layout.logs / 'triton.log', 15)}",
                            exit_code=EXIT_UNHEALTHY) from None
        raise
    pid = procs[0].pid
    for p in procs:
        p.detach()  # it outlives this command; `stop` finds it through the record
    return f"restarted triton (pid {pid}); the cache kept running"


def prune(layout: Layout) -> list[str]:
    """Remove cached publications other than the configured one and the one `rollback` would go back to."""
    from hybridserve.edge.fill import prune_cache

    config = read_config(layout)
    keep = [config.hub.prefix]
    back = layout.previous_version()
    if back:
        saved = _saved_config(layout.saved_host_files(back))
        if saved.get("cache_bucket", config.cache_bucket) == config.cache_bucket and isinstance(saved.get("hub"), dict):
            keep.append(str(saved["hub"].get("prefix", "")))
    with open(layout.state / "fill.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # never under a running fill
        return prune_cache(cache_endpoint(layout, config), config.cache_bucket, keep)


def stop(layout: Layout, *, systemd: bool = True) -> list[str]:
    if systemd:
        subprocess.run(["systemctl", "stop", render.FILL_TIMER, render.TRITON_UNIT, render.FILL_UNIT, render.CACHE_UNIT], check=True)
        return ["stopped the systemd units"]
    from hybridserve.local.plane import stop_recorded

    return stop_recorded(layout.run_dir) or ["not running"]


def status(layout: Layout, *, systemd: bool = True) -> dict:
    """Version, services, probes (cache S3, Triton ready, each model ready) and `healthy`."""
    from hybridserve.local.process import port_open

    config = read_config(layout)
    services: dict[str, bool] = {}
    if systemd:
        for unit in (render.CACHE_UNIT, render.TRITON_UNIT):
            services[unit] = subprocess.run(["systemctl", "is-active", "--quiet", unit]).returncode == 0
    else:
        from hybridserve.local.plane import read_record, recorded_alive

        record = read_record(layout.run_dir) or {"processes": []}
        alive = recorded_alive(record)
        services = {name: name in alive for name in render.SERVICES}
    host = probe_host(config)
    probes = {"cache S3": port_open(config.cache_ports["s3"]), "triton ready": _get(f"http://{host}:{config.http_port}/v2/health/ready")}
    for m in config.models:
        probes[f"model {m} ready"] = probes["triton ready"] and _get(f"http://{host}:{config.http_port}/v2/models/{m}/ready")
    return {"site": config.site, "host": config.host, "version": layout.current_version(), "services": services,
            "probes": probes, "healthy": all(services.values()) and all(probes.values())}


def wait_healthy(layout: Layout, *, systemd: bool, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        st = status(layout, systemd=systemd)
        if st["healthy"] or time.monotonic() >= deadline:
            return st
        time.sleep(0.5)  # a few loopback probes and a /proc scan: cheap, and every apply waits here


def uninstall(layout: Layout, *, systemd: bool = True, purge: bool = False) -> list[str]:
    """Stop the services and remove the runtime, config, units, firewall and log rotation.

    The state directory (the cache and its key-encryption key) and the service user stay unless `purge`:
    a reinstall then needs no fill from the hub.
    """
    lines = []
    if layout.config_file.exists():
        lines += stop(layout, systemd=systemd)
    if systemd:
        subprocess.run(["systemctl", "disable", "--now", *render.UNITS], check=False)
    for name in render.UNITS:
        (layout.units / name).unlink(missing_ok=True)
    if systemd:
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    layout.logrotate_file.unlink(missing_ok=True)
    shutil.rmtree(layout.opt, ignore_errors=True)
    shutil.rmtree(layout.etc, ignore_errors=True)
    lines.append(f"removed {layout.opt}, {layout.etc}, the units and {layout.logrotate_file}")
    if purge:
        shutil.rmtree(layout.state, ignore_errors=True)
        shutil.rmtree(layout.logs, ignore_errors=True)
        lines.append(f"purged {layout.state} and {layout.logs}")
    else:
        lines.append(f"kept {layout.state} (the cache and its key) and the user; --purge removes the state")
    return lines


# --------------------------------------------------------------------------------------------- gate


# smoke_tests' exit codes (smoke_tests.errors.ExitCode). A rollback undoes a change only when the host fails or misses
# its SLO; 2 (bad gate input: the site's SLOs, a flag) says nothing about the host, so a healthy change stays.
GATE_WHAT = {1: "SLO missed", 2: "bad gate input (the site's SLOs or the gate's flags)", 3: "Triton unreachable or stopped answering",
             4: "not ready", 5: "wrong outputs", 6: "interface mismatch"}
ROLLBACK_EXITS = frozenset({1, 3, 4, 5, 6})


def gate(layout: Layout, *, concurrency: str = "1,2", profile: str = "quick", window: float | None = None, json_path: Path | None = None,
         rollback_on_fail: bool = False, expect_version: str | None = None, expect_config: str | None = None,
         systemd: bool = True) -> int:
    """The smoke gate against this host's Triton with the site's SLOs; references come from the cache.

    `rollback_on_fail`: a failed gate rolls the host back to what served before (`rollback`); the exit code
    stays the gate's. `expect_version`/`expect_config` (the first hex digits of config.json's sha256): the
    host must serve what the deployment gates, else exit 3 (e.g. it was rolled back after a failed gate).
    Prints the gate's report and a last line `hybridserve-edge gate: PASS|FAIL <site>/<host> (exit N)[: why]`.
    """
    from smoke_tests.cli import main as smoke_main

    config = read_config(layout)
    who = f"{config.site}/{config.host}"
    serving = layout.current_version()
    config_sha = hashlib.sha256(layout.config_file.read_bytes()).hexdigest()
    if (expect_version and serving != expect_version) or (expect_config and not config_sha.startswith(expect_config)):
        print(f"hybridserve-edge gate: FAIL {who} (exit {EXIT_UNHEALTHY}): the host serves runtime {serving} with config "
              f"{config_sha[:16]}, not runtime {expect_version or serving} with config {expect_config or config_sha[:16]} "
              "(rolled back after a failed gate, or changed by hand); a new runtime or configuration re-runs the apply", flush=True)
        return EXIT_UNHEALTHY
    repo = layout.state / "gate" / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    _fetch_references(layout, config, repo)
    spec = {"models": list(config.models), "wait_ready_s": 30, **config.slos}
    host = probe_host(config)
    report_path = Path(json_path or layout.state / "gate" / "smoke.json")
    report_path.unlink(missing_ok=True)
    code = smoke_main([
        "--url", f"{host}:{config.grpc_port}", "--metrics-url", f"{host}:{config.metrics_port}",
        "--model-repo", str(repo), "--slos", json.dumps(spec), "--profile", profile, "--concurrency", concurrency,
        "--json", str(report_path), "--client-processes", "1", *(["--window", f"{window:g}"] if window is not None else []),
    ])
    if code == 0:
        print(f"hybridserve-edge gate: PASS {who} (exit 0)", flush=True)
        return 0
    try:
        messages = [v.get("message", "") for v in json.loads(report_path.read_text()).get("violations", [])]
    except (OSError, ValueError, AttributeError):
        messages = []
    why = f"{GATE_WHAT.get(code, 'gate failed')}" + (f": {'; '.join(m for m in messages if m)}" if any(messages) else "")
    if rollback_on_fail and code not in ROLLBACK_EXITS:
        why += f"; not rolled back (the gate could not judge the host): runtime {serving} keeps serving"
    elif rollback_on_fail and layout.previous_version() is None:
        why += f"; no previous version to roll back to: runtime {serving} keeps serving"
    elif rollback_on_fail:
        say(f"gate failed on {who} ({why}): rolling back")
        try:
            rolled = rollback(layout, systemd=systemd)
        except (subprocess.CalledProcessError, OSError, UserError) as exc:  # the last line is printed whatever happens
            say(f"rollback: {exc}")
            rolled = EXIT_UNHEALTHY
        back = layout.current_version()
        why += (f"; rolled back to runtime {back}: healthy" if rolled == 0
                else f"; the rollback failed (exit {rolled}): runtime {back} serves, see {layout.logs}")
    print(f"hybridserve-edge gate: FAIL {who} (exit {code}): {why}", flush=True)
    return code


def _fetch_references(layout: Layout, config: EdgeConfig, repo: Path) -> None:
    """Each model's config.pbtxt and reference.npz from the cache (the gate checks outputs against them)."""
    s3 = cache_endpoint(layout, config).client()
    base = config.hub.prefix.strip("/") + "/" if config.hub.prefix.strip("/") else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=config.cache_bucket, Prefix=base):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(base):]
            if rel.split("/", 1)[0] in config.models and rel.rsplit("/", 1)[-1] in ("config.pbtxt", "reference.npz"):
                target = repo / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(config.cache_bucket, obj["Key"], str(target))
