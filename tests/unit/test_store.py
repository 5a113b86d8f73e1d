"""The run directory: atomic parts, versioned manifest, nothing half-written; the format's one declaration of
every table; one way to combine runs."""

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

from lockprof import store
from lockprof.analysis.load import LAZY_TABLES, REPLICA_TABLES, Relabel, Run, _empty, combine, load_run, run_tables
from lockprof.dirformat import Manifest
from lockprof.dirformat import tables as declared
from lockprof.errors import OutExists, RunDirError


def test_run_dir_appears_with_an_incomplete_manifest_and_finishes(tmp_path):
    run = store.RunDir(tmp_path / "r", {"run_id": "x", "engines": []})
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    assert manifest["format_version"] == store.FORMAT_VERSION
    run.finish("complete")
    assert store.read_manifest(tmp_path / "r")["status"] == "complete"
    # no temporary files or staging directories are left behind
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["manifest.json"]


def test_existing_directory_is_refused(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(OutExists, match="already exists") as refused:
        store.RunDir(tmp_path / "r", {})
    assert refused.value.exit_code == 1  # a bad --out (the race loser too), not an unreadable run directory


def test_parts_round_trip_and_empty_frames_write_nothing(tmp_path):
    store.write_part(tmp_path, "queries", "a-0", pd.DataFrame({"x": [1, 2]}))
    store.write_part(tmp_path, "queries", "a-1", pd.DataFrame({"x": [3]}))
    assert store.write_part(tmp_path, "events", "a-0", pd.DataFrame()) is None
    assert store.read_table(tmp_path, "queries")["x"].tolist() == [1, 2, 3]
    assert store.read_table(tmp_path, "events").empty
    assert not list((tmp_path / "queries").glob(".*"))


def test_a_failed_write_leaves_no_part(tmp_path):
    class Unwritable(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        store.write_part(tmp_path, "queries", "a-0", Unwritable({"x": [1]}))
    assert list((tmp_path / "queries").iterdir()) == []


@pytest.mark.parametrize(
    "content, message",
    [(None, "not a lockprof run directory"), ("{oops", "unreadable manifest"),
     ('{"format_version": 99}', "run format 99 is not readable")],
)
def test_unreadable_runs_are_refused_with_a_reason(tmp_path, content, message):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(RunDirError, match=message):
        store.read_manifest(tmp_path)


# --- the format's declaration: every writer's output fits it ---------------------------------------------------

LEVEL_KEYS = {"engine": "embedded", "schema": "day", "concurrency": 2, "repetition": 0}


def fits(table: str, frame: pd.DataFrame) -> None:
    assert not frame.empty, f"{table}: the writer wrote nothing to check"
    assert declared.table(table).problems(frame) == []


def test_the_driver_records_fit_the_queries_table():
    from lockprof.driver import LOG_COLUMNS, Level, level_records

    level = Level(schema="day", table="t", concurrency=2, repetition=0, warmup_s=0.1, duration_s=1.0,
                  id_prefix="r-", seed=0)
    rows = [(0, "query", "q", "r-0", 0.0, 0.001, 0.004, None, "a", 0),
            (1, "query", "q", "r-1", 0.0, 0.002, 1.5, "Code: 159. (TIMEOUT_EXCEEDED)", "b", 0),
            (0, "background", "bg", "r-2", 0.5, 0.5, 0.6, None, "a", 1)]
    records = level_records(level, rows, window_end_s=1.1).drop(columns=LOG_COLUMNS)  # as the worker stores them
    fits("queries", records.assign(phase="measure", engine="embedded"))


def test_the_samplers_frames_fit_their_tables():
    from lockprof.clock import RunClock
    from lockprof.samplers import EventsSampler, MetricsSampler

    clock = RunClock()
    events = EventsSampler(None, clock)  # type: ignore[arg-type]  # frame() reads only the rows polled
    events.rows = [{"t_s": 0.2, "interval_s": 0.2, "event": "Query", "delta": 3, "replica": ""}]
    metrics = MetricsSampler(None, clock)  # type: ignore[arg-type]
    metrics.rows = [{"t_s": 0.2, "metric": "Query", "value": 2, "replica": ""}]
    fits("events", events.frame().assign(**LEVEL_KEYS))
    fits("metrics", metrics.frame().assign(**LEVEL_KEYS))
    assert list(EventsSampler.columns) == declared.EVENTS.written_by("sampler")
    assert list(MetricsSampler.columns) == declared.METRICS.written_by("sampler")


def test_a_level_row_fits_the_levels_table():
    from lockprof.clock import RunClock
    from lockprof.driver import Level, level_counts, level_records, level_verdict
    from lockprof.samplers.host import COLUMNS as HOST_COLUMNS
    from lockprof.samplers.host import HostSampler

    clock = RunClock()
    with HostSampler(clock) as host:
        pass
    level = Level(schema="day", table="t", concurrency=1, repetition=0, warmup_s=0.0, duration_s=1.0,
                  id_prefix="r-", seed=0)
    records = level_records(level, [(0, "query", "q", "r-0", 0.0, 0.0, 0.01, None, "a", 0)]).assign(phase="measure")
    row = {**LEVEL_KEYS, "seq": 0, "position": 0, "measure_start_s": 0.0, "measure_end_s": 1.0,
           "target_qps": float("nan"), "scheduled": None, **level_counts(records), "active_parts_before": 3,
           "active_parts_after": 3, "interrupted": False, "sampler_errors": None, **host.window(0.0, clock.now()),
           **level_verdict(records, records, [], False)}
    row.pop("error_kinds")  # the worker's reply only, as the worker does
    fits("levels", pd.DataFrame([row]))
    assert list(host.window(0.0, clock.now())) == list(HOST_COLUMNS) == declared.LEVELS.written_by("host")


def test_stacks_locks_and_the_driver_profile_fit_their_tables():
    from lockprof.locks import catalog
    from lockprof.samplers.pyspy import parse_raw, summarize
    from lockprof.samplers.trace_log import fold

    raw = pd.DataFrame({"replica": [""], "query_id": ["r-0"], "trace_type": ["Real"], "event": [""],
                        "frames": [["main", "DB::lock"]], "addresses": [[1, 2]], "samples": [3], "weight": [3]})
    fits("stacks", fold(raw).assign(**LEVEL_KEYS))
    names = pd.DataFrame({"name": ["PartsLockWaitMicroseconds", "PartsLockHoldMicroseconds"], "description": ""})
    fits("locks", catalog(names).assign(engine="embedded"))
    stacks = parse_raw("thread (0x1): lockprof-query-0;run (driver.py:1);execute (chdb/session.py:2) 7\n")
    fits("driver_stacks", stacks.assign(**LEVEL_KEYS))
    fits("driver", pd.DataFrame([{**LEVEL_KEYS, "seconds": 1.0, "rate_hz": 100, **summarize(stacks, 1.0, 100)}]))


def test_a_column_the_declaration_does_not_know_or_of_another_kind_is_found():
    bad = pd.DataFrame({"t_s": ["soon"], "metric": ["Query"], "value": [1], "replica": [""], "colour": ["red"],
                        **{k: [v] for k, v in LEVEL_KEYS.items()}})
    colour, t_s = sorted(declared.METRICS.problems(bad))
    assert colour == "metrics.colour: not declared" and t_s.startswith("metrics.t_s:") and "declared float" in t_s
    assert declared.EVENTS.problems(pd.DataFrame({"t_s": [1.0]}))[0] == "events.interval_s: missing"


def test_a_synthetic_run_directory_fits_the_declaration(tmp_path):
    from benchmarks.synthetic_run import write_synthetic_run

    write_synthetic_run(tmp_path / "synthetic", queries=32, repetitions=1)
    for table in declared.tables():
        parts = store.table_parts(tmp_path / "synthetic", table.name)
        if parts:
            assert table.problems(store.read_parts(table.name, parts)) == [], table.name


def test_the_run_holds_one_frame_per_declared_table_and_the_readers_derive_from_the_declaration():
    from lockprof.samplers.registry import tables as sampler_tables

    frames = [f.name for f in dataclasses.fields(Run) if f.name not in ("paths", "manifests", "cache")]
    # tables a sampler declares for itself (registered once its module is imported) are read where they are used
    own = {t.name for t in sampler_tables()} - set(frames)
    assert frames == [n for n in declared.names() if n not in own] == [t.name for t in run_tables()]
    assert [n for n in store.TABLES if n not in own] == frames
    assert LAZY_TABLES == ("query_events",)
    assert set(REPLICA_TABLES) == {"events", "metrics", "query_events", "stacks"}
    assert {k: v for k, v in store.CATEGORICAL.items() if k not in own} == {
        "events": ("event",), "metrics": ("metric",), "query_events": ("query_id", "event")}
    assert list(_empty("locks").columns) == [*declared.LOCKS.names, "run_id"]
    with pytest.raises(ValueError, match="unknown table"):
        store.part_path(Path("r"), "nonsense", "a-0")


def test_a_sampler_can_declare_a_table_of_its_own_once():
    mine = declared.Table("test_only_samples", "a plug-in's table", (declared.Column("t_s", "float"),))
    try:
        assert declared.register_table(mine) is mine and declared.register_table(mine) is mine
        assert declared.table("test_only_samples").names == ["t_s"]
        assert store.part_path(Path("r"), "test_only_samples", "a-0").parent.name == "test_only_samples"  # writable
        assert "test_only_samples" not in [t.name for t in run_tables()]  # read by whoever declared it
        with pytest.raises(ValueError, match="declared twice"):
            declared.register_table(declared.Table("test_only_samples", "other", ()))
    finally:
        declared._DECLARED.pop("test_only_samples", None)
    with pytest.raises(ValueError, match="unknown kind"):
        declared.Column("x", "decimal")


def test_the_tables_reference_is_the_declaration_rendered():
    """docs/run-tables.md is generated: a table or column changed in the declaration changes it."""
    reference = ROOT / "docs" / "run-tables.md"
    # rendered as its command renders it: in a process where no sampler has declared a table of its own yet
    rendered = subprocess.run([sys.executable, "-m", "lockprof.dirformat"], capture_output=True, text=True,
                              check=True).stdout
    assert reference.read_text() == rendered, "regenerate it: python -m lockprof.dirformat > " + str(
        reference.relative_to(reference.parent.parent))
    assert all(f"## {t.name}\n" in reference.read_text() for t in run_tables())


# --- the manifest: one typed, versioned object -----------------------------------------------------------------

def begun(**notes: list[str]) -> Manifest:
    return Manifest.begin("r1", scenario={"name": "tiny", "sha256": "abc"}, parameters={"mode": "closed_loop"},
                          engines=[{"label": "embedded", "spec": "embedded"}], datasets={}, host={"cpu_count": 2},
                          clock_origin_unix_s=1.5, **notes)


def test_a_manifest_records_the_run_and_reads_back_as_written(tmp_path):
    run = store.RunDir(tmp_path / "r", begun())
    run.manifest.fail("engine embedded died")
    assert run.manifest.note("a note") and not run.manifest.note("a note")  # each note once
    run.manifest.fail_level({"engine": "embedded", "schema": "day", "concurrency": 1, "repetition": 0,
                             "error_share": 1.0, "first_error": "boom"})
    run.manifest.restarted(["b", "a"], {"a": "/a", "b": "/b"})
    run.manifest.restarts_before(1)
    run.finish("incomplete")
    read = store.read_manifest(tmp_path / "r")
    assert read.to_dict() == run.manifest.to_dict()
    assert read.failures == ["engine embedded died"] and read.notes == ["a note"] and not read.complete
    assert read.worker_restarts == [{"order": ["b", "a"], "data_paths": {"a": "/a", "b": "/b"}, "before_repetition": 1}]
    assert read.ended_at and read.started_at and read.lockprof_version and read.clock == {"origin_unix_s": 1.5}
    raw = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert set(raw) == {f.name for f in dataclasses.fields(Manifest)} - {"others"}  # every key, every time
    assert read["failures"] == raw["failures"] and read.get("host") == {"cpu_count": 2} and "others" not in read


def test_run_and_observe_build_their_manifest_through_the_one_constructor():
    import lockprof.observe
    import lockprof.run

    for module in (lockprof.run, lockprof.observe):
        source = inspect.getsource(module)
        assert "Manifest.begin(" in source and "manifest[" not in source and "manifest.get(" not in source


def test_a_manifest_written_before_the_keys_it_lacks_still_loads(tmp_path):
    """An observe run of an older lockprof: no failed_levels, worker_restarts, ended_at; tables without replica."""
    old = {"format_version": 1, "run_id": "old", "status": "complete", "lockprof_version": "0.1",
           "scenario": {"name": "observe", "path": "", "sha256": "", "definition": {}},
           "parameters": {"mode": "observe"}, "engines": [{"label": "http://h:8123", "spec": "http://h:8123"}],
           "datasets": {}, "host": {"cpu_count": 4}, "clock": {"origin_unix_s": 1.0}, "started_at": "t",
           "failures": [], "notes": ["observe mode"], "a_key_of_a_newer_lockprof": 7}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(old))
    keys = {"engine": "http://h:8123", "schema": "observed", "concurrency": 1, "repetition": 0}
    store.write_part(tmp_path / "old", "levels", "a-00000", pd.DataFrame([{
        **keys, "seq": 0, "measure_start_s": 0.0, "measure_end_s": 1.0, "queries": 1, "errors": 0,
        "active_parts_before": float("nan"), "active_parts_after": float("nan"), "interrupted": False}]))
    store.write_part(tmp_path / "old", "queries", "a-00000", pd.DataFrame([{
        **keys, "worker": 0, "role": "query", "query_name": "Select", "query_id": "q", "phase": "measure",
        "intended_start_s": 0.1, "start_s": 0.1, "latency_ms": 2.0, "error": None}]))
    store.write_part(tmp_path / "old", "events", "a-00000", pd.DataFrame([{
        "t_s": 0.5, "interval_s": 0.5, "event": "Query", "delta": 1, **keys}]))
    run = load_run(tmp_path / "old")
    m = run.manifest
    assert (m.failed_levels, m.worker_restarts, m.ended_at, m.mode) == ([], [], None, "observe")
    assert m.others == {"a_key_of_a_newer_lockprof": 7} and m.to_dict()["a_key_of_a_newer_lockprof"] == 7
    assert run.events["replica"].tolist() == [""] and run.complete  # written before --cluster
    assert run.stacks.empty and "engine" in run.stacks


@pytest.mark.parametrize("change, message", [
    ({"notes": "not a list"}, "'notes' has the wrong type"),
    ({"run_id": 3}, "'run_id' is not str"),
    ({"format_version": 2}, "run format 2 is not readable"),
    ({"format_version": []}, r"run format \[\] is not readable"),
])
def test_a_damaged_manifest_is_refused_by_name(tmp_path, change, message):
    raw = {**begun().to_dict(), **change}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(RunDirError, match=message):
        store.read_manifest(tmp_path)


# --- combining runs: one function --------------------------------------------------------------------------------

def test_runs_combine_with_their_engines_relabeled_in_tables_and_manifests(tmp_path):
    from ab_synthetic import synthetic_run

    a, b = synthetic_run(1.0, "a", engines=("old",)), synthetic_run(1.2, "b", engines=("old",))
    a.cache["stale"] = 1
    both = combine([a, b], [Relabel(suffix="@a"), Relabel(renames=(("old", "new"),))])
    assert set(both.queries["engine"]) == set(both.levels["engine"]) == {"old@a", "new"}
    assert len(both.queries) == len(a.queries) + len(b.queries)
    assert [m.engine_labels for m in both.manifests] == [["old@a"], ["new"]]
    assert a.manifest.engine_labels == ["old"]  # the runs combined are left as they were
    assert both.cache == {}  # results computed on one side are not the combined run's
    assert combine([a]) is a

