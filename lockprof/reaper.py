"""Temporary paths that outlive no lockprof process, however it ends.

A process killed with ``kill -9`` runs no cleanup of its own, so a temporary directory it made
(py-spy's output, a launched server's password file) would stay until something else removed it.
:func:`watch` hands such a path to one small reaper process per lockprof process; the reaper reads
paths from a pipe and, once the pipe closes (lockprof ended, in any way), removes those still there.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from pathlib import Path

# Runs isolated (-I) and imports nothing of lockprof: it must start fast and need nothing but the standard library.
# "+PATH" watches a path, "-PATH" lets it go (its owner removed it); with nothing left to watch the reaper exits.
_REAPER = """
import os, shutil, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
watched = set()
for line in sys.stdin:
    path = line[1:].rstrip("\\n")
    if line.startswith("+"):
        watched.add(path)
    else:
        watched.discard(path)
        if not watched:
            sys.exit(0)
for path in watched:  # the pipe closed: lockprof ended without removing them
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            pass
"""

_lock = threading.Lock()
_reaper: subprocess.Popen | None = None
_watched: set[str] = set()


def watch(path: Path) -> None:
    """Remove ``path`` (a file or a directory) when this process ends, even by ``kill -9``, unless :func:`release`
    said its owner removed it."""
    global _reaper
    with _lock:
        if _reaper is None or _reaper.poll() is not None:
            _reaper = subprocess.Popen(
                [sys.executable, "-I", "-c", _REAPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )  # no signal to lockprof's group reaches it
            _watched.clear()
        _watched.add(str(Path(path).absolute()))
        _send(f"+{Path(path).absolute()}")


def release(path: Path) -> None:
    """Its owner removed ``path``: stop watching it. The reaper ends once it watches nothing, so no process of
    lockprof's outlives its work (a notebook or a test calling lockprof in-process)."""
    global _reaper
    with _lock:
        name = str(Path(path).absolute())
        if _reaper is None or name not in _watched:
            return
        _watched.discard(name)
        _send(f"-{name}")
        if not _watched:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
                _reaper.stdin.close()
                _reaper.wait(timeout=10)
            _reaper = None


def _send(line: str) -> None:
    assert _reaper is not None and _reaper.stdin is not None
    with contextlib.suppress(OSError, ValueError):  # no reaper: the owner's own cleanup still runs
        _reaper.stdin.write(line + "\n")
        _reaper.stdin.flush()
