"""py-spy on a real process: stacks classed engine vs Python, and exports."""

import json
import subprocess
import sys
import textwrap
import time

import pytest

from lockprof.samplers.pyspy import PySpySampler, py_spy_path

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
