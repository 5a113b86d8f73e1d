"""The per-query ProfileEvents aggregated in their Parquet files give the numbers a plain pandas computation gives.

A small run is written to disk through ``store.write_part`` with what a real run can hold beside the
plain case: several parts and batches, parts whose event dictionaries differ, ids the queries table
does not have (warm-up, failed and background queries), a query id logged twice in the queries table,
a query without a ProfileEvents row, and rows without an id or an event name. The analysis of the run
as loaded (files left on disk) must equal, exactly, a straightforward merge and groupby in pandas, and
every figure built on it must equal the one from the same run held in memory.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from lockprof import store
from lockprof.analysis import columnar, diagnose, load_run, lock_budget, lock_waits, time_accounting, window_totals
from lockprof.analysis.accounting import WINDOW
from lockprof.errors import RunDirError
from lockprof.locks import catalog
from lockprof.report import load_runs, render_report
from lockprof.summary import render

EVENTS = ["RealTimeMicroseconds", "OSCPUVirtualTimeMicroseconds", "OSCPUWaitMicroseconds",
          "PartsLockHoldMicroseconds", "PartsLockWaitMicroseconds", "PartsLocks", "SharedPartsLocks",
          "SharedPartsLockHoldMicroseconds", "SharedPartsLockWaitMicroseconds", "SelectedRows"]


def write_run(path, run_id: str = "r1", engine: str = "embedded", seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    manifest = {"run_id": run_id, "lockprof_version": "test", "scenario": {"name": "columnar"},
                "engines": [{"label": engine, "clickhouse_version": "0.0", "package": "none",
                             "has_query_log": True}], "host": {"cpu_count": 2}, "datasets": {}}
    run = store.RunDir(path, manifest)
    store.write_part(run.path, "locks", engine,
                     catalog(pd.DataFrame({"name": EVENTS, "description": ""})).assign(engine=engine))
    t = 0.0
    for seq, (schema, c, rep) in enumerate([(s, c, r) for s in ("day", "namespace_day") for c in (1, 4)
                                            for r in (0, 1)]):
        n = 40 + 7 * seq
        start, end = t + 1.0, t + 3.0
        ids = [f"{run_id}-{seq}-{i}" for i in range(n)]
        phase = np.where(np.arange(n) < 5, "warmup", "measure")
        error = [None if i % 11 else "boom" for i in range(n)]
        queries = pd.DataFrame({"engine": engine, "schema": schema, "concurrency": c, "repetition": rep,
                                "worker": 0, "role": np.where(np.arange(n) == n - 1, "background", "query"),
                                "query_name": "q", "query_id": ids, "phase": phase,
                                "intended_start_s": np.linspace(start, end, n), "start_s": np.linspace(start, end, n),
                                "latency_ms": rng.lognormal(2.0, 0.5, n), "queue_delay_ms": 0.0, "error": error,
                                "replica": ""})
        if seq == 3:  # a query id logged twice: the first row's window counts
            queries = pd.concat([queries, queries.iloc[[10]]], ignore_index=True)
        store.write_part(run.path, "queries", f"{engine}-{seq:03d}", queries)
        # Each part holds its own subset of events, in its own order: the dictionaries differ.
        names = list(rng.permutation(EVENTS)[: 6 + seq % 5])
        rows = [(qid, ev) for qid in ids[:-2] for ev in names]  # the last two queries have no ProfileEvents row
        rows += [(f"{run_id}-elsewhere-{i}", names[0]) for i in range(3)]  # ids the queries table does not have
        rows += [(None, names[0]), (ids[6], None)]  # a row without an id, one without a name: nobody's
        frame = pd.DataFrame(rows, columns=["query_id", "event"])
        frame["value"] = rng.integers(1, 5000, len(frame)).astype("int64")
        frame = frame.assign(engine=engine, replica="")
        store.write_part(run.path, "query_events", f"{engine}-{seq:03d}", frame)
        store.write_part(run.path, "levels", f"{engine}-{seq:03d}", pd.DataFrame([{
            "engine": engine, "schema": schema, "concurrency": c, "repetition": rep, "seq": seq,
            "measure_start_s": start, "measure_end_s": end, "queries": n, "errors": 0, "active_parts_before": 10,
            "active_parts_after": 10, "interrupted": False, "target_qps": float("nan")}]))
        t = end
    run.finish("complete")


def plain_pandas_totals(path) -> pd.DataFrame:
    """The window totals the straightforward way: every row in pandas, a merge and a groupby."""
    queries = pd.read_parquet(path / "queries")
    measured = queries[(queries["phase"] == "measure") & (queries["role"] == "query") & queries["error"].isna()]
    first = measured.drop_duplicates("query_id")[[*WINDOW, "query_id"]]
    events = pd.read_parquet(path / "query_events", columns=["query_id", "event", "value"])
    events = events.dropna(subset=["query_id", "event"]).astype({"query_id": str, "event": str})
    rows = events.merge(first, on="query_id", how="inner")
    totals = rows.groupby([*WINDOW, "event"], as_index=False)["value"].sum()
    queries_logged = rows.drop_duplicates("query_id").groupby(WINDOW, as_index=False).size()
    out = totals.merge(queries_logged.rename(columns={"size": "queries"}), on=WINDOW)
    out = out.rename(columns={"value": "total"}).assign(total=lambda f: f["total"].astype(float))
    return out[out["total"] != 0].sort_values([*WINDOW, "event"], ignore_index=True)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.sort_values([*WINDOW, "event"], ignore_index=True)
    return out.astype({"engine": str, "schema": str, "event": str, "queries": "int64"})


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "BATCH_ROWS", 97)  # several batches per part
    write_run(tmp_path / "run")
    return tmp_path / "run"


def test_window_totals_from_the_files_equal_a_plain_pandas_merge(run_dir):
    run = load_run(run_dir)
    assert run.query_events_on_disk() is not None
    ours = window_totals(run)
    assert (ours["source"] == "query_log").all()
    expected = plain_pandas_totals(run_dir)
    pd.testing.assert_frame_equal(comparable(ours.drop(columns="source")), comparable(expected), check_exact=True,
                                  check_column_type=False)
    assert run.query_events_on_disk() is not None, "the aggregation read query_events into pandas"


def test_every_figure_is_identical_with_the_events_on_disk_or_in_memory(run_dir):
    lazy = load_run(run_dir)
    eager = load_run(run_dir)
    assert len(eager.query_events) > 0  # read into pandas: the in-memory path
    assert eager.query_events_on_disk() is None
    for fn in (window_totals, lock_waits, lock_budget, time_accounting, diagnose):
        pd.testing.assert_frame_equal(fn(lazy), fn(eager), check_exact=True, obj=fn.__name__)


def never_read(self):
    raise AssertionError("query_events was read into pandas")


def test_the_summary_and_report_never_read_query_events_into_pandas(run_dir, monkeypatch):
    monkeypatch.setattr(columnar.ParquetTable, "load", never_read)
    run = load_run(run_dir)
    render(run, Console(file=io.StringIO(), width=120))
    assert "<h2>Verdict" in render_report(run)
    assert run.query_events_on_disk() is not None


def test_query_events_is_a_frame_on_first_access_and_can_be_replaced(run_dir):
    run = load_run(run_dir)
    frame = run.query_events
    assert len(frame) == len(pd.read_parquet(run_dir / "query_events"))
    assert set(frame.columns) >= {"query_id", "event", "value", "engine", "replica", "run_id"}
    assert run.query_events is frame  # read once
    run.query_events = frame[frame["event"] != "RealTimeMicroseconds"]  # an analyst's filter is what counts
    assert "RealTimeMicroseconds" not in set(window_totals(run)["event"])


def test_two_runs_of_one_engine_keep_their_events_apart_on_disk(tmp_path, monkeypatch):
    write_run(tmp_path / "a", run_id="a", seed=1)
    write_run(tmp_path / "b", run_id="b", seed=2)
    with monkeypatch.context() as m:
        m.setattr(columnar.ParquetTable, "load", never_read)
        both = load_runs([tmp_path / "a", tmp_path / "b"])
        assert both.query_events_on_disk() is not None
        totals = window_totals(both)
        assert "<h2>Verdict" in render_report(both)
    assert set(totals["engine"]) == {"embedded@a", "embedded@b"}
    for name in ("a", "b"):
        alone = window_totals(load_run(tmp_path / name)).assign(engine=f"embedded@{name}")
        mine = totals[totals["engine"] == f"embedded@{name}"]
        pd.testing.assert_frame_equal(comparable(mine), comparable(alone), check_exact=True)
    assert set(both.query_events["engine"]) == {"embedded@a", "embedded@b"}


def test_a_damaged_query_events_part_is_refused_on_loading(run_dir):
    part = store.table_parts(run_dir, "query_events")[2]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    with pytest.raises(RunDirError, match=part.name):
        load_run(run_dir)


def test_comparing_two_runs_keeps_their_events_on_disk_and_gives_the_in_memory_verdicts(tmp_path, monkeypatch):
    from lockprof.analysis.ab import compare

    write_run(tmp_path / "a", run_id="a", seed=1)
    write_run(tmp_path / "b", run_id="b", seed=2)
    with monkeypatch.context() as m:
        m.setattr(columnar.ParquetTable, "load", never_read)
        lazy = compare(load_run(tmp_path / "a"), load_run(tmp_path / "b"))
    eager_runs = [load_run(tmp_path / name) for name in ("a", "b")]
    for r in eager_runs:
        assert not r.query_events.empty  # read into pandas: the comparison then merges frames
    eager = compare(*eager_runs)
    assert set(lazy.engines) == {"embedded@a", "embedded@b"}
    assert lazy.frame["metric"].str.startswith("lock_").any()
    pd.testing.assert_frame_equal(lazy.frame, eager.frame, check_exact=True)


def test_a_damaged_page_of_query_events_is_named_when_the_analysis_reads_it(run_dir):
    part = store.table_parts(run_dir, "query_events")[1]
    data = bytearray(part.read_bytes())
    data[4:40] = b"\xff" * 36  # the first page header, right after the magic bytes: the footer is intact
    part.write_bytes(bytes(data))
    run = load_run(run_dir)
    with pytest.raises(RunDirError, match=part.name):
        window_totals(run)
