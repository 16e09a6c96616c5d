"""The `hybridserve` command: one entry point for every user-facing command of the kit.

Sub-commands live next to the code they drive; each module keeps its heavy imports
(torch, pulumi, boto3) inside the command so `--help` stays fast.
"""

from __future__ import annotations

import sys


def _build_app():
    """The typer app with every command (imports every command's module: built only when needed)."""
    import typer

    from hybridserve.ci.cli import app as ci_app
    from hybridserve.doctor import doctor_command
    from hybridserve.edge.status import edge_app
    from hybridserve.local.cli import app as local_app
    from hybridserve.models.cli import app as models_app
    from hybridserve.smokereport import smoke_report_command
    from hybridserve.stackconfig.cli import plan_command, validate_command
    from hybridserve.stackconfig.migrate_cli import migrate_command
    from hybridserve.stackconfig.new import app as stacks_app
    from hybridserve.sync.cli import sync_command

    app = typer.Typer(
        name="hybridserve",
        help=(
            "Deploy Triton-served PyTorch models onto a hybrid OpenStack + AWS cloud.\n\n"
            "Data plane: `models`, `sync`, `local`, `smoke`. Stacks: `validate`, `plan`, `doctor`, `smoke-report`. "
            "The cloud itself is created by `pulumi up` (see README)."
        ),
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    app.add_typer(models_app, name="models")
    app.add_typer(local_app, name="local")
    app.add_typer(ci_app, name="ci")
    app.add_typer(stacks_app, name="stacks")
    app.add_typer(edge_app, name="edge")
    stacks_app.command("migrate")(migrate_command)
    app.command("sync")(sync_command)

    # The smoke gate parses its own flags (argparse, `smoke_tests.cli`): typer forwards every argument, --help
    # included, so there is one implementation of the command and of its help.
    @app.command(
        "smoke",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
        add_help_option=False,
    )
    def smoke_command(ctx: typer.Context) -> None:
        """The smoke gate: is this Triton fit to serve? Readiness, correctness on the reference set, and a throughput / latency sweep against each model's SLO.

        `hybridserve smoke --help` for its options. Exit codes: 0 passed, 1 SLO violation, 2 bad input, 3 endpoint unreachable or stopped answering, 4 unknown model or not ready, 5 wrong outputs, 6 interface mismatch.
        """
        from hybridserve.smokegate import smoke_main

        code = smoke_main(list(ctx.args))
        if code:
            raise typer.Exit(code)

    # typer resolves the (postponed) annotation in the module's globals, where typer is not imported.
    smoke_command.__annotations__["ctx"] = typer.Context
    app.command("smoke-report")(smoke_report_command)
    app.command("validate")(validate_command)
    app.command("plan")(plan_command)
    app.command("doctor")(doctor_command)
    return app


def __getattr__(name: str):
    # `hybridserve.cli.app` stays importable; it is built on first use, so `hybridserve sync` never builds it.
    if name == "app":
        globals()["app"] = _build_app()
        return globals()["app"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes end in a one-paragraph error and a non-zero exit, never a traceback."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["sync"]:
        # The lean entry (hybridserve/sync/command.py): no typer, no other command's imports. None: arguments
        # it does not parse itself (--help, a usage error), which the typer app below answers as always.
        from hybridserve.sync.command import exit_now, lean_main

        code = lean_main(args[1:])
        if code is not None:
            if argv is None:  # this process's own command line: end it without the interpreter's teardown
                exit_now(code)
            if code:
                sys.exit(code)
            return
    from hybridserve.clirun import run_app
    from hybridserve.console import make_console

    code = run_app(globals().get("app") or __getattr__("app"), argv, err=make_console(stderr=True))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
