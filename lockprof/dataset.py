"""Datasets: build each schema's table once per engine, with merges stopped, and reuse it.

A dataset lives in its own database named after the scenario, schema and a hash
of what fills it, so a change to the DDL or the population builds a new one and
a second run finds the first one ready. A marker table, written last, tells a
finished dataset from one whose build was interrupted, and records what was built:
active parts, rows and a checksum the engine computes over every row. A cached
dataset is reused only if it still matches that record; otherwise it is rebuilt
and the dataset says why (a damaged cache would otherwise measure other data).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import Any

from lockprof.engines.base import Connection
from lockprof.errors import ScenarioError
from lockprof.scenario import Scenario, Schema, dataset_key

TABLE = "data"
READY_MARKER = "lockprof_ready"
# Populating many partitions in one INSERT is the point, not an accident.
POPULATE_SETTINGS = {"max_partitions_per_insert_block": "0", "throw_on_max_partitions_per_insert_block": "0"}


@dataclass(frozen=True)
class Dataset:
    schema: str
    database: str
    table: str
    create_table_query: str
    partition_key: str
    sorting_key: str
    active_parts: int
    partitions: int
    rows: int
    bytes_on_disk: int
    build_s: float
    cached: bool
    rebuilt_because: str | None = None  # a cached copy that no longer matched what was built

    @property
    def full_name(self) -> str:
        return f"{self.database}.{self.table}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def database_name(scenario: Scenario, schema: Schema) -> str:
    raw = f"lockprof_{scenario.name}_{schema.name}_{dataset_key(scenario, schema)}"
    return re.sub(r"[^A-Za-z0-9_]", "_", raw)


def ensure_dataset(conn: Connection, scenario: Scenario, schema: Schema) -> Dataset:
    """Return the schema's dataset, building it first unless a finished, intact one exists.

    A scenario that writes (background writers, or measured INSERTs) changes its table while it runs, so its
    dataset serves one run only: the ready marker is dropped as the run takes it.
    """
    database = database_name(scenario, schema)
    full = f"{database}.{TABLE}"
    started = time.perf_counter()
    damage = None
    cached = _is_ready(conn, database)
    if cached:
        damage = _damage(conn, database)  # its fingerprint is the read that settles the table
        cached = damage is None
    if not cached:
        conn.execute(f"DROP DATABASE IF EXISTS {database} SYNC")
        conn.execute(f"CREATE DATABASE {database}")
        try:
            _run(conn, schema.ddl.replace("{table}", full), schema, "ddl")
            conn.execute(f"SYSTEM STOP MERGES {full}")
            for i, statement in enumerate(schema.populate):
                # Session settings: the statement's own SETTINGS clause, if any, still wins.
                _run(conn, statement.replace("{table}", full), schema, f"populate[{i}]", POPULATE_SETTINGS)
            # Reload the table from disk, so a worker that just built it holds the same state as one that
            # reuses it; the fingerprint the marker records then reads it once, as a reused one is read.
            conn.execute(f"DETACH TABLE {full} SYNC")
            conn.execute(f"ATTACH TABLE {full}")
            hold_still(conn, full)
            conn.execute(f"CREATE TABLE {database}.{READY_MARKER} (built DateTime, parts UInt64, rows UInt64, "
                         "checksum UInt64) ENGINE = TinyLog")
            conn.execute(f"INSERT INTO {database}.{READY_MARKER} SELECT now(), * FROM ({FINGERPRINT_SQL})",
                         {"db": database, "t": TABLE})
        except BaseException:
            conn.execute(f"DROP DATABASE IF EXISTS {database} SYNC")
            raise
    if scenario.writes:
        conn.execute(f"DROP TABLE IF EXISTS {database}.{READY_MARKER} SYNC")
    found = describe(conn, schema.name, database, time.perf_counter() - started, cached)
    return replace(found, rebuilt_because=damage)


# What a finished dataset holds: its active parts, rows, and a checksum of every row, computed by the engine.
# Reading every column of every part, it is also the read that settles the table (see hold_still).
FINGERPRINT_SQL = (
    "SELECT (SELECT count() FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active) "
    "AS parts, count() AS rows, sum(cityHash64(*)) AS checksum FROM {db:Identifier}.{t:Identifier}"
)


def hold_still(conn: Connection, full: str) -> None:
    """Stop merges and load primary keys, so every worker measures the same steady state.

    Merges would change the parts count under the measurement, so they stay off. A table
    loaded from disk reads each part's primary index, marks and files on the first query
    that touches the part, while one just built keeps them from the INSERT. On the 10 000-part
    dataset such a first touch cost a query ~65 more context-lock acquisitions and ~1 ms more
    index analysis, so the worker that reused its cached dataset was slower than the one that
    had just built its copy: the bias of A/A runs. Loading the primary keys here, and reading
    every part once (the fingerprint does), puts both in the state of a server that has run a
    while. ``SYSTEM LOAD PRIMARY KEY`` is older engines' unknown; they load primary keys eagerly.
    """
    conn.execute(f"SYSTEM STOP MERGES {full}")
    with contextlib.suppress(Exception):
        conn.execute(f"SYSTEM LOAD PRIMARY KEY {full}")


def _damage(conn: Connection, database: str) -> str | None:
    """Why a cached dataset no longer matches what was recorded when it was built (None if it does)."""
    try:
        hold_still(conn, f"{database}.{TABLE}")
        recorded = conn.frame(f"SELECT parts, rows, checksum FROM {database}.{READY_MARKER} LIMIT 1")
        now = conn.frame(FINGERPRINT_SQL, {"db": database, "t": TABLE})
    except Exception as exc:  # an old or damaged marker, an unreadable table
        text = str(exc).strip().splitlines()
        return f"its build record is unreadable ({text[0][:200] if text else type(exc).__name__})"
    if recorded.empty:
        return "its build record is empty"
    was, found = recorded.iloc[0], now.iloc[0]
    for key, what in (("parts", "active parts"), ("rows", "rows"), ("checksum", "checksum")):
        if int(was[key]) != int(found[key]):
            return f"{what} {int(found[key])} differ from the {int(was[key])} recorded when it was built"
    return None


def dataset_set(scenario: Scenario, schemas: list[str]) -> str:
    """The name of a run's dataset set: a private engine keeps these datasets, and only these, in one data path."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join([scenario.name, *sorted(schemas)]))


def drop_stale(conn: Connection, keep: list[Dataset]) -> list[str]:
    """In a data path of one dataset set, drop every other lockprof database (an older build of a
    schema whose DDL or population changed) and return their names.

    Why: the engine loads every table of its data path when it starts, and a loaded
    table slows the measured queries even when nothing queries it or it is detached
    before the run (about 5% in an A/A run whose first worker's data path held 10 417
    more parts of other datasets), so a data path holds its run's datasets and no more.
    """
    found = conn.frame("SELECT name FROM system.databases WHERE startsWith(name, 'lockprof_')")["name"]
    stale = sorted(set(found) - {d.database for d in keep})
    for database in stale:
        conn.execute(f"DROP DATABASE {database} SYNC")
    return stale


def refresh(conn: Connection, dataset: Dataset) -> Dataset:
    """The dataset as it is now (after statements that changed it), keeping how it was obtained."""
    now = describe(conn, dataset.schema, dataset.database, dataset.build_s, dataset.cached)
    return replace(now, rebuilt_because=dataset.rebuilt_because)


def _run(conn: Connection, sql: str, schema: Schema, what: str, settings: dict[str, str] | None = None) -> None:
    try:
        conn.execute(sql, settings=settings)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(f"schema {schema.name!r}, {what}: ClickHouse rejected it: {first_line}") from None


def _is_ready(conn: Connection, database: str) -> bool:
    found = conn.frame(
        "SELECT count() AS n FROM system.tables WHERE database = {db:String} AND name IN ({t:String}, {m:String})",
        {"db": database, "t": TABLE, "m": READY_MARKER},
    )
    return int(found["n"].iloc[0]) == 2


def active_parts(conn: Connection, database: str, table: str = TABLE) -> int:
    found = conn.frame(
        "SELECT count() AS n FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active",
        {"db": database, "t": table},
    )
    return int(found["n"].iloc[0])


def describe(conn: Connection, schema: str, database: str, build_s: float, cached: bool) -> Dataset:
    table = conn.frame(
        "SELECT create_table_query, partition_key, sorting_key FROM system.tables "
        "WHERE database = {db:String} AND name = {t:String}",
        {"db": database, "t": TABLE},
    ).iloc[0]
    parts = conn.frame(
        "SELECT count() AS parts, uniqExact(partition_id) AS partitions, sum(rows) AS rows, "
        "sum(bytes_on_disk) AS bytes FROM system.parts "
        "WHERE database = {db:String} AND table = {t:String} AND active",
        {"db": database, "t": TABLE},
    ).iloc[0]
    return Dataset(
        schema=schema,
        database=database,
        table=TABLE,
        create_table_query=str(table["create_table_query"]),
        partition_key=str(table["partition_key"]),
        sorting_key=str(table["sorting_key"]),
        active_parts=int(parts["parts"]),
        partitions=int(parts["partitions"]),
        rows=int(parts["rows"]),
        bytes_on_disk=int(parts["bytes"]),
        build_s=round(build_s, 3),
        cached=cached,
    )
