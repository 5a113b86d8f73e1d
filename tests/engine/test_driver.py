"""The closed-loop driver on the real engine: record counts, ids, phases, errors.

A loaded machine makes every query slower and every wake-up later, so counts are
bounded from above by what the queries' known minimum length allows, and from below by
what the loop guarantees (each worker busy, one query at a time), not by what a quiet
machine usually achieves.
"""

import itertools
import threading
from typing import Any

import pytest

from lockprof.clock import RunClock
from lockprof.driver import Level, run_level
from lockprof.engines.base import Connection
from lockprof.scenario import Query, Scenario, Schema

SCHEMA = Schema("s", "CREATE TABLE {table} (x UInt8) ENGINE = MergeTree ORDER BY x")


def scenario(*queries: Query) -> Scenario:
    return Scenario("driver_test", [SCHEMA], list(queries))


def level(concurrency: int, duration: float = 1.0, warmup: float = 0.2) -> Level:
    return Level("s", "system.one", concurrency, 0, warmup, duration, "t-", seed=1)


class StopAfter:
    """A real connection that sets ``stop`` once ``count`` queries have returned through it."""

    def __init__(self, conn: Connection, count: int) -> None:
        self.conn, self.count, self.stop, self.done = conn, count, threading.Event(), itertools.count(1)

    def execute(self, *args: Any, **kwargs: Any) -> None:
        try:
            self.conn.execute(*args, **kwargs)
        finally:
            if next(self.done) >= self.count:
                self.stop.set()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_closed_loop_keeps_every_worker_busy_for_the_duration(engine, concurrency):
    # sleep(0.05) makes each query last at least 50 ms, which bounds the count from above.
    sc = scenario(Query("sleepy", "SELECT sleep(0.05) FROM {table}"))
    conns = [engine.connect() for _ in range(concurrency)]
    result = run_level(sc, level(concurrency), conns, [], RunClock(), threading.Event())
    rec = result.records
    measured = rec[rec["phase"] == "measure"]
    window = result.measure_end_s - result.measure_start_s
    assert not result.interrupted and window == pytest.approx(1.0)
    assert len(measured) <= concurrency * (window / 0.05 + 1)
    assert sorted(measured["worker"].unique()) == list(range(concurrency))
    for worker, own in rec.sort_values("start_s").groupby("worker"):
        ends = own["start_s"] + own["latency_ms"] / 1000
        # closed loop: a worker's next query starts only once its last one has returned ...
        assert (own["start_s"].iloc[1:].to_numpy() >= ends.iloc[:-1].to_numpy() - 1e-9).all(), worker
        # ... and right away, so its queries fill the window (on a quiet machine 99%; half is generous)
        inside = (ends.clip(upper=result.measure_end_s) - own["start_s"].clip(lower=result.measure_start_s)).clip(0)
        assert inside.sum() >= 0.5 * window, f"worker {worker} busy {inside.sum():.2f} s of {window:.2f} s"
    assert rec["query_id"].is_unique and rec["query_id"].str.startswith("t-").all()
    assert (rec["latency_ms"] >= 49).all()
    assert rec["error"].isna().all()
    # measurement starts after the warm-up, and no measured query started after the window
    assert (measured["start_s"] >= result.measure_start_s).all()
    assert (measured["start_s"] < result.measure_end_s).all()
    assert (rec[rec["phase"] == "warmup"]["start_s"] < result.measure_start_s).all()


def test_failing_queries_are_records_not_the_end_of_the_level(engine):
    sc = scenario(Query("good", "SELECT 1 FROM {table}"), Query("bad", "SELECT no_such_column FROM {table}"))
    result = run_level(sc, level(2, duration=0.5), [engine.connect(), engine.connect()], [], RunClock(),
                       threading.Event())
    rec = result.records
    bad, good = rec[rec["query_name"] == "bad"], rec[rec["query_name"] == "good"]
    assert len(bad) > 0 and len(good) > 0
    assert bad["error"].str.contains("no_such_column").all()
    assert good["error"].isna().all()


def test_params_are_drawn_from_a_seeded_generator(engine):
    seen: list[int] = []

    def draw(rng):
        value = rng.randrange(1_000_000)
        seen.append(value)
        return {"v": value}

    sc = scenario(Query("p", "SELECT {v:UInt32} FROM {table}", params=draw))
    runs = []
    for _ in range(2):
        seen.clear()
        conn = StopAfter(engine.connect(), 8)  # a count of queries, not of seconds: the same length on any machine
        run_level(sc, level(1, duration=120, warmup=0), [conn], [], RunClock(), conn.stop)
        runs.append(list(seen))
    assert len(runs[0]) == 8 and len(set(runs[0])) > 1
    # the same seed, schema and level give the same parameter sequence
    assert runs[1] == runs[0]


def test_a_first_query_longer_than_the_warm_up_delays_the_window_instead_of_emptying_it(engine):
    # Each thread's first query sleeps 1.5 s: longer than the warm-up and the window together, as a cold engine's
    # first query on a loaded machine can be. Opening the window on time would leave no query started inside it.
    calls = itertools.count()
    sc = scenario(Query("cold_then_fast", "SELECT sleep({s:Float64}) FROM {table}",
                        params=lambda _rng: {"s": 1.5 if next(calls) < 2 else 0.01}))
    result = run_level(sc, level(2, duration=0.5, warmup=0.1), [engine.connect(), engine.connect()], [],
                       RunClock(), threading.Event())
    rec = result.records.sort_values("start_s")
    first = rec.groupby("worker").head(1)
    assert len(first) == 2 and (first["latency_ms"] >= 1500).all() and (first["phase"] == "warmup").all()
    # the window opens once the last first query has returned, and keeps its length
    assert result.measure_start_s >= (first["start_s"] + first["latency_ms"] / 1000).max() - 1e-6
    assert result.measure_end_s - result.measure_start_s == pytest.approx(0.5)
    measured = rec[rec["phase"] == "measure"]
    assert sorted(measured["worker"].unique()) == [0, 1]
    assert (measured["start_s"] >= result.measure_start_s).all() and (measured["start_s"] < result.measure_end_s).all()
    assert (rec[rec["start_s"] < result.measure_start_s]["phase"] == "warmup").all()


def test_stop_event_ends_the_level_early_and_marks_it(engine):
    sc = scenario(Query("sleepy", "SELECT sleep(0.02) FROM {table}"))
    conn = StopAfter(engine.connect(), 6)  # set mid-level, after a known number of queries rather than a time
    result = run_level(sc, level(1, duration=60, warmup=0), [conn], [], RunClock(), conn.stop)
    assert result.interrupted
    assert len(result.records) == 6  # the one worker stops after the query during which the event was set
    # six 20 ms queries, then the level ends: far inside its 60 s window even on a loaded machine
    assert result.measure_end_s - result.measure_start_s < 30


def open_level(rate: float, concurrency: int = 1, duration: float = 1.0) -> Level:
    return Level("s", "system.one", concurrency, 0, 0.0, duration, "o-", seed=1, rate_qps=rate)


def test_open_loop_below_capacity_keeps_the_schedule(engine):
    sc = scenario(Query("sleepy", "SELECT sleep(0.05) FROM {table}"))  # capacity: 20 queries/s per thread
    result = run_level(sc, open_level(10), [engine.connect()], [], RunClock(), threading.Event())
    rec = result.records.sort_values("intended_start_s")
    gaps = rec["intended_start_s"].diff().dropna()
    assert gaps.round(6).eq(0.1).all(), "intended starts follow the 10/s schedule exactly"
    assert rec["intended_start_s"].iloc[0] == result.measure_start_s
    assert 1 <= len(rec) <= 10  # ten queries are due in the window; a stalled machine may reach fewer by its end
    assert (rec["queue_delay_ms"] >= -1).all(), "no query starts before it is due"
    # below capacity a query waits only for its wake-up, not for the one before: well under the 100 ms period
    # (a quiet machine: about 1 ms)
    assert rec["queue_delay_ms"].median() < 50
    assert (rec["latency_ms"] - rec["queue_delay_ms"] >= 49).all()


def test_open_loop_above_capacity_counts_queueing_from_the_intended_start(engine):
    sc = scenario(Query("sleepy", "SELECT sleep(0.05) FROM {table}"))
    result = run_level(sc, open_level(40), [engine.connect()], [], RunClock(), threading.Event())
    rec = result.records.sort_values("intended_start_s").reset_index(drop=True)
    assert rec["intended_start_s"].diff().dropna().round(6).eq(0.025).all()
    # one thread finishes at most 20/s of the 40/s due (each query takes >= 50 ms), so every query starts
    # later after its due time than the one before; a loaded machine only makes the queries slower
    assert 3 <= len(rec) <= 21
    assert rec["queue_delay_ms"].is_monotonic_increasing
    assert rec["queue_delay_ms"].iloc[-1] > 300
    # latency counts the queueing: start - intended + service time
    service = rec["latency_ms"] - rec["queue_delay_ms"]
    assert (service >= 49).all()
    assert (rec["start_s"] - rec["intended_start_s"]).mul(1000).sub(rec["queue_delay_ms"]).abs().max() < 1e-6
    # a closed loop would have reported ~50 ms for every query; the open loop's tail is far above
    assert rec["latency_ms"].iloc[-1] > 6 * 50
