"""Supervised child processes for the local plane: own process group, log file, bounded stop.

Every server the kit starts (weed, tritonserver, moto_server) goes through `ManagedProcess`,
so Ctrl-C, a failing test or a crashed parent never leaves one behind.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hybridserve.errors import UserError

_live: "weakref.WeakSet[ManagedProcess]" = weakref.WeakSet()


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it, so parallel tests do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free ports, held open together while picking so none is handed out twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ManagedProcess:
    """A child process in its own session, logging to a file, stopped with a bounded wait.

    `stop()` sends SIGTERM to the whole process group, waits `term_timeout`, then SIGKILLs it
    (weed server ignores SIGTERM for over a minute, so the wait must be bounded).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        term_timeout: float = 10.0,
    ):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.term_timeout = term_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ManagedProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: we can signal it and its children as one
            )
        except FileNotFoundError as exc:
            raise UserError(f"{self.name}: cannot start {self.argv[0]!r}: {exc.strerror}. Run `make install`.") from exc
        finally:
            log.close()
        _live.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_until(self, check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.25) -> None:
        """Poll `check` until true; fail fast if the process died, and with the log tail on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                code = self.proc.returncode if self.proc else None
                raise UserError(
                    f"{self.name} exited (code {code}) before {what}. Last log lines ({self.log_path}):\n{tail(self.log_path)}",
                    exit_code=3,
                )
            try:
                if check():
                    return
            except Exception:  # a not-yet-listening server raises all sorts of connection errors
                pass
            time.sleep(interval)
        raise UserError(
            f"{self.name} did not become {what} within {timeout:.0f} s. Last log lines ({self.log_path}):\n{tail(self.log_path)}",
            exit_code=3,
        )

    def detach(self) -> None:
        """Leave the process running past our exit (`local up --keep`): neither stop() nor atexit touches it."""
        _live.discard(self)
        self.proc = None

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, bounded wait, SIGKILL. Idempotent."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        _live.discard(self)
        try:
            pgid = os.getpgid(proc.pid)
        except ProcessLookupError:
            pgid = None
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=self.term_timeout)
        except subprocess.TimeoutExpired:
            pass
        # Children of the group may outlive the leader: always sweep with SIGKILL.
        if pgid is not None:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a zombie we cannot reap
            pass

    def __enter__(self) -> "ManagedProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for p in list(_live):
        p.stop()


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so `finally` blocks stop the servers (CI cancels with SIGTERM)."""

    def _raise(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _raise)
        except (ValueError, OSError):  # not the main thread
            pass
