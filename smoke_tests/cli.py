"""`python -m smoke_tests`: the smoke gate's command line (also behind the kit's `hybridserve smoke`).

Standard library argparse only, so the gate runs from NVIDIA's Triton SDK image (python3, numpy,
tritonclient; no typer, rich, pydantic or the kit). `hybridserve smoke` is this same parser and run,
with `--stack/--stacks-dir` added by the kit (`add_arguments` / `resolve` of `main`): one implementation.
The gate's modules load when the command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from smoke_tests.errors import GateError

PROG = "python -m smoke_tests"

DESCRIPTION = """\
The smoke gate: is this Triton fit to serve? Readiness, correctness on the reference set, and a
throughput / latency sweep against each model's SLO."""

EPILOG = """\
--slos takes the gate spec as JSON (every key optional; a model's entry overrides "*" field by field;
an SLO field that is null, or missing from both, is not checked):
  {"models": ["text_encoder", "image_classifier:1"] or null,
   "slos": {"*": {"min_throughput": N, "throughput_concurrency": C, "max_p99_ms": N,
                  "p99_concurrency": C, "max_error_rate": R},
            "<model>": {...}},
   "wait_ready_s": S}
The SLO flags override it field by field; --model replaces its models, --wait-ready its wait.

exit codes: 0 passed, 1 SLO violation, 2 bad input, 3 endpoint unreachable or stopped answering,
4 unknown model or not ready, 5 wrong outputs, 6 interface mismatch (several: the first of 3, 4, 6, 5, 1).

example (an in-cluster Job):
  python -m smoke_tests --url grpc://triton.triton.svc:8001 --model-repo /models \\
      --slos @/etc/smoke/slos.json --json - --junit /reports/smoke.xml"""

USAGE = "%(prog)s [--url HOST:PORT] [--model NAME[:VERSION] ...] [--model-repo DIR] [--slos JSON|@FILE] [options]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: exit 2 with a hint, never a traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\nTry '{self.prog} --help' for help.\n")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The smoke gate's flags. `hybridserve smoke` adds its stack options to this parser."""
    # No abbreviations: --model must never silently mean --model-repo, nor --json --junit.
    p = _Parser(prog=prog, usage=USAGE, description=DESCRIPTION, epilog=EPILOG, allow_abbrev=False, add_help=False,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    # argparse %-formats help texts: a literal percent sign is written %%.
    target = p.add_argument_group("endpoint and models")
    target.add_argument(
        "--url", "-u", default=os.environ.get("HYBRIDSERVE_TRITON_URL", "127.0.0.1:8001"), metavar="URL",
        help="Triton endpoint: HOST:PORT, or grpc:// grpcs:// http:// https:// + HOST:PORT (a port-forward, a "
             "Service, a stack output). Default: $HYBRIDSERVE_TRITON_URL, else 127.0.0.1:8001.")
    target.add_argument("--protocol", choices=("grpc", "http"), default=None,
                        help="grpc or http (default: from the URL scheme, else grpc).")
    target.add_argument("--metrics-url", metavar="HOST:PORT", default=os.environ.get("HYBRIDSERVE_TRITON_METRICS_URL") or None,
                        help="Triton's metrics endpoint (e.g. 127.0.0.1:8002): the server host's CPU per window, for the "
                             "saturation verdict. Default: $HYBRIDSERVE_TRITON_METRICS_URL, else not read.")
    target.add_argument("--model", "-m", action="append", metavar="NAME[:VERSION]", default=None,
                        help="Expected model (repeatable). Default: the --slos models, else every model with a reference.")
    target.add_argument("--model-repo", type=Path, metavar="DIR", default=None,
                        help="Built model repository with <model>/<version>/reference.npz (default: the kit's model_repo/ "
                             "when built).")
    target.add_argument("--slos", metavar="JSON|@FILE", default=None,
                        help="The gate spec: expected models, base SLOs and the --wait-ready default, as a JSON text or "
                             "@FILE (format below).")
    target.add_argument("--wait-ready", type=float, metavar="S", default=None,
                        help="Wait up to this many seconds for the server and models to be ready (default: the --slos "
                             "wait_ready_s, else 0).")

    slo = p.add_argument_group("service-level objectives (each overrides --slos)")
    slo.add_argument("--min-throughput", action="append", metavar="[MODEL=]N[@C]", default=None,
                     help="[MODEL=]N[@C]: at least N inferences/s at concurrency C (no @C: at the peak). No MODEL=: every "
                          "model. Repeatable, e.g. --min-throughput text_encoder=200@4.")
    slo.add_argument("--max-p99-ms", action="append", metavar="[MODEL=]N[@C]", default=None,
                     help="[MODEL=]N[@C]: p99 latency at most N ms at concurrency C (no @C: at the throughput "
                          "concurrency, else at every level). Repeatable.")
    slo.add_argument("--max-error-rate", action="append", metavar="[MODEL=]R", default=None,
                     help="[MODEL=]R: failed/all requests at most R, a fraction from 0 to 1 (0.01 = 1 %%). Repeatable. "
                          "Default 0.")
    slo.add_argument("--fail-on-unstable", action="store_true",
                     help="An unstable measurement is an SLO violation (exit 1).")

    m = p.add_argument_group("measurement (perf_analyzer's time windows)")
    m.add_argument("--profile", default="default", metavar="NAME",
                   help="default (5 s windows, up to 10, concurrency 1..16) or quick (2 s windows, up to 4, a capacity "
                        "search from 1 until throughput stops growing, up to 256, about 40 s per model).")
    m.add_argument("--window", type=float, metavar="S", default=None,
                   help="Measurement window, seconds, above 0 (perf_analyzer --measurement-interval). Default: the "
                        "profile's (5, quick 2).")
    m.add_argument("--max-windows", type=int, metavar="N", default=None,
                   help="Windows per concurrency before the result counts as unstable; at least --stability-windows. "
                        "Default: the profile's (10, quick 4).")
    m.add_argument("--stability-windows", type=int, metavar="N", default=None,
                   help="Consecutive windows that must agree for a stable result, at least 1 (default 3).")
    m.add_argument("--stability-threshold", type=float, metavar="F", default=None,
                   help="Allowed deviation of those windows from their mean, a fraction between 0 and 1 (default 0.10 "
                        "= 10 %%).")
    m.add_argument("--stability-latency", metavar="avg|p99", default=None,
                   help="Latency the windows must agree on: avg (default) or p99.")
    m.add_argument("--max-concurrency", type=int, metavar="N", default=None,
                   help="Highest concurrency of the sweep 1, 2, 4, ... (quick: of its capacity search), at least 1. "
                        "Default: the profile's (16, quick 256).")
    m.add_argument("--concurrency", metavar="C,C,...", default=None,
                   help="Explicit levels, comma-separated integers >= 1, e.g. 1,4,16 (replaces the doubling sweep).")
    m.add_argument("--batch-size", "-b", type=int, metavar="N", default=1,
                   help="Rows per request, at least 1 (perf_analyzer -b). Default 1.")
    m.add_argument("--client-processes", type=int, metavar="N", default=None,
                   help="Load generator processes, 1 to 64 (default min(CPUs, 4)).")
    m.add_argument("--request-timeout", type=float, metavar="S", default=10.0,
                   help="Bound on each inference request, seconds (default 10).")
    m.add_argument("--call-timeout", type=float, metavar="S", default=5.0,
                   help="Bound on each control call (health, metadata, statistics), seconds (default 5).")
    # Pairs by hand: BooleanOptionalAction's help text differs between Python versions (the SDK images' 3.10, 3.12).
    for name, on, off in (("correctness", "Check outputs on the reference inputs (the default).",
                           "Skip the correctness check (no reference set needed)."),
                          ("throughput", "Run the concurrency sweep (the default).",
                           "Skip the sweep: readiness and correctness only; the SLOs are not checked.")):
        m.add_argument(f"--{name}", dest=name, action="store_true", default=True, help=on)
        m.add_argument(f"--no-{name}", dest=name, action="store_false", help=off)

    o = p.add_argument_group("reports (the terminal report always goes to stdout)")
    o.add_argument("--json", metavar="FILE|-", default=None,
                   help="Write the report as JSON (schema: smoke_tests/report.schema.json). '-': to stdout after the "
                        "terminal report, as one line starting 'HYBRIDSERVE-SMOKE-REPORT ' (for kubectl logs; "
                        "smoke_tests.report.extract_report reads it).")
    o.add_argument("--junit", type=Path, metavar="FILE", default=None, help="Write JUnit XML for CI.")
    o.add_argument("--csv", type=Path, metavar="FILE", default=None,
                   help="Write CSV with perf_analyzer's columns (+ model columns).")
    o.add_argument("--plot", type=Path, metavar="FILE", default=None,
                   help="Write a PNG: throughput and p99 against concurrency per model (needs matplotlib).")
    o.add_argument("--out-dir", type=Path, metavar="DIR", default=None,
                   help="Write all four here (smoke.json, smoke.junit.xml, smoke.csv, and smoke.png when matplotlib is "
                        "installed); a file flag given as well wins.")
    p.add_argument("-h", "--help", action="help", help="Show this help and exit.")
    return p


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse, with an unknown option named and the closest known one suggested (argparse only says
    "unrecognized arguments"). Usage errors raise SystemExit(2) after printing the message."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        first = extra[0]
        if first.startswith("-") and first != "-":
            name = first.split("=", 1)[0]
            known = [s for a in parser._actions for s in a.option_strings]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            parser.error(f"No such option: {name}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
        parser.error(f"unexpected argument {first!r}: every value belongs to an option, e.g. --model {first}")
    return args


def main(
    argv: list[str] | None = None,
    *,
    prog: str = PROG,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    resolve: Callable[[argparse.Namespace], None] | None = None,
) -> int:
    """Run the smoke gate's command line on `argv` (None: sys.argv[1:]); returns the exit code.

    `add_arguments(parser)` may add options and `resolve(args)` turn them into the gate's own (e.g. set
    `args.slos`) before the run: how `hybridserve smoke` adds `--stack`. A GateError from either or from the
    run prints `error: ...` on stderr and returns its exit code; usage errors print argparse's message (2).
    """
    from smoke_tests.term import make_console, print_error, say

    parser = build_parser(prog)
    if add_arguments is not None:
        add_arguments(parser)
    err = make_console(stderr=True)
    try:
        args = parse_args(parser, argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): argparse already printed why
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        if resolve is not None:
            resolve(args)
        return run(args)
    except GateError as exc:
        print_error(err, exc)
        return exc.exit_code
    except KeyboardInterrupt:
        say(err, "interrupted", style="yellow")
        return 130


def run(args: argparse.Namespace) -> int:
    """One smoke run from parsed flags: the report on stdout, files written, and the exit code.

    Bad input raises GateError (exit 2) before the endpoint is contacted; a failed gate raises GateError with
    the gate's exit code and one line per problem.
    """
    from smoke_tests.errors import ExitCode, bad_input
    from smoke_tests.gatespec import GateSpec, read_gate_spec
    from smoke_tests.options import PROFILES, ModelTarget, SmokeOptions, have_module, parse_slo_flags, profile_of, resolve_slos
    from smoke_tests.report import report_line
    from smoke_tests.runner import run_smoke
    from smoke_tests.term import make_console, print_report, say

    if args.profile not in PROFILES:
        raise bad_input(f"--profile {args.profile!r}: expected one of {', '.join(PROFILES)}")
    changes = {"max_windows": args.max_windows, "stability_windows": args.stability_windows,
               "stability_threshold": args.stability_threshold, "stability_latency": args.stability_latency,
               "max_concurrency": args.max_concurrency}
    if args.concurrency is not None:
        try:
            levels = tuple(sorted({int(x) for x in args.concurrency.split(",") if x.strip()}))
        except ValueError:
            levels = ()
        if not levels:  # "" or "," used to fall back to the doubling sweep without a word
            raise bad_input(f"--concurrency {args.concurrency!r}: expected a comma-separated list of integers, e.g. 1,4,16")
        changes["concurrencies"] = levels
    prof = profile_of(args.profile, window_s=args.window, **changes)  # as the kit's time checks build it

    spec = read_gate_spec(args.slos) if args.slos is not None else GateSpec()
    overrides = parse_slo_flags(args.min_throughput or (), args.max_p99_ms or (), args.max_error_rate or ())
    targets = [ModelTarget.parse(m) for m in args.model or ()] or spec.models
    wait = args.wait_ready if args.wait_ready is not None else spec.wait_ready_s
    model_repo = args.model_repo if args.model_repo is not None else _default_model_repo()

    # SLOs per model are resolved once the model list is known (flags win over the spec).
    names = [t.name for t in targets] if targets else None
    if names is None and model_repo is not None:
        from smoke_tests.references import models_with_references

        names = models_with_references(model_repo)
    for key in overrides:
        if key != "*" and names is not None and key not in names:
            raise bad_input(f"an SLO flag names model {key!r}, which is not checked here (models: {', '.join(names) or 'none'})")
    slos = resolve_slos(names or [], spec.slos, overrides)
    if not names:
        slos = {**spec.slos, **overrides}

    json_stdout = args.json == "-"
    json_path = Path(args.json) if args.json is not None and not json_stdout else None
    junit_path, csv_path, plot_path = args.junit, args.csv, args.plot
    notes = []
    out_dir = args.out_dir
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            raise bad_input(f"--out-dir {out_dir}: is a file, not a directory (it is created if missing)")
        if json_path is None and not json_stdout:
            json_path = out_dir / "smoke.json"
        junit_path = junit_path or out_dir / "smoke.junit.xml"
        csv_path = csv_path or out_dir / "smoke.csv"
        if plot_path is None:
            if have_module("matplotlib"):
                plot_path = out_dir / "smoke.png"
            else:  # the Triton SDK image: the three text reports are what a CI job reads anyway
                notes.append(f"--out-dir {out_dir}: no smoke.png (matplotlib is not installed)")

    options = SmokeOptions(
        url=args.url, protocol=args.protocol, metrics_url=args.metrics_url, models=targets, model_repo=model_repo,
        slos=slos, profile=prof, batch_size=args.batch_size, client_processes=args.client_processes,
        correctness=args.correctness, throughput=args.throughput, fail_on_unstable=args.fail_on_unstable,
        request_timeout_s=args.request_timeout, call_timeout_s=args.call_timeout, wait_ready_s=wait or 0.0,
        json_path=json_path, junit_path=junit_path, csv_path=csv_path, plot_path=plot_path,
    )
    out = make_console()
    err = make_console(stderr=True)
    for note in notes:
        say(err, note, style="yellow")
    report = run_smoke(options, console=err, show_progress=err.is_terminal)

    measured = any(m.ready or m.violations for m in report.models)
    if report.error is None or measured:
        print_report(out, report, include_violations=False)
    if json_stdout:
        # Written raw (no console): a rich console would wrap the line, and the reader wants it whole.
        sys.stdout.flush()
        sys.stdout.write(report_line(report) + "\n")
        sys.stdout.flush()
    for p in (json_path, junit_path, csv_path, plot_path):
        if p is not None:
            say(err, f"wrote {p}", style="dim")
    code = report.exit_code
    if code != ExitCode.PASSED:
        if report.error is not None and not measured:
            raise GateError(report.error.message, exit_code=int(code))
        lines = [v.message for v in report.violations]
        raise GateError(f"smoke gate FAILED (exit code {int(code)}): {len(lines)} problem(s)", exit_code=int(code),
                        details=lines)
    return 0


def _default_model_repo() -> Path | None:
    """The kit's model_repo/ when it holds at least one built reference, else None."""
    try:
        from smoke_tests.paths import repo_root
        from smoke_tests.references import models_with_references

        repo = repo_root() / "model_repo"
        return repo if repo.is_dir() and models_with_references(repo) else None
    except Exception:
        return None
