"""The smoke gate's exit codes, its error type and its fatal error.

Exit codes (the CLI's, `SmokeReport.exit_code`, and `GateError.exit_code` for fatal errors). When several
things fail at once, the code of the most fundamental failure wins, in this order: 3, 4, 6, 5, 1.

| code | meaning |
| ---- | ------- |
| 0 | passed: every expected model ready, correct, and inside its SLO |
| 1 | SLO violation (throughput, p99 latency, error rate; or an unstable measurement with `--fail-on-unstable`) |
| 2 | bad input: flags, SLO syntax, stack file, model repository or reference files |
| 3 | endpoint unreachable, or it stopped answering during the run |
| 4 | unknown model, or the server / an expected model version is not ready |
| 5 | correctness: outputs on the reference inputs differ from the reference beyond the model's tolerance |
| 6 | interface mismatch: the served model does not take or give the reference's tensor names, dtypes or shapes |
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    PASSED = 0
    SLO_VIOLATION = 1
    BAD_INPUT = 2
    UNREACHABLE = 3
    NOT_READY = 4
    CORRECTNESS = 5
    INTERFACE = 6


# Most fundamental first: the exit code of a run is the first of these that occurred.
SEVERITY: tuple[ExitCode, ...] = (
    ExitCode.UNREACHABLE,
    ExitCode.NOT_READY,
    ExitCode.INTERFACE,
    ExitCode.CORRECTNESS,
    ExitCode.SLO_VIOLATION,
    ExitCode.BAD_INPUT,
)


def worst(codes) -> ExitCode:
    """The exit code of a run that saw `codes` (PASSED when empty)."""
    present = set(codes)
    for code in SEVERITY:
        if code in present:
            return code
    return ExitCode.PASSED


class GateError(Exception):
    """A mistake the user can fix (bad flag, SLO, model repository, reference file) or a run that cannot go on.

    The CLI prints `error: <str(exc)>` without a traceback and exits with `exit_code`. The kit's
    `hybridserve.errors.UserError` is a subclass, so the kit's commands print both the same way; the gate
    defines its own because it runs without the kit (in-cluster jobs from NVIDIA's Triton SDK image).
    """

    exit_code = 2

    def __init__(self, message: str, *, exit_code: int | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {d}" for d in self.details)


class SmokeFatal(GateError):
    """The run cannot go on (endpoint unreachable or stopped answering, server not ready).

    `run_smoke` catches it and records it in the report (`report.error`); the CLI then exits with its code.
    """

    def __init__(self, message: str, exit_code: ExitCode, *, details: list[str] | None = None, model: str | None = None):
        super().__init__(message, exit_code=int(exit_code), details=details)
        self.model = model


def bad_input(message: str, *, details: list[str] | None = None) -> GateError:
    return GateError(message, exit_code=int(ExitCode.BAD_INPUT), details=details)
