"""Keep lockprof's writes on a server inside databases lockprof created.

A server holds other people's data. Before a DDL statement or an INSERT runs,
the guard finds the databases it names and refuses unless each is called
``lockprof_…`` (the dataset databases, see :func:`lockprof.dataset.database_name`)
and either does not exist yet or carries lockprof's marker table, which the
guard writes right after lockprof creates a database. A ``lockprof_`` database
that someone else made is therefore neither dropped nor reused. Statements the
guard cannot place (``GRANT``, ``SYSTEM`` beyond flushing logs and stopping
merges on lockprof's own tables, unqualified table names) are refused, and so is
``KILL`` but for cancelling lockprof's own statements: a ``KILL QUERY`` whose only
conditions match the prefix of an id lockprof made (``lockprof-…`` or a run id).
In read-only mode everything but reading statements is refused.
"""

from __future__ import annotations

import re
from typing import Any

from lockprof.errors import EngineError
from lockprof.sqltext import READING, strip_comments

PREFIX = "lockprof_"
MARKER = "lockprof_owner"
_NAME = r"(?:`[^`]+`|\"[^\"]+\"|[A-Za-z_][A-Za-z0-9_]*)"
_QUALIFIED = re.compile(rf"({_NAME})\s*\.\s*{_NAME}|({_NAME})")
_FLUSH = re.compile(r"^SYSTEM\s+FLUSH\s+LOGS\b", re.IGNORECASE)
_DATABASE = re.compile(
    rf"^(CREATE|ATTACH|DROP|DETACH)\s+DATABASE\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?({_NAME})", re.IGNORECASE
)
_OBJECT = re.compile(
    r"^(?:(?:CREATE|ATTACH)(?:\s+OR\s+REPLACE)?|DROP|DETACH|TRUNCATE|OPTIMIZE|ALTER|EXCHANGE|RENAME)\s+"
    r"(?:TEMPORARY\s+)?(?:TABLE|VIEW|MATERIALIZED\s+VIEW|DICTIONARY|TABLES)?\s*(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(.*)$",
    re.IGNORECASE | re.DOTALL,
)
_INSERT = re.compile(r"^INSERT\s+INTO\s+(?:TABLE\s+)?(.*)$", re.IGNORECASE | re.DOTALL)
_MERGES = re.compile(r"^SYSTEM\s+(?:STOP|START)\s+MERGES\s+(.*)$", re.IGNORECASE | re.DOTALL)
_PREFIX_MATCH = r"startsWith\(\s*[A-Za-z_\[\]'.]+\s*,\s*\{prefix:String\}\s*\)"
_OWN_KILL = re.compile(rf"^KILL\s+QUERY\s+WHERE\s+{_PREFIX_MATCH}(?:\s+OR\s+{_PREFIX_MATCH})*(?:\s+(?:A?SYNC))?$",
                       re.IGNORECASE)
_OWN_ID = re.compile(r"^(lockprof-[a-z]+-[0-9a-f]{16,}|\d{8}-\d{6}-[0-9a-f]{6}-)")  # a preflight's id, a run's prefix


def _unquote(name: str) -> str:
    return name[1:-1] if name[:1] in "`\"" else name


def _first_target(rest: str) -> str | None:
    """The database of the first (qualified) object name in ``rest``; None if unqualified."""
    m = _QUALIFIED.match(rest.strip())
    if not m or m.group(2) is not None:
        return None
    return _unquote(m.group(1))


def targets(sql: str) -> tuple[str, list[str | None]]:
    """(kind, databases written to) of a statement; kind is read, flush, create_database, drop_database,
    write or unknown. A None database means an unqualified name."""
    text = strip_comments(sql)
    if READING.match(text):
        return "read", []
    if _FLUSH.match(text):
        return "flush", []
    if m := _DATABASE.match(text):
        kind = "create_database" if m.group(1).upper() in ("CREATE", "ATTACH") else "drop_database"
        return kind, [_unquote(m.group(2))]
    if m := _INSERT.match(text):
        if m.group(1).upper().startswith("FUNCTION"):
            return "unknown", []
        return "write", [_first_target(m.group(1))]
    if m := _MERGES.match(text):
        return "write", [_first_target(m.group(1))]
    if re.match(r"^RENAME\b|^EXCHANGE\b", text, re.IGNORECASE):
        names = re.findall(rf"({_NAME})\s*\.\s*{_NAME}", text)
        return "write", [_unquote(n) for n in names] or [None]
    if m := _OBJECT.match(text):
        return "write", [_first_target(m.group(1))]
    return "unknown", []


class Guard:
    """Checks statements before they run on a server; remembers which databases lockprof owns."""

    def __init__(self, admin: Any, readonly: bool = False) -> None:
        self._admin = admin
        self.readonly = readonly
        self._owned: set[str] = set()

    def check(self, sql: str, params: dict[str, Any] | None = None) -> None:
        if _OWN_KILL.match(" ".join(strip_comments(sql).split())) and _OWN_ID.match(str((params or {}).get("prefix"))):
            if self.readonly:
                raise EngineError(f"read-only mode: lockprof refuses to send {_head(sql)!r}")
            return  # cancels only statements lockprof itself started
        kind, databases = targets(sql)
        if kind == "read":
            return
        if self.readonly:
            raise EngineError(f"read-only mode: lockprof refuses to send {_head(sql)!r}")
        if kind == "flush":
            return
        if kind == "unknown":
            raise EngineError(f"lockprof does not send {_head(sql)!r} to a server (it only writes to its own "
                              f"{PREFIX}* databases)")
        for db in databases:
            if db is None:
                raise EngineError(f"{_head(sql)!r}: name the database; on a server lockprof writes only to "
                                  f"{PREFIX}* databases")
            if not db.startswith(PREFIX):
                raise EngineError(f"refusing {_head(sql)!r}: database {db!r} is not one lockprof creates "
                                  f"({PREFIX}*); lockprof never writes to other databases on a server")
            self._check_owned(db, sql)

    def after(self, sql: str) -> None:
        """Mark a database lockprof just created as its own; forget one it dropped."""
        kind, databases = targets(sql)
        if kind == "create_database" and databases and databases[0]:
            db = databases[0]
            self._admin._client.command(
                f"CREATE TABLE IF NOT EXISTS `{db}`.{MARKER} (created DateTime) ENGINE = TinyLog"
            )
            self._owned.add(db)
        elif kind == "drop_database" and databases and databases[0]:
            self._owned.discard(databases[0])

    def _check_owned(self, db: str, sql: str) -> None:
        if db in self._owned:
            return
        found = self._admin._client.query_df(
            "SELECT (SELECT count() FROM system.databases WHERE name = {db:String}) AS db, "
            "(SELECT count() FROM system.tables WHERE database = {db:String} AND name = {m:String}) AS marker",
            parameters={"db": db, "m": MARKER},
        ).iloc[0]
        if int(found["db"]) == 0:
            return  # not there yet: creating it makes it lockprof's
        if int(found["marker"]) == 0:
            raise EngineError(f"refusing {_head(sql)!r}: database {db!r} exists but lockprof did not create it "
                              f"(no {MARKER} table); drop or rename it yourself if it is a leftover")
        self._owned.add(db)


def _head(sql: str, width: int = 80) -> str:
    text = " ".join(strip_comments(sql).split())
    return text if len(text) <= width else text[: width - 1] + "…"
