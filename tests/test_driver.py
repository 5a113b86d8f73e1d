"""The closed-loop driver on the real engine: record counts, ids, phases, errors."""

import threading

import pytest

from lockprof.clock import RunClock
from lockprof.driver import Level, run_level
from lockprof.scenario import Query, Scenario, Schema

SCHEMA = Schema("s", "CREATE TABLE {table} (x UInt8) ENGINE = MergeTree ORDER BY x")


def scenario(*queries: Query) -> Scenario:
    return Scenario("driver_test", [SCHEMA], list(queries))


def level(concurrency: int, duration: float = 1.0, warmup: float = 0.2) -> Level:
    return Level("s", "system.one", concurrency, 0, warmup, duration, "t-", seed=1)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_closed_loop_keeps_every_worker_busy_for_the_duration(engine, concurrency):
    # sleep(0.05) makes each query last a known 50 ms, so the count is known too.
    sc = scenario(Query("sleepy", "SELECT sleep(0.05) FROM {table}"))
    conns = [engine.connect() for _ in range(concurrency)]
    result = run_level(sc, level(concurrency), conns, [], RunClock(), threading.Event())
    rec = result.records
    measured = rec[rec["phase"] == "measure"]
    expected = concurrency * 1.0 / 0.05
    assert 0.5 * expected <= len(measured) <= 1.05 * expected + concurrency  # slack for a loaded machine
    assert sorted(rec["worker"].unique()) == list(range(concurrency))
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
        run_level(sc, level(1, duration=0.2, warmup=0), [engine.connect()], [], RunClock(), threading.Event())
        runs.append(list(seen))
    assert len(runs[0]) > 3 and len(set(runs[0])) > 1
    # the same seed, schema and level give the same parameter sequence
    assert runs[1][:3] == runs[0][:3]


def test_stop_event_ends_the_level_early_and_marks_it(engine):
    stop = threading.Event()
    sc = scenario(Query("sleepy", "SELECT sleep(0.02) FROM {table}"))
    timer = threading.Timer(0.4, stop.set)
    timer.start()
    result = run_level(sc, level(1, duration=30, warmup=0), [engine.connect()], [], RunClock(), stop)
    assert result.interrupted
    assert result.measure_end_s - result.measure_start_s < 5
    assert len(result.records) > 5


def open_level(rate: float, concurrency: int = 1, duration: float = 1.0) -> Level:
    return Level("s", "system.one", concurrency, 0, 0.0, duration, "o-", seed=1, rate_qps=rate)


def test_open_loop_below_capacity_keeps_the_schedule(engine):
    sc = scenario(Query("sleepy", "SELECT sleep(0.05) FROM {table}"))  # capacity: 20 queries/s per thread
    result = run_level(sc, open_level(10), [engine.connect()], [], RunClock(), threading.Event())
    rec = result.records.sort_values("intended_start_s")
    gaps = rec["intended_start_s"].diff().dropna()
    assert gaps.round(6).eq(0.1).all(), "intended starts follow the 10/s schedule exactly"
    assert 9 <= len(rec) <= 10
    assert rec["queue_delay_ms"].median() < 20
    assert (rec["latency_ms"] >= 49).all() and rec["latency_ms"].median() < 90


def test_open_loop_above_capacity_counts_queueing_from_the_intended_start(engine):
    sc = scenario(Query("sleepy", "SELECT sleep(0.05) FROM {table}"))
    result = run_level(sc, open_level(40), [engine.connect()], [], RunClock(), threading.Event())
    rec = result.records.sort_values("intended_start_s").reset_index(drop=True)
    assert rec["intended_start_s"].diff().dropna().round(6).eq(0.025).all()
    # one thread finishes ~20/s of the 40/s due, so each query starts later than the last one's due time
    assert 8 <= len(rec) <= 21
    assert rec["queue_delay_ms"].is_monotonic_increasing
    assert rec["queue_delay_ms"].iloc[-1] > 300
    # latency counts the queueing: start - intended + service time
    service = rec["latency_ms"] - rec["queue_delay_ms"]
    assert (service >= 49).all()
    assert (rec["start_s"] - rec["intended_start_s"]).mul(1000).sub(rec["queue_delay_ms"]).abs().max() < 1e-6
    # a closed loop would have reported ~50 ms for every query; the open loop's tail is far above
    assert rec["latency_ms"].iloc[-1] > 6 * 50
