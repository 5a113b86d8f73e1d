"""The tail, the spread of each lock over queries and rare exclusive holds, on synthetic runs whose every
query is written out, so the right answer is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import Level, make_run

from lockprof.analysis import diagnose, lock_budget, time_accounting
from lockprof.analysis.per_query import query_counters
from lockprof.analysis.tail import exclusive_holds, lock_distribution, rare_exclusive_holds, tail_attribution
from lockprof.summary import summary_tail_lines

WINDOW_S = 10.0


def run_of(queries: list[dict], background: list[dict] = (), concurrency: int = 2, levels: int = 1):
    """A one-level run (window 1 s – 11 s) whose queries are the given dicts: start_s, latency_ms and their
    ProfileEvents (``events``)."""
    run = make_run([Level("s", concurrency + k, 1, WINDOW_S) for k in range(levels)])
    rows, events = [], []
    for i, q in enumerate([*queries, *background]):
        role = "query" if i < len(queries) else "background"
        qid = f"q{i}"
        rows.append({"engine": "embedded", "schema": "s", "concurrency": q.get("concurrency", concurrency),
                     "repetition": 0, "worker": 0, "role": role, "query_name": q.get("name", "q"), "query_id": qid,
                     "phase": "measure", "intended_start_s": q["start_s"], "start_s": q["start_s"],
                     "latency_ms": q["latency_ms"], "error": None, "run_id": "synthetic"})
        for event, value in q["events"].items():
            events.append({"query_id": qid, "event": event, "value": value, "engine": "embedded",
                           "run_id": "synthetic"})
    run.queries = pd.DataFrame(rows)
    run.query_events = pd.DataFrame(events)
    run.levels = run.levels.assign(queries=len(queries))
    return run


def plain(start: float, latency_ms: float = 5.0, **extra: float) -> dict:
    """A query of 8 ms thread time: 4 on a CPU, 1 waiting for one, 2 waiting for its own threads, 1 other;
    ``extra`` adds to it."""
    events = {"RealTimeMicroseconds": 8000, "OSCPUVirtualTimeMicroseconds": 4000, "OSCPUWaitMicroseconds": 1000,
              "LockprofOwnThreadsWaitMicroseconds": 2000, "SharedPartsLocks": 10,
              "SharedPartsLockHoldMicroseconds": 20}
    for name, value in extra.items():
        events[name] = events.get(name, 0) + value
    return {"start_s": start, "latency_ms": latency_ms, "events": events}


def spread(n: int, latency_ms: float = 5.0) -> list[dict]:
    return [plain(1.0 + WINDOW_S * (i + 0.5) / n, latency_ms + (i % 7) * 0.1) for i in range(n)]


@pytest.fixture
def writer_stall():
    """300 readers, one every 33 ms; a background statement holds the parts lock exclusively for 9 ms at t = 4.0 s
    and 8.0 s, between two of them, and the 6 readers started then wait 9 ms for it in shared mode."""
    queries = spread(300)
    for hold_at in (4.0, 8.0):
        for k in range(3):
            queries.append(plain(hold_at + 0.001 * k, 15.0, SharedPartsLockWaitMicroseconds=9000,
                                 RealTimeMicroseconds=9000))
    background = [{"start_s": t, "latency_ms": 10.0, "name": "ingest",
                   "events": {"RealTimeMicroseconds": 10000, "PartsLocks": 1, "PartsLockHoldMicroseconds": 9000}}
                  for t in (4.0 - 0.0005, 8.0 - 0.0005)]
    return run_of(queries, background)


def test_per_query_means_are_the_accounting_and_budget_figures(writer_stall):
    counters = query_counters(writer_stall)
    mine = counters[counters["role"] == "query"]
    accounting = time_accounting(writer_stall).iloc[0]
    for component in ("thread", "on_cpu", "cpu_wait", "lock_wait", "own_threads", "other"):
        assert mine[f"{component}_us"].mean() / 1000 == pytest.approx(accounting[f"{component}_ms"])
    shared = lock_budget(writer_stall).set_index(["lock", "mode"]).loc[("parts", "shared")]
    assert mine["parts_shared_wait_us"].mean() == pytest.approx(shared["wait_us_per_query"])
    assert set(counters["role"]) == {"query", "background"}  # the holders are kept beside the queries
    assert mine["own_threads_us"].iloc[0] == 2000 and mine["other_us"].iloc[0] == 1000


def test_the_tail_is_attributed_to_the_background_writers_exclusive_hold(writer_stall):
    tail = tail_attribution(writer_stall).iloc[0]
    assert tail["cause"] == "exclusive_hold"
    assert tail["slow_queries"] == 6 and tail["slow_overlap_share"] == 1.0 and tail["middle_overlap_share"] == 0.0
    assert tail["extra_ms"]["parts (shared)"] == pytest.approx(9.0)
    assert "exclusive holds of the parts lock" in tail["sentence"] and "ingest" in tail["sentence"]
    holds = exclusive_holds(writer_stall)
    assert list(holds["role"]) == ["background", "background"] and (holds["overlapping_queries"] == 3).all()
    rare = rare_exclusive_holds(writer_stall).iloc[0]
    assert (rare["holders"], rare["background_holders"], rare["overlapped_queries"]) == (0, 2, 6)
    assert rare["overlapped_p50_ms"] == pytest.approx(15.0) and rare["holds_per_s"] == pytest.approx(2 / WINDOW_S)
    assert "the background statement ingest 2 times (9.0 ms each at the median" in rare["sentence"]


def test_a_rare_long_exclusive_hold_by_one_query_is_reported_with_its_size_and_cost():
    queries = spread(200)
    queries[100]["events"].update(PartsLocks=1, PartsLockHoldMicroseconds=7000)
    holder = queries[100]
    beside = [plain(holder["start_s"] + 0.001, 12.0, SharedPartsLockWaitMicroseconds=6000)]
    run = run_of(queries + beside)
    rare = rare_exclusive_holds(run).iloc[0]
    assert (rare["holders"], rare["queries"], rare["hold_us_max"]) == (1, 201, 7000.0)
    assert rare["hold_us_per_query"] == pytest.approx(7000 / 201)  # what the budget's mean turns it into
    assert rare["holds_per_s"] == pytest.approx(1 / WINDOW_S)
    assert rare["overlapped_queries"] == 1 and rare["overlapped_p50_ms"] == 12.0
    assert "1 query in 201 (7.0 ms)" in rare["sentence"] and "34.8 µs per query" in rare["sentence"]
    assert "took 12.0 ms at the median" in rare["sentence"]
    spread_ = lock_distribution(run).set_index(["lock", "mode"]).loc[("parts", "exclusive")]
    assert spread_["takers"] == 1 and spread_["taken_share"] == pytest.approx(1 / 201)
    assert spread_["hold_us_max"] == 7000 and spread_["hold_us_per_acquisition_max"] == 7000
    assert budget_hold(run) == pytest.approx(7000 / 201)
    assert rare["sentence"] in summary_tail_lines(run)


def budget_hold(run) -> float:
    return float(lock_budget(run).set_index(["lock", "mode"]).loc[("parts", "exclusive"), "hold_us_per_query"])


def test_a_lock_most_queries_hold_exclusively_is_not_rare():
    queries = [plain(1.0 + i * 0.05, 5.0, PartsLocks=1, PartsLockHoldMicroseconds=2000) for i in range(100)]
    assert rare_exclusive_holds(run_of(queries)).empty


def test_slow_queries_bunched_in_time_without_a_holder_are_a_stall():
    queries = spread(300)
    queries += [plain(6.0 + 0.01 * k, 80.0, OSCPUWaitMicroseconds=60000, RealTimeMicroseconds=60000)
                for k in range(5)]
    tail = tail_attribution(run_of(queries)).iloc[0]
    assert tail["cause"] == "stall" and tail["cluster_span_s"] <= 0.05
    assert "is a stall: 80% of them started within 0.03 s" in tail["sentence"]
    assert "waiting for a CPU" in tail["sentence"]


def test_slow_queries_spread_over_the_window_are_named_by_their_largest_extra_component():
    queries = spread(300)
    queries += [plain(1.5 + 2.0 * k, 60.0, OSCPUWaitMicroseconds=50000, RealTimeMicroseconds=50000)
                for k in range(5)]
    tail = tail_attribution(run_of(queries)).iloc[0]
    assert tail["cause"] == "component"
    assert tail["extra_ms"]["cpu_wait_us"] == pytest.approx(50.0)
    assert "mostly time waiting for a CPU" in tail["sentence"]


def test_too_few_queries_say_nothing_about_a_tail():
    tail = tail_attribution(run_of(spread(10))).iloc[0]
    assert tail["cause"] == "too_few" and tail["sentence"] == ""


def test_one_level_names_no_lock_when_waiting_for_a_cpu_is_longer():
    # 20% of thread time waiting for the global thread-pool mutex, 50% waiting for a CPU: one level cannot
    # tell preemption from contention, so the mutex is not named.
    counters = {"RealTimeMicroseconds": 5000, "OSCPUVirtualTimeMicroseconds": 1500, "OSCPUWaitMicroseconds": 2500,
                "GlobalThreadPoolLockWaitMicroseconds": 1000}
    run = make_run([Level("s", 2, 100, 5.0, counters=counters)])
    verdict = diagnose(run).iloc[0]
    assert verdict["verdict"] != "lock"
    assert "single concurrency level" in verdict["explanation"]
    waits_more = {**counters, "GlobalThreadPoolLockWaitMicroseconds": 3000, "OSCPUWaitMicroseconds": 500}
    assert diagnose(make_run([Level("s", 2, 100, 5.0, counters=waits_more)])).iloc[0]["verdict"] == "lock"


def test_a_thin_margin_and_a_large_remainder_are_said():
    low = {"RealTimeMicroseconds": 10000, "OSCPUVirtualTimeMicroseconds": 5000, "OSCPUWaitMicroseconds": 1000}
    high = {"RealTimeMicroseconds": 60000, "OSCPUVirtualTimeMicroseconds": 5000, "OSCPUWaitMicroseconds": 27000}
    run = make_run([Level("s", 1, 100, 5.0, counters=low), Level("s", 8, 100, 5.0, counters=high)])
    verdict = diagnose(run).iloc[0]
    # CPU wait grew 26 ms, the remainder 24 ms: the verdict stands, with the margin said.
    assert verdict["verdict"] == "cpu_queueing"
    assert "margin is thin" in verdict["explanation"] and "26.0 ms" in verdict["explanation"]
    assert any('"other" is 4.0 ms of 10.0 ms' in f for f in verdict["findings"])


def test_the_work_per_query_is_named_in_the_schema_contrast():
    cheap = {"RealTimeMicroseconds": 2000, "OSCPUVirtualTimeMicroseconds": 1000, "QueryAnalysisMicroseconds": 500,
             "SelectedParts": 7, "SelectedPartsTotal": 50}
    costly = {"RealTimeMicroseconds": 30000, "OSCPUVirtualTimeMicroseconds": 20000,
              "QueryAnalysisMicroseconds": 3500, "QueryPlanOptimizeMicroseconds": 7100, "SelectedParts": 7,
              "SelectedPartsTotal": 10000}
    run = make_run([Level("day", 1, 100, 5.0, counters=cheap), Level("ns_day", 1, 100, 5.0, counters=costly)])
    findings = diagnose(run).set_index("schema").loc["ns_day", "findings"]
    contrast = next(f for f in findings if "the CPU per query" in f)
    assert "query analysis takes 3.5 ms (0.5 for day)" in contrast
    assert "optimizing the plan takes 7.1 ms" in contrast
    assert "selects 7 of 10,000 parts (7 of 50 for day)" in contrast
    assert np.isclose(query_counters(run).groupby("schema")["analysis_us"].mean()["ns_day"], 3500)


def test_an_engine_without_per_query_counters_still_gets_its_timing_read():
    queries = [{**q, "events": {}} for q in spread(300)]
    queries += [{"start_s": 6.0 + 0.01 * k, "latency_ms": 80.0, "events": {}} for k in range(5)]
    tail = tail_attribution(run_of(queries)).iloc[0]
    assert tail["cause"] == "stall" and tail["slow_queries"] == 5
    assert "no counters per query" in tail["sentence"]


def test_a_shared_wait_behind_a_long_exclusive_holder_names_the_lock_even_beside_cpu_queueing():
    def readers():
        return [plain(1.0 + 0.1 * i, 12.0, SharedPartsLockWaitMicroseconds=3000, OSCPUWaitMicroseconds=4000,
                      RealTimeMicroseconds=7000) for i in range(100)]
    holder = [{"start_s": 2.0, "latency_ms": 10.0, "name": "ingest",
               "events": {"RealTimeMicroseconds": 10000, "PartsLocks": 1, "PartsLockHoldMicroseconds": 9000}}]
    named = diagnose(run_of(readers(), holder)).iloc[0]
    assert (named["verdict"], named["lock"], named["mode"]) == ("lock", "parts", "shared")
    assert "behind exclusive holds of it (the background statement ingest, 9.0 ms per hold)" in named["explanation"]
    # Without a holder that long, one level cannot tell the same wait from preemption: no lock is named.
    assert diagnose(run_of(readers())).iloc[0]["verdict"] != "lock"


def test_frequent_brief_holds_that_every_query_overlaps_do_not_take_the_tail_from_its_real_cost():
    # A writer commits every 20 ms (a 100 µs exclusive hold): the slowest queries overlap holds, as most do,
    # but what they have more of is waiting for a CPU, not the lock.
    queries = spread(300)
    queries += [plain(2.0 + 1.5 * k, 60.0, OSCPUWaitMicroseconds=50000, RealTimeMicroseconds=50000)
                for k in range(5)]
    writer = [{"start_s": t, "latency_ms": 60.0, "name": "ingest",
               "events": {"RealTimeMicroseconds": 1000, "PartsLocks": 1, "PartsLockHoldMicroseconds": 100}}
              for t in np.arange(1.0, 11.0, 0.1)]
    run = run_of(queries, writer)
    tail = tail_attribution(run).iloc[0]
    assert tail["slow_overlap_share"] == 1.0  # the overlap alone would blame the writer
    assert tail["cause"] == "component" and "mostly time waiting for a CPU" in tail["sentence"]
    assert rare_exclusive_holds(run).empty  # and holds of 100 µs are too brief to report


def test_the_verdict_says_what_the_own_thread_waits_are_and_what_remains():
    counters = {"RealTimeMicroseconds": 10000, "OSCPUVirtualTimeMicroseconds": 5000, "OSCPUWaitMicroseconds": 500,
                "LockprofOwnThreadsWaitMicroseconds": 4000}
    findings = diagnose(make_run([Level("s", 1, 100, 5.0, counters=counters)])).iloc[0]["findings"]
    said = next(f for f in findings if "waiting for the query's own threads is 4.0 ms of 10.0 ms" in f)
    assert "no cost of its own" in said and 'What no counter explains ("other") is 0.5 ms (5%)' in said


def test_queries_cut_at_the_windows_end_make_the_p99_a_lower_bound_and_say_so():
    from ab_synthetic import synthetic_run
    from rich.console import Console

    from lockprof.analysis import level_summary
    from lockprof.analysis.health import run_warnings
    from lockprof.summary import levels_table

    run = synthetic_run(1.0)
    queries = run.queries.assign(censored=False)
    cut = queries[(queries["engine"] == "old") & (queries["concurrency"] == 1)].head(2)
    cut = cut.assign(latency_ms=5000.0, censored=True, error="Code: 394. QUERY_WAS_CANCELLED", query_id=["c1", "c2"])
    run = replace(run, queries=pd.concat([queries, cut], ignore_index=True), cache={})
    summary = level_summary(run)
    flagged = summary[summary["p99_lower_bound"]]
    assert flagged[["engine", "concurrency", "censored"]].values.tolist() == [["old", 1, 2]]
    assert summary.loc[~summary["p99_lower_bound"], "censored"].eq(0).all()
    assert (flagged["p99_ms"] < 5000).all()  # the cut queries are not in the percentile, only bound it
    console = Console(record=True, width=200)
    console.print(levels_table(summary, engines=True))
    assert "≥ " in console.export_text()
    assert any("still running when their window closed" in w and "(≥)" in w for w in run_warnings(run, summary))


def test_a_window_too_short_for_its_threads_prints_no_throughput():
    """One query per thread in a 1 ms window would read 1000/s: the table says "too few" instead, and no p99."""
    from rich.console import Console

    from lockprof.analysis import level_summary
    from lockprof.summary import levels_table

    run = make_run([Level("s", 1, 200, 1.0), Level("s", 4, 4, 0.001)])
    summary = level_summary(run).set_index("concurrency")
    assert summary["too_few"].tolist() == [False, True]
    assert summary.loc[4, "throughput_qps"] == pytest.approx(4000)  # the figure it must not print
    console = Console(record=True, width=200)
    console.print(levels_table(summary.reset_index(), engines=False))
    text = console.export_text()
    row = next(line for line in text.splitlines() if "│ 4 " in line or " 4 │" in line)
    assert "too few" in row and "4000" not in text and "200.0" in text
