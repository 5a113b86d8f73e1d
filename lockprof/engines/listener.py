"""The process behind a launched server: chDB's clickhouse-local with its network listener on.

Run as ``python -m lockprof.engines.listener ROOT`` under a managed environment's
Python, with ``ROOT/config.xml`` and ``ROOT/users.xml`` already written (see
:mod:`lockprof.engines.local_server`). It imports only chDB, so it runs in an
environment that has nothing else.

chDB initialises its engine once per process, and every later module-level
query fails, so the whole life of the server is one call: start the HTTP and TCP
listeners, write the ports the kernel chose to ``ROOT/ports.tsv``, then run a
query that sleeps until it is killed. ``chdb.connect()`` cannot do this (its
embedded server has no listener callback); the module-level query can.

The process is two: a supervisor that holds nothing of chDB, and its forked child
that serves (chDB keeps the GIL for the whole call, so no thread of the serving
process could react to anything). The supervisor ends the server when its stdin
closes: the launcher closes it to stop the server, and the kernel closes it when
the launcher dies in any way; it then removes ROOT itself, so a launcher killed
with SIGKILL leaves no data behind. If the supervisor itself is killed, the
kernel kills the child (parent-death signal) and the launcher removes ROOT.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

KEEPALIVE = ("SELECT sleepEachRow(0.5) FROM system.numbers "
             "SETTINGS max_block_size = 1, max_threads = 1 FORMAT Null")
PORTS_FILE = "ports.tsv"


def statements(root: Path) -> str:
    """The one multi-statement call that is the server's whole life."""
    ports = root / PORTS_FILE
    return ("SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
            "SELECT getServerPort('http_port'), getServerPort('tcp_port') "
            f"INTO OUTFILE '{ports}' FORMAT TabSeparated; {KEEPALIVE}")


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def serve(root: Path) -> int:
    """The serving child: chDB's one call, which returns only when its keep-alive query is killed."""
    # chDB's import opens (and closes) an in-memory connection in the working directory;
    # the server's config must not apply to it, only to the server's own call below.
    os.chdir("/")
    from chdb import _chdb

    os.chdir(root)
    try:
        _chdb.query(statements(root), "TabSeparated", path=str(root / "data"))
    except Exception as exc:  # chDB reports SQL errors either way depending on the release
        print(f"listener: {exc}", file=sys.stderr, flush=True)
        return 3
    if not (root / PORTS_FILE).exists():  # an error chDB printed instead of raising
        print("listener: the listeners did not start", file=sys.stderr, flush=True)
        return 3
    print("listener: the keep-alive query ended (killed)", file=sys.stderr, flush=True)
    return 0


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve()
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        _die_with_parent()
        if os.getppid() != parent:  # the supervisor died before the signal was armed
            os._exit(3)
        code = serve(root)
        sys.stderr.flush()
        os._exit(code)
    stopped = threading.Event()

    def stop_when_stdin_closes() -> None:
        sys.stdin.buffer.read()
        stopped.set()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    _, status = os.waitpid(child, 0)
    if stopped.is_set():
        shutil.rmtree(root, ignore_errors=True)
        return 0
    code = os.waitstatus_to_exitcode(status)
    print(f"listener: the server exited ({'signal ' + str(-code) if code < 0 else 'status ' + str(code)})",
          file=sys.stderr, flush=True)
    return code if code > 0 else 3


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stderr.flush()
    os._exit(code)  # not sys.exit: the stdin watcher thread would block interpreter shutdown
