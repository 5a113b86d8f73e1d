"""Time accounting and the verdict on synthetic runs whose right answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import Level, make_run

from lockprof.analysis import choose_source, diagnose, exclusive_ceilings, lock_budget, time_accounting, window_totals
from lockprof.analysis.accounting import COMPONENTS, per_query


def counters(thread: float, cpu: float, cpu_wait: float, io: float = 0.0, pool_wait: float = 0.0) -> dict:
    """Per-query thread-time counters in µs."""
    out = {"RealTimeMicroseconds": thread, "OSCPUVirtualTimeMicroseconds": cpu, "OSCPUWaitMicroseconds": cpu_wait,
           "OSIOWaitMicroseconds": io}
    if pool_wait:
        out["GlobalThreadPoolLockWaitMicroseconds"] = pool_wait
    return out


def test_accounting_recovers_known_parts_and_shares_add_up():
    run = make_run([Level("s", 1, 100, 5.0, hold_us=50.0, wait_us=500.0,
                          counters=counters(10_000, 6_000, 2_000, io=500))])
    row = time_accounting(run).iloc[0]
    assert row["thread_ms"] == pytest.approx(10.0)
    assert (row["on_cpu_ms"], row["cpu_wait_ms"], row["io_wait_ms"]) == pytest.approx((6.0, 2.0, 0.5))
    assert row["lock_wait_ms"] == pytest.approx(0.5)  # the parts lock's wait
    assert row["other_ms"] == pytest.approx(1.0)
    assert pd.isna(row["own_threads_ms"])  # no thread log: not measured, not zero
    assert np.nansum([row[f"{c}_share"] for c in COMPONENTS]) == pytest.approx(1.0)
    assert row["source"] == "query_log"


def test_waiting_for_the_querys_own_threads_is_taken_out_of_other():
    own = {**counters(10_000, 6_000, 2_000, io=500), "LockprofOwnThreadsWaitMicroseconds": 700}
    run = make_run([Level("s", 1, 100, 5.0, hold_us=50.0, wait_us=500.0, counters=own)])
    row = time_accounting(run).iloc[0]
    assert (row["own_threads_ms"], row["other_ms"]) == pytest.approx((0.7, 0.3))
    assert sum(row[f"{c}_share"] for c in COMPONENTS) == pytest.approx(1.0)


def test_events_deltas_in_the_window_give_the_same_per_query_figures():
    run = make_run([Level("s", 1, 80, 4.0, counters=counters(9_000, 7_000, 1_000))])
    from_log = per_query(window_totals(run, "query_log")).set_index("event")["per_query"]
    from_events = per_query(window_totals(run, "events")).set_index("event")["per_query"]
    for event in ("RealTimeMicroseconds", "OSCPUVirtualTimeMicroseconds", "OSCPUWaitMicroseconds"):
        assert from_events[event] == pytest.approx(from_log[event])


def test_one_source_for_every_engine_when_one_has_no_query_log():
    a = make_run([Level("s", 1, 50, 5.0, hold_us=10.0, counters=counters(5_000, 4_000, 500))], engine="old")
    b = make_run([Level("s", 1, 50, 5.0, hold_us=10.0, counters=counters(5_000, 4_000, 500))], engine="new")
    both = make_run([], engine="new")
    for table in ("queries", "levels", "events", "locks"):
        setattr(both, table, pd.concat([getattr(a, table), getattr(b, table)], ignore_index=True))
    both.query_events = b.query_events  # only "new" kept a query log
    assert choose_source(both) == "events"
    assert set(lock_budget(both)["source"]) == {"events"}
    assert set(time_accounting(both)["source"]) == {"events"}


def test_a_busy_exclusive_lock_is_named():
    run = make_run([
        Level("s", 1, 100, 5.0, hold_us=200.0, wait_us=0.0, counters=counters(10_000, 9_000, 200)),
        Level("s", 8, 100, 5.0, hold_us=220.0, wait_us=30_000.0, counters=counters(45_000, 9_500, 3_000)),
    ], cpu_count=64)
    verdict = diagnose(run).iloc[0]
    assert (verdict["verdict"], verdict["lock"], verdict["mode"]) == ("lock", "parts", "exclusive")
    assert verdict["share"] == pytest.approx(30_000 / 45_000)
    assert "parts lock (exclusive) is the bottleneck" in verdict["headline"]


def test_a_briefly_held_mutex_waiting_with_cpu_queueing_is_a_victim_not_the_cause():
    run = make_run([
        Level("s", 1, 100, 5.0, counters=counters(6_000, 5_000, 300, pool_wait=100)),
        Level("s", 8, 100, 5.0, counters=counters(30_000, 5_000, 13_000, pool_wait=3_600)),
    ], cpu_count=2)
    verdict = diagnose(run).iloc[0]
    assert verdict["verdict"] == "cpu_queueing" and verdict["lock"] == ""
    assert "global thread pool" in verdict["headline"] and "preempted" in verdict["headline"]
    assert "No lock explains it" in verdict["headline"]


def test_a_lock_wait_without_cpu_queueing_is_not_excused():
    """The same mutex wait with idle cores: preemption cannot explain it, so the lock is named."""
    run = make_run([
        Level("s", 1, 100, 5.0, counters=counters(6_000, 5_000, 100, pool_wait=100)),
        Level("s", 8, 100, 5.0, counters=counters(12_000, 5_000, 200, pool_wait=6_000)),
    ], cpu_count=64)
    verdict = diagnose(run).iloc[0]
    assert (verdict["verdict"], verdict["lock"]) == ("lock", "global_thread_pool")


def test_flat_cpu_bound_queries_are_cpu_work_and_name_no_lock():
    run = make_run([
        Level("s", 1, 100, 5.0, hold_us=20.0, mode="shared", counters=counters(10_000, 8_500, 200)),
        Level("s", 2, 100, 5.0, hold_us=21.0, mode="shared", counters=counters(10_500, 8_600, 400)),
    ])
    verdict = diagnose(run).iloc[0]
    assert verdict["verdict"] == "cpu" and verdict["lock"] == ""


def test_time_no_counter_accounts_for_is_called_unexplained():
    run = make_run([Level("s", 1, 100, 5.0, counters=counters(10_000, 800, 100))])
    verdict = diagnose(run).iloc[0]
    assert verdict["verdict"] == "unexplained"
    assert "not accounted for" in verdict["headline"]


def test_one_level_is_described_as_one_level_not_as_growth():
    # An observed window has one level: no "at 2 and ... at 2", no "up from", no latency range.
    run = make_run([Level("s", 2, 100, 5.0, counters=counters(10_000, 3_000, 5_500))])
    verdict = diagnose(run).iloc[0]
    assert verdict["verdict"] == "cpu_queueing"
    text = verdict["headline"]
    assert "at concurrency 2 (latency" in text and "up from" not in text and "→" not in text, text
    assert "5.5 ms of it (55%)" in text and "3.0 ms per query" in text, text


def test_schema_needing_more_cpu_per_query_is_said_to_cost_work():
    run = make_run([
        Level("day", 1, 100, 5.0, active_parts=50, counters=counters(5_000, 4_000, 100)),
        Level("namespace_day", 1, 100, 5.0, active_parts=10_000, counters=counters(20_000, 18_000, 200)),
    ])
    findings = diagnose(run).set_index("schema").at["namespace_day", "findings"]
    assert any("4.5× the CPU per query of day" in f and "10,000 vs 50 active parts" in f for f in findings)


def test_exclusive_use_is_stated_and_missing_counters_are_not_zero():
    run = make_run([Level("s", 1, 100, 5.0, hold_us=300.0, counters=counters(5_000, 4_000, 100))])
    run.locks = run.locks[run.locks["event"] != "PartsLocks"]  # an engine that does not count acquisitions
    budget = lock_budget(run).set_index(["lock", "mode"])
    assert math.isnan(budget.at[("parts", "exclusive"), "acquisitions_per_query"])
    assert budget.at[("parts", "exclusive"), "hold_us_per_query"] == pytest.approx(300.0)
    findings = diagnose(run).iloc[0]["findings"]
    assert any("take the parts lock exclusively" in f and "does not count acquisitions" in f for f in findings)


def test_a_ceiling_needs_one_percent_of_queries_taking_the_lock():
    rare = make_run([Level("s", 1, 1000, 5.0, hold_us=0.03, counters=counters(5_000, 4_000, 100))])
    rare.query_events = rare.query_events[~((rare.query_events["event"] == "PartsLocks")
                                            & (rare.query_events.index % 1000 > 5))]  # 0.6% of queries take it
    assert exclusive_ceilings(rare).empty
    common = make_run([Level("s", 1, 1000, 5.0, hold_us=30.0, counters=counters(5_000, 4_000, 100))])
    assert exclusive_ceilings(common)["ceiling_qps"].iloc[0] == pytest.approx(1e6 / 30.0)


def test_results_are_computed_once_and_handed_out_as_copies():
    run = make_run([Level("s", 1, 100, 5.0, hold_us=50.0, counters=counters(5_000, 4_000, 100))])
    first = lock_budget(run)
    first["hold_us_per_query"] = -1.0
    assert (lock_budget(run)["hold_us_per_query"] >= 0).all()
    assert sum(1 for key in run.cache if "lock_budget" in key[1]) == 1
