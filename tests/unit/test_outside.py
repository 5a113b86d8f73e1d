"""Lock time outside the measured queries, on synthetic runs whose right answer is known by construction."""

from __future__ import annotations

import pandas as pd
import pytest
from synthetic_runs import Level, make_run

from lockprof.analysis.load import _empty
from lockprof.analysis.outside import outside_queries, outside_sentences, outside_sources

HOLD, COUNT, POOL = "PartsLockHoldMicroseconds", "PartsLocks", "GlobalThreadPoolLockWaitMicroseconds"
# 100 queries in a 4 s window, 100 µs of exclusive hold each (10 ms in all), one acquisition each; the samplers'
# four 1 s slices see 25 of them each.
QUERIES, WINDOW_S = 100, 4.0


def flushes(hold: tuple[float, ...], inserted: tuple[float, ...], merged: tuple[float, ...] = (0, 0, 0, 0),
            acquisitions: tuple[float, ...] | None = None) -> dict[str, tuple[float, ...]]:
    """Process-wide deltas per slice: the queries' acquisitions (25 a slice) plus one per outside hold."""
    extra = acquisitions or tuple(1 if h else 0 for h in hold)
    return {HOLD: hold, COUNT: tuple(25 + a for a in extra), "InsertedRows": inserted,
            "MergeTotalMilliseconds": merged}


def level(**kw) -> Level:
    return Level("day", 8, QUERIES, WINDOW_S, hold_us=100.0, **kw)


def row(frame: pd.DataFrame, lock: str = "parts", mode: str = "exclusive", role: str = "hold") -> pd.Series:
    mine = frame[(frame["lock"] == lock) & (frame["mode"] == mode) & (frame["role"] == role)]
    assert len(mine) == 1
    return mine.iloc[0]


def test_outside_is_process_wide_minus_the_queries_at_its_rate_and_size():
    """Process-wide 50 ms, queries 10 ms: 40 ms outside, two holds of 20 ms in 4 s, both in flush intervals."""
    run = make_run([level(process=flushes((20_000, 0, 20_000, 0), (200, 0, 200, 0)))], slice_offsets=False)
    r = row(outside_queries(run))
    assert (r["process_us"], r["queries_us"], r["background_us"], r["outside_us"]) == pytest.approx(
        (50_000, 10_000, 0, 40_000))
    assert r["sampled_s"] == pytest.approx(WINDOW_S) and r["intervals"] == 4
    assert r["outside_us_per_s"] == pytest.approx(10_000)
    assert (r["process_acquisitions"], r["queries_acquisitions"], r["outside_acquisitions"]) == (102, 100, 2)
    assert r["outside_acquisitions_per_s"] == pytest.approx(0.5)
    assert r["outside_us_per_acquisition"] == pytest.approx(20_000)
    assert r["outside_share"] == pytest.approx(0.8)
    assert r["intervals_with_outside"] == 2
    (line,) = [s for s in outside_sentences(run) if "parts-lock holds" in s]
    assert line.startswith("embedded / day c=8: exclusive parts-lock holds outside the measured queries: "
                           "0.5 per second, 20.0 ms each, in 2 of 4 sampler intervals")
    assert "process-wide 50.0 ms, queries 10.0 ms, no background statements" in line
    assert "100% of it in the 2 sampler intervals with a system-log flush (0.5 per second, 20.0 ms each)" in line


def test_a_flush_in_every_interval_names_nothing():
    """When every sampler interval holds a flush, the intervals cannot tell a flush from anything else."""
    run = make_run([level(process=flushes((10_000,) * 4, (200,) * 4))], slice_offsets=False)
    assert row(outside_queries(run))["outside_acquisitions_per_s"] == pytest.approx(1.0)
    (line,) = [s for s in outside_sentences(run) if "parts-lock holds" in s]
    assert "1.0 per second, 10.0 ms each" in line and "not attributed" in line


def test_the_slices_tell_flushes_from_merges():
    run = make_run([level(process=flushes((8_000, 0, 6_000, 3_000), (50, 0, 50, 0), merged=(0, 0, 0, 12)))],
                   slice_offsets=False)
    src = outside_sources(run)
    src = src[(src["lock"] == "parts") & (src["mode"] == "exclusive") & (src["role"] == "hold")].set_index("source")
    assert src.loc["system_log_flush", "outside_us"] == pytest.approx(14_000)
    assert src.loc["system_log_flush", "outside_acquisitions"] == 2
    assert src.loc["system_log_flush", "intervals"] == 2
    assert src.loc["merge", "outside_us"] == pytest.approx(3_000)
    assert src.loc["unattributed", "outside_us"] == pytest.approx(0)
    # Rates are per second of the whole window, so the sources add up to the total.
    assert src["outside_us_per_s"].sum() == pytest.approx(row(outside_queries(run))["outside_us_per_s"])
    (line,) = [s for s in outside_sentences(run) if "parts-lock holds" in s]
    assert "82% of it in the 2 sampler intervals with a system-log flush (0.5 per second, 7.0 ms each)" in line


def test_background_statements_are_subtracted_and_their_writes_forbid_naming_flushes():
    """A writer beside the queries: its own holds are not outside, and inserted rows no longer show a flush."""
    writer = {HOLD: 500.0, COUNT: 1, "InsertedRows": 10}
    process = flushes((6_250, 6_250, 6_250, 6_250), (100, 100, 100, 100), acquisitions=(6, 6, 6, 6))
    run = make_run([level(process=process, background=20, background_counters=writer)], slice_offsets=False)
    r = row(outside_queries(run))
    assert (r["process_us"], r["queries_us"], r["background_us"]) == pytest.approx((35_000, 10_000, 10_000))
    assert r["outside_us"] == pytest.approx(15_000)
    assert (r["background_acquisitions"], r["outside_acquisitions"]) == (20, 4)
    assert r["background_statements"] == 20 and r["background_unlogged"] == 0
    src = outside_sources(run)
    src = src[(src["lock"] == "parts") & (src["mode"] == "exclusive") & (src["role"] == "hold")]
    assert set(src["source"]) == {"unattributed"}
    (line,) = [s for s in outside_sentences(run) if "parts-lock holds" in s]
    assert "background statements 10.0 ms" in line and "not attributed" in line


def test_unlogged_background_statements_are_counted_and_block_naming_flushes():
    run = make_run([level(process=flushes((20_000, 0, 20_000, 0), (200, 0, 200, 0)), background=8,
                          background_logged=False)], slice_offsets=False)
    r = row(outside_queries(run))
    assert r["background_statements"] == 8 and r["background_unlogged"] == 8
    assert r["outside_us"] == pytest.approx(40_000)
    (line,) = [s for s in outside_sentences(run) if "parts-lock holds" in s]
    assert "8 without ProfileEvents, not counted" in line and "with a system-log flush" not in line


def test_a_thread_pool_disagreement_is_stated_with_its_numbers():
    """The issue's figures: 16.4 s of pool-lock wait process-wide, 6.4 s in the queries' own ProfileEvents."""
    run = make_run([level(counters={POOL: 64_000.0}, process={POOL: (2_500_000,) * 4})])
    r = row(outside_queries(run), "global_thread_pool", "exclusive", "wait")
    assert (r["process_us"], r["queries_us"], r["outside_us"]) == pytest.approx((16.4e6, 6.4e6, 10e6))
    assert pd.isna(r["outside_acquisitions"]) and pd.isna(r["outside_us_per_acquisition"])  # not counted
    (line,) = [s for s in outside_sentences(run) if "global thread pool" in s]
    assert "process-wide 16.4 s against 6.4 s in the measured queries' own ProfileEvents" in line
    assert "10.0 s (61%) outside the measured queries, 2.5 s per second" in line
    assert "not attributed" in line


def test_only_the_measured_windows_count():
    """A flush in the gap before the window (its interval's middle outside it) is not outside the queries."""
    run = make_run([level(process=flushes((10_000,) * 4, (200,) * 4))], slice_offsets=False)
    start = float(run.levels["measure_start_s"].iloc[0])
    gap = pd.DataFrame([{"t_s": start + 0.1, "interval_s": 0.5, "event": HOLD, "delta": 1e6, "engine": "embedded",
                         "schema": "day", "concurrency": 8, "repetition": 0, "run_id": "synthetic"}])
    run.events = pd.concat([run.events, gap], ignore_index=True)
    assert row(outside_queries(run))["process_us"] == pytest.approx(50_000)


def test_a_small_remainder_says_nothing():
    """1 ms outside against 10 ms of the queries' own: under a quarter of the process-wide figure."""
    run = make_run([level(process=flushes((250,) * 4, (10,) * 4))], slice_offsets=False)
    assert row(outside_queries(run))["outside_us"] == pytest.approx(1_000)
    assert outside_sentences(run) == []


def test_a_run_without_per_query_profile_events_gives_nothing():
    run = make_run([level(process=flushes((10_000,) * 4, (200,) * 4))])
    run.query_events = _empty("query_events")
    assert outside_queries(run).empty and outside_sources(run).empty
    assert outside_sentences(run) == []
