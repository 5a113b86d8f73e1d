"""The own-thread waits derived from query_thread_log rows: known answers on hand-written thread sums.

Each case is one query's per-role sums as the reader's SQL returns them (µs), chosen so that every
rule of the formula in docs/remainder.md decides the answer.
"""

import pandas as pd
import pytest

from lockprof.samplers.query_log import OWN_THREADS_WAIT, PIPELINE_WALL, comma_list, own_thread_waits

REAL, CPU, CPU_WAIT, IO_WAIT = ("RealTimeMicroseconds", "OSCPUVirtualTimeMicroseconds", "OSCPUWaitMicroseconds",
                                "OSIOWaitMicroseconds")
LOCKS = {"PartsLockWaitMicroseconds": 1.0, "RWLockReadersWaitMilliseconds": 1000.0}


def rows(query: str, **roles: dict[str, float]) -> list[tuple[str, str, str, float]]:
    return [(query, role, event, value) for role, events in roles.items() for event, value in events.items()]


def derive(*queries: list[tuple[str, str, str, float]]) -> dict[tuple[str, str], int]:
    frame = pd.DataFrame([r for q in queries for r in q], columns=["engine_query_id", "role", "event", "value"])
    out = own_thread_waits(frame, LOCKS)
    assert list(out.columns) == ["engine_query_id", "event", "value"] and out["value"].dtype == "int64"
    return {(q, e): v for q, e, v in out.itertuples(index=False)}


def test_with_workers_the_caller_up_to_w_the_executor_and_the_workers_idle_time_are_own_waits():
    got = derive(rows("q", caller={REAL: 12_000, CPU: 1_000, CPU_WAIT: 500},  # rest 10 500 > W: capped at W
                      executor={REAL: 9_000, CPU: 100, CPU_WAIT: 400},  # rest 8 500
                      worker={REAL: 17_000, CPU: 14_000, CPU_WAIT: 1_500, IO_WAIT: 200,  # rest 1 000 after the locks
                              "PartsLockWaitMicroseconds": 100, "RWLockReadersWaitMilliseconds": 0.2},
                      helper={REAL: 3_000, CPU: 100}))  # helpers' rest is never own waiting
    assert got == {("q", OWN_THREADS_WAIT): 9_000 + 8_500 + 1_000, ("q", PIPELINE_WALL): 9_000}


def test_without_workers_the_executor_ran_the_pipeline_and_its_rest_is_not_waiting():
    got = derive(rows("q", caller={REAL: 5_000, CPU: 2_000, CPU_WAIT: 200},  # rest 2 800 < W
                      executor={REAL: 3_000, CPU: 1_500, CPU_WAIT: 100}))  # rest 1 400: missed CPU
    assert got == {("q", OWN_THREADS_WAIT): 2_800, ("q", PIPELINE_WALL): 3_000}


def test_a_negative_rest_counts_as_zero_not_as_negative_waiting():
    got = derive(rows("q", caller={REAL: 1_000, CPU: 900, CPU_WAIT: 300},  # cpu wait counted past the real time
                      executor={REAL: 800, CPU: 10},
                      worker={REAL: 700, CPU: 600, CPU_WAIT: 200}))  # rest -100
    assert got == {("q", OWN_THREADS_WAIT): 0 + 790 + 0, ("q", PIPELINE_WALL): 800}


def test_user_and_system_time_stand_in_where_a_query_has_no_virtual_cpu_time():
    got = derive(rows("q", caller={REAL: 4_000, "UserTimeMicroseconds": 1_000, "SystemTimeMicroseconds": 500},
                      executor={REAL: 5_000, "UserTimeMicroseconds": 4_000}))
    assert got == {("q", OWN_THREADS_WAIT): 2_500, ("q", PIPELINE_WALL): 5_000}


def test_a_server_handler_that_runs_the_pipeline_takes_the_executors_part_and_there_is_no_w():
    """Over HTTP the handler thread (the caller) runs the pipeline and parallel formatting's collector sleeps
    through the query: no executor thread, so no pipeline wall time."""
    alone = rows("one", caller={REAL: 9_000, CPU: 6_000, CPU_WAIT: 2_000}, collector={REAL: 8_500, CPU: 100})
    with_workers = rows("two", caller={REAL: 6_000, CPU: 300, CPU_WAIT: 200}, collector={REAL: 5_800, CPU: 50},
                        worker={REAL: 11_000, CPU: 10_000, CPU_WAIT: 800})
    got = derive(alone, with_workers)
    assert got == {("one", OWN_THREADS_WAIT): 8_400, ("two", OWN_THREADS_WAIT): 5_500 + 5_750 + 200}


def test_no_thread_rows_no_events():
    assert own_thread_waits(pd.DataFrame(columns=["engine_query_id", "role", "event", "value"]), LOCKS).empty


def test_event_names_travel_as_one_parameter_and_nothing_else_does():
    assert comma_list(["RealTimeMicroseconds", "PartsLockWaitMicroseconds"]) == (
        "RealTimeMicroseconds,PartsLockWaitMicroseconds")
    with pytest.raises(ValueError, match="not an event name"):
        comma_list(["RealTimeMicroseconds", "x', 'y"])
