"""Supervised child processes for the local plane: own process group, log file, bounded stop.

Every server the kit starts (weed, tritonserver, moto_server) goes through `ManagedProcess`,
so Ctrl-C, a failing test or a crashed parent never leaves one behind.
"""

from __future__ import annotations

import _thread
import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from hybridserve.errors import UserError

_live: "weakref.WeakSet[ManagedProcess]" = weakref.WeakSet()
_deferring = threading.local()  # depth of nested signals_deferred() blocks in this thread

_CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_deferred() -> Iterator[list[int]]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back while a bounded cleanup runs, then deliver them.

    A second Ctrl-C (the impatient one) used to land inside a stop's wait: the stop was abandoned half way,
    the server kept running and `local up` still said everything was stopped. Inside this block such a
    signal is only noted; when the block ends the previous handlers come back and each noted signal is
    raised again, so it has its usual effect (KeyboardInterrupt, or none if it was ignored). Nested blocks
    defer to the outermost; outside the main thread (where handlers cannot be set) it does nothing.
    Yields the list of signals held so far (the outermost block's), so a caller can say one was held.
    """
    depth = getattr(_deferring, "depth", 0)
    if depth or threading.current_thread() is not threading.main_thread():
        _deferring.depth = depth + 1
        try:
            yield getattr(_deferring, "pending", [])
        finally:
            _deferring.depth = depth
        return
    pending: list[int] = []
    _deferring.pending = pending
    previous = {}
    for sig in _CANCEL_SIGNALS:
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
        except (ValueError, OSError):  # pragma: no cover - not settable here
            pass
    _deferring.depth = 1
    try:
        yield pending
    finally:
        _deferring.depth = 0
        _deferring.pending = []
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(pending):  # once each, in arrival order
            signal.raise_signal(sig)


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


def read_since(path: Path, offset: int) -> str:
    """The log written after byte `offset` (this start's lines only, in a log kept across runs)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


# A Go server's fatal error (weed's `F...` line) is followed by a dump of every goroutine's stack, which
# would fill the tail and push the reason out of it: those lines are left out.
_GO_STACK_LINE = re.compile(r"^(\t|goroutine \d+ \[|created by |[\w./-]+\.\(?\*?[\w.]+\)?\.?[\w.]*\(.*\)$)")


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join([line for line in text if not _GO_STACK_LINE.match(line)][-lines:])


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
        """Stop the whole process group: SIGTERM, bounded wait, SIGKILL. Idempotent; not cut short by Ctrl-C."""
        with signals_deferred():
            self._stop()

    def _stop(self) -> None:
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


_last_signal = signal.SIGINT  # the cancel signal to deliver again when its KeyboardInterrupt was swallowed


def install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so `finally` blocks stop the servers (CI cancels with SIGTERM).

    Also makes sure no cancel is lost: Python runs a signal handler at whatever bytecode comes next, and when
    that is inside a finalizer (weakref.finalize, __del__; boto3 and thread pools have them) the
    KeyboardInterrupt is printed as "Exception ignored" and dropped, so `local up` ran on to the end.
    """

    def _raise(signum, frame):
        global _last_signal
        _last_signal = signum
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _raise)
        except (ValueError, OSError):  # not the main thread
            pass

    previous_hook = sys.unraisablehook
    if getattr(previous_hook, "_hybridserve", False):
        return

    def _redeliver(unraisable) -> None:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            # Deliver it again a moment later, from another thread, so the handler runs once the finalizer has
            # returned (triggered from here it would run inside this hook and be dropped again). Should it land
            # in a finalizer once more, this hook sees it once more.
            signum = _last_signal if callable(signal.getsignal(_last_signal)) else signal.SIGINT

            def later() -> None:
                time.sleep(0.05)
                _thread.interrupt_main(signum)

            threading.Thread(target=later, name="redeliver-interrupt", daemon=True).start()
            return
        previous_hook(unraisable)

    _redeliver._hybridserve = True  # type: ignore[attr-defined]
    sys.unraisablehook = _redeliver
