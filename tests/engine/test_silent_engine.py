"""Nothing silent, on the real engine: the hostile cases of issue 31 that need one (the rest are in
``test_silent.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, lockprof_cli

from lockprof.analysis import load_run

# One short level per engine: what these tests check does not need a long window.
SHORT = ("--concurrency", "1", "--duration", "0.3", "--warmup", "0.1", "--schema", "day", "--samplers", "off")


def test_an_engine_label_with_a_slash_keeps_both_sides_of_an_ab(tmp_path):
    berlin = "embedded?session_timezone=Europe/Berlin"
    result = lockprof_cli(
        "run",
        str(TINY),
        "--engine",
        "embedded",
        "--engine",
        berlin,
        "--repetitions",
        "1",
        *SHORT,
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    run = load_run(tmp_path / "run")
    labels = sorted(e["label"] for e in run.manifest["engines"])
    assert sorted(run.levels["engine"].unique()) == labels == ["embedded", "embedded+session_timezone=Europe/Berlin"]
    assert sorted(run.queries["engine"].unique()) == labels
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_dir() and p.parent.name in ("queries", "levels")]


def test_a_misspelled_engine_setting_is_refused_with_the_nearest_name(tmp_path):
    result = lockprof_cli("run", str(TINY), "--engine", "embedded?max_threadz=1", *SHORT, "--out", str(tmp_path / "r"))
    assert result.returncode == 3, result.stderr + result.stdout
    assert "unknown setting 'max_threadz'; did you mean 'max_threads'?" in result.stderr
    assert result.stderr.count("lockprof: error:") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()


def tiny_with(tmp_path: Path, replace: str) -> Path:
    """The tiny scenario with some fields replaced (``replace`` is the keyword arguments' source)."""
    path = tmp_path / "scenario.py"
    path.write_text(TINY.read_text() + f"\nimport dataclasses\nscenario = dataclasses.replace(scenario, {replace})\n")
    return path


def test_scenario_settings_apply_to_the_measured_queries(tmp_path):
    checked = (
        "queries=[Query(\"checked\", \"SELECT throwIf(getSetting('max_threads') != 3, 'not applied') "
        'FROM {table} WHERE namespace = {ns:UInt16}", params=lambda rng: {"ns": rng.randrange(20)})], '
        'settings={"max_threads": 3}'
    )
    result = lockprof_cli("run", str(tiny_with(tmp_path, checked)), *SHORT, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr + result.stdout
    measured = load_run(tmp_path / "run").measured()
    assert len(measured) and measured["error"].isna().all()
    assert load_run(tmp_path / "run").manifest["scenario"]["definition"]["settings"] == {"max_threads": 3}


def test_a_scenario_setting_that_fails_every_query_is_a_broken_scenario(tmp_path):
    result = lockprof_cli(
        "run", str(tiny_with(tmp_path, 'settings={"max_rows_to_read": 1}')), *SHORT, "--out", str(tmp_path / "run")
    )
    assert result.returncode == 2, result.stderr + result.stdout
    assert "TOO_MANY_ROWS" in result.stderr and result.stderr.count("lockprof: error:") == 1
    assert not (tmp_path / "run").exists()


def test_an_unknown_scenario_setting_is_a_broken_scenario_with_the_nearest_name(tmp_path):
    result = lockprof_cli(
        "run", str(tiny_with(tmp_path, 'settings={"max_rows_to_reed": 1}')), *SHORT, "--out", str(tmp_path / "run")
    )
    assert result.returncode == 2, result.stderr + result.stdout
    assert "unknown setting 'max_rows_to_reed'; did you mean 'max_rows_to_read'?" in result.stderr


def test_the_time_limit_never_cuts_a_query_before_its_levels_end_and_grace(engine):
    """Thread A's first query is short and B's long, so A starts queries while the window's end is not yet known
    (it opens when B's first query ends); none of them may be cut before the real end plus the grace."""
    import itertools
    import threading

    from lockprof.clock import RunClock
    from lockprof.driver import GRACE_S, Level, run_level
    from lockprof.scenario import Query, Scenario, Schema

    lengths = itertools.chain([1, 20], itertools.repeat(16))  # tenths of a second: A's first, B's first, the rest
    slow = Query(
        "slow",
        "SELECT sleepEachRow(0.1) FROM numbers({n:UInt32}) SETTINGS max_block_size = 1",
        params=lambda _rng: {"n": next(lengths)},
    )
    sc = Scenario("limits", [Schema("s", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")], [slow])
    level = Level("s", "system.one", 2, 0, 0.2, 1.0, "limit-", seed=1)
    result = run_level(
        sc, level, [engine.connect(), engine.connect()], [], RunClock(), threading.Event(), watchdog=engine.connect()
    )
    rec = result.records
    assert result.measure_start_s > 1.5  # the window opened when B's first query ended
    end_s = rec["start_s"] + rec["latency_ms"] / 1000
    early = rec[rec["cancelled"] & (end_s < result.measure_end_s + GRACE_S * 0.9)]
    assert early.empty, early
    assert rec.loc[rec["cancelled"], "censored"].all()


def test_a_params_function_that_exits_or_interrupts_is_an_error_record_and_every_thread_goes_on(engine):
    import itertools
    import sys
    import threading

    from lockprof.clock import RunClock
    from lockprof.driver import Level, run_level
    from lockprof.scenario import Query, Scenario, Schema

    calls = itertools.count()

    def params(_rng):
        n = next(calls)
        if n % 7 == 3:
            sys.exit(0)
        if n % 7 == 5:
            raise KeyboardInterrupt
        return {}

    exits_line = params.__code__.co_firstlineno + 3
    sc = Scenario(
        "exits",
        [Schema("s", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")],
        [Query("q", "SELECT 1", params=params)],
    )
    level = Level("s", "system.one", 2, 0, 0.1, 0.5, "exits-", seed=1)
    result = run_level(sc, level, [engine.connect(), engine.connect()], [], RunClock(), threading.Event())
    rec = result.records
    assert not result.errors  # no thread ended
    measured = rec[rec["phase"] == "measure"]
    assert set(measured["worker"]) == {0, 1} and measured["error"].isna().sum() > 10
    errors = rec["error"].dropna()
    assert errors.str.contains(f"raised at test_silent_engine.py:{exits_line}: SystemExit: 0").any()
    assert errors.str.contains("KeyboardInterrupt").any()


def test_a_background_statement_that_drops_its_table_is_a_broken_scenario_that_says_so(tmp_path):
    dropper = 'background=[Background("drop", "DROP TABLE {table}")]'
    path = tiny_with(tmp_path, dropper)
    path.write_text(path.read_text().replace("from lockprof import ", "from lockprof import Background, "))
    result = lockprof_cli("run", str(path), *SHORT, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr + result.stdout
    assert "background 'drop': it removed the table it runs on" in result.stderr
    assert result.stderr.count("lockprof: error:") == 1 and "IndexError" not in result.stderr


def test_the_preflight_bound_holds_against_a_querys_own_time_limit(tmp_path):
    """The query lifts max_execution_time in its own SETTINGS (and would take 60 s): the check before measuring
    still stops it after its 5 s and a second, and the run goes on."""
    import time

    slow = (
        'queries=[Query("slow", "SELECT sleepEachRow(0.1) FROM numbers(600) '
        'SETTINGS max_block_size = 1, max_execution_time = 300")]'
    )
    started = time.monotonic()
    result = lockprof_cli("run", str(tiny_with(tmp_path, slow)), *SHORT, "--out", str(tmp_path / "run"), timeout=300)
    assert time.monotonic() - started < 55, "the preflight ran the 60 s query to its end"
    assert result.returncode in (0, 5), result.stderr  # the level itself measures nothing finished: that is exit 5


@pytest.mark.parametrize("when", [0, 5])  # in the first query's params (the warm-up waits for it), or later
def test_a_params_function_that_blocks_is_abandoned_and_the_level_ends_on_time(engine, when):
    import itertools
    import threading
    import time

    from lockprof.clock import RunClock
    from lockprof.driver import ABANDON_AFTER_S, GRACE_S, Level, run_level
    from lockprof.scenario import Query, Scenario, Schema

    calls, release = itertools.count(), threading.Event()

    def params(_rng):
        if next(calls) == when:
            release.wait()  # a lookup that never answers
        return {}

    stuck_line = params.__code__.co_firstlineno + 2
    sc = Scenario(
        "blocks",
        [Schema("s", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")],
        [Query("q", "SELECT 1", params=params)],
    )
    level = Level("s", "system.one", 2, 0, 0.1, 0.5, "blocks-", seed=1)
    started = time.monotonic()
    try:
        result = run_level(
            sc,
            level,
            [engine.connect(), engine.connect()],
            [],
            RunClock(),
            threading.Event(),
            watchdog=engine.connect(),
        )
    finally:
        release.set()
    # at most: the latest window end (warm-up, two windows, a grace) plus the grace and the abandon time
    assert time.monotonic() - started < 0.1 + 2 * 0.5 + 2 * GRACE_S + ABANDON_AFTER_S + 10
    [(role, _worker)] = result.abandoned
    [crash] = result.errors
    assert role == "query" and "was abandoned" in crash and f"test_silent_engine.py:{stuck_line}" in crash
    assert (result.records["phase"] == "measure").sum() > 0


def test_a_thread_the_scenario_leaves_running_does_not_keep_lockprof_alive(tmp_path):
    path = tiny_with(tmp_path, "seed=3")
    path.write_text(
        path.read_text() + "\nimport threading, time\nthreading.Thread(target=time.sleep, args=(3600,), "
        "name='scenario-sleeper').start()\n"
    )
    result = lockprof_cli("run", str(path), *SHORT, "--out", str(tmp_path / "run"), timeout=180)
    assert result.returncode == 0, result.stderr
    assert "not waiting for 1 thread(s) the scenario started" in result.stderr and "scenario-sleeper" in result.stderr
    assert "run directory:" in result.stdout


RARE_FAILURES = """
calls = {"n": 0}


def sometimes(_rng):
    calls["n"] += 1
    if calls["n"] > 1 and calls["n"] % EVERY == 0:  # the preflight's draw passes
        raise LookupError("no such tenant")
    return {"ns": calls["n"] % 20}
"""


def test_rare_params_failures_under_the_threshold_are_printed_with_their_line(tmp_path):
    path = tiny_with(tmp_path, 'queries=[Query("q", "SELECT {ns:UInt16}", params=sometimes)]')
    path.write_text(
        path.read_text().replace("import dataclasses", RARE_FAILURES.replace("EVERY", "50") + "\nimport dataclasses")
    )
    line = path.read_text().splitlines().index('        raise LookupError("no such tenant")') + 1
    result = lockprof_cli("run", str(path), *SHORT, "--duration", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert f"first error of its kind: params of 'q' raised at scenario.py:{line}: LookupError: no such tenant" in (
        result.stderr
    )


def test_background_failures_are_reported_apart_and_do_not_fail_the_level(tmp_path):
    path = tiny_with(tmp_path, 'background=[Background("bg", "SELECT {ns:UInt16}", params=sometimes, pause_s=0.01)]')
    text = path.read_text().replace("import dataclasses", RARE_FAILURES.replace("EVERY", "2") + "\nimport dataclasses")
    path.write_text(text.replace("from lockprof import ", "from lockprof import Background, "))
    result = lockprof_cli("run", str(path), *SHORT, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "background statements failed" in result.stderr and "not counted as query errors" in result.stderr
    levels = load_run(tmp_path / "run").levels
    assert (levels["errors"] == 0).all() and (levels["background_errors"] > 0).all()
    assert not levels["failed"].any()
