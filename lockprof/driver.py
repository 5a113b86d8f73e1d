"""The load driver: N worker threads, one record per query.

Closed loop (the default): each thread issues its next query when the last one
returns. Open loop (``rate_qps``): queries are due on a fixed schedule, one every
1/rate seconds, whatever the engine does; a thread takes the next due query, so
when all N are busy the schedule slips. Latency is then counted from the
*intended* start, and the wait before a query could start is kept apart as
``queue_delay_ms``, so queueing is not hidden (coordinated omission).

Every query is timed by :func:`timed_execute`, the one code path that measures
latency. Threads start together on a barrier, run ``warmup_s`` (records kept but
marked ``warmup``) and then ``duration_s`` of measurement. In a closed loop the
warm-up also lasts until every thread has finished its first query: a first query
slower than the warm-up (a cold engine, a loaded machine) would otherwise run through
the window and leave nothing started inside it. A failing query, or a
``params`` function that raises, is a record with an error, never the end of the
level or of a thread.

Time limits hold: every query carries ``max_execution_time`` up to the end of the
window plus :data:`GRACE_S`, and a watchdog kills whatever is still running then
(or at once when the level is stopped), so a level ends within a bounded time
after its window however long its queries are. Such queries are recorded with
``cancelled`` set.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
import random
import re
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lockprof.clock import RunClock
from lockprof.dirformat.tables import QUERIES
from lockprof.engines.base import Connection
from lockprof.scenario import Background, Query, Scenario, draw_params

# What the driver records of each statement: the queries table's columns it fills (lockprof.dirformat.tables).
RECORD_COLUMNS = QUERIES.written_by("driver")
# How query_log's row of a record is found on an engine without query ids: its connection's tag and its place
# among that connection's statements (see lockprof.samplers.query_log). Dropped once matched.
LOG_COLUMNS = ["log_tag", "log_seq"]
# What a thread keeps per query: a tuple of these, the rest of a record is derived once the level is over.
# The per-query path runs between two calls into the engine, when the interpreter's caches are cold, so
# every object and step it saves shows in throughput on cheap queries (benchmarks/driver_overhead.py).
ROW_COLUMNS = ["worker", "role", "query_name", "query_id", "intended_start_s", "start_s", "end_s", "error",
               "log_tag", "log_seq"]

ERROR_SHARE_LIMIT = 0.05  # a level whose measured records fail more often than this has failed
GRACE_S = 1.0  # how long a query may run past its level's window before it is cancelled
CANCELLED_CODES = ("(TIMEOUT_EXCEEDED)", "(QUERY_WAS_CANCELLED)")
KILL_SQL = ("KILL QUERY WHERE startsWith(query_id, {prefix:String}) "
            "OR startsWith(Settings['log_comment'], {prefix:String}) ASYNC")


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
    # (role, worker) of threads abandoned stuck (in user code, or in a call the watchdog could not end): their
    # connections may still be in use and must not serve another level.
    abandoned: list[tuple[str, int]] = field(default_factory=list)


def timed_execute(
    conn: Connection,
    sql: str,
    params: dict[str, Any],
    query_id: str,
    clock: RunClock,
    settings: dict[str, Any] | None = None,
    log_tag: str | None = None,
) -> tuple[float, float, str | None]:
    """Run one statement; return (start_s, end_s, error or None)."""
    start = clock.now()
    error = None
    try:
        conn.execute(sql, params, query_id=query_id, settings=settings, log_tag=log_tag)
    except Exception as exc:  # the engine's error is data about the run
        error = first_line(exc)
    return start, clock.now(), error


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an error, shortened in the middle so ClickHouse's code and name at its end stay."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else f"{line[:limit - 160]} ... {line[-150:]}"


def user_code_error(what: str, exc: BaseException) -> str:
    """A user function's failure as one line: what raised, where in the user's file, and the message."""
    frame = user_frame(exc)
    where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    return f"{what} raised{where}: {type(exc).__name__}: {first_line(exc)}"


_NOT_USER = tuple(str(Path(p).resolve()) + os.sep for p in {Path(__file__).parent, sys.prefix, sys.base_prefix})


def user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The deepest frame of a traceback in the user's own code: not lockprof's, not the standard library's or an
    installed package's (a params function that fails inside ``random`` is the user's line that called it)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if not str(Path(f.filename).resolve()).startswith(_NOT_USER)]
    return (mine or frames or [None])[-1]


def run_level(
    scenario: Scenario,
    level: Level,
    connections: Sequence[Connection],
    background_connections: Sequence[Connection],
    clock: RunClock,
    stop: threading.Event,
    watchdog: Connection | None = None,
    settings: dict[str, Any] | None = None,
) -> LevelResult:
    """Run one level on the given connections (one per worker thread, one per background task).

    ``watchdog`` is a spare connection that kills the level's queries still running at the end of
    the window plus the grace, or when ``stop`` is set; without it only the per-query time limit holds.
    ``settings`` go with every query of the level beside its time limit (``log_query_threads`` where the
    thread log is read), never into its text.
    """
    n = level.concurrency
    if len(connections) < n or len(background_connections) < len(scenario.background):
        raise ValueError("not enough connections for this level")
    if level.rate_qps is not None and level.rate_qps <= 0:
        raise ValueError("rate_qps must be positive")
    rows: list[tuple[Any, ...]] = []
    crashes: list[str] = []
    sequence = itertools.count()  # next() on itertools.count is atomic under the GIL
    arrivals = itertools.count()
    barrier = threading.Barrier(n + len(scenario.background) + 1)
    window: dict[str, float] = {}
    # A query is drawn as random.choices(queries, weights) draws it (same stream, same picks), without
    # rebuilding the cumulative weights on every call; its table is filled in once per level.
    cumulative = list(itertools.accumulate(q.weight for q in scenario.queries))
    total, last = cumulative[-1] + 0.0, len(cumulative) - 1
    picks = [(q, q.sql.replace("{table}", level.table)) for q in scenario.queries]
    extra = dict(settings or {})
    # Closed loop: the query threads yet to finish their first query. The window opens only when none is left.
    warming: set[int] = set(range(n)) if level.rate_qps is None else set()
    warming_lock = threading.Lock()

    def warmed_up(worker: int) -> None:
        """A query thread finished its first query (or ended); the last one to do so after the warm-up opens
        the window."""
        with warming_lock:
            if worker not in warming:
                return
            warming.discard(worker)
            now = clock.now()
            if not warming and now > window.get("measure", now):
                window["measure"], window["end"] = now, now + level.duration_s

    def next_due() -> float | None:
        """Open loop: when the next scheduled query is due (None once the schedule passes the window)."""
        due = window["start"] + next(arrivals) / level.rate_qps
        if due >= window["end"]:
            return None
        stop.wait(max(0.0, due - clock.now()))
        return due

    def loop(worker: int, conn: Connection, pick: Callable[[random.Random], tuple[Query | Background, str]],
             role: str) -> None:
        try:
            barrier.wait()
            issue(worker, conn, pick, role)
        except BaseException as exc:  # never a silent end (SystemExit too): the level says which thread stopped and why
            crashes.append(user_code_error(f"{role} thread {worker}", exc))
        finally:
            if role == "query":
                warmed_up(worker)  # a thread that ended early must not hold the others past the window

    def issue(worker: int, conn: Connection, pick: Callable[[random.Random], tuple[Query | Background, str]],
              role: str) -> None:
        rng = random.Random(f"{level.seed}:{level.schema}:{n}:{level.repetition}:{role}:{worker}")
        tag, sent = f"{level.id_prefix}{role}{worker}", 0
        open_loop = level.rate_qps is not None and role == "query"
        first = role == "query" and not open_loop
        # Everything a query needs is bound to a local name first: between two calls into the engine the
        # interpreter's caches are cold, and each global or attribute lookup then costs a cache miss.
        prefix, next_id, keep, stopped = level.id_prefix, sequence.__next__, rows.append, stop.is_set
        limit, limit_end, renew_at = {}, math.nan, -math.inf
        now = clock.now()  # then each query's end: one clock read per query fewer
        while not stopped():
            end = window["end"]
            if now >= end and not warming:
                break
            due = None
            if open_loop:
                due = next_due()
                if due is None or stopped():
                    break
                now = clock.now()
            item, sql = pick(rng)
            qid = f"{prefix}{next_id()}"
            try:
                params = draw_params(item.params, rng)
            except BaseException as exc:  # a user's params function (sys.exit too): a record, like the engine's errors
                now = clock.now()
                err = user_code_error(f"params of {item.name!r}", exc)
                keep((worker, role, item.name, qid, now if due is None else due, now, now, err, None, None))
                if first:
                    first = False
                    warmed_up(worker)
                stop.wait(0.01)  # a function that always raises must not flood the level with records
                now = clock.now()
                continue
            # While the warm-up waits for other threads' first queries, the window's end is not known yet: a query
            # started then may run until the latest end the window can have, and the watchdog cuts it at the real one.
            horizon = end if first or not warming else window["latest_end"]
            if now >= renew_at or horizon != limit_end:  # the whole seconds left change about once a second
                seconds = max(1, math.ceil(horizon + GRACE_S - now))
                limit = {**extra, "max_execution_time": seconds}
                limit_end, renew_at = horizon, horizon + GRACE_S - (seconds - 1)
            start, now, err = timed_execute(conn, sql, params, qid, clock, limit, log_tag=tag)
            keep((worker, role, item.name, qid, start if due is None else due, start, now, err, tag, sent))
            sent += 1
            if first:
                first = False
                warmed_up(worker)
            if role == "background" and item.pause_s:
                stop.wait(item.pause_s)
                now = clock.now()

    def kill_overdue(done: threading.Event) -> None:
        """Cancel the level's queries once the window and its grace are over, or at once on stop."""
        while not done.is_set():
            if stop.is_set() or clock.now() >= window["end"] + GRACE_S:
                try:
                    watchdog.execute(KILL_SQL, {"prefix": level.id_prefix})
                except Exception as exc:  # the per-query time limit still holds; the worker's log says why
                    print(f"lockprof: could not cancel the level's queries: {first_line(exc)}", file=sys.stderr)
                    return
                done.wait(0.5)
            else:
                stop.wait(0.05)

    def pick_query(rng: random.Random) -> tuple[Query, str]:
        return picks[bisect.bisect(cumulative, rng.random() * total, 0, last)]

    threads = [
        threading.Thread(target=loop, args=(w, connections[w], pick_query, "query"), name=f"lockprof-query-{w}",
                         daemon=True)
        for w in range(n)
    ]
    for i, task in enumerate(scenario.background):
        threads.append(
            threading.Thread(
                target=loop,
                args=(i, background_connections[i], lambda _rng, t=(task, task.sql.replace("{table}", level.table)): t,
                      "background"),
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
    # The window opens at the latest when the first queries are cut by their time limit (its end plus the grace).
    window["latest_end"] = window["end"] + GRACE_S + level.duration_s
    done = threading.Event()
    killer = threading.Thread(target=kill_overdue, args=(done,), name="lockprof-watchdog", daemon=True)
    if watchdog is not None:
        killer.start()
    barrier.wait()
    try:
        abandoned = _join_or_abandon(threads, window, clock, warming, warming_lock, crashes)
    finally:
        done.set()
        if watchdog is not None:
            killer.join()
    end = min(clock.now(), window["end"])
    frame = level_records(level, rows, window["end"], stop.is_set())
    # Phases from the final window. A closed-loop query that got going only after the window closed (its thread
    # was descheduled between the check and the start) is not part of the window: "after", never measured.
    intended = frame["intended_start_s"]
    frame["phase"] = np.select([intended < window["measure"], intended < window["end"]], ["warmup", "measure"],
                               "after")
    return LevelResult(frame, window["measure"], max(end, window["measure"]), interrupted=stop.is_set(),
                       errors=crashes, abandoned=abandoned)


ABANDON_AFTER_S = 2 * GRACE_S  # past the latest end a level's window can have (and its grace), a thread is stuck


def _join_or_abandon(
    threads: list[threading.Thread],
    window: dict[str, float],
    clock: RunClock,
    warming: set[int],
    warming_lock: threading.Lock,
    crashes: list[str],
) -> list[tuple[str, int]]:
    """Wait for the level's threads, but not for ever: a thread still running :data:`ABANDON_AFTER_S` after the
    latest end the window can have (a params function blocked on a lookup, say) is reported with the line it is
    stuck at and abandoned (threads are daemons), so the level ends on time; one stuck in its first query no
    longer holds the others in the warm-up."""
    for t in threads:
        while t.is_alive():
            now = clock.now()
            deadline = window["latest_end"] + GRACE_S + ABANDON_AFTER_S
            if now >= deadline:
                break
            t.join(timeout=max(0.05, min(1.0, deadline - now)))
    if any(t.is_alive() for t in threads):
        with warming_lock:
            warming.clear()  # the others may end now: a stuck thread will never finish its first query
        settle = clock.now() + 2 * GRACE_S  # their running queries were cancelled at the window's end + grace
        for t in threads:
            t.join(timeout=max(0.0, settle - clock.now()))
    stuck = [t for t in threads if t.is_alive()]
    frames = sys._current_frames()
    out = []
    for t in stuck:
        role, _, worker = t.name.removeprefix("lockprof-").rpartition("-")
        where = _stack_line(frames.get(t.ident))
        crashes.append(f"{role} thread {worker} was still running {ABANDON_AFTER_S:.0f} s after the level's end "
                       f"and was abandoned; it is stuck{where}")
        out.append((role, int(worker)))
    return out


def _stack_line(frame: Any) -> str:
    """Where a stuck thread is: the deepest line of the user's code in its stack (else its deepest line)."""
    if frame is None:
        return ""
    stack = traceback.extract_stack(frame)
    mine = [f for f in stack if not str(Path(f.filename).resolve()).startswith(_NOT_USER)]
    f = (mine or stack)[-1]
    return f" at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} ({f.name})"


def level_records(
    level: Level, rows: list[tuple[Any, ...]], window_end_s: float = math.inf, stopped: bool = False
) -> pd.DataFrame:
    """The level's records (:data:`RECORD_COLUMNS` and :data:`LOG_COLUMNS`, phase still empty) from its rows.

    A query cancelled once the window had closed (by its time limit or the watchdog), or by a stop signal, is
    ``censored``: it was still running when the measurement ended, so its latency is at least what was seen, and
    it is no failure of the engine."""
    frame = pd.DataFrame.from_records(rows, columns=ROW_COLUMNS)
    queued_ms = (frame["start_s"].astype(float) - frame["intended_start_s"].astype(float)) * 1000.0
    error = frame["error"]
    cancelled = error.notna() & error.astype(str).str.endswith(CANCELLED_CODES)
    frame = frame.assign(
        schema=level.schema,
        concurrency=level.concurrency,
        repetition=level.repetition,
        phase=None,
        latency_ms=queued_ms + (frame["end_s"].astype(float) - frame["start_s"].astype(float)) * 1000.0,
        queue_delay_ms=queued_ms,
        cancelled=cancelled,
        censored=cancelled & ((frame["end_s"].astype(float) >= window_end_s) | stopped),
    )
    return frame[RECORD_COLUMNS + LOG_COLUMNS]


def level_counts(measured: pd.DataFrame) -> dict[str, int]:
    """What a level's measured records hold, each kind counted apart.

    ``queries`` are the scenario's queries that ended inside the window (failed or not); ``errors`` those of them
    that failed, the only ones that count towards a failed level; ``censored`` those still running when the window
    closed (no failures); background statements and their failures are counted on their own, since a statement
    racing the queries is not what the level measures."""
    role = measured["role"]
    queries, background = measured[role == "query"], measured[role == "background"]
    censored = queries["censored"].astype(bool) if "censored" in queries else queries["cancelled"].astype(bool)
    return {
        "queries": int((~censored).sum()),
        "errors": int((queries["error"].notna() & ~censored).sum()),
        "censored": int(censored.sum()),
        "background": len(background),
        "background_errors": int(background["error"].notna().sum()),
    }


def level_verdict(
    records: pd.DataFrame, measured: pd.DataFrame, crashes: Sequence[str], interrupted: bool
) -> dict[str, Any]:
    """Did the level fail? Its error share, whether it passed :data:`ERROR_SHARE_LIMIT`, and the first error.

    Only the scenario's queries that ended inside the window count (see :func:`level_counts`): a query cut at the
    window's end is censored, and a background statement's failure is reported apart (``first_background_error``).
    A level that measured nothing (every query ran past its window) has failed too, unless it was interrupted.
    """
    counts = level_counts(measured)
    total = counts["queries"]
    share = counts["errors"] / total if total else float("nan")
    failures = records[records["error"].notna() & ~_censored(records)].sort_values("start_s")
    query_errors = failures.loc[failures["role"] == "query", "error"]
    background_errors = failures.loc[failures["role"] == "background", "error"]
    first = crashes[0] if crashes else (str(query_errors.iloc[0]) if len(query_errors) else None)
    failed = bool(crashes) or (total > 0 and share > ERROR_SHARE_LIMIT) or (total == 0 and not interrupted)
    if failed and first is None:
        first = "no query finished inside the level's window"
        if counts["censored"]:
            first += (f": {counts['censored']} were still running when it closed; "
                      "a longer --duration gives them time to finish")
    return {"error_share": share, "failed": failed, "first_error": first,
            "first_background_error": str(background_errors.iloc[0]) if len(background_errors) else None,
            "error_kinds": error_kinds(query_errors)}


def _censored(records: pd.DataFrame) -> pd.Series:
    column = "censored" if "censored" in records else "cancelled"
    return records[column].astype(bool)


ERROR_KINDS = 3  # at most this many distinct errors of a level are printed


def error_kinds(errors: pd.Series) -> list[str]:
    """The first error of each kind (the text with its numbers and quoted values taken out), up to ERROR_KINDS:
    a few errors under the failure threshold are still said, with their text, not only counted."""
    kinds: dict[str, str] = {}
    for text in errors.astype(str):
        kinds.setdefault(_KIND.sub("#", text), text)
        if len(kinds) >= ERROR_KINDS:
            break
    return list(kinds.values())


_KIND = re.compile(r"'[^']*'|\d+(\.\d+)?")
