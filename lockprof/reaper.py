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
_REAPER = """
import os, shutil, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the reaper waits for the pipe
paths = [line.rstrip("\\n") for line in sys.stdin]
for path in paths:
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


def watch(path: Path) -> None:
    """Remove ``path`` (a file or a directory) when this process ends, even by ``kill -9``, unless it is gone."""
    global _reaper
    with _lock:
        if _reaper is None or _reaper.poll() is not None:
            _reaper = subprocess.Popen([sys.executable, "-I", "-c", _REAPER], stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                                       start_new_session=True)  # no signal to lockprof's group reaches it
        assert _reaper.stdin is not None
        with contextlib.suppress(OSError, ValueError):  # no reaper: the owner's own cleanup still runs
            _reaper.stdin.write(f"{Path(path).absolute()}\n")
            _reaper.stdin.flush()
