"""Lock utilization, the 1/h ceiling and the queueing forecast: known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_runs import Level, make_run

from lockprof.analysis import (
    ceiling_qps,
    exclusive_ceilings,
    forecast_vs_measured,
    forecast_wait_us,
    lock_utilization,
    queueing_wait_us,
    wait_forecast,
)
from lockprof.analysis.utilization import exclusive_holds_without_ceiling, no_ceiling_reason, no_forecast_reason


def test_ceiling_is_one_over_the_hold():
    assert ceiling_qps(250.0) == pytest.approx(4000.0)
    assert ceiling_qps(1_000_000.0) == pytest.approx(1.0)
    assert math.isinf(ceiling_qps(0.0))
    assert ceiling_qps(np.array([100.0, 500.0])) == pytest.approx([10_000.0, 2_000.0])


def test_md1_and_mm1_waits_at_known_utilizations():
    # rho = 0.5, h = 100: M/D/1 waits 0.5/0.5 * 100/2 = 50 µs, M/M/1 twice that.
    assert queueing_wait_us(100.0, 0.5) == pytest.approx(50.0)
    assert queueing_wait_us(100.0, 0.5, model="mm1") == pytest.approx(100.0)
    assert queueing_wait_us(100.0, 0.9) == pytest.approx(0.9 / 0.1 * 50.0)
    assert queueing_wait_us(100.0, 0.0) == 0.0
    assert math.isinf(queueing_wait_us(100.0, 1.0))
    with pytest.raises(ValueError, match="unknown queueing model"):
        queueing_wait_us(100.0, 0.5, model="gg1")


def test_forecast_is_capped_by_the_other_workers_and_adds_the_baseline():
    # 1000 µs hold at 800 q/s is rho 0.8: M/D/1 says 2000 µs, but 2 workers can queue behind one hold at most.
    assert forecast_wait_us(1000.0, 800.0) == pytest.approx(0.8 / 0.2 * 500.0)
    assert forecast_wait_us(1000.0, 800.0, concurrency=2) == pytest.approx(1000.0)
    assert forecast_wait_us(1000.0, 800.0, concurrency=1, baseline_us=3.0) == pytest.approx(3.0)


def known_run():
    # An exclusive lock held 500 µs per query; 10 q/s alone, 100 q/s with 8 workers.
    rho8 = 100 * 500e-6
    wait8 = rho8 / (1 - rho8) * 500 / 2  # the M/D/1 wait, by hand
    return make_run([
        Level("s", 1, queries=100, window_s=10.0, hold_us=500.0, wait_us=0.0, latency_ms=100.0),
        Level("s", 8, queries=1000, window_s=10.0, hold_us=500.0, wait_us=wait8 * 2, latency_ms=80.0),
    ]), wait8


def test_a_lock_with_known_hold_has_known_utilization_and_ceiling():
    run, _ = known_run()
    util = lock_utilization(run).set_index("concurrency")
    assert util.loc[1, "utilization"] == pytest.approx(10 * 500e-6)
    assert util.loc[8, "utilization"] == pytest.approx(100 * 500e-6)
    assert util.loc[1, "ceiling_qps"] == pytest.approx(2000.0)
    ceilings = exclusive_ceilings(run)
    assert ceilings["ceiling_qps"].iloc[0] == pytest.approx(2000.0)
    assert ceilings["peak_throughput_qps"].iloc[0] == pytest.approx(100.0)
    assert ceilings["peak_utilization"].iloc[0] == pytest.approx(0.05)


def test_forecast_vs_measured_reports_the_relative_error():
    run, wait8 = known_run()
    check = forecast_vs_measured(run)
    assert len(check) == 1
    row = check.iloc[0]
    assert row["base_concurrency"] == 1 and row["concurrency"] == 8
    assert row["forecast_wait_us"] == pytest.approx(wait8)
    assert row["measured_wait_us"] == pytest.approx(2 * wait8)
    assert row["relative_error"] == pytest.approx(-0.5)
    assert row["note"] == ""  # 64 cores, hold unchanged: the model's assumptions held
    full = wait_forecast(run)
    assert full[full["concurrency"] == 1]["forecast_wait_us"].iloc[0] == pytest.approx(0.0)


def test_shared_locks_get_no_ceiling_and_no_forecast():
    run = make_run([Level("s", 1, 100, 10.0, hold_us=500.0, mode="shared"),
                    Level("s", 4, 300, 10.0, hold_us=500.0, mode="shared")])
    util = lock_utilization(run)
    assert util["ceiling_qps"].isna().all()
    assert exclusive_ceilings(run).empty
    assert wait_forecast(run).empty
    assert len(wait_forecast(run, modes=("shared",))) == 2


def rare_run(hold_us: float = 24.0):
    """An exclusive lock held by 5 in 1000 queries (a merge's copy, say), at two levels."""
    run = make_run([Level("s", 1, 1000, 10.0, hold_us=hold_us), Level("s", 4, 1000, 5.0, hold_us=hold_us)])
    events = run.query_events
    taken = events["query_id"].str.rsplit("-", n=1).str[1].astype(int) % 1000 < 5
    run.query_events = events[(events["event"] != "PartsLocks") | taken]
    return run


def test_a_rarely_taken_exclusive_lock_gets_no_ceiling_anywhere():
    run = rare_run()
    util = lock_utilization(run)
    assert util["acquisitions_per_query"].tolist() == pytest.approx([0.005, 0.005])
    assert util["ceiling_qps"].isna().all()  # the table follows the same rule as exclusive_ceilings
    assert exclusive_ceilings(run).empty
    assert wait_forecast(run).empty and forecast_vs_measured(run).empty  # and the forecast
    assert exclusive_holds_without_ceiling(run)["lock"].tolist() == ["parts"]
    reason = no_ceiling_reason(run)
    assert "rare" in reason and "under 1% of the queries" in reason and "0.5 acquisitions per 100" in reason
    assert "reported a hold time" not in reason
    assert "rare" in no_forecast_reason(run)


def test_a_commonly_taken_exclusive_lock_keeps_its_ceiling_at_every_level():
    run, _ = known_run()
    assert lock_utilization(run)["ceiling_qps"].tolist() == pytest.approx([2000.0, 2000.0])
    assert no_ceiling_reason(run) == ""
    assert no_forecast_reason(run) == ""


def test_no_exclusive_hold_at_all_says_so():
    run = make_run([Level("s", 1, 100, 10.0, hold_us=500.0, mode="shared")])
    assert "No exclusive lock taken by the queries reported a hold time" in no_ceiling_reason(run)
    assert exclusive_holds_without_ceiling(run).empty


def test_notes_say_when_the_hold_grew_and_workers_outnumber_cores():
    run = make_run([Level("s", 1, 100, 10.0, hold_us=100.0), Level("s", 4, 200, 10.0, hold_us=300.0, wait_us=50)],
                   cpu_count=2)
    note = forecast_vs_measured(run)["note"].iloc[0]
    assert "hold grew 3.0×" in note and "4 workers on 2 cores" in note


def test_a_lock_waited_on_whose_hold_is_not_counted_gets_a_sentence_not_a_ceiling():
    """The global thread pool lock has a wait counter and no hold counter: no ceiling can come from it, and the
    report says so, naming the engine, instead of leaving the reader to guess why it has none."""
    from lockprof.analysis.utilization import exclusive_ceilings, uncounted_holds

    run = make_run([Level("s", c, 100 * c, 1.0, hold_us=0.0, counters={"GlobalThreadPoolLockWaitMicroseconds": 500})
                    for c in (1, 2)])
    said = uncounted_holds(run)
    assert said == ["The global thread pool lock (exclusive) is waited on, up to 500 µs per query, but embedded "
                    "counts no hold time for it, so no ceiling or forecast can be given for it there."]
    assert "global_thread_pool" not in set(exclusive_ceilings(run)["lock"])
    quiet = make_run([Level("s", 1, 100, 1.0, counters={"GlobalThreadPoolLockWaitMicroseconds": 0.5})])
    assert uncounted_holds(quiet) == []  # under a microsecond per query: nothing to say
