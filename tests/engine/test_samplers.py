"""Each sampler against the real engine: it sees what was done while it ran.

A sampler polls once on entry, every interval, and once on exit; a loaded machine may
stretch the intervals, so the tests wait for a number of polls instead of sleeping for
them, and check what every poll guarantees.
"""

import time
import uuid

from conftest import wait_for

from lockprof.clock import RunClock
from lockprof.samplers import EventsSampler, MetricsSampler, QueryLogReader


def test_events_sampler_counts_the_queries_run_while_it_sampled(engine):
    worker = engine.connect()
    sampler = EventsSampler(engine.connect(), RunClock(), interval_s=0.05)
    with sampler:
        for _ in range(40):
            worker.execute("SELECT 1")
        wait_for(lambda: sampler.polls >= 3, what="three polls of system.events")
    frame = sampler.frame()
    assert sampler.error is None
    assert list(frame.columns) == ["t_s", "interval_s", "event", "delta", "replica"]
    assert set(frame["replica"]) == {""}  # the embedded engine is one server: no replica name
    assert frame["t_s"].is_monotonic_increasing
    assert (frame["delta"] != 0).all()
    # every poll but the first (the baseline) follows at least one SELECT, its own predecessor: each leaves rows
    assert sampler.polls >= 4 and frame["t_s"].nunique() == sampler.polls - 1
    # 40 worker queries plus the sampler's own polls, each one SELECT
    selects = sampler.totals()["SelectQuery"]
    assert 40 <= selects <= 40 + 2 * sampler.polls + 4


def test_metrics_sampler_keeps_lock_gauges_even_at_zero(engine):
    sampler = MetricsSampler(engine.connect(), RunClock(), interval_s=0.05)
    with sampler:
        wait_for(lambda: sampler.polls >= 2, what="two polls of system.metrics")
    frame = sampler.frame()
    assert sampler.error is None and sampler.polls >= 3
    assert frame["t_s"].nunique() == sampler.polls
    assert {"RWLockWaitingReaders", "RWLockActiveReaders", "ContextLockWait"} <= set(frame["metric"])
    # every lock gauge is in every poll, zero or not; other gauges only while non-zero, so they are not counted
    locks = frame[frame["metric"].str.contains("Lock")]
    assert (locks.groupby("metric")["t_s"].nunique() == sampler.polls).all()


def test_sampler_failure_is_reported_not_raised(engine):
    class Broken(EventsSampler):
        def poll(self):
            raise RuntimeError("table went away")

    sampler = Broken(engine.connect(), RunClock(), interval_s=0.05)
    with sampler:
        time.sleep(0.1)
    assert "table went away" in sampler.error


def test_query_log_reader_returns_profile_events_for_our_ids_only(engine):
    assert engine.info().has_query_log, "the pinned engine must keep a query log"
    prefix = f"qlog-{uuid.uuid4().hex[:8]}-"
    conn = engine.connect()
    conn.execute("SELECT count() FROM numbers(100000)", query_id=prefix + "0")
    conn.execute("SELECT 1", query_id=prefix + "1")
    conn.execute("SELECT 1", query_id="someone-else")
    per_query, events = QueryLogReader(engine.admin).read(prefix)
    assert sorted(per_query["query_id"]) == [prefix + "0", prefix + "1"]
    assert per_query.set_index("query_id").loc[prefix + "0", "read_rows"] == 100000
    assert set(events["query_id"]) == {prefix + "0", prefix + "1"}
    assert (events["value"] > 0).all()
    assert "SelectQuery" in set(events["event"])


def test_query_log_rows_of_tagged_connections_are_matched_to_their_queries_by_order(engine):
    """The driver's path on an engine without query ids: one tag per connection, no SET per query.

    Two kinds of query with different answers and two that fail, drawn at random on two threads:
    a row given to the wrong query would show another kind's result_rows or exception.
    """
    import threading

    from lockprof.driver import Level, run_level
    from lockprof.samplers.query_log import BY_ORDER_EVENTS_SQL, BY_ORDER_SQL, match_by_order
    from lockprof.scenario import Query, Scenario, Schema

    scenario = Scenario(name="tags", schemas=[Schema("none", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")],
                        queries=[Query("ten", "SELECT number FROM numbers(10)"),
                                 Query("thousand", "SELECT number FROM numbers(1000)"),
                                 Query("unknown", "SELECT no_such_column", weight=0.2),
                                 Query("unparsable", "SELECT number FROM", weight=0.2)],
                        concurrency=[2], warmup_s=0.05, duration_s=0.3, seed=1)  # fmt: skip
    prefix = f"tags-{uuid.uuid4().hex[:8]}-"
    level = Level(schema="none", table="none", concurrency=2, repetition=0, warmup_s=0.05, duration_s=0.3,
                  id_prefix=prefix, seed=1)  # fmt: skip
    conns = [engine.connect(), engine.connect()]
    records = run_level(scenario, level, conns, [], RunClock(), threading.Event()).records
    assert records["query_name"].nunique() == 4
    assert records["error"].notna().eq(records["query_name"].isin(["unknown", "unparsable"])).all()
    assert set(records["log_tag"]) == {prefix + "query0", prefix + "query1"}
    per_query, events, problems = QueryLogReader(engine.admin).read_by_order(prefix, records)
    assert problems == []
    matched = records.merge(per_query, on="query_id", validate="one_to_one")
    # every statement sent has its row, but a syntax error, which chDB never logs
    assert sorted(matched["query_id"]) == sorted(records.loc[records["query_name"] != "unparsable", "query_id"])
    # failed statements have their rows too (an exception before or while running), in their places
    assert (matched["result_rows"] == matched["query_name"].map({"ten": 10, "thousand": 1000}).fillna(0)).all()
    assert (matched["exception_code"] != 0).eq(matched["error"].notna()).all()
    assert set(events["query_id"]) <= set(records["query_id"]) and "SelectQuery" in set(events["event"])

    # A connection whose log lost the row of its last successful query loses its figures, never its order.
    raw = engine.admin.frame(BY_ORDER_SQL, {"prefix": prefix})
    raw_events = engine.admin.frame(BY_ORDER_EVENTS_SQL, {"prefix": prefix})
    ours = matched[matched["log_tag"] == prefix + "query0"]
    last = ours.loc[ours["error"].isna(), "engine_query_id"].iloc[-1]
    again, _, problems = match_by_order(records, raw[raw["engine_query_id"] != last], raw_events)
    assert len(problems) == 1 and prefix + "query0" in problems[0]
    assert set(again["query_id"]) == set(matched.loc[matched["log_tag"] == prefix + "query1", "query_id"])
    # ...and so does one where a row says its query ran longer than the driver's call around it: what a row
    # shifted onto a quicker query looks like.
    first = raw.index[raw["log_tag"] == prefix + "query1"][0]
    _, _, problems = match_by_order(records, raw.assign(engine_us=raw["engine_us"].mask(raw.index == first, 10**7)),
                                    raw_events)  # fmt: skip
    assert len(problems) == 1 and prefix + "query1" in problems[0]


def test_own_thread_waits_of_one_long_query_are_one_pipeline_wall_per_sleeping_thread(engine):
    """docs/remainder.md, section 1: with one thread only the caller sleeps through the pipeline (its
    executor runs it); with two, the executor sleeps too while its workers run. The bands leave room for a
    busy machine turning part of a sleep into CPU wait after each wake-up."""
    from lockprof.locks import CATALOG_SQL, catalog

    locks = catalog(engine.admin.frame(CATALOG_SQL))
    waits = locks[locks["role"] == "wait"]
    reader = QueryLogReader(engine.admin, lock_waits=dict(zip(waits["event"], waits["to_us"], strict=True)))
    prefix = f"own-{uuid.uuid4().hex[:8]}-"
    conn = engine.connect()
    for threads in (1, 2):
        conn.execute("SELECT count() FROM numbers_mt(20000000) WHERE sipHash64(number) % 7 = 1",
                     query_id=f"{prefix}{threads}", settings={"max_threads": threads, "log_query_threads": 1})
    conn.execute("SELECT 1", query_id=f"{prefix}unlogged")  # threads not logged: no derived events
    _, events = reader.read(prefix)
    wide = events.pivot_table(index="query_id", columns="event", values="value", aggfunc="sum")
    assert set(wide.index) == {f"{prefix}1", f"{prefix}2", f"{prefix}unlogged"}
    wide = wide.dropna(subset=["LockprofOwnThreadsWaitMicroseconds"])
    own, wall = wide["LockprofOwnThreadsWaitMicroseconds"], wide["LockprofPipelineWallMicroseconds"]
    assert set(own.index) == set(wall.dropna().index) == {f"{prefix}1", f"{prefix}2"}
    assert (wall > 200_000).all()  # long enough that a scheduler tick is noise
    one, two = own[f"{prefix}1"] / wall[f"{prefix}1"], own[f"{prefix}2"] / wall[f"{prefix}2"]
    assert 0.6 <= one <= 1.0, one  # the caller's share is capped at W: never more than 1
    assert 1.4 <= two <= 2.1, two  # caller + executor, each at most W, plus the workers' idle moments
