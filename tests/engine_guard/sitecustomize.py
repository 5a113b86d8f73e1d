"""The engine guard of the fast test subset.

A session that runs only fast tests puts this directory first on ``PYTHONPATH``, so
every Python process it starts (a ``lockprof`` subprocess, an engine worker, a test
endpoint) loads this file; the session itself calls :func:`install`. Importing chDB or
starting a ClickHouse binary then fails with a message naming the cause, so a test
that opens an engine cannot pass as fast without anyone noticing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

BLOCKED_MODULES = ("chdb", "chdb_core", "_chdb")
MESSAGE = ("the fast test subset must not open an engine ({what}); this test needs the engine: "
           "move it to tests/engine (tests/unit is the fast layer)")
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event == "import" and str(args[0]).split(".")[0] in BLOCKED_MODULES:
        raise ImportError(MESSAGE.format(what=f"import {args[0]}"))
    if event in ("subprocess.Popen", "os.exec", "os.posix_spawn"):
        program = os.path.basename(os.fsdecode(args[0] or b"")) if args[0] else ""
        argv = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else []
        first = os.path.basename(os.fsdecode(argv[0])) if argv else ""
        if program.startswith("clickhouse") or first.startswith("clickhouse"):
            raise PermissionError(MESSAGE.format(what=f"start {program or first}"))


def install() -> None:
    """Install the guard in this process (audit hooks cannot be removed: only for fast-only sessions)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True


if os.environ.get("LOCKPROF_TEST_ENGINE_GUARD") == "1":
    install()
