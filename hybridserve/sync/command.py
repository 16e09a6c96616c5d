"""`hybridserve sync` without typer: the command's body, and a lean entry that parses its options itself.

An unchanged repository should cost a manifest read and a local stat; importing the whole CLI (typer, every
other command's module) cost more than that. So `hybridserve.cli.main` first offers `sync ...` to `lean_main`
here, which parses the options of `hybridserve.sync.cli.sync_command` (the one definition of the command,
its help and its errors) from `OPTIONS` below and runs `run_sync`. Anything it does not recognise exactly
(--help, an unknown or missing option, a value outside a choice, `--`) returns None: the typer command
then parses the same arguments and says what is wrong, exactly as before. tests/test_sync_cli.py checks
that `OPTIONS` and the typer command agree and that both parse the same arguments to the same values.

Nothing here imports typer, rich or boto3 at import time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

SSE_CHOICES = ("aws:kms", "AES256", "none")

# parameter -> (option names, kind, default). kind: "value" takes one argument; "flag" is True when given;
# ("switch", off) is True as the first name, False as `off`. Must match sync_command's typer options.
OPTIONS: dict[str, tuple[tuple[str, ...], Any, Any]] = {
    "bucket": (("--bucket",), "value", None),  # required
    "prefix": (("--prefix",), "value", "models"),
    "endpoint_url": (("--endpoint-url",), "value", None),
    "region": (("--region",), "value", None),
    "sse": (("--sse",), "value", "aws:kms"),
    "kms_key_id": (("--kms-key-id",), "value", None),
    "role_arn": (("--role-arn",), "value", None),
    "repo": (("--repo",), "value", None),
    "dry_run": (("--dry-run",), "flag", False),
    "prune": (("--prune",), "flag", False),
    "replace": (("--replace",), "flag", False),
    "verify": (("--verify",), "flag", False),
    "progress": (("--progress",), ("switch", "--no-progress"), True),
    "timings": (("--timings",), "flag", False),
}
REQUIRED = ("bucket",)


def parse_sync_args(argv: list[str]) -> dict[str, Any] | None:
    """The parameters of `sync` (as sync_command receives them, sse as its string), or None to let typer parse."""
    names: dict[str, tuple[str, Any]] = {}
    for param, (opts, kind, _) in OPTIONS.items():
        for opt in opts:
            names[opt] = (param, kind)
        if isinstance(kind, tuple):
            names[kind[1]] = (param, "off")
    params = {param: default for param, (_, _, default) in OPTIONS.items()}
    i = 0
    while i < len(argv):
        token = argv[i]
        opt, eq, inline = token.partition("=")
        if opt not in names:
            return None  # --help, an unknown option, a positional argument, `--`: typer's to answer
        param, kind = names[opt]
        if kind == "value":
            if eq:
                value = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1
                value = argv[i]
            else:
                return None  # a missing value: typer's message
            params[param] = value
        elif eq:
            return None  # `--flag=...`: typer's message
        else:
            params[param] = kind != "off"
        i += 1
    if any(params[p] is None for p in REQUIRED) or params["sse"] not in SSE_CHOICES:
        return None
    if params["repo"] is not None:
        params["repo"] = Path(params["repo"])
    return params


def _default_region() -> tuple[str, str]:
    """(region, where it came from): messages about a bad one name the variable to fix."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(name):
            return os.environ[name], f"from ${name}; --region overrides it"
    return "us-east-1", "--region"


def run_sync(
    *,
    bucket: str,
    prefix: str,
    endpoint_url: str | None,
    region: str | None,
    sse: str,
    kms_key_id: str | None,
    role_arn: str | None,
    repo: Path | None,
    dry_run: bool,
    prune: bool,
    replace: bool,
    verify: bool,
    progress: bool,
    timings: bool,
) -> int:
    """The sync command itself; returns its exit code. User mistakes raise UserError (the caller prints it)."""
    from hybridserve.paths import model_repo_dir, state_dir
    from hybridserve.sync.engine import SyncTarget, sync_repository
    from hybridserve.sync.errors import EXIT_PUBLISHED_CHANGED
    from hybridserve.sync.scan import HASH_CACHE_NAME

    region_source = "--region"
    if region is None:
        region, region_source = _default_region()
    target = SyncTarget(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint_url,
        region=region,
        region_source=region_source,
        access_key=None,  # boto3's chain reads the environment; options would leak into shell history
        secret_key=None,
        sse=sse,
        kms_key_id=kms_key_id,
        role_arn=role_arn,
    )
    report = sync_repository(
        repo or model_repo_dir(),
        target,
        dry_run=dry_run,
        prune=prune,
        replace=replace,
        verify=verify,
        show_progress=progress,
        console=None,  # the progress bar makes its own (rich), only when there is something to upload
        hash_cache=state_dir() / HASH_CACHE_NAME,
    )
    _print(sys.stdout, report.plain_lines(), lambda console: console.print(report))
    if timings:
        lines = [f"timing: {phase}: {seconds:.3f} s" for phase, seconds in report.timings.items()]
        lines.append(f"timing: compared with: {report.compared_with or 'nothing (refused)'}")
        lines.append(f"timing: validation: {report.validation}")
        _print(sys.stderr, lines, lambda console: [console.print(line, highlight=False) for line in lines], stderr=True)
    if report.conflicts:  # a dry run that a real run would refuse
        return EXIT_PUBLISHED_CHANGED
    return 0


def _fits(lines: list[str], stream) -> bool:
    """Would rich print `lines` (strings without markup) on `stream` as they are? Printable ASCII, no markup
    bracket, none longer than the console's width (hybridserve.console: piped, at least PIPED_WIDTH)."""
    from smoke_tests.term import PIPED_WIDTH

    if not all(line.isascii() and line.isprintable() and "[" not in line for line in lines):
        return False
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        return False
    if terminal:
        import shutil

        width = shutil.get_terminal_size().columns
    else:
        columns = os.environ.get("COLUMNS", "")
        width = max(PIPED_WIDTH, int(columns) if columns.isdigit() else 0)
    return all(len(line) < width for line in lines)


def _print(stream, lines: list[str] | None, with_rich, *, stderr: bool = False) -> None:
    """`lines` written plainly when rich would print exactly them (rich's import costs as much as an unchanged
    sync's read of the store), else `with_rich(console)` (lines None: always)."""
    if lines is not None and _fits(lines, stream):
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()
        return
    from hybridserve.console import make_console

    with_rich(make_console(stderr=stderr))


def exit_now(code: int) -> None:
    """End the `hybridserve sync` process with `code` as sys.exit would, without the interpreter's teardown:
    freeing botocore's service models and every module took ~0.15 s, a tenth of a small sync. What an exit
    does that matters still happens: the atexit handlers run (logging's flush, weakref finalizers,
    multiprocessing's), then stdout and stderr are flushed. Only when no other thread is still working
    (the ordinary exit would wait for it: then it is the ordinary exit) and only for the CLI process
    (hybridserve.cli.main without argv), never for an in-process caller."""
    import atexit
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)  # CPython's; elsewhere the ordinary exit
    if others or run_exitfuncs is None:
        sys.exit(code)
    run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)  # e.g. a closed pipe: the ordinary exit reports it as ever
    os._exit(code)


def lean_main(argv: list[str]) -> int | None:
    """Run `sync` with `argv` (the arguments after `sync`) and return its exit code, as hybridserve.clirun.run_app
    would; None when the arguments are typer's to parse (see the module docstring)."""
    params = parse_sync_args(argv)
    if params is None:
        return None
    from smoke_tests.errors import GateError

    try:
        return run_sync(**params)
    except GateError as exc:  # the kit's UserError
        from rich.markup import escape

        from hybridserve.console import make_console

        # As hybridserve.clirun.print_user_error prints it (that module imports typer).
        make_console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        from hybridserve.console import make_console

        make_console(stderr=True).print("[yellow]interrupted[/]")
        return 130
