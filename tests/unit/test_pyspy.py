"""py-spy's summary on known stacks, and a clear reason when it cannot attach."""

import subprocess
import sys
import time

from lockprof.samplers.pyspy import PySpySampler, parse_raw, summarize


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
