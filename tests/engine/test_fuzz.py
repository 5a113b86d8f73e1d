"""A fuzzer over what users hand lockprof: scenario files, option values, engine specs, damaged run directories.

The property, for every generated case: a documented exit code, at most one error message and no
traceback, no process left behind, and nothing half-written (no run directory when the run was
refused; a readable manifest when there is one; no temporary files). The CLI's ``main`` runs in
this process (a subprocess per case would make the fuzzer too slow for CI); the workers it starts
are real processes on the real engine. ``LOCKPROF_FUZZ_SCALE`` multiplies the number of cases
(``python -m benchmarks.fuzz`` runs a long session).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import TINY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockprof import store
from lockprof.cli import main

SCALE = float(os.environ.get("LOCKPROF_FUZZ_SCALE", "1"))
DOCUMENTED = {0, 1, 2, 3, 4, 5}
outcomes: Counter[str] = Counter()  # "command exit-code" -> cases, printed at the end for the record


def fuzz(n: int) -> settings:
    """n cases (times LOCKPROF_FUZZ_SCALE); the same cases every CI run unless LOCKPROF_FUZZ_RANDOM is set."""
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), derandomize="LOCKPROF_FUZZ_RANDOM" not in os.environ)


def run_cli(*argv: str) -> tuple[int, str, str]:
    """The real ``lockprof`` entry point; an exception escaping it fails the property (it would be a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    outcomes[f"{argv[0]} exit {code}"] += 1
    return code, out.getvalue(), err.getvalue()


def live_children() -> set[int]:
    """Processes below this one that are still running (zombies are already dead)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            after = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(after[1]) == os.getpid() and after[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def assert_nothing_left(out: Path) -> None:
    deadline = time.monotonic() + 30
    while live_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not live_children(), "a process outlived the command"
    assert not list(Path(tempfile.gettempdir()).glob(f"lockprof-pyspy-{os.getpid()}-*"))
    assert not list(out.parent.glob(f".{out.name}.*")), "a staging directory was left"
    if out.exists():
        assert not [p for p in out.rglob(".*") if p.name != ".gitignore"], "temporary files left behind"


def assert_outcome(code: int, err: str, out: Path) -> None:
    """The property every `lockprof run` case must have."""
    assert code in DOCUMENTED, (code, err)
    assert "Traceback" not in err, err
    errors = err.count("lockprof: error:")
    if code == 0:
        assert errors == 0 and store.read_manifest(out)["status"] == "complete"
    elif code == 5:
        manifest = store.read_manifest(out)
        assert errors == 0 and manifest["failed_levels"] and "level failed" in err
    elif out.exists():  # 1: an engine failed or the disk filled during the run, which keeps its levels
        assert code == 1 and store.read_manifest(out)["status"] == "incomplete"
        assert errors <= 1
    else:
        assert errors == 1, err
    assert_nothing_left(out)


# --- option values and engine specs ---------------------------------------------------------------------------
BAD_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e9", "abc", "", "1,2", "0x10", "1e-9", "  "]
OPTIONS = {
    "--duration": st.sampled_from(["0.2", *BAD_NUMBERS]),
    "--warmup": st.sampled_from(["0", *BAD_NUMBERS]),
    "--sample-interval": st.sampled_from(["0.2", *BAD_NUMBERS]),
    "--repetitions": st.sampled_from(["1", "0", "-2", "1.5", "1e9", "x"]),
    "--concurrency": st.sampled_from(["1", "0", "-1", "1,x", "100000", ",", "2.5"]),
    "--rate": st.sampled_from(["20", "0", "-5", "nan", "inf", "1,2,3", "x"]),
    "--engine": st.sampled_from(["embedded", "oracle", "http://[::1", "http://h:99999", "http://u:pw@h:1",
                                 "http://u@h:1?timeout=nan", "http://u@h:1?bogus=1", "binary:/no/such/clickhouse",
                                 "http://", "99.1"]),
    "--schema": st.sampled_from(["day", "nope", ""]),
    "--samplers": st.sampled_from(["off", "events", "bogus", "all"]),
}


@st.composite
def option_sets(draw: st.DrawFn) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(sorted(OPTIONS)), min_size=1, max_size=4, unique=True))
    argv = []
    for name in chosen:
        argv += [name, draw(OPTIONS[name])]
    if "--duration" not in chosen:  # a case that turns out valid must stay short
        argv += ["--duration", "0.2"]
    return argv + ["--warmup", "0"] * ("--warmup" not in chosen)


@fuzz(40)
@given(argv=option_sets())
def test_fuzz_option_values_and_engine_specs(argv):
    out = Path(tempfile.mkdtemp(prefix="lockprof-fuzz-")) / "run"
    try:
        code, _, err = run_cli("run", str(TINY), "--out", str(out), *argv)
        assert_outcome(code, err, out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)


# --- scenario files -------------------------------------------------------------------------------------------
DDL = [
    "CREATE TABLE {table} (k UInt32, v Float64) ENGINE = MergeTree PARTITION BY k % 3 ORDER BY k",
    "CREATE TABLE t (k UInt32, v Float64) ENGINE = Memory",  # no {table}
    "CREATE TABLE {table} (k UInt32 ENGINE = MergeTree",
]
POPULATE = ["[]", '["INSERT INTO {table} SELECT number, number FROM numbers(300)"]',
            '["INSERT INTO {table} SELECT no_such FROM numbers(3)"]']
QUERIES = [
    "SELECT count() FROM {table}",
    "SELECT sum(v) FROM {table} WHERE k = {k:UInt32}",
    "SELEC 1",
    "SELECT nope FROM {table}",
    "SELECT count() FROM {table} -- a trailing comment",
    "SELECT 'SETTINGS; FORMAT ''x''' AS s FORMAT JSON;",
    "SELECT throwIf(rand() % 3 = 0) FROM {table} LIMIT 1",
    "SELECT '\u00e9\u4e2d\U0001f642' AS s SETTINGS max_threads = 1",
]
PARAMS = ["None", "lambda r: {'k': r.randrange(300)}", "lambda r: {'k': 'x'}", "lambda r: 1 / 0",
          "lambda r: [1]", "flaky", "3"]
NUMBERS = ["1", "0", "-1", "float('nan')", "float('inf')", "'x'", "0.5"]
TOPLEVEL = ["raise RuntimeError('boom')", "import no_such_module", "def (:", "scenario = 3"]


def mostly(good: str, bad: list[str]) -> st.SearchStrategy[str]:
    """The good value about four times in five, else one of the bad ones: most files get far enough to run."""
    return st.sampled_from([good] * (4 * len(bad)) + bad)


@st.composite
def scenario_files(draw: st.DrawFn) -> str:
    n_queries = draw(st.integers(1, 2))
    queries = []
    for i in range(n_queries):
        sql = draw(st.sampled_from(QUERIES))
        params = draw(mostly(PARAMS[1], PARAMS)) if "{k:" in sql else draw(mostly("None", PARAMS))
        weight = draw(mostly("1", NUMBERS))
        queries.append(f"Query('q{i}', {sql!r}, params={params}, weight={weight})")
    background = ""
    if draw(st.integers(0, 3)) == 0:
        bg_sql = draw(st.sampled_from(["INSERT INTO {table} SELECT 1, 1", "INSERT INTO {table} VALUES (",
                                       "SELECT 1"]))
        pause = draw(mostly("0.1", NUMBERS))
        background = f"background=[Background('bg', {bg_sql!r}, pause_s={pause})],"
    name = draw(mostly(f"fuzz_{draw(st.integers(0, 3))}", ["bad name!", ""]))
    ddl, populate = draw(mostly(DDL[0], DDL[1:])), draw(mostly(POPULATE[1], [POPULATE[0], POPULATE[2]]))
    return f"""
from lockprof import Background, Query, Scenario, Schema
calls = {{"n": 0}}
def flaky(rng):
    calls["n"] += 1
    if calls["n"] % 4 == 0:
        raise ValueError("every fourth draw fails")
    return {{"k": rng.randrange(300)}}
{draw(mostly("", TOPLEVEL))}
scenario = Scenario(
    {name!r},
    [Schema("s", {ddl!r}, populate={populate})],
    [{", ".join(queries)}],
    {background}
    concurrency=[{draw(mostly("1", ["0", "1.5", "float('inf')"]))}],
    duration_s={draw(mostly("0.3", NUMBERS))},
    warmup_s={draw(mostly("0", NUMBERS))},
)
"""


@fuzz(14)
@given(source=scenario_files())
def test_fuzz_scenario_files(source):
    folder = Path(tempfile.mkdtemp(prefix="lockprof-fuzz-"))
    try:
        path = folder / "scenario.py"
        path.write_text(source)
        out = folder / "run"
        code, _, err = run_cli("run", str(path), "--out", str(out), "--duration", "0.3", "--warmup", "0",
                               "--samplers", "events")
        assert_outcome(code, err, out)
        if code == 2:
            assert not out.exists()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- damaged run directories ----------------------------------------------------------------------------------
def damage(run: Path, rng: random.Random) -> str:
    """Damage one file of a run in one way; return what was done."""
    files = sorted(p for p in run.rglob("*") if p.is_file())
    target = rng.choice(files)
    how = rng.choice(["truncate", "garble", "empty", "delete", "manifest"])
    data = target.read_bytes()
    if how == "truncate":
        target.write_bytes(data[: rng.randrange(max(len(data), 1))])
    elif how == "garble":
        at = rng.randrange(max(len(data), 1))
        target.write_bytes(data[:at] + bytes(rng.randrange(256) for _ in range(16)) + data[at + 16:])
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "delete":
        target.unlink()
    else:
        target = run / store.MANIFEST
        try:
            manifest = json.loads(target.read_bytes())
        except ValueError:  # an earlier round already damaged it
            return f"manifest {target.relative_to(run)} left as it was"
        if not isinstance(manifest, dict) or not manifest:
            return "manifest not an object: left as it was"
        key = rng.choice(sorted(manifest))
        manifest[key] = rng.choice([None, 3, "x", [], {}])
        target.write_text(json.dumps(manifest))
    return f"{how} {target.relative_to(run)}"


@fuzz(40)
@given(seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 3))
def test_fuzz_damaged_run_directories(tiny_run, seed, rounds):
    from rich.console import Console

    from lockprof.analysis import load_run
    from lockprof.errors import RunDirError
    from lockprof.summary import render

    folder = Path(tempfile.mkdtemp(prefix="lockprof-fuzz-"))
    try:
        run = folder / "run"
        shutil.copytree(tiny_run, run)
        rng = random.Random(seed)
        done = [damage(run, rng) for _ in range(rounds)]
        code, _, err = run_cli("summary", str(run))
        assert code in (0, 4), (done, code, err)
        assert "Traceback" not in err
        if code == 4:
            assert err.count("lockprof: error:") == 1 and str(run) in err, (done, err)
            with pytest.raises(RunDirError):
                # A damaged footer is refused on loading; a damaged page of query_events (left in its
                # files by load_run) when the analysis reads it.
                render(load_run(run), Console(file=io.StringIO()))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_report_how_many_cases_ran():
    """Not a property: prints how many cases this session's fuzzers ran, by exit code (for the record)."""
    print(f"fuzz cases run: {sum(outcomes.values())} {dict(sorted(outcomes.items()))}")
