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
from lockprof.driver import LOG_COLUMNS, Level, level_counts, level_verdict, run_level
from lockprof.engines.base import Connection
from lockprof.engines.sql import KNOWN_SETTINGS_SQL, unknown_setting
from lockprof.errors import LockprofError, ScenarioError
from lockprof.level_writer import LevelWriter
from lockprof.locks import CATALOG_SQL, catalog
from lockprof.preflight import preflight
from lockprof.samplers import registry
from lockprof.samplers.base import SamplerContext
from lockprof.samplers.host import HostSampler
from lockprof.scenario import Scenario, load_scenario
from lockprof.workerproc import DUMP_STACKS_SIGNAL

ALL_SAMPLERS = registry.defaults()  # what a run samples unless --samplers says otherwise (py-spy: the orchestrator)


class Worker:
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
    def prepare(self, req: dict[str, Any]) -> dict[str, Any]:
        from lockprof.engines.registry import open_engine

        self.label = req["engine_label"]
        self.clock = RunClock(req["clock_origin"])
        self.interval_s = float(req.get("sample_interval_s", 0.2))
        self.samplers = set(req.get("samplers", ALL_SAMPLERS))
        self.run_pid = int(req.get("run_pid") or os.getpid())  # the orchestrator: the run is it and what it started
        self.scenario = load_scenario(req["scenario_path"]).scenario
        self.engine = open_engine({**req["engine"], "datasets": dataset_set(self.scenario, req["schemas"])})
        self.cluster = self._cluster(req.get("cluster"))
        self._check_scenario_settings()
        info = self.engine.info()
        admin = self.engine.admin
        for name in req["schemas"]:
            self.datasets[name] = ensure_dataset(admin, self.scenario, self.scenario.schema(name))
        stale = drop_stale(admin, list(self.datasets.values())) if self.engine.capabilities.private else []
        if self.engine.capabilities.cancel:
            self.watchdog = self.engine.connect()
        # The preflight cancels only its own statement, by an id no one else uses: safe on a shared server too,
        # where the level's watchdog is not started.
        killer = self.watchdog or self.engine.connect()
        try:
            for name in req["schemas"]:
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
        return {
            "engine": {**info.as_dict(), "stale_datasets_dropped": stale, **observed_cpus(self.engine_pid)},
            "datasets": {k: v.as_dict() for k, v in self.datasets.items()},
            "locks": locks.to_dict(orient="records"),
        }

    def level(self, req: dict[str, Any]) -> dict[str, Any]:
        # Until its parts are written, Ctrl-C only shortens a level, so no level is left half-stored.
        self.in_level = True
        try:
            return self._level(req)
        finally:
            self.serving: str | None = None  # the request being served, if any

    def _level(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.scenario is not None
        run_dir = Path(req["run_dir"])
        dataset = self.datasets[req["schema"]]
        n = int(req["concurrency"])
        while len(self.connections) < n:
            self.connections.append(self.engine.connect())
        while len(self.background) < len(self.scenario.background):
            self.background.append(self.engine.connect())
        seq = int(req["seq"])
        # An overhead-control step runs the same engine under another label, with other samplers.
        label = req.get("label", self.label)
        samplers = set(req["samplers"]) if "samplers" in req else self.samplers
        level = Level(
            schema=dataset.schema,
            table=dataset.full_name,
            concurrency=n,
            repetition=int(req.get("repetition", 0)),
            warmup_s=float(req["warmup_s"]),
            duration_s=float(req["duration_s"]),
            id_prefix=f"{req['id_prefix']}-{label}-{seq}-",
            seed=self.scenario.seed,
            rate_qps=req.get("rate_qps"),
        )
        parts_before = active_parts(self.engine.admin, dataset.database)
        keys = {"engine": label, "schema": level.schema, "concurrency": n, "repetition": level.repetition}
        target = float(level.rate_qps) if level.rate_qps else float("nan")
        context = SamplerContext(self.clock, self.interval_s, self._sampler_connection, self.cluster, self.engine_pid,
                                 self.engine.admin, self.engine.capabilities, self.lock_waits)
        active = registry.open_polling(samplers, context)
        readers = registry.open_after_level(samplers, context)
        host = HostSampler(self.clock, self.run_pid)  # every level, samplers or not: how busy the machine was
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
        records = result.records.assign(engine=label)
        found = [r.read(level.id_prefix, records) for r in readers]
        for got in found:
            if got.per_query is not None:
                records = records.merge(got.per_query, on="query_id", how="left")
        log_problems = [p for got in found for p in got.problems]
        records = records.drop(columns=LOG_COLUMNS)
        measured = records[records["phase"] == "measure"]
        level_row = {
            **keys,
            "seq": seq,
            "position": int(req.get("position", 0)),  # order among the repetition's windows (0 = first)
            "measure_start_s": result.measure_start_s,
            "measure_end_s": result.measure_end_s,
            "target_qps": target,
            "scheduled": int(level.duration_s * level.rate_qps) if level.rate_qps else None,
            **level_counts(measured),
            "active_parts_before": parts_before,
            "active_parts_after": active_parts(self.engine.admin, dataset.database),
            "interrupted": result.interrupted,
            "sampler_errors": "; ".join([*(s.error for s in active if s.error), *log_problems]) or None,
            **host.window(result.measure_start_s, result.measure_end_s),
            **level_verdict(records, measured, result.errors, result.interrupted),
        }
        kinds = level_row.pop("error_kinds")  # for the progress line only: the manifest and tables hold the errors
        # A level is stored whole or not at all (a full disk, an interruption): the writer drops what it wrote.
        with LevelWriter(run_dir, label, seq, keys) as parts:
            parts.write("queries", records)
            parts.sampled(active)
            parts.after_level(found)
            parts.finish(level_row)
        return {**level_row, "error_kinds": kinds}

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

    def self_check(self, req: dict[str, Any]) -> dict[str, Any]:
        from lockprof.selfcheck import self_check

        while len(self.connections) < 2:
            self.connections.append(self.engine.connect())
        return self_check(self.connections, self.clock, float(req.get("seconds", 1.0)))

    def exit(self, req: dict[str, Any]) -> dict[str, Any]:
        if self.engine is not None:
            self.engine.close()
        return {}


def _engine_pid(engine: Any, kind: str) -> int | None:
    """The process the engine's threads run in: this one for the embedded engine, the server lockprof started
    for a launched one; None for a server elsewhere (samplers reading /proc then say they cannot)."""
    if kind == "embedded":
        return os.getpid()
    proc = getattr(getattr(engine, "server", None), "proc", None)
    return proc.pid if proc is not None else None


def serve(requests: TextIO, replies: TextIO) -> int:
    worker = Worker()

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
        req = json.loads(line)
        op = req.get("op")
        try:
            worker.serving = op
            body = getattr(worker, op)(req) if op in ("prepare", "self_check", "level", "exit") else None
            if body is None:
                raise LockprofError(f"unknown request {op!r}")
            reply: dict[str, Any] = {"ok": True, **body}
        except LockprofError as exc:
            reply = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
        except KeyboardInterrupt:
            reply = {"ok": False, "error": "interrupted", "kind": "Interrupted"}
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "internal"}
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
