"""Every file and script the edge runtime puts on a host, rendered by one function each.

The installer writes these under its root; the Pulumi component (infra/components/edge.py) sends the
scripts as its remote commands. The runtime tests run the same scripts for real under a temporary root
(the root and the no-systemd switch come from the environment, so the text is byte for byte the one the
component sends). Standard library only.
"""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path

from hybridserve.edge.config import EdgeConfig, Layout

UNIT_PREFIX = "hybridserve-edge"
CACHE_UNIT = f"{UNIT_PREFIX}-cache.service"
TRITON_UNIT = f"{UNIT_PREFIX}-triton.service"
FILL_UNIT = f"{UNIT_PREFIX}-fill.service"
FILL_TIMER = f"{UNIT_PREFIX}-fill.timer"
FIREWALL_UNIT = f"{UNIT_PREFIX}-firewall.service"
UNITS = (CACHE_UNIT, TRITON_UNIT, FILL_UNIT, FILL_TIMER, FIREWALL_UNIT)
# How long one fill may take: the fill unit's TimeoutStartSec and the apply's own fill (a first or new publication
# of ~1 GB over a bandwidth-limited link takes hours; one bound for both, so `apply` does not give up first).
FILL_TIMEOUT_S = 6 * 3600
NFT_TABLE = "hybridserve_edge"
NFT = "/usr/sbin/nft"
# The long-running services (in start order) and the commands they run; the supervised mode (--no-systemd)
# runs exactly these command lines.
SERVICES = ("cache", "triton")

# Environment the remote scripts read, so one script text serves a host ("/", systemd) and a test.
ROOT_ENV = "HYBRIDSERVE_EDGE_ROOT"
SYSTEMD_ENV = "HYBRIDSERVE_EDGE_SYSTEMD"  # "0": supervised processes instead of systemd units
DEPS_PYTHON_ENV = "HYBRIDSERVE_EDGE_DEPS_PYTHON"  # an interpreter that already has the runtime's dependencies
BOOTSTRAP_PYTHON_ENV = "HYBRIDSERVE_EDGE_BOOTSTRAP_PYTHON"  # runs the installer (stdlib only); default python3


def launcher(layout: Layout, *, version: str | None = None) -> Path:
    """The runtime's command: `current` (what the units run) or one installed version."""
    base = layout.current if version is None else layout.version_dir(version)
    return base / "bin" / "hybridserve-edge"


def service_argv(layout: Layout, service: str) -> list[str]:
    """The command line of a service: the units' ExecStart and the supervised process are this list."""
    return [str(launcher(layout)), "run", service, "--root", str(layout.root)]


ENTRY_POINT = "from hybridserve.edge.cli import main\nimport sys\nsys.exit(main())\n"


def launcher_script(version_dir: Path, python: str) -> str:
    """The version's command. It runs bin/edge_main.py, not `python -m`: `-m` puts the working directory first
    on sys.path, so a `hybridserve` directory wherever the command is run from would shadow the version's code."""
    app = version_dir / "app"
    entry = version_dir / "bin" / "edge_main.py"
    return (
        "#!/bin/sh\n"
        f"# hybridserve edge runtime {version_dir.name}: the kit's code from {app}, dependencies from {python}\n"
        f"PYTHONPATH={shlex.quote(str(app))} exec {shlex.quote(python)} {shlex.quote(str(entry))} \"$@\"\n"
    )


# --------------------------------------------------------------------------------------------- systemd


def _hardening(layout: Layout) -> str:
    # The services write only their state and logs; everything else is read-only to them.
    return (
        "NoNewPrivileges=yes\n"
        "ProtectSystem=strict\n"
        "ProtectHome=yes\n"
        "PrivateTmp=yes\n"
        "ProtectKernelTunables=yes\n"
        "ProtectControlGroups=yes\n"
        "RestrictSUIDSGID=yes\n"
        f"ReadWritePaths={layout.state} {layout.logs}\n"
    )


def unit_files(config: EdgeConfig, layout: Layout) -> dict[str, str]:
    """File name -> text of every systemd unit. Paths are under `layout.root` (on a host: "/")."""
    user = config.user
    cache, triton, fill = (shlex.join(service_argv(layout, s)) for s in ("cache", "triton", "fill"))
    logs = layout.logs
    gpu = "SupplementaryGroups=video render\n" if config.gpu else ""  # /dev/nvidia* group access on most distributions
    return {
        CACHE_UNIT: (
            "[Unit]\n"
            "Description=hybridserve edge: encrypted model cache (SeaweedFS S3 on loopback, SSE-S3)\n"
            "After=network-online.target\nWants=network-online.target\n\n"
            "[Service]\nType=simple\n"
            f"User={user}\nGroup={user}\n"
            f"ExecStart={cache}\n"
            "Restart=on-failure\nRestartSec=5\n"
            # weed ignores SIGTERM for over a minute; its stores are crash-safe (see local/objectstore.py).
            "TimeoutStopSec=5\n"
            f"StandardOutput=append:{logs}/cache.log\nStandardError=inherit\n"
            + _hardening(layout)
            + "\n[Install]\nWantedBy=multi-user.target\n"
        ),
        TRITON_UNIT: (
            "[Unit]\n"
            "Description=hybridserve edge: tritonserver serving from the local cache\n"
            # Requires the firewall: were `nft -f` to fail at boot, Triton must not listen with inference open to all.
            f"After={CACHE_UNIT} {FIREWALL_UNIT} network-online.target\nRequires={CACHE_UNIT} {FIREWALL_UNIT}\nWants=network-online.target\n\n"
            "[Service]\nType=simple\n"
            f"User={user}\nGroup={user}\n{gpu}"
            f"ExecStart={triton}\n"
            "Restart=on-failure\nRestartSec=5\n"
            "TimeoutStopSec=30\nKillMode=control-group\n"
            f"StandardOutput=append:{logs}/triton.log\nStandardError=inherit\n"
            + _hardening(layout)
            + "\n[Install]\nWantedBy=multi-user.target\n"
        ),
        FILL_UNIT: (
            "[Unit]\n"
            "Description=hybridserve edge: fill the cache from the hub bucket (changed objects only)\n"
            f"After={CACHE_UNIT} network-online.target\nRequires={CACHE_UNIT}\n\n"
            "[Service]\nType=oneshot\n"
            f"User={user}\nGroup={user}\n"
            f"ExecStart={fill}\n"
            f"TimeoutStartSec={FILL_TIMEOUT_S}s\n"
            f"StandardOutput=append:{logs}/fill.log\nStandardError=inherit\n"
            + _hardening(layout)
        ),
        FILL_TIMER: (
            "[Unit]\n"
            "Description=hybridserve edge: fill the cache from the hub periodically\n\n"
            "[Timer]\n"
            "OnBootSec=2min\n"
            f"OnUnitActiveSec={config.fill_interval_minutes}min\n"
            "RandomizedDelaySec=60\n"
            "Persistent=true\n\n"
            "[Install]\nWantedBy=timers.target\n"
        ),
        FIREWALL_UNIT: (
            "[Unit]\n"
            "Description=hybridserve edge: host firewall (inference only from the configured networks)\n"
            "Before=network-pre.target " + TRITON_UNIT + "\nWants=network-pre.target\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart={NFT} -f {layout.nft_file}\n"
            f"ExecStop={NFT} delete table inet {NFT_TABLE}\n"
            "\n[Install]\nWantedBy=multi-user.target\n"
        ),
    }


# --------------------------------------------------------------------------------------------- firewall


def _sets(name: str, cidrs) -> tuple[str, list[str]]:
    """nft set declarations for one list of networks, split by address family; and the families present."""
    out, families = "", []
    for family, typ in (("v4", "ipv4_addr"), ("v6", "ipv6_addr")):
        nets = [str(ipaddress.ip_network(c)) for c in cidrs if ipaddress.ip_network(c).version == (4 if family == "v4" else 6)]
        if nets:
            out += f"  set {name}_{family} {{ type {typ}; flags interval; elements = {{ {', '.join(nets)} }} }}\n"
            families.append(family)
    return out, families


def nftables_rules(config: EdgeConfig) -> str:
    """The host firewall, its own table: inference ports only from `inference_cidrs`, SSH and metrics only from
    the hub, SSH also from `ssh_cidrs` (the deploy runner or its jump host, the site's admins). Everything else is left to the host's own rules (policy accept: the operator's other services keep
    working); a drop here is final whatever other tables accept, so the ports stay closed to everyone else."""
    inference = f"{{ {config.http_port}, {config.grpc_port} }}"
    sets_inf, fam_inf = _sets("inference", config.inference_cidrs)
    sets_hub, fam_hub = _sets("hub", config.hub_cidrs)
    sets_ssh, fam_ssh = _sets("ssh", config.ssh_cidrs)
    rules = []
    for fam in fam_inf:
        rules.append(f"    tcp dport {inference} {'ip' if fam == 'v4' else 'ip6'} saddr @inference_{fam} accept")
    for fam in fam_hub:
        ip = "ip" if fam == "v4" else "ip6"
        rules.append(f"    tcp dport {{ {config.ssh_port}, {config.metrics_port} }} {ip} saddr @hub_{fam} accept")
    for fam in fam_ssh:
        rules.append(f"    tcp dport {config.ssh_port} {'ip' if fam == 'v4' else 'ip6'} saddr @ssh_{fam} accept")
    rules.append("    iif lo accept")
    rules.append(f"    tcp dport {inference} drop")
    rules.append(f"    tcp dport {{ {config.ssh_port}, {config.metrics_port} }} drop")
    return (
        f"# hybridserve edge host firewall ({config.site}/{config.host}); loaded by {FIREWALL_UNIT}.\n"
        "# Re-loading replaces the table as a whole (the empty declaration makes the delete safe the first time).\n"
        f"table inet {NFT_TABLE} {{}}\n"
        f"delete table inet {NFT_TABLE}\n"
        f"table inet {NFT_TABLE} {{\n"
        + sets_inf
        + sets_hub
        + sets_ssh
        + "  chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        "    ct state established,related accept\n"
        + "\n".join(rules)
        + "\n  }\n}\n"
    )


def logrotate_config(config: EdgeConfig, layout: Layout) -> str:
    # copytruncate: the services keep their log open (systemd's append:); a rename would leave them writing to it.
    return (
        f"{layout.logs}/*.log {{\n"
        "  daily\n  rotate 14\n  maxsize 100M\n  compress\n  delaycompress\n  missingok\n  notifempty\n  copytruncate\n"
        f"  su {config.user} {config.user}\n"
        "}\n"
    )


def useradd_argv(config: EdgeConfig, layout: Layout) -> list[str]:
    """The dedicated unprivileged system user: no login shell, no home outside the state directory."""
    return ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(layout.state),
            "--shell", "/usr/sbin/nologin", "--comment", "hybridserve edge runtime", config.user]


def passwd_line(config: EdgeConfig, layout: Layout, uid: int = 999) -> str:
    """What useradd would add to /etc/passwd (recorded under a temporary root instead of creating the user)."""
    return f"{config.user}:x:{uid}:{uid}:hybridserve edge runtime:{layout.state}:/usr/sbin/nologin\n"


# --------------------------------------------------------------------------------------------- remote scripts


_PRELUDE = f"""set -eu
root="${{{ROOT_ENV}:-/}}"
sudo=""
if [ "$root" = / ] && [ "$(id -u)" != 0 ]; then sudo="sudo -n"; fi
"""


def apply_script(bundle_path: str, version: str, digest: str) -> str:
    """Install or upgrade the runtime from the copied bundle; the host's config.json arrives on stdin.

    The bundle is checked against its digest first (a truncated copy never gets unpacked), the installer
    runs from the unpacked bundle with the host's python3 (standard library only), and the rest (start,
    health check, rollback) runs under the installed version's own launcher.
    """
    b = shlex.quote(bundle_path)
    return (
        f"#!/bin/sh\n# hybridserve edge: install/upgrade to runtime {version} (bundle sha256 {digest}); config on stdin\n"
        + _PRELUDE
        + 'stage="$(mktemp -d)"\n'
        "trap 'rm -rf \"$stage\"' EXIT\n"
        # The copy target may sit in a world-writable directory: check and use a private copy only, so the file
        # cannot be swapped between the check and the root-run unpack.
        + f'cp {b} "$stage/bundle.tgz"\n'
        'bundle="$stage/bundle.tgz"\n'
        f'echo "{digest}  $bundle" | sha256sum -c --quiet -\n'
        'tar -xzf "$bundle" -C "$stage"\n'
        'case "$root" in /*) ;; *) root="$PWD/$root" ;; esac\n'
        # From the unpacked app directory: `-m` puts the working directory first on sys.path.
        f'cd "$stage/app" && $sudo env PYTHONPATH="$stage/app" "${{{BOOTSTRAP_PYTHON_ENV}:-python3}}" -m hybridserve.edge apply '
        f'--root "$root" --bundle "$bundle" --version {shlex.quote(version)} --config -\n'
    )


def gate_script(*, stamp: str = "", concurrency: str = "1,2", profile: str = "quick", version: str | None = None,
                config_sha: str | None = None, rollback: bool = True, window: float | None = None) -> str:
    """The per-host smoke gate against the host's own Triton with the site's SLOs (in config.json).

    A failed gate rolls the host back to what served before (`rollback`) and exits non-zero: the update fails
    naming the host and what it missed, and the next hosts are not touched. `version` and `config_sha` (the
    leading hex digits of the config's sha256) are what the host must serve: a host rolled back earlier fails
    the gate instead of passing with its old version. `stamp` (what it gates) is a comment: a new stamp is a
    new script text, which is what makes the remote command run again on a change. `window`: the measurement
    window in seconds (None: the profile's)."""
    expect = (f" --expect-version {shlex.quote(version)}" if version else "") + (f" --expect-config {shlex.quote(config_sha)}" if config_sha else "")
    return (
        "#!/bin/sh\n# hybridserve edge: smoke gate against this host's Triton, the site's SLOs; rollback when it fails\n"
        + (f"# gates {stamp}\n" if stamp else "")
        + _PRELUDE
        # As root (sudo): the config and the cache's key are readable by root and the service user only.
        + f'$sudo "$root/opt/hybridserve-edge/current/bin/hybridserve-edge" gate --root "$root" --concurrency {concurrency} --profile {profile}'
        + (f" --window {window:g}" if window is not None else "")
        + (" --rollback-on-fail" if rollback else "") + expect + "\n"
    )


def uninstall_script() -> str:
    """Stop and remove the runtime (the service user and its state directory are kept: the cache KEK lives there)."""
    return (
        "#!/bin/sh\n# hybridserve edge: uninstall the runtime\n"
        + _PRELUDE
        + 'edge="$root/opt/hybridserve-edge/current/bin/hybridserve-edge"\n'
        'if [ -x "$edge" ]; then $sudo "$edge" uninstall --root "$root"; else echo "hybridserve edge: not installed"; fi\n'
    )


def run_script(script: str, *, env: dict[str, str] | None = None, stdin: str = "", timeout: float = 900):
    """Run a rendered script with /bin/sh as the remote command would (tests; `subprocess.CompletedProcess`)."""
    import os
    import subprocess

    return subprocess.run(["/bin/sh", "-c", script], input=stdin, text=True, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
