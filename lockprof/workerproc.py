"""The orchestrator's handle on one engine worker process (:mod:`lockprof.worker` is the process itself).

:class:`WorkerProcess` sends the typed requests of :mod:`lockprof.protocol` and returns their typed replies."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockprof.errors import EngineError, from_pipe
from lockprof.protocol import ExitRequest, Request, encode_request

if TYPE_CHECKING:
    from lockprof.cpus import Pinning

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1
DUMP_STACKS_SIGNAL = signal.SIGUSR1  # the worker writes every thread's stack to its log
STACK_DUMP_S = 1.0  # how long a stuck worker is given to write its stacks before it is killed
EXIT_S = 60.0  # how long a worker may take to close its engine before it is killed


def die_with_parent() -> None:
    """In a child before exec: the kernel kills it when the orchestrator dies, however that happens,
    so no worker (or py-spy) is left running as an orphan."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _in_child(pin: Pinning | None) -> None:
    """Before exec: die with the orchestrator, and take the --cpus cores before any thread exists."""
    die_with_parent()
    if pin is not None:
        pin.enter()


class WorkerCrashed(EngineError):
    """The worker process died (the engine can segfault); its stderr tail says why."""


class WorkerProcess:
    def __init__(self, label: str, python: str | None = None, pin: Pinning | None = None) -> None:
        self.label = label
        # stderr goes to an anonymous file until the run directory exists to keep it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the worker)
        env = dict(os.environ)
        # The worker may run in another engine's environment; it imports this same lockprof.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [python or sys.executable, "-m", "lockprof.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            text=True,
            bufsize=1,
            preexec_fn=(lambda: _in_child(pin)) if sys.platform == "linux" else None,
        )
        self.busy: str | None = None  # the request being served, if any
        self.stuck: str | None = None  # why the orchestrator killed it, if it did

    def request(self, request: Request) -> Any:
        """Send one request and wait for its reply (of ``request.reply``'s type); a failure is raised as the
        error its kind names (:data:`lockprof.errors.PIPE_ERRORS`), a dead worker as :class:`WorkerCrashed`."""
        self.busy = request.op
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(encode_request(request)) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, ValueError):  # ValueError: the pipe was closed under us
            line = ""
        finally:
            self.busy = None
        if not line:
            raise self._crashed()
        reply = json.loads(line)
        if reply.get("ok"):
            return request.reply.from_json(reply)
        raise from_pipe(reply.get("kind", ""), reply.get("error", ""), self.label)

    def _crashed(self) -> WorkerCrashed:
        code = self.proc.wait(timeout=30)
        tail = deque(self.log_text().splitlines(), maxlen=12)
        reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        text = "\n    ".join(tail) if tail else "(no output)"
        return WorkerCrashed(f"engine worker {self.label!r} died ({reason}); last lines of its log:\n    {text}")

    def log_text(self) -> str:
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def interrupt(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        """Stop the worker now (a second Ctrl-C, or a request that cannot be cut short)."""
        if self.proc.poll() is None:
            self.proc.kill()

    def kill_stuck(self, why: str) -> None:
        """Stop a worker that will not finish its request, its threads' stacks in its log first."""
        if self.proc.poll() is None:
            self.stuck = why
            with contextlib.suppress(OSError):
                self.proc.send_signal(DUMP_STACKS_SIGNAL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=STACK_DUMP_S)  # time to write them (it does not exit)
            self.kill()

    def close(self, keep_log: Path | None = None) -> None:
        """Ask the worker to exit (kill it if it will not) and keep its log if asked. The reply is not
        awaited: a worker that cannot exit must not hold the orchestrator."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps(encode_request(ExitRequest())) + "\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=EXIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if keep_log is not None:
            text = self.log_text()
            if text:
                with contextlib.suppress(OSError):  # a full disk loses the log, not the run's own message
                    keep_log.parent.mkdir(parents=True, exist_ok=True)
                    keep_log.write_text(text)
        self._log.close()
