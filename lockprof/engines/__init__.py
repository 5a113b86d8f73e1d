"""Engines: how a worker talks to ClickHouse.

An engine spec on the command line is parsed by :func:`parse_spec` in the
orchestrator; the worker process opens it with :func:`open_engine`. A spec is
``embedded`` (the chDB of the current environment) or a ClickHouse version such
as ``25.8`` (a managed environment, see :mod:`lockprof.engines.managed`).
"""

from __future__ import annotations

import fcntl
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockprof.errors import EngineError

VERSION_SPEC = re.compile(r"^\d+\.\d+$")
MAX_INSTANCES = 8


@dataclass(frozen=True)
class EngineSpec:
    kind: str  # "embedded"
    label: str
    options: dict[str, Any]
    public_spec: str = ""  # what may be written to disk: never a password

    def as_request(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.options}


def _stderr(text: str) -> None:
    print(f"lockprof: {text}", file=sys.stderr, flush=True)


def parse_spec(text: str, progress: Callable[[str], None] | None = _stderr) -> EngineSpec:
    """Turn a command-line engine spec into an EngineSpec, or say which specs exist.

    A version spec prepares its managed environment first if it is missing, so
    ``lockprof run --engine 25.8`` works on a fresh machine.
    """
    from lockprof.engines import managed

    text = text.strip()
    base, _, query = text.partition("?")
    if base == "embedded" or VERSION_SPEC.match(base):
        settings = _settings(query, text)
        label = "+".join([base, *(f"{k}={v}" for k, v in settings.items())])
        options: dict[str, Any] = {"settings": settings} if settings else {}
        if base != "embedded":
            options["python"] = str(managed.ensure_env(base, progress=progress).python)
        return EngineSpec("embedded", label, options, text)
    if text.startswith(("http://", "https://", "binary:")):
        from lockprof.engines.launch import parse_server_spec  # a real server: see engines/server.py

        return parse_server_spec(text)
    if text.startswith("server:"):
        from lockprof.engines.local_server import parse_local_spec  # a launched server: engines/local_server.py

        return parse_local_spec(text, progress)
    raise EngineError(
        f"unknown engine {text!r}; known engines: embedded, {', '.join(managed.known_versions())}, "
        "server:VERSION (26.7, 26.9), http(s)://user@host:port, binary:/path/to/clickhouse"
    )


SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^&=]*$")


def _settings(query: str, text: str) -> dict[str, str]:
    """``embedded?max_threads=1&...``: ClickHouse settings for every query of that engine (an A/B of a setting)."""
    items = [item for item in query.split("&") if item]
    bad = [item for item in items if not SETTING.match(item)]
    if bad:
        raise EngineError(f"engine {text!r}: {bad[0]!r} is not SETTING=VALUE (e.g. embedded?max_threads=1)")
    return dict(item.split("=", 1) for item in items)


def open_engine(request: dict[str, Any]) -> Any:
    kind = request.get("kind")
    if kind == "embedded":
        from lockprof.engines.embedded import EmbeddedEngine

        return EmbeddedEngine(root=_claim_instance_root(), settings=request.get("settings"))
    if kind in ("server", "binary"):
        from lockprof.engines.launch import open_server_engine

        return open_server_engine(request)
    if kind == "local_server":
        from lockprof.engines.local_server import open_local_server

        return open_local_server(request)
    raise EngineError(f"unknown engine kind {kind!r}")


_claimed: list[Any] = []  # lock files held for the life of the worker process


def _claim_instance_root() -> Path:
    """A cache root whose chDB data path no other live process is using.

    chDB refuses to open a data path another process has open, which an A/A run
    (``--engine embedded --engine embedded``) or ``embedded`` next to ``26.9`` would
    otherwise do. Each worker takes an exclusive lock on the first free instance
    slot; slot 0 is the plain cache root, so a single-engine run finds its cached
    datasets where it always did. The lock dies with the process, crash included.
    """
    from lockprof.engines.embedded import cache_root, chdb_package

    dist, version = chdb_package()
    root = cache_root()
    for slot in range(MAX_INSTANCES):
        slot_root = root if slot == 0 else root / "instances" / str(slot)
        lock_path = slot_root / "embedded" / f"{dist}-{version}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a")  # noqa: SIM115  (held open on purpose)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _claimed.append(handle)
        return slot_root
    raise EngineError(f"{MAX_INSTANCES} processes already use {dist} {version} under {root}")
