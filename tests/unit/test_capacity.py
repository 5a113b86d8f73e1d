"""The capacity forecast on synthetic runs whose CPU per query, throughput and holds are known, and
`lockprof forecast` on them as a real subprocess."""

from __future__ import annotations

import html
import math

import numpy as np
import pytest
from conftest import lockprof_cli
from figure_checks import assert_readable
from synthetic_runs import Level, make_run

from lockprof import store
from lockprof.analysis.capacity import (
    capacity_ceilings,
    capacity_forecast,
    capacity_model,
    capacity_sentences,
    engine_cores,
    engine_sources,
    forecast_check,
    throughput_curve,
)
from lockprof.analysis.load import combine
from lockprof.analysis.utilization import exclusive_ceilings, forecast_wait_us
from lockprof.plots import capacity_figure
from lockprof.report import render_report
from lockprof.store import RunDir, write_part

CPU = "OSCPUVirtualTimeMicroseconds"


def write_run(run, path):
    """A synthetic run as a run directory, each query's own counters included (as a query log keeps them)."""
    run_dir = RunDir(path, {k: v for k, v in run.manifest.to_dict().items() if k != "status"})
    for table in ("queries", "levels", "events", "query_events", "locks"):
        write_part(run_dir.path, table, "synthetic", getattr(run, table))
    run_dir.finish("complete")
    return run_dir.path


def lock_bound_run(engine: str = "25.8", hold_us: float = 2000.0, cpu_us: float = 50_000.0, repetitions: int = 1,
                   cpu_count: int = 2, **level: object):
    """Concurrency 1 and 4 on ``cpu_count`` cores: 20 and 32 queries per second, ``cpu_us`` of CPU per query,
    the parts lock held exclusively ``hold_us`` per query (2% more in each further repetition, so they spread)."""
    levels = []
    for rep in range(repetitions):
        h = hold_us * (1 + 0.02 * rep)
        levels += [Level("s", 1, 100, 5.0, hold_us=h, counters={CPU: cpu_us}, repetition=rep, **level),
                   Level("s", 4, 160, 5.0, hold_us=h, counters={CPU: cpu_us * (1 + 0.02 * rep)}, repetition=rep,
                         **level)]
    return make_run(levels, engine=engine, cpu_count=cpu_count)


def test_the_ceiling_and_the_core_count_where_the_cpu_line_crosses_it():
    run = lock_bound_run()
    model = capacity_model(run).iloc[0]
    # 32 q/s × 50 ms of CPU on 2 cores: 80% efficiency, 16 q/s per core
    assert model["cores"] == 2 and model["cores_source"] == "host"
    assert model["cpu_ms_per_query"] == pytest.approx(50.0)
    assert model["efficiency"] == pytest.approx(0.8)
    assert model["qps_per_core"] == pytest.approx(16.0)
    lock = capacity_ceilings(run).iloc[0]
    assert lock["lock"] == "parts" and lock["counted"]
    assert lock["ceiling_qps"] == pytest.approx(500.0)  # 1 / 2 ms
    assert lock["crossing_cores"] == pytest.approx(500.0 / 16.0)  # 31.25 cores
    assert lock["acquisitions_per_query"] == pytest.approx(1.0)
    assert lock["hold_us_per_acquisition"] == pytest.approx(2000.0)


def test_the_forecast_is_the_cpu_line_below_the_crossing_and_the_ceiling_above_it():
    run = lock_bound_run()
    below = capacity_forecast(run, 16).iloc[0]
    assert below["bound"] == "cpu" and below["forecast_qps"] == pytest.approx(256.0)
    # the existing queueing model at the forecast load, capped at (C − 1) holds with one worker per core
    assert below["forecast_wait_us"] == pytest.approx(forecast_wait_us(2000.0, 256.0, concurrency=16))
    above = capacity_forecast(run, 64).iloc[0]
    assert above["bound"] == "parts" and above["forecast_qps"] == pytest.approx(500.0)
    assert above["utilization"] == pytest.approx(1.0)
    assert above["forecast_wait_us"] == pytest.approx(63 * 2000.0)  # saturated: everyone else's hold
    curve = throughput_curve(run, 64)
    assert curve["forecast_qps"].max() == pytest.approx(500.0)
    assert curve.loc[curve["cores"] == 1, "forecast_qps"].iloc[0] == pytest.approx(16.0)
    assert curve["cores"].max() == 64


def test_the_sentence_names_the_lock_and_the_crossing_or_says_cpu_bound():
    run = lock_bound_run()
    (at_64,) = capacity_sentences(run, 64)
    assert at_64.startswith("s: on 32 cores or more, the parts lock (exclusive, 2 ms per query) caps this query "
                            "at ~500 q/s")
    (at_8,) = capacity_sentences(run, 8)
    assert at_8.startswith("s: not lock-bound up to 8 cores: CPU-bound at ~130 q/s")
    assert "from 32 cores" in at_8
    unlocked = make_run([Level("s", 1, 100, 5.0, counters={CPU: 50_000}),
                         Level("s", 4, 160, 5.0, counters={CPU: 50_000})], cpu_count=2)
    (sentence,) = capacity_sentences(unlocked, 64)
    assert sentence.startswith("s: not lock-bound up to 64 cores") and "~1,000 q/s" in sentence


def test_pinned_cores_in_the_engine_entry_replace_the_hosts():
    run = lock_bound_run()
    run.manifests[0].engines[0]["cpus"] = 1
    assert engine_cores(run, "25.8") == (1, "pinned")
    model = capacity_model(run).iloc[0]
    assert model["efficiency"] == 1.0  # 32 q/s × 50 ms on one core is 1.6: capped
    assert model["qps_per_core"] == pytest.approx(20.0)


def test_intervals_come_from_the_windows_and_hold_the_point_estimate():
    single = capacity_ceilings(lock_bound_run()).iloc[0]
    assert math.isnan(single["ceiling_low_qps"])  # one window per level: nothing to resample
    run = lock_bound_run(repetitions=4)
    lock = capacity_ceilings(run).iloc[0]
    assert lock["ceiling_low_qps"] < lock["ceiling_qps"] < lock["ceiling_high_qps"]
    assert lock["crossing_low_cores"] < lock["crossing_cores"] < lock["crossing_high_cores"]
    forecast = capacity_forecast(run, 64).iloc[0]
    assert forecast["forecast_low_qps"] <= forecast["forecast_qps"] <= forecast["forecast_high_qps"]
    assert capacity_ceilings(run).equals(capacity_ceilings(lock_bound_run(repetitions=4)))  # seeded


def test_a_lock_waited_on_without_a_hold_counter_is_not_bounded():
    wait_only = {"GlobalThreadPoolLockWaitMicroseconds": 800.0}
    run = make_run([Level("s", 1, 100, 5.0, counters={CPU: 50_000, **wait_only}),
                    Level("s", 4, 160, 5.0, counters={CPU: 50_000, **wait_only})], cpu_count=2)
    lock = capacity_ceilings(run).set_index("lock").loc["global_thread_pool"]
    assert not lock["counted"] and np.isnan(lock["ceiling_qps"]) and np.isnan(lock["crossing_cores"])
    row = capacity_forecast(run, 64).set_index("lock").loc["global_thread_pool"]
    assert np.isnan(row["forecast_wait_us"]) and row["bound"] == "cpu"
    sentences = capacity_sentences(run, 64)
    assert "s: the forecast cannot bound the global thread pool lock (exclusive, waited on up to 800 µs per query): " \
        "embedded counts no hold time for it" in " ".join(sentences), sentences


def test_two_engines_get_a_difference_sentence_at_the_requested_cores():
    fixed = make_run([Level("s", 1, 100, 5.0, hold_us=20.0, mode="shared", counters={CPU: 50_000}),
                      Level("s", 4, 160, 5.0, hold_us=20.0, mode="shared", counters={CPU: 50_000})],
                     engine="26.9", cpu_count=2)
    run = combine([lock_bound_run(), fixed])
    sentences = capacity_sentences(run, 64)
    assert sentences[0] == ("s: at 64 cores 25.8 is capped at ~500 q/s by the parts lock (exclusive); 26.9 is "
                             "not lock-bound (CPU-bound at ~1,000 q/s).")


def test_forecast_cli_prints_the_table_and_the_sentences(tmp_path):
    path = write_run(lock_bound_run(repetitions=2), tmp_path / "run")
    result = lockprof_cli("forecast", str(path), "--cores", "64")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Capacity forecast at 64 cores" in text
    assert "on 31 cores or more (95% interval" in text and "the parts lock (exclusive, 2 ms per query)" in text
    csv = lockprof_cli("forecast", str(path), "--cores", "8", "--concurrency", "4", "--csv")
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout.splitlines()[0].startswith("engine,schema,cores,concurrency")
    assert ",8,4," in csv.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--cores", "0"], "must be at least 1"),
    (["--cores", "many"], "not a whole number"),
    ([], "--cores"),
])
def test_forecast_cli_refuses_bad_options(tmp_path, args, message):
    path = write_run(lock_bound_run(), tmp_path / "run")
    result = lockprof_cli("forecast", str(path), *args)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_forecast_cli_refuses_a_directory_that_is_no_run(tmp_path):
    result = lockprof_cli("forecast", str(tmp_path / "missing"), "--cores", "64")
    assert result.returncode == 4, result.stderr  # RunDirError, as lockprof summary
    assert "missing" in result.stderr and "Traceback" not in result.stderr
    store.check_output_file(tmp_path / "out.csv", "--csv")  # a writable place: the refusal above was the run's


def test_the_figure_draws_the_forecast_the_measured_windows_and_the_labelled_ceiling():
    run = lock_bound_run(repetitions=2)
    fig = capacity_figure(run, 128)
    assert_readable(fig)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_xlim()[1] >= 128
    ceiling = [line for line in ax.lines if list(line.get_ydata()) == [pytest.approx(lock_ceiling(run))] * 2]
    assert ceiling, "the parts lock's ceiling is drawn as a horizontal line"
    labels = [t.get_text() for t in ax.texts]
    assert any(t.startswith("parts lock (exclusive): 1/h ≈ 495 q/s, from 31 cores") for t in labels), labels
    measured = next(line for line in ax.lines if line.get_marker() == "o")
    assert len(measured.get_xdata()) == 2  # one point per window of the highest level, at the host's 2 cores
    assert list(measured.get_xdata()) == [2.0, 2.0]


def test_the_report_has_the_capacity_section_after_the_queueing_forecast():
    run = lock_bound_run()
    text = render_report(run)
    assert "Capacity forecast: throughput against cores" in text
    section = text[text.index("id='capacity'"):]
    for sentence in capacity_sentences(run, 64):
        assert html.escape(sentence) in section
    assert "Throughput vs cores" in section and "<img" in section
    assert text.index("Lock utilization and the exclusive-lock ceiling") < text.index("id='capacity'") \
        < text.index("Scalability (Universal Scalability Law)")


def lock_ceiling(run) -> float:
    return float(capacity_ceilings(run).iloc[0]["ceiling_qps"])


def test_fewer_workers_than_cores_bound_throughput_by_their_latency():
    run = lock_bound_run()  # 10 ms per query at concurrency 1: a worker serves 100 q/s at most
    row = capacity_forecast(run, 64, concurrency=2).iloc[0]
    assert row["bound"] == "concurrency" and row["forecast_qps"] == pytest.approx(200.0)
    assert row["forecast_wait_us"] == pytest.approx(forecast_wait_us(2000.0, 200.0, concurrency=2))
    assert any(s.startswith("s: with 2 workers, at most ~200 q/s") for s in capacity_sentences(run, 64, 2))


def test_each_engine_is_bounded_by_its_queries_own_holds_where_it_keeps_a_query_log():
    """A system log's flush holds its own table's parts lock exclusively; process-wide counters add it to the
    queries'. The run's tables use one source for both engines (process-wide, as 25.8 keeps no query log); the
    forecast takes 26.9's own counters, which show no exclusive hold, so no ceiling for it."""
    flushes = {"PartsLockHoldMicroseconds": (30_000.0, 0.0, 30_000.0, 0.0), "PartsLocks": (10.0, 0.0, 10.0, 0.0)}
    fixed = make_run([Level("s", 1, 100, 5.0, hold_us=20.0, mode="shared", counters={CPU: 50_000}, process=flushes),
                      Level("s", 4, 160, 5.0, hold_us=20.0, mode="shared", counters={CPU: 50_000}, process=flushes)],
                     engine="26.9", cpu_count=2)
    old = lock_bound_run()
    old.query_events = old.query_events.iloc[0:0]  # 25.8 keeps no query log
    old.locks = old.locks[old.locks["event"] != "PartsLocks"]  # nor counts acquisitions
    run = combine([old, fixed])
    assert engine_sources(run) == {"25.8": "events", "26.9": "query_log"}
    assert "26.9" in set(exclusive_ceilings(run)["engine"])  # the flushes, in the process-wide table
    ceilings = capacity_ceilings(run)
    assert set(ceilings.loc[ceilings["counted"], "engine"]) == {"25.8"}
    sentences = capacity_sentences(run, 64)
    assert "26.9 is not lock-bound" in sentences[0], sentences
    assert any("The hold is from process-wide counters (25.8 keeps no query log)" in s for s in sentences)


def test_forecast_check_puts_the_prediction_from_one_core_beside_the_run_on_two():
    one = lock_bound_run(cpu_count=2)
    one.manifests[0].engines[0]["cpus"] = 1  # pinned to one core: 32 q/s × 50 ms is capped at 100% of it
    two = make_run([Level("s", 1, 100, 5.0, hold_us=2000.0, counters={CPU: 50_000}),
                    Level("s", 4, 200, 5.0, hold_us=2000.0, wait_us=150.0, counters={CPU: 50_000})], engine="25.8",
                   cpu_count=2)
    check = forecast_check(one, two).set_index(["metric", "lock"])
    throughput = check.loc[("throughput_qps", "")]
    assert throughput["cores"] == 2 and throughput["concurrency"] == 4
    assert throughput["predicted"] == pytest.approx(40.0)  # 2 cores × 20 q/s per core
    assert throughput["measured"] == pytest.approx(40.0) and throughput["relative_error"] == pytest.approx(0.0)
    wait = check.loc[("wait_us_per_query", "parts")]
    assert wait["predicted"] == pytest.approx(forecast_wait_us(2000.0, 40.0, concurrency=4))
    assert wait["measured"] == pytest.approx(150.0)
    assert wait["relative_error"] == pytest.approx((wait["predicted"] - 150.0) / 150.0)
