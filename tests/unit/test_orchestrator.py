"""The orchestrator (``lockprof.run.run``) driven against fake engine worker processes: no engine.

A :class:`FakeProcess` has :class:`lockprof.workerproc.WorkerProcess`'s interface and answers each request with a
reply of the protocol's type, writing a level's parts as the real worker does (checked against the run format's
declaration first); a script says which level of which engine dies, or which one receives a stop signal. What the
tests check is what the run directory records: its status, the failures it names, the levels it keeps, the restarts.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import TINY

from lockprof import store
from lockprof.dirformat import tables
from lockprof.engines.base import EngineSpec
from lockprof.errors import (
    PIPE_ERRORS,
    EngineError,
    Interrupted,
    LockprofError,
    ScenarioError,
    StorageError,
    from_pipe,
    pipe_kind,
)
from lockprof.level_writer import LevelWriter
from lockprof.protocol import (
    LevelReply,
    LevelRequest,
    PrepareReply,
    PrepareRequest,
    SelfCheckReply,
    SelfCheckRequest,
    decode_request,
    encode_request,
)
from lockprof.run import RunOptions, run
from lockprof.workerproc import WorkerCrashed

PER_THREAD = 10  # queries each thread "ran" in a level: enough that no window is too short to measure
CRASH = "engine worker {label!r} died (signal SIGSEGV); last lines of its log:\n    Segmentation fault"


@dataclass
class Script:
    """What goes wrong, by engine label and the number of that engine's level (1 = its first, over restarts)."""

    crash: dict[str, int] = field(default_factory=dict)
    stop: dict[str, tuple[int, list[signal.Signals]]] = field(default_factory=dict)  # stop signals in that level
    stop_in_prepare: signal.Signals | None = None


class FakeProcess:
    """An engine worker process without an engine, seen from the orchestrator."""

    def __init__(self, label: str, engines: FakeEngines) -> None:
        self.label, self.engines = label, engines
        self.proc = SimpleNamespace(pid=os.getpid())
        self.busy: str | None = None
        self.stuck: str | None = None
        self.requests: list[object] = []
        self.interrupted = self.closed = self.killed = False

    def request(self, request):
        self.requests.append(request)
        self.busy = request.op
        try:
            return getattr(self, request.op)(request)
        finally:
            self.busy = None

    def prepare(self, req: PrepareRequest) -> PrepareReply:
        if self.engines.script.stop_in_prepare:
            signal.raise_signal(self.engines.script.stop_in_prepare)
        start = len(self.engines.started)
        datasets = {name: {"cached": True, "build_s": 0.0, "active_parts": 3, "rows": 30, "partition_key": "x"}
                    for name in req.schemas}
        engine = {"kind": "embedded", "clickhouse_version": "0.0-fake", "package": "fake", "has_query_log": False,
                  "data_path": f"/fake/{self.label}/{start}"}
        return PrepareReply(engine=engine, datasets=datasets, locks=[])

    def self_check(self, req: SelfCheckRequest) -> SelfCheckReply:
        return SelfCheckReply(speedup=2.0, wait_one_s=0.1, wait_pair_s=0.1, qps_1=10.0, cpu_speedup=2.0,
                              control_speedup=2.0, probe="SELECT sleep(0.1)", verdict="parallel")

    def level(self, req: LevelRequest) -> LevelReply:
        label = req.label or self.label
        nth = self.engines.count(label)
        if self.engines.script.crash.get(label) == nth:
            raise WorkerCrashed(CRASH.format(label=self.label))
        stop = self.engines.script.stop.get(label)
        interrupted = stop is not None and stop[0] == nth
        if interrupted:
            for sig in stop[1]:
                signal.raise_signal(sig)  # the orchestrator's handler runs now, as a real signal's would
            self.engines.killed_by_signals = [p.label for p in self.engines.started if p.killed]
        keys = {"engine": label, "schema": req.schema, "concurrency": req.concurrency, "repetition": req.repetition}
        start = float(req.seq)
        n = PER_THREAD * req.concurrency
        queries = pd.DataFrame([{**keys, "worker": i % req.concurrency, "role": "query", "query_name": "q",
                                 "query_id": f"{req.id_prefix}-{label}-{req.seq}-{i}", "phase": "measure",
                                 "intended_start_s": start + i / n, "start_s": start + i / n, "latency_ms": 5.0,
                                 "error": None} for i in range(n)])
        reply = LevelReply(queries=n, errors=0, censored=0, background=0, background_errors=0,
                           measure_start_s=start, measure_end_s=start + 1.0, interrupted=interrupted, failed=False,
                           error_share=0.0)
        row = {**keys, "seq": req.seq, "position": req.position, "active_parts_before": 3, "active_parts_after": 3,
               **{k: v for k, v in reply.to_json().items() if k != "error_kinds"}}
        assert tables.check([("queries", queries), ("levels", pd.DataFrame([row]))]) == []  # what a worker writes
        with LevelWriter(Path(req.run_dir), label, req.seq, keys) as parts:
            parts.write("queries", queries)
            parts.finish(row)
        return reply

    def interrupt(self) -> None:
        self.interrupted = True

    def kill(self) -> None:
        self.killed = True

    def kill_stuck(self, why: str) -> None:
        self.stuck = why
        self.kill()

    def close(self, keep_log: Path | None = None) -> None:
        self.closed = True
        if keep_log is not None:
            keep_log.parent.mkdir(parents=True, exist_ok=True)
            keep_log.write_text(f"the log of {self.label}\n")


class FakeEngines:
    """A run's ``start_process``: one FakeProcess per start, in the order the orchestrator started them."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.started: list[FakeProcess] = []
        self.levels: dict[str, int] = {}
        self.killed_by_signals: list[str] = []  # the processes killed at once by the signals of Script.stop

    def __call__(self, spec: EngineSpec, options: RunOptions) -> FakeProcess:
        process = FakeProcess(spec.label, self)
        self.started.append(process)
        return process

    def count(self, label: str) -> int:
        self.levels[label] = self.levels.get(label, 0) + 1
        return self.levels[label]


class Said:
    """A reporter that keeps what the run said."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)

    def start(self, total_s: float) -> None:
        pass

    def step(self, description: str, planned_s: float) -> None:
        self.lines.append(f"step {description}")

    def step_done(self, text: str) -> None:
        self.lines.append(f"done {text}")

    def stop(self) -> None:
        pass


def options(tmp_path: Path, engines: list[str], concurrency: list[int], repetitions: int = 1) -> RunOptions:
    return RunOptions(TINY, engines=engines, concurrency=concurrency, warmup_s=0.0, duration_s=0.1,
                      repetitions=repetitions, schemas=["day"], samplers=(), out=tmp_path / "run")


def levels_of(out: Path) -> pd.DataFrame:
    return store.read_table(out, "levels").sort_values("seq", ignore_index=True)


def test_a_worker_that_dies_mid_level_is_named_and_the_other_engine_and_what_was_measured_are_kept(tmp_path):
    engines = FakeEngines(Script(crash={"embedded#2": 2}))
    said = Said()
    out = run(options(tmp_path, ["embedded", "embedded"], [1, 2, 4]), said, start_process=engines)

    manifest = store.read_manifest(out)
    assert manifest.status == "incomplete"
    assert manifest.failures == [CRASH.format(label="embedded#2")]
    levels = levels_of(out)
    # embedded: all three levels; embedded#2: its first, none after it died (c=4 was not asked for)
    assert list(zip(levels["engine"], levels["concurrency"], strict=True)) == [
        ("embedded", 1), ("embedded#2", 1), ("embedded", 2), ("embedded", 4)]
    dead = engines.started[1]
    assert [r.concurrency for r in dead.requests if isinstance(r, LevelRequest)] == [1, 2]
    assert "done worker died" in said.lines and CRASH.format(label="embedded#2") in said.lines
    # the self-check went to both (concurrency above 1) and is recorded with each engine
    assert [e["self_check"]["verdict"] for e in manifest.engines] == ["parallel", "parallel"]
    assert all(p.closed for p in engines.started)
    assert sorted(p.name for p in (out / "logs").iterdir()) == ["embedded#2.log", "embedded.log"]


def test_every_worker_dead_ends_the_run_incomplete_and_a_run_that_measured_nothing_leaves_no_directory(tmp_path):
    engines = FakeEngines(Script(crash={"embedded": 1}))
    with pytest.raises(EngineError, match=r"^no level could be measured: engine worker 'embedded' died"):
        run(options(tmp_path, ["embedded"], [1, 2]), Said(), start_process=engines)
    assert not (tmp_path / "run").exists()
    assert engines.started[0].closed


def test_the_workers_restart_in_the_reverse_order_between_repetitions(tmp_path):
    engines = FakeEngines()
    said = Said()
    out = run(options(tmp_path, ["embedded", "embedded"], [1], repetitions=3), said, start_process=engines)

    manifest = store.read_manifest(out)
    assert manifest.status == "complete" and manifest.failures == []
    assert [p.label for p in engines.started] == ["embedded", "embedded#2", "embedded#2", "embedded",
                                                  "embedded", "embedded#2"]
    assert manifest.worker_restarts == [
        {"order": ["embedded#2", "embedded"], "before_repetition": 1,
         "data_paths": {"embedded#2": "/fake/embedded#2/3", "embedded": "/fake/embedded/4"}},
        {"order": ["embedded", "embedded#2"], "before_repetition": 2,
         "data_paths": {"embedded": "/fake/embedded/5", "embedded#2": "/fake/embedded#2/6"}},
    ]
    # each process measured only its own repetition, the first engine of a repetition turning with it (A B, B A, A B)
    measured = [[(r.repetition, r.position) for r in p.requests if isinstance(r, LevelRequest)]
                for p in engines.started]
    assert measured == [[(0, 0)], [(0, 1)], [(1, 0)], [(1, 1)], [(2, 0)], [(2, 1)]]
    assert all(p.closed for p in engines.started)
    assert len(levels_of(out)) == 6
    # the replaced processes' logs are kept beside the last ones', numbered by restart
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "embedded#2.0.log", "embedded#2.1.log", "embedded#2.log", "embedded.0.log", "embedded.1.log", "embedded.log"]
    assert said.lines.count("restarting the engines in the reverse order from repetition 1") == 1


@pytest.mark.parametrize(("sig", "how"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_a_stop_signal_mid_level_ends_the_run_incomplete_keeping_what_was_measured(tmp_path, sig, how):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    engines = FakeEngines(Script(stop={"embedded": (2, [sig])}))
    out = run(options(tmp_path, ["embedded"], [1, 2, 4]), Said(), start_process=engines)

    manifest = store.read_manifest(out)
    assert manifest.status == "incomplete"
    assert manifest.failures == [f"interrupted by the user ({how})"]
    levels = levels_of(out)
    assert list(levels["concurrency"]) == [1, 2] and list(levels["interrupted"]) == [False, True]
    process = engines.started[0]
    assert process.interrupted and process.closed and not process.killed  # told to end its level, then closed
    assert engines.killed_by_signals == []
    assert [r.concurrency for r in process.requests if isinstance(r, LevelRequest)] == [1, 2]
    assert {s: signal.getsignal(s) for s in before} == before  # the run's handlers are gone with it


def test_a_second_stop_signal_kills_the_idle_workers_at_once_and_lets_the_one_in_a_level_store_it(tmp_path):
    engines = FakeEngines(Script(stop={"embedded#2": (1, [signal.SIGINT, signal.SIGINT])}))
    out = run(options(tmp_path, ["embedded", "embedded"], [1, 2]), Said(), start_process=engines)

    assert engines.killed_by_signals == ["embedded"]  # idle; embedded#2, in its level, got time to store it
    manifest = store.read_manifest(out)
    assert manifest.status == "incomplete" and manifest.failures == ["interrupted by the user (Ctrl-C)"]
    levels = levels_of(out)
    assert list(zip(levels["engine"], levels["interrupted"], strict=True)) == [("embedded", False),
                                                                               ("embedded#2", True)]


def test_a_stop_signal_while_the_engines_start_ends_the_run_with_nothing_written(tmp_path):
    engines = FakeEngines(Script(stop_in_prepare=signal.SIGINT))
    with pytest.raises(Interrupted, match="^interrupted before any measurement; nothing was written$"):
        run(options(tmp_path, ["embedded", "embedded"], [1]), Said(), start_process=engines)
    assert not (tmp_path / "run").exists()
    assert [p.label for p in engines.started] == ["embedded"]  # the second engine was never started
    assert engines.started[0].closed


# --- the pipe ---------------------------------------------------------------------------------------------------


def test_a_request_crosses_the_pipe_whole_and_an_unknown_or_incomplete_one_is_refused():
    request = LevelRequest(run_dir="/r", schema="day", concurrency=2, repetition=1, warmup_s=0.5, duration_s=2.0,
                           seq=3, id_prefix="id", rate_qps=None, position=1, label="e+no-samplers", samplers=[])
    assert decode_request(encode_request(request)) == request
    with pytest.raises(LockprofError, match="unknown request 'dance'"):
        decode_request({"op": "dance"})
    with pytest.raises(LockprofError, match="malformed LevelReply"):
        LevelReply.from_json({"ok": True, "queries": 1})


@pytest.mark.parametrize(("raised", "expected", "message"), [
    (ScenarioError("bad scenario"), ScenarioError, "bad scenario"),
    (StorageError("disk full"), StorageError, "disk full"),
    (KeyboardInterrupt(), Interrupted, "e: interrupted"),
    (EngineError("no server"), EngineError, "engine e: no server"),
    (WorkerCrashed("died"), EngineError, "engine e: died"),
    (ValueError("a bug"), EngineError, "engine e: a bug"),
])
def test_an_error_in_a_worker_is_raised_in_the_orchestrator_as_its_kind(raised, expected, message):
    kind = pipe_kind(raised)
    assert kind in PIPE_ERRORS or kind == "internal"
    error = from_pipe(kind, str(raised), "e")
    assert type(error) is expected and str(error) == message
