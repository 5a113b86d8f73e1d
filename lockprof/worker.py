"""The engine worker: one process per engine, driven by the orchestrator over JSON lines.

The orchestrator starts ``python -m lockprof.worker`` in the engine's Python
environment and sends one request per line on stdin; the worker answers each
with one line on its protocol stream. Measurements go straight into the run
directory as Parquet parts, so only small summaries cross the pipe. Anything
the engine prints goes to stderr, which the orchestrator keeps as a log.
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, TextIO

from lockprof.clock import RunClock
from lockprof.cpus import observed as observed_cpus
from lockprof.dataset import Dataset, active_parts, dataset_set, drop_stale, ensure_dataset, refresh
from lockprof.driver import LOG_COLUMNS, Level, LevelResult, level_counts, level_verdict, run_level
from lockprof.engines.base import Connection
from lockprof.engines.sql import KNOWN_SETTINGS_SQL, unknown_setting
from lockprof.errors import INTERNAL, LockprofError, ScenarioError, pipe_kind
from lockprof.level_writer import LevelWriter
from lockprof.locks import CATALOG_SQL, catalog
from lockprof.preflight import preflight
from lockprof.protocol import (
    ExitReply,
    ExitRequest,
    LevelReply,
    LevelRequest,
    PrepareReply,
    PrepareRequest,
    SelfCheckReply,
    SelfCheckRequest,
    decode_request,
)
from lockprof.samplers import registry
from lockprof.samplers.base import AfterLevelReader, LevelSampler, SamplerContext
from lockprof.samplers.host import HostSampler
from lockprof.scenario import Scenario, load_scenario
from lockprof.workerproc import DUMP_STACKS_SIGNAL

ALL_SAMPLERS = registry.defaults()  # what a run samples unless --samplers says otherwise (py-spy: the orchestrator)


class EngineWorker:
    """The engine side of one worker process: the engine, its connections and the samplers' state across
    requests. Each request method takes a :mod:`lockprof.protocol` request and returns its reply."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.engine: Any = None
        self.scenario: Scenario | None = None
        self.datasets: dict[str, Dataset] = {}
        self.connections: list[Connection] = []
        self.background: list[Connection] = []
        self.sampler_connections: dict[str, Connection] = {}  # each polling sampler's own, kept across levels
        self.engine_pid: int | None = None  # the engine's process, where it runs on this machine
        self.watchdog: Connection | None = None  # cancels a level's overdue queries (engines declaring cancel)
        self.serving: str | None = None  # the request being served, if any
        self.cluster: str | None = None  # --cluster: samplers read every replica of this cluster
        self.lock_waits: dict[str, float] = {}  # the catalog's lock wait events and their to_us

    # --- requests -------------------------------------------------------------------------
    def prepare(self, req: PrepareRequest) -> PrepareReply:
        from lockprof.engines.registry import open_engine

        self.label = req.engine_label
        self.clock = RunClock(req.clock_origin)
        self.interval_s = float(req.sample_interval_s)
        self.samplers = set(ALL_SAMPLERS if req.samplers is None else req.samplers)
        self.run_pid = int(req.run_pid or os.getpid())  # the orchestrator: the run is it and what it started
        self.scenario = load_scenario(req.scenario_path).scenario
        self.engine = open_engine({**req.engine, "datasets": dataset_set(self.scenario, req.schemas)})
        self.cluster = self._cluster(req.cluster)
        self._check_scenario_settings()
        info = self.engine.info()
        admin = self.engine.admin
        for name in req.schemas:
            self.datasets[name] = ensure_dataset(admin, self.scenario, self.scenario.schema(name))
        stale = drop_stale(admin, list(self.datasets.values())) if self.engine.capabilities.private else []
        if self.engine.capabilities.cancel:
            self.watchdog = self.engine.connect()
        # The preflight cancels only its own statement, by an id no one else uses: safe on a shared server too,
        # where the level's watchdog is not started.
        killer = self.watchdog or self.engine.connect()
        try:
            for name in req.schemas:
                # A broken scenario is refused here, before the run directory exists.
                preflight(admin, self.scenario, self.datasets[name].full_name, name, killer=killer)
                if self.scenario.writes:  # its statements ran once: record the dataset as it now is
                    self.datasets[name] = refresh(admin, self.datasets[name])
        finally:
            if killer is not self.watchdog:
                killer.close()
        self.sampler_connections = {s.name: self.engine.connect() for s in registry.SAMPLERS if s.connection}
        self.engine_pid = _engine_pid(self.engine, info.kind)
        if self.engine.capabilities.stack_period_ms:
            self.engine.check_introspection()  # fail now, with what to grant, not after the first level
        locks = catalog(admin.frame(CATALOG_SQL))
        # The thread log's per-query waits subtract every lock wait the catalog knows, in µs.
        waits = locks[locks["role"] == "wait"]
        self.lock_waits = dict(zip(waits["event"], waits["to_us"].astype(float), strict=True))
        return PrepareReply(
            engine={**info.as_dict(), "stale_datasets_dropped": stale, **observed_cpus(self.engine_pid)},
            datasets={k: v.as_dict() for k, v in self.datasets.items()},
            locks=locks.to_dict(orient="records"),
        )

    def level(self, req: LevelRequest) -> LevelReply:
        # Until its parts are written, Ctrl-C only shortens a level, so no level is left half-stored.
        self.in_level = True
        try:
            return self._level(req)
        finally:
            self.serving: str | None = None  # the request being served, if any

    def _level(self, req: LevelRequest) -> LevelReply:
        assert self.scenario is not None
        dataset = self.datasets[req.schema]
        level = self._prepare_level(req, dataset)
        # An overhead-control step runs the same engine under another label, with other samplers.
        label = self.label if req.label is None else req.label
        samplers = self.samplers if req.samplers is None else set(req.samplers)
        parts_before = active_parts(self.engine.admin, dataset.database)
        keys = {"engine": label, "schema": level.schema, "concurrency": level.concurrency,
                "repetition": level.repetition}
        context = SamplerContext(self.clock, self.interval_s, self._sampler_connection, self.cluster, self.engine_pid,
                                 self.engine.admin, self.engine.capabilities, self.lock_waits)
        active = registry.open_polling(samplers, context)
        readers = registry.open_after_level(samplers, context)
        host = HostSampler(self.clock, self.run_pid)  # every level, samplers or not: how busy the machine was
        result = self._run_level(level, active, readers, host)
        records = result.records.assign(engine=label)
        found = [r.read(level.id_prefix, records) for r in readers]
        for got in found:
            if got.per_query is not None:
                records = records.merge(got.per_query, on="query_id", how="left")
        records = records.drop(columns=LOG_COLUMNS)
        measured = records[records["phase"] == "measure"]
        sampler_errors = [*(s.error for s in active if s.error), *(p for got in found for p in got.problems)]
        level_row = {
            **keys,
            "seq": int(req.seq),
            "position": int(req.position),  # order among the repetition's windows (0 = first)
            "measure_start_s": result.measure_start_s,
            "measure_end_s": result.measure_end_s,
            "target_qps": float(level.rate_qps) if level.rate_qps else float("nan"),
            "scheduled": int(level.duration_s * level.rate_qps) if level.rate_qps else None,
            **level_counts(measured),
            "active_parts_before": parts_before,
            "active_parts_after": active_parts(self.engine.admin, dataset.database),
            "interrupted": result.interrupted,
            "sampler_errors": "; ".join(sampler_errors) or None,
            **host.window(result.measure_start_s, result.measure_end_s),
            **level_verdict(records, measured, result.errors, result.interrupted),
        }
        kinds = level_row.pop("error_kinds")  # for the progress line only: the manifest and tables hold the errors
        # A level is stored whole or not at all (a full disk, an interruption): the writer drops what it wrote.
        with LevelWriter(Path(req.run_dir), label, int(req.seq), keys) as parts:
            parts.write("queries", records)
            parts.sampled(active)
            parts.after_level(found)
            parts.finish(level_row)
        return LevelReply.from_json({**level_row, "error_kinds": kinds})

    def _prepare_level(self, req: LevelRequest, dataset: Dataset) -> Level:
        """The level a request asks for, with a connection for each of its query threads and background tasks."""
        assert self.scenario is not None
        n = int(req.concurrency)
        while len(self.connections) < n:
            self.connections.append(self.engine.connect())
        while len(self.background) < len(self.scenario.background):
            self.background.append(self.engine.connect())
        label = self.label if req.label is None else req.label
        return Level(
            schema=dataset.schema,
            table=dataset.full_name,
            concurrency=n,
            repetition=int(req.repetition),
            warmup_s=float(req.warmup_s),
            duration_s=float(req.duration_s),
            id_prefix=f"{req.id_prefix}-{label}-{int(req.seq)}-",
            seed=self.scenario.seed,
            rate_qps=req.rate_qps,
        )

    def _run_level(self, level: Level, active: list[LevelSampler], readers: list[AfterLevelReader],
                   host: HostSampler) -> LevelResult:
        """Run the level's queries with its samplers running around them."""
        assert self.scenario is not None
        # The readers' settings (the query log's: log each query's threads) go on every query of the level.
        query_settings = {**self.scenario.settings, **{k: v for r in readers for k, v in r.settings.items()}}
        with contextlib.ExitStack() as running:
            running.enter_context(host)
            for sampler in active:
                running.enter_context(sampler)
            result = run_level(self.scenario, level, self.connections, self.background, self.clock, self.stop,
                               watchdog=self.watchdog, settings=query_settings)
        for role, i in result.abandoned:  # a stuck thread may still use its connection: the next level gets a new one
            pool = self.connections if role == "query" else self.background
            pool[i] = self.engine.connect()
        return result

    def _sampler_connection(self, name: str) -> Connection:
        """A polling sampler's own connection, opened once and kept across levels."""
        if name not in self.sampler_connections:
            self.sampler_connections[name] = self.engine.connect()
        return self.sampler_connections[name]

    def _check_scenario_settings(self) -> None:
        """A scenario setting the engine does not know is a broken scenario: the engine would ignore it, or refuse
        every query; either way the manifest would record a setting that never applied."""
        assert self.scenario is not None
        if not self.scenario.settings:
            return
        problem = unknown_setting(self.scenario.settings, set(self.engine.admin.frame(KNOWN_SETTINGS_SQL)["name"]))
        if problem:
            raise ScenarioError(f"scenario {self.scenario.name!r}: settings: {problem}")

    def _cluster(self, name: str | None) -> str | None:
        """--cluster: a name the server's system.clusters knows (run.py refused engines that have no cluster)."""
        from lockprof.samplers.cluster import check_cluster, check_name

        if check_name(name) is None:
            return None
        check_cluster(self.engine.admin, name)
        return name

    def self_check(self, req: SelfCheckRequest) -> SelfCheckReply:
        from lockprof.selfcheck import self_check

        while len(self.connections) < 2:
            self.connections.append(self.engine.connect())
        return SelfCheckReply(**self_check(self.connections, self.clock, float(req.seconds)))

    def exit(self, req: ExitRequest) -> ExitReply:
        if self.engine is not None:
            self.engine.close()
        return ExitReply()


def _engine_pid(engine: Any, kind: str) -> int | None:
    """The process the engine's threads run in: this one for the embedded engine, the server lockprof started
    for a launched one; None for a server elsewhere (samplers reading /proc then say they cannot)."""
    if kind == "embedded":
        return os.getpid()
    proc = getattr(getattr(engine, "server", None), "proc", None)
    return proc.pid if proc is not None else None


def serve(requests: TextIO, replies: TextIO) -> int:
    worker = EngineWorker()

    def on_interrupt(*_: object) -> None:
        # Ctrl-C reaches the whole process group. Inside a level, finish it early and keep its
        # records (until its parts are written, so no level is left half-stored); inside another
        # request (a dataset build) abandon it. Between requests the orchestrator decides: it
        # sends no further level, and the worker stays to answer its exit.
        worker.stop.set()
        if worker.serving not in (None, "level"):
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    for line in requests:
        raw = json.loads(line)
        op = raw.get("op")
        try:
            worker.serving = op
            request = decode_request(raw)
            reply: dict[str, Any] = {"ok": True, **getattr(worker, request.op)(request).to_json()}
        except (LockprofError, KeyboardInterrupt) as exc:
            text = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            reply = {"ok": False, "error": text, "kind": pipe_kind(exc)}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": INTERNAL}
        finally:
            worker.serving = None
        replies.write(json.dumps(reply, default=str) + "\n")
        replies.flush()
        if op == "exit":
            break
    return 0


def main() -> int:
    # The protocol gets a private copy of stdout; fd 1 then points at stderr, so
    # whatever the engine prints cannot corrupt a reply.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # A worker that does not end its level after Ctrl-C is asked, before it is killed, where its
    # threads are: the answer goes to its log, which the run keeps.
    faulthandler.register(DUMP_STACKS_SIGNAL, all_threads=True)
    code = serve(sys.stdin, replies)
    from lockprof.cli import exit_leaving_threads

    exit_leaving_threads(code)  # a thread the scenario started must not keep the worker alive after its exit
    return code


if __name__ == "__main__":
    sys.exit(main())
