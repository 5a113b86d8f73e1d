"""py-spy on a real process: stacks classed engine vs Python, exports, and a clear reason when it cannot attach."""

import json
import subprocess
import sys
import textwrap
import time

import pytest

from lockprof.samplers.pyspy import PySpySampler, parse_raw, py_spy_path, summarize

BUSY = textwrap.dedent(
    """
    import threading, time, chdb
    conn = chdb.connect(":memory:")
    looping = [threading.Event(), threading.Event()]

    def engine_bound():
        c = chdb.connect(":memory:")
        looping[0].set()
        while True:
            c.query("SELECT count() FROM numbers(20000000) WHERE cityHash64(number) % 7 = 1", "Null")

    def python_bound():
        looping[1].set()
        while True:
            sum(i * i for i in range(50000))

    threading.Thread(target=engine_bound, name="lockprof-query-0", daemon=True).start()
    threading.Thread(target=python_bound, name="lockprof-query-1", daemon=True).start()
    for started in looping:
        started.wait()
    print("ready", flush=True)  # both threads are in their loops: any sample from now on sees them there
    time.sleep(600)
    """
)


@pytest.fixture
def busy_process():
    proc = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.skipif(py_spy_path() is None, reason="py-spy is not installed")
def test_records_a_real_process_and_tells_engine_from_python(busy_process, tmp_path):
    with PySpySampler(busy_process.pid, rate_hz=100) as spy:
        time.sleep(2.0)
    assert spy.error is None, spy.error
    stacks = spy.stacks
    per_thread = stacks.groupby(["thread", "category"])["samples"].sum()
    # py-spy's own pace sets the number of ticks on a loaded machine (about 200 here when idle), so shares are
    # checked, and only enough ticks for a share to mean something are required
    ticks = stacks.groupby("thread")["samples"].sum().max()
    assert 10 <= ticks <= (spy.seconds + 1) * 100, ticks
    # the thread inside chDB's query call is 'engine', the one running a generator is 'python'
    assert per_thread.get(("lockprof-query-0", "engine"), 0) > 5 * per_thread.get(("lockprof-query-0", "python"), 0)
    assert per_thread.get(("lockprof-query-1", "python"), 0) > 0.5 * ticks
    summary = spy.summary()
    # one thread always in Python, one always inside the engine call, each about one thread's worth
    assert 0.5 < summary["gil_demand"] <= 1.2
    assert 0.5 < summary["engine_threads"] <= 1.2
    spy.write(tmp_path, "level")
    speedscope = json.loads((tmp_path / "level.speedscope.json").read_text())
    assert {p["name"] for p in speedscope["profiles"]} >= {"lockprof-query-0", "lockprof-query-1"}
    assert (tmp_path / "level.folded").read_text().count("\n") == len(stacks)


def test_cannot_attach_is_a_reason_not_an_exception():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with PySpySampler(dead.pid) as spy:
        time.sleep(0.2)
    assert spy.error and "could not record" in spy.error
    assert spy.stacks.empty


def test_summary_arithmetic_on_known_stacks():
    raw = "\n".join([
        "thread (0x1): lockprof-query-0;loop (lockprof/driver.py:140);"
        "Connection.query (chdb/state/sqlitelike.py:756) 80",
        "thread (0x1): lockprof-query-0;loop (lockprof/driver.py:141) 20",
        "thread (0x2): EventsSampler;poll (lockprof/samplers/events.py:20) 50",
        "thread (0x3): lockprof-query-1;loop (lockprof/driver.py:120);wait (threading.py:331) 40",
    ])
    stacks = parse_raw(raw)
    assert stacks["category"].tolist() == ["engine", "python", "python", "waiting"]
    s = summarize(stacks, seconds=1.0, rate_hz=100)
    # only the driver's threads count: 80 engine, 20 Python and 40 waiting samples in 100 ticks
    assert s == {"engine_threads": 0.8, "gil_demand": 0.2, "waiting_threads": 0.4, "samples": 190}


def test_summary_shares_count_the_ticks_py_spy_took_not_the_nominal_ones():
    """A py-spy that kept only half its rate (a loaded machine) saw the same shares in the ticks it took."""
    raw = "\n".join([
        "thread (0x1): lockprof-query-0;loop (lockprof/driver.py:140);"
        "Connection.query (chdb/state/sqlitelike.py:756) 40",
        "thread (0x1): lockprof-query-0;loop (lockprof/driver.py:141) 10",
        "thread (0x2): MainThread;<module> (lockprof/worker.py:9);wait (threading.py:331) 50",
    ])
    s = summarize(parse_raw(raw), seconds=1.0, rate_hz=100)
    assert (s["engine_threads"], s["gil_demand"]) == (0.8, 0.2)
    # more samples per thread than the nominal ticks (a repeated thread name) fall back to the nominal count
    doubled = parse_raw(raw.replace("MainThread", "lockprof-query-0").replace(" 50", " 150"))
    assert summarize(doubled, seconds=1.0, rate_hz=100)["engine_threads"] == 0.4
