"""A server process lockprof started, the directory it owns, and the engine on it: started, awaited
and stopped one way.

Shared by the launched binary (:mod:`lockprof.engines.launch`) and the launched chDB
server (:mod:`lockprof.engines.local_server`). They differ in how the process is
started, how its ports are learnt (chosen beforehand, or read back once it listens)
and how it is asked to end; the rest, above all that the process and its directory
never outlive a failure or the engine, is here once.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from lockprof.engines.server import DEFAULT_TIMEOUT_S, ServerEngine, ServerTarget
from lockprof.errors import EngineError

STOP_TIMEOUT_S = 20.0  # after asking, how long a server may take to end before it is killed


class OwnedServer:
    """A server process and its directory; :meth:`stop` is idempotent and runs at interpreter exit too."""

    name = "the server"  # how messages call it
    user = "default"  # whom its URL names
    log_files: tuple[str, ...] = ("stderr.log",)  # under ROOT/log: their last lines explain a failed start

    def __init__(self) -> None:
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.http_port = 0

    def launch(self, prefix: str, popen: Callable[[Path], subprocess.Popen], ready_timeout_s: float) -> None:
        """Make a private directory, start the process ``popen`` returns for it, wait until it answers;
        on any failure (Ctrl-C included) stop the process and remove the directory before raising."""
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        atexit.register(self.stop)
        try:
            self.proc = popen(self.root)
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EngineError(f"{self.name} exited with status {self.proc.returncode} while starting; "
                                  f"its log says:\n    {self.log_tail()}")
            if self.find_port() and self.ping():
                return
            time.sleep(0.1)
        where = f" on port {self.http_port}" if self.http_port else ""
        raise EngineError(f"{self.name} did not answer{where} within {timeout_s:g} s; "
                          f"its log says:\n    {self.log_tail()}")

    def find_port(self) -> int:
        """The HTTP port, once known (0 until then)."""
        return self.http_port

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/ping", timeout=5) as r:
                return r.status == 200 and r.read().strip() == b"Ok."
        except OSError:
            return False

    def log_tail(self, lines: int = 8) -> str:
        paths = [self.root / "log" / name for name in self.log_files] if self.root else []
        paths = [p for p in paths if p.is_file()]
        if not paths:
            return "(no log)"
        text = [x for p in paths for x in p.read_text(errors="replace").splitlines() if x.strip()]
        return "\n    ".join(text[-lines:]) or "(empty log)"

    @property
    def url(self) -> str:
        return f"http://{self.user}@127.0.0.1:{self.http_port}"

    def ask_to_stop(self, proc: subprocess.Popen) -> None:
        """Ask the process to end; it is killed if it has not after :data:`STOP_TIMEOUT_S`."""
        proc.terminate()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                self.ask_to_stop(proc)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)


class OwnedServerEngine(ServerEngine):
    """A server engine on a server lockprof started: closing the engine (or failing to open it) stops the server."""

    def __init__(self, server: OwnedServer, password: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.server = server
        try:
            target = ServerTarget("http", server.user, "127.0.0.1", server.http_port, timeout_s=timeout_s)
            super().__init__(target, password=password)
        except BaseException:
            server.stop()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.server.stop()
