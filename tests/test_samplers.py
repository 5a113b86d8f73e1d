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
