"""`python -m hybridserve.edge`: the edge runtime's command line (argparse: runs before the dependencies exist).

Exit codes: 0 done/healthy, 2 bad input (names the flag or file and key), 3 unhealthy / failed / rolled back.
The gate's own codes pass through (smoke_tests: 1 SLO violation, 4 not ready, 5 wrong outputs, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from smoke_tests.errors import GateError

from hybridserve.edge import render

PROG = "python -m hybridserve.edge"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="The hybridserve edge runtime on one host: install, start, status, upgrade, stop.")
    sub = p.add_subparsers(dest="step", required=True, parser_class=_Parser)

    def step(name: str, help: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, description=help)
        s.add_argument("--root", type=Path, default=Path(os.environ.get(render.ROOT_ENV) or "/"),
                       help=f"Install root (default ${render.ROOT_ENV}, else /). A temporary root needs --no-systemd.")
        s.add_argument("--no-systemd", dest="systemd", action="store_false",
                       default=os.environ.get(render.SYSTEMD_ENV, "1") != "0",
                       help=f"Run the services as supervised processes, not systemd units (default: ${render.SYSTEMD_ENV}=0).")
        return s

    for name, help in (("install", "Lay out the runtime, config, user, units, firewall and log rotation (idempotent)."),
                       ("apply", "Install, then run the bundle's version healthy: start, restart or upgrade with rollback."),
                       ("upgrade", "Install a new version side by side, switch `current`, restart; roll back if unhealthy.")):
        s = step(name, help)
        s.add_argument("--bundle", type=Path, required=True, help="The runtime bundle (hybridserve-edge-<version>.tar.gz).")
        s.add_argument("--version", default=None, help="Expected runtime version (must match the bundle's).")
        if name != "upgrade":
            s.add_argument("--config", default=None, metavar="FILE|-",
                           help="The host's config.json ('-': stdin). apply without it keeps the installed one.")
        s.add_argument("--deps-python", default=os.environ.get(render.DEPS_PYTHON_ENV) or None,
                       help=f"An interpreter that already has the runtime's dependencies (default ${render.DEPS_PYTHON_ENV}); "
                            "else a venv is created in the version directory.")
    step("start", "Start the cache, fill it from the hub, start Triton (waits until ready).")
    step("restart", "Restart Triton only (the cache keeps running): it picks up the installed config.")
    step("rollback", "Go back to the version and the config/units that served before the last successful change.")
    step("prune", "Remove cached publications other than the configured one and the one a rollback goes back to.")
    step("stop", "Stop the services (bounded; nothing left behind).")
    s = step("status", "Services and probes; exit 0 when healthy, 3 when not.")
    s.add_argument("--wait", type=float, default=0.0, metavar="S", help="Wait up to S seconds for healthy.")
    s.add_argument("--json", action="store_true", help="Print the status as JSON.")
    s = step("uninstall", "Stop and remove the runtime (the cache state and user stay unless --purge).")
    s.add_argument("--purge", action="store_true")
    s = step("run", "Run one service in the foreground (what the units and the supervisor run).")
    s.add_argument("service", choices=("cache", "triton", "fill"))
    s.add_argument("--no-reload", dest="reload", action="store_false",
                   help="fill: do not ask Triton to reload changed models (a new publication filled while Triton serves the old one).")
    s.add_argument("--cached-ok", action="store_true",
                   help="fill: when the cache holds the publication complete, do not read the hub (a rollback: the hub may have pruned it).")
    s = step("gate", "The smoke gate against this host's Triton with the site's SLOs.")
    s.add_argument("--concurrency", default="1,2", help="Concurrency levels (edge SLOs: low concurrency). Default 1,2.")
    s.add_argument("--profile", default="quick")
    s.add_argument("--window", type=float, default=None, metavar="S",
                   help="Measurement window in seconds (default: the profile's, quick 2): shorter is a quicker, coarser verdict.")
    s.add_argument("--json", type=Path, default=None, help="Write the gate report here (default <state>/gate/smoke.json).")
    s.add_argument("--rollback-on-fail", action="store_true", help="A failed gate rolls the host back (`rollback`); the exit code stays the gate's.")
    s.add_argument("--expect-version", default=None, help="The runtime version the host must serve (else exit 3).")
    s.add_argument("--expect-config", default=None, metavar="SHA256_PREFIX", help="The leading hex digits of the config.json the host must serve (else exit 3).")
    return p


def _config(value: str | None):
    from hybridserve.edge.config import EdgeConfig

    if value is None:
        return None
    if value == "-":
        return EdgeConfig.from_json(sys.stdin.read(), source="--config - (stdin)")
    path = Path(value)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GateError(f"--config {path}: {exc.strerror}", exit_code=2) from None
    return EdgeConfig.from_json(text, source=str(path))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hybridserve.edge import runtime
    from hybridserve.edge.config import Layout

    layout = Layout(args.root.resolve() if str(args.root) != "/" else Path("/"))
    try:
        if args.step == "install":
            config = _config(args.config)
            if config is None:
                raise GateError("install: --config FILE|- is required (the host's config.json)", exit_code=2)
            result = runtime.install(layout, args.bundle, config, version=args.version, systemd=args.systemd, deps_python=args.deps_python)
            for line in result.changed:
                runtime.say(f"changed: {line}")
            runtime.say(f"install: {'unchanged' if result.unchanged else f'{len(result.changed)} change(s)'} (runtime {result.version})")
            return 0
        if args.step in ("apply", "upgrade"):
            config = _config(getattr(args, "config", None))
            return runtime.apply(layout, args.bundle, config, version=args.version, systemd=args.systemd, deps_python=args.deps_python)
        if args.step == "start":
            runtime.say(runtime.start(layout, systemd=args.systemd))
            return 0
        if args.step == "restart":
            runtime.say(runtime.restart(layout, systemd=args.systemd))
            return 0
        if args.step == "rollback":
            return runtime.rollback(layout, systemd=args.systemd)
        if args.step == "prune":
            deleted = runtime.prune(layout)
            runtime.say(f"prune: removed {len(deleted)} cached objects of other publications")
            return 0
        if args.step == "stop":
            for line in runtime.stop(layout, systemd=args.systemd):
                runtime.say(line)
            return 0
        if args.step == "status":
            st = runtime.wait_healthy(layout, systemd=args.systemd, timeout=args.wait)
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                runtime.say(f"{st['site']}/{st['host']} runtime {st['version']}: {'healthy' if st['healthy'] else 'NOT healthy'}")
                for name, ok in {**st["services"], **st["probes"]}.items():
                    print(f"  {name}: {'ok' if ok else 'DOWN'}")
            return 0 if st["healthy"] else runtime.EXIT_UNHEALTHY
        if args.step == "uninstall":
            for line in runtime.uninstall(layout, systemd=args.systemd, purge=args.purge):
                runtime.say(line)
            return 0
        if args.step == "run":
            runtime.run_service(layout, args.service, reload=args.reload, cached_ok=args.cached_ok)
            return 0
        if args.step == "gate":
            return runtime.gate(layout, concurrency=args.concurrency, profile=args.profile, window=args.window, json_path=args.json,
                                rollback_on_fail=args.rollback_on_fail, expect_version=args.expect_version,
                                expect_config=args.expect_config, systemd=args.systemd)
    except GateError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for d in exc.details:
            print(f"  - {d}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 2
