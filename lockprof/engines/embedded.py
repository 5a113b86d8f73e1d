"""The embedded engine: chDB, the real ClickHouse engine inside this process.

A spec is ``embedded`` (the chDB of the current environment), optionally with
ClickHouse settings for every query: ``embedded?max_threads=1&...`` (an A/B of a
setting). chDB hosts one engine per process, bound to one data path. A run's worker
opens a data path of its own dataset set (scenario and schemas) and nothing else: every
table in a data path is loaded when the engine starts, and an engine that had loaded
other datasets ran the same queries on the same data about 5% slower, even with those
detached, which made two workers of one engine differ in an A/A run.
Each thread gets its own connection; queries on different connections run in
parallel on chDB releases that do not serialize them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from lockprof.engines.base import Capabilities, EngineInfo, EngineSpec
from lockprof.engines.sql import DEFAULT, KNOWN_SETTINGS_SQL, session_settings, unknown_setting
from lockprof.errors import EngineError

# chDB cannot set query_id; it keeps no trace_log samples; it is no cluster; lockprof alone uses it and its data.
CAPABILITIES = Capabilities(query_log=True, query_id=False, stack_period_ms=0.0, cluster=False, cancel=True,
                            private=True)
SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^&=]*$")
MAX_INSTANCES = 8

QUERY_LOG_CONFIG = """<clickhouse>
    <query_log>
        <database>system</database>
        <table>query_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_log>
    <query_thread_log>
        <database>system</database>
        <table>query_thread_log</table>
        <flush_interval_milliseconds>1000</flush_interval_milliseconds>
    </query_thread_log>
</clickhouse>
"""
# What a session setting lockprof changed goes back to when a later query does not want it.
SESSION_RESET = {"log_comment": "", "max_execution_time": "0", "log_query_threads": "0"}


def parse_spec(text: str, kind: str = "embedded") -> EngineSpec:
    """``embedded[?SETTING=VALUE&...]`` (or a managed version's ``VERSION[?...]``, see managed.parse_spec)."""
    base, _, query = text.partition("?")
    items = [item for item in query.split("&") if item]
    bad = [item for item in items if not SETTING.match(item)]
    if bad:
        raise EngineError(f"engine {text!r}: {bad[0]!r} is not SETTING=VALUE (e.g. embedded?max_threads=1)")
    settings = dict(item.split("=", 1) for item in items)
    label = "+".join([base, *(f"{k}={v}" for k, v in settings.items())])
    return EngineSpec(kind, label, {"settings": settings} if settings else {}, text, CAPABILITIES)


def open_engine(request: dict[str, Any]) -> EmbeddedEngine:
    """``request["datasets"]``, when given, names the data path (a run's dataset set); else the shared one."""
    return EmbeddedEngine(root=_claim_instance_root(), settings=request.get("settings"),
                          datasets=request.get("datasets"))


_claimed: list[Any] = []  # lock files held for the life of the worker process


def _claim_instance_root() -> Path:
    """A cache root whose chDB data path no other live process is using.

    chDB refuses to open a data path another process has open, which an A/A run
    (``--engine embedded --engine embedded``) or ``embedded`` next to ``26.9`` would
    otherwise do. Each worker takes an exclusive lock on the first free instance
    slot; slot 0 is the plain cache root, so a single-engine run finds its cached
    datasets where it always did. The lock dies with the process, crash included.
    """
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


def cache_root() -> Path:
    """Where datasets and engine environments live: $LOCKPROF_CACHE, else the user cache."""
    if root := os.environ.get("LOCKPROF_CACHE"):
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lockprof"


def chdb_package() -> tuple[str, str]:
    """(distribution name, version) of the chDB installed here."""
    from importlib import metadata

    for dist in ("chdb-core", "chdb"):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    raise EngineError("chDB is not installed in this environment (pip install chdb-core)")


class EmbeddedConnection:
    """One chDB connection (a session). The query text is sent exactly as written: lockprof's own
    settings (the driver's id or tag as ``log_comment``, a time limit) travel in a ``SET`` on this
    session before the query, and only when they change."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._session: dict[str, str] = dict(SESSION_RESET)
        # The (settings, tag) of the last execute, which the session already holds: the driver sends the same
        # ones query after query, and comparing them is far cheaper than rebuilding the wanted settings.
        self._sent: tuple[dict[str, Any] | None, str] | None = None

    def execute(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        query_id: str | None = None,
        settings: dict[str, Any] | None = None,
        log_tag: str | None = None,
    ) -> None:
        # chDB cannot set query_id, so lockprof's id travels in log_comment, which query_log keeps. A SET costs
        # a second call into the engine; with a tag for the whole connection it is sent once, not per query.
        wanted = (settings, log_tag or query_id or "")
        if wanted != self._sent:
            self._apply({**(settings or {}), "log_comment": wanted[1]})
            self._sent = (dict(settings) if settings else None, wanted[1])
        self._raw.query(sql, "Null", params=params or None)

    def _apply(self, wanted: dict[str, Any]) -> None:
        """Bring the session's settings to ``wanted``: the driver's id and time limit, when not wanted, are reset,
        and any other setting an earlier statement had (a scenario's ``settings``, the populate limits) goes back
        to its default, so a check such as ``max_rows_to_read`` never reaches lockprof's own queries."""
        target = SESSION_RESET | {k: str(v) for k, v in wanted.items()}
        changed: dict[str, Any] = {k: v for k, v in target.items() if self._session.get(k) != v}
        changed |= {k: DEFAULT for k in self._session if k not in target}
        if changed:
            self._raw.query(session_settings(changed), "Null")
            self._session.update(changed)
            for name in [k for k, v in changed.items() if v is DEFAULT]:
                del self._session[name]

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        self._apply({})  # lockprof's own queries carry no driver id and no time limit
        self._sent = None
        return self._raw.query(sql, "DataFrame", params=params or None)

    def close(self) -> None:
        self._raw.close()


class EmbeddedEngine:
    """chDB with a generated config that turns on system.query_log and system.query_thread_log."""

    def __init__(
        self, root: Path | None = None, settings: dict[str, str] | None = None, datasets: str | None = None
    ) -> None:
        try:
            import chdb  # noqa: F401  (imported here so a missing chDB is one clear error)
        except ImportError as exc:
            raise EngineError(f"cannot import chDB: {exc}") from None
        self.dist, self.dist_version = chdb_package()
        self.home = (root or cache_root()) / "embedded" / f"{self.dist}-{self.dist_version}"
        self.data_path = self.home / "data" if datasets is None else self.home / "datasets" / datasets
        self.data_path.mkdir(parents=True, exist_ok=True)
        config = self.home / "config.xml"
        if not config.exists() or config.read_text() != QUERY_LOG_CONFIG:
            tmp = config.with_suffix(".tmp")
            tmp.write_text(QUERY_LOG_CONFIG)
            tmp.replace(config)
        # Settings in the connection string apply to every query of every connection. ``dsn`` is public so that
        # a plain chDB connection (a benchmark's baseline) can open the same data path with the same config.
        extra = [f"{k}={v}" for k, v in (settings or {}).items()]
        self.dsn = "&".join([f"{self.data_path}?config-file={config}", *extra])
        self._lock = threading.Lock()
        self._connections: list[EmbeddedConnection] = []
        self._admin = self.connect()
        self._check_settings(settings or {})
        self._info: EngineInfo | None = None
        self._capabilities: Capabilities | None = None

    def _check_settings(self, settings: dict[str, str]) -> None:
        """Refuse a setting of the spec this engine does not know: chDB would ignore it without a word."""
        if not settings:
            return
        problem = unknown_setting(settings, set(self._admin.frame(KNOWN_SETTINGS_SQL)["name"]))
        if problem:
            raise EngineError(f"{problem} (ClickHouse {self._admin.frame('SELECT version() AS v')['v'].iloc[0]})")

    def connect(self) -> EmbeddedConnection:
        import chdb

        try:
            conn = EmbeddedConnection(chdb.connect(self.dsn))
        except Exception as exc:
            raise EngineError(f"chDB could not open {self.data_path}: {exc}") from None
        with self._lock:
            self._connections.append(conn)
        return conn

    @property
    def admin(self) -> EmbeddedConnection:
        """The connection lockprof itself uses for DDL and system tables."""
        return self._admin

    @property
    def capabilities(self) -> Capabilities:
        if self._capabilities is None:
            self._capabilities = replace(CAPABILITIES, query_log=self._probe_query_log())
        return self._capabilities

    def info(self) -> EngineInfo:
        if self._info is None:
            version = str(self._admin.frame("SELECT version() AS v")["v"].iloc[0])
            self._info = EngineInfo(
                kind="embedded",
                clickhouse_version=version,
                package=f"{self.dist} {self.dist_version}",
                has_query_log=self.capabilities.query_log,
                data_path=str(self.data_path),
            )
        return self._info

    def _probe_query_log(self) -> bool:
        """Some chDB releases ignore the query_log config; find out rather than assume."""
        marker = f"lockprof-probe-{os.getpid()}-{threading.get_ident()}"
        try:
            self._admin.execute("SELECT 1", query_id=marker)
            self._admin.execute("SYSTEM FLUSH LOGS")
            found = self._admin.frame(
                "SELECT count() AS n FROM system.query_log WHERE log_comment = {m:String}", {"m": marker}
            )
            return int(found["n"].iloc[0]) > 0
        except Exception:
            return False

    def close(self) -> None:
        # chDB's engine lives as long as the process; closing connections is all that is ours to do.
        with self._lock:
            conns, self._connections = self._connections, []
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
