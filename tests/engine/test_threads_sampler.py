"""The per-thread /proc sampler against the real embedded engine, in this process (as in a worker), and in a run.

The kernel's own per-process counters are the check: the threads' CPU time summed over every
name cannot exceed what the process spent while the sampler ran (but for each thread's rounding to a
clock tick), and falls short of it only by what threads that ended took with them (the engine keeps
its pooled threads). More busy threads than cores must queue, and nothing may be charged more time
than its threads had wall time.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY, lockprof_cli, wait_for

from lockprof import store
from lockprof.clock import RunClock
from lockprof.samplers.host import process_ticks
from lockprof.samplers.threads import TABLE, ThreadsSampler

HEAVY = "SELECT count() FROM numbers_mt(30000000) WHERE sipHash64(number) % 7 = 1"


def test_the_engines_threads_are_charged_the_cpu_and_queueing_of_a_query_that_outnumbers_the_cores(engine):
    conn = engine.connect()
    tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
    before = process_ticks(os.getpid())
    sampler = ThreadsSampler(os.getpid(), RunClock(), interval_s=0.1)
    with sampler:
        conn.execute(HEAVY, settings={"max_threads": 4 * (os.cpu_count() or 1)})
        wait_for(lambda: sampler.polls >= 3, what="three polls of /proc")
    spent_s = (process_ticks(os.getpid()) - before) * tick_s
    frame = sampler.frame()
    assert sampler.error is None, sampler.error
    assert list(frame.columns) == TABLE.written_by("sampler")
    assert TABLE.problems(frame) == [f"threads.{k}: missing" for k in ("engine", "schema", "concurrency", "repetition")]
    assert frame["t_s"].nunique() == sampler.polls - 1  # every poll after the baseline: one row per name
    assert not frame.duplicated(["t_s", "thread"]).any()
    assert spent_s > 0.5  # the query did real work, or the comparison below says nothing
    # the kernel rounds each thread's user and system time down to a tick on its own, so every thread read may
    # be up to two ticks over its share of the process's total (rounded once): the bound grows with the threads
    rounding_s = 2 * tick_s * frame.groupby("thread")["threads"].max().sum() + tick_s
    assert 0.75 * spent_s <= frame["cpu_s"].sum() <= spent_s + rounding_s
    # the query's threads are the engine's, not this test's Python thread
    by_name = frame.groupby("thread")[["cpu_s", "runqueue_s"]].sum().sort_values("cpu_s")
    busiest = by_name.index[-1]
    assert busiest != Path(f"/proc/{os.getpid()}/comm").read_text().strip(), by_name
    # four runnable threads a core: each waits for a core longer than it runs (on-CPU time is not queueing)
    assert by_name.loc[busiest, "runqueue_s"] >= 1.5 * by_name.loc[busiest, "cpu_s"] > 0, by_name
    slack = frame["threads"] * (0.05 + 2 * tick_s)
    assert (frame["cpu_s"] <= frame["interval_s"] * frame["threads"] + slack).all()
    # the kernel adds a wait when it ends, so one interval may hold more; over the sampler's life it cannot, as the
    # engine's threads were idle (waiting for nothing) at the first poll
    first = frame["t_s"].min() - frame.loc[frame["t_s"].idxmin(), "interval_s"]
    life = frame.groupby("thread").agg(runqueue_s=("runqueue_s", "sum"), threads=("threads", "max"))
    assert (life["runqueue_s"] <= life["threads"] * (frame["t_s"].max() - first + 0.05)).all(), life


def test_threads_are_summed_by_name_and_a_reused_thread_id_is_a_new_thread(tmp_path):
    """The kernel's formats, written out: a name holding ") " and spaces, a thread that ended, a thread id reused
    by a thread that started later (its counters restart), and a kernel without schedstat (NaN, not zero)."""
    clock = iter([0.0, 1.0, 2.0])

    def task(tid: int, comm: str, ticks: int, start: int, runqueue_ns: int | None) -> None:
        folder = tmp_path / "7" / "task" / str(tid)
        folder.mkdir(parents=True, exist_ok=True)
        fields = ["S", *["0"] * 10, str(ticks), "0", *["0"] * 6, str(start)]
        (folder / "stat").write_text(f"{tid} ({comm}) {' '.join(fields)} 0 0\n")
        if runqueue_ns is None:
            (folder / "schedstat").unlink(missing_ok=True)
        else:
            (folder / "schedstat").write_text(f"5 {runqueue_ns} 3\n")

    class Clock:
        def now(self) -> float:
            return next(clock)

    sampler = ThreadsSampler(7, Clock(), proc=tmp_path)
    task(1, "Query) (Pipe", 100, 10, 1_000_000_000)
    task(2, "Query) (Pipe", 50, 10, 0)
    task(3, "old", 5, 10, 0)
    sampler.poll()
    task(1, "Query) (Pipe", 130, 10, 1_500_000_000)
    task(2, "Query) (Pipe", 2, 99, 250_000_000)  # id 2 ended and came back: 2 ticks since it started
    (tmp_path / "7" / "task" / "3" / "stat").unlink()  # ended
    task(4, "late", 7, 50, None)
    sampler.poll()
    frame = sampler.frame().set_index("thread")
    tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
    assert list(frame.index) == ["Query) (Pipe", "late"] and (frame["interval_s"] == 1.0).all()
    assert frame.loc["Query) (Pipe", "threads"] == 2
    assert frame.loc["Query) (Pipe", "cpu_s"] == pytest.approx(32 * tick_s)
    assert frame.loc["Query) (Pipe", "runqueue_s"] == pytest.approx(0.75)
    assert frame.loc["late", "cpu_s"] == pytest.approx(7 * tick_s) and np.isnan(frame.loc["late", "runqueue_s"])


def test_an_engine_on_another_machine_is_said_to_be_unreadable_not_sampled_as_idle():
    sampler = ThreadsSampler(None, RunClock(), interval_s=0.05)
    with sampler:
        pass
    assert "cannot be read" in sampler.error
    assert sampler.frame().empty


def test_a_run_with_the_threads_sampler_stores_its_table_and_still_summarizes(tmp_path):
    from lockprof.analysis import load_run

    out = tmp_path / "run"
    result = lockprof_cli("run", str(TINY), "--samplers", "events,threads", "--concurrency", "2", "--schema", "day",
                          "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    run = load_run(out)
    assert run.manifest["parameters"]["samplers"] == ["events", "threads"]
    assert run.levels["sampler_errors"].isna().all(), run.levels["sampler_errors"].tolist()
    threads = store.read_table(out, "threads")  # a sampler's own table: read where it is used
    assert TABLE.problems(threads) == []
    assert not threads.empty and not run.events.empty and run.metrics.empty  # only the samplers asked for
    assert set(threads[["engine", "schema", "concurrency", "repetition"]].drop_duplicates().itertuples(index=False)) \
        == {("embedded", "day", 2, 0)}
    # the level's window lies within what the sampler covered, and its engine threads worked in it
    level = run.levels.iloc[0]
    window = threads[(threads["t_s"] > level["measure_start_s"]) & (threads["t_s"] <= level["measure_end_s"])]
    assert window["cpu_s"].sum() > 0
    assert pd.api.types.is_float_dtype(threads["runqueue_s"])
    for command in ("summary", "report"):  # the analysis reads the run as before, the new table beside it
        done = lockprof_cli(command, str(out))
        assert done.returncode == 0, done.stderr + done.stdout
    assert (out / "report.html").is_file()
