"""The load driver: N worker threads, one record per query.

Closed loop (the default): each thread issues its next query when the last one
returns. Open loop (``rate_qps``): queries are due on a fixed schedule, one every
1/rate seconds, whatever the engine does; a thread takes the next due query, so
when all N are busy the schedule slips. Latency is then counted from the
*intended* start, and the wait before a query could start is kept apart as
``queue_delay_ms``, so queueing is not hidden (coordinated omission).

Every query is timed by :func:`timed_execute`, the one code path that measures
latency. Threads start together on a barrier, run ``warmup_s`` (records kept but
marked ``warmup``) and then ``duration_s`` of measurement. A failing query is a
record with an error, never the end of the level.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lockprof.clock import RunClock
from lockprof.engines.base import Connection
from lockprof.scenario import Background, Query, Scenario, draw_params

RECORD_COLUMNS = [
    "schema",
    "concurrency",
    "repetition",
    "worker",
    "role",
    "query_name",
    "query_id",
    "phase",
    "intended_start_s",
    "start_s",
    "latency_ms",
    "queue_delay_ms",
    "error",
]


@dataclass
class Level:
    """One measured step: a schema at a concurrency, one repetition."""

    schema: str
    table: str
    concurrency: int
    repetition: int
    warmup_s: float
    duration_s: float
    id_prefix: str
    seed: int
    rate_qps: float | None = None  # open loop when set


@dataclass
class LevelResult:
    records: pd.DataFrame
    measure_start_s: float
    measure_end_s: float
    interrupted: bool
    errors: list[str] = field(default_factory=list)


def timed_execute(
    conn: Connection, sql: str, params: dict[str, Any], query_id: str, clock: RunClock
) -> tuple[float, float, str | None]:
    """Run one statement; return (start_s, latency_ms, error or None)."""
    start = clock.now()
    error = None
    try:
        conn.execute(sql, params, query_id=query_id)
    except Exception as exc:  # the engine's error is data about the run
        text = str(exc).strip()
        error = text.splitlines()[0][:500] if text else type(exc).__name__
    return start, (clock.now() - start) * 1000.0, error


def run_level(
    scenario: Scenario,
    level: Level,
    connections: Sequence[Connection],
    background_connections: Sequence[Connection],
    clock: RunClock,
    stop: threading.Event,
    on_query: Callable[[], None] | None = None,
) -> LevelResult:
    """Run one level on the given connections (one per worker thread, one per background task)."""
    n = level.concurrency
    if len(connections) < n or len(background_connections) < len(scenario.background):
        raise ValueError("not enough connections for this level")
    if level.rate_qps is not None and level.rate_qps <= 0:
        raise ValueError("rate_qps must be positive")
    records: list[dict[str, Any]] = []
    sequence = itertools.count()  # next() on itertools.count is atomic under the GIL
    arrivals = itertools.count()
    barrier = threading.Barrier(n + len(scenario.background) + 1)
    window: dict[str, float] = {}
    weights = [q.weight for q in scenario.queries]

    def make_record(
        worker: int, role: str, name: str, qid: str, intended: float, start: float, ms: float, err: str | None
    ) -> dict[str, Any]:
        return {
            "schema": level.schema,
            "concurrency": n,
            "repetition": level.repetition,
            "worker": worker,
            "role": role,
            "query_name": name,
            "query_id": qid,
            "phase": "warmup" if intended < window["measure"] else "measure",
            "intended_start_s": intended,
            "start_s": start,
            "latency_ms": (start - intended) * 1000.0 + ms,
            "queue_delay_ms": (start - intended) * 1000.0,
            "error": err,
        }

    def next_due() -> float | None:
        """Open loop: when the next scheduled query is due (None once the schedule passes the window)."""
        due = window["start"] + next(arrivals) / level.rate_qps
        if due >= window["end"]:
            return None
        stop.wait(max(0.0, due - clock.now()))
        return due

    def loop(worker: int, conn: Connection, pick: Callable[[random.Random], Query | Background], role: str) -> None:
        rng = random.Random(f"{level.seed}:{level.schema}:{n}:{level.repetition}:{role}:{worker}")
        open_loop = level.rate_qps is not None and role == "query"
        barrier.wait()
        while not stop.is_set():
            if clock.now() >= window["end"]:
                break
            due = next_due() if open_loop else None
            if open_loop and (due is None or stop.is_set()):
                break
            item = pick(rng)
            params = draw_params(item.params, rng)
            qid = f"{level.id_prefix}{next(sequence)}"
            sql = item.sql.replace("{table}", level.table)
            start, ms, err = timed_execute(conn, sql, params, qid, clock)
            records.append(make_record(worker, role, item.name, qid, start if due is None else due, start, ms, err))
            if on_query is not None:
                on_query()
            if isinstance(item, Background) and item.pause_s:
                stop.wait(item.pause_s)

    def pick_query(rng: random.Random) -> Query:
        return rng.choices(scenario.queries, weights)[0]

    threads = [
        threading.Thread(target=loop, args=(w, connections[w], pick_query, "query"), name=f"lockprof-query-{w}",
                         daemon=True)
        for w in range(n)
    ]
    for i, task in enumerate(scenario.background):
        threads.append(
            threading.Thread(
                target=loop,
                args=(i, background_connections[i], lambda _rng, t=task: t, "background"),
                name=f"lockprof-background-{i}",
                daemon=True,
            )
        )
    for t in threads:
        t.start()
    start = clock.now()
    window["start"] = start
    window["measure"] = start + level.warmup_s
    window["end"] = window["measure"] + level.duration_s
    barrier.wait()
    for t in threads:
        t.join()
    end = min(clock.now(), window["end"])
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    return LevelResult(frame, window["measure"], max(end, window["measure"]), interrupted=stop.is_set())
