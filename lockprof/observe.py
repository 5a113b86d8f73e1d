"""Observe mode: watch a live server for a window without generating load or changing anything.

Every query carries ``readonly = 2``, so the server itself refuses any write, and
the engine's guard refuses everything but reading statements before they leave
(so not even ``SYSTEM FLUSH LOGS``: the logs flush themselves; ``settle_s`` waits
for that). The window becomes one "level" of a normal run directory (schema
``observed``): ``system.events`` deltas and ``system.metrics`` gauges sampled
through the window, the queries other clients ran in it from ``query_log`` with
their ProfileEvents, and the stacks ``trace_log`` holds for them. The summary,
the report and ``load_run`` therefore read it like any run.

With ``cluster``, every system table is read from every replica of that cluster
(:mod:`lockprof.samplers.cluster`) and each row keeps its ``replica``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from lockprof import store
from lockprof.clock import RunClock
from lockprof.dirformat import Manifest
from lockprof.engines.registry import parse
from lockprof.engines.server import ServerEngine, ServerTarget
from lockprof.errors import LockprofError
from lockprof.level_writer import LevelWriter
from lockprof.locks import CATALOG_SQL, catalog
from lockprof.samplers import registry
from lockprof.samplers.base import SamplerContext
from lockprof.samplers.cluster import check_cluster, check_name, on_replicas
from lockprof.samplers.host import HostSampler
from lockprof.samplers.trace_log import TraceLogReader

SCHEMA = "observed"
# The polling samplers observe runs: a server elsewhere has no process here to read, so the defaults that query it.
SAMPLERS = tuple(s.name for s in registry.polling(registry.defaults()))
OWN_COMMENT = "lockprof-observe"  # marks lockprof's own sampling queries so they are left out

QUERIES_SQL = """
SELECT {replica} AS replica, query_id, toString(query_kind) AS query_name, query_duration_ms AS engine_duration_ms,
       toUnixTimestamp64Micro(event_time_microseconds) / 1e6 AS end_unix_s, read_rows, result_rows, memory_usage,
       exception_code, exception
FROM system.query_log
WHERE type != 'QueryStart' AND event_time >= toDateTime({start:Float64}) AND event_time <= toDateTime({end:Float64})
  AND event_time_microseconds >= toDateTime64({start:Float64}, 6)  -- event_time has whole seconds: a query that
  AND event_time_microseconds <= toDateTime64({end:Float64}, 6)    -- ended before the window (lockprof's own) is out
  AND log_comment != {own:String}
"""

EVENTS_SQL = """
SELECT {replica} AS replica, query_id, k AS event, v AS value
FROM system.query_log
ARRAY JOIN mapKeys(ProfileEvents) AS k, mapValues(ProfileEvents) AS v
WHERE type != 'QueryStart' AND event_time >= toDateTime({start:Float64}) AND event_time <= toDateTime({end:Float64})
  AND event_time_microseconds >= toDateTime64({start:Float64}, 6)  -- event_time has whole seconds: a query that
  AND event_time_microseconds <= toDateTime64({end:Float64}, 6)    -- ended before the window (lockprof's own) is out
  AND log_comment != {own:String} AND v != 0
"""


@dataclass
class ObserveOptions:
    engine: str
    duration_s: float = 60.0
    out: Path | None = None
    sample_interval_s: float = 1.0
    settle_s: float = 8.0  # servers flush query_log and trace_log every 7.5 s by default
    stacks: bool = True
    password_file: Path | None = None
    cluster: str | None = None  # read every replica of this cluster (clusterAllReplicas)


def observe(options: ObserveOptions, progress=print) -> Path:
    """Sample the server for the window and write a run directory; return its path."""
    spec = parse(options.engine)
    if spec.kind != "url":
        raise LockprofError("observe watches a running server: give --engine http(s)://user@host:port")
    target = ServerTarget.from_request(spec.as_request())
    if options.password_file:
        target = replace(target, password_file=str(options.password_file))
    cluster = check_name(options.cluster)
    engine = ServerEngine(target, readonly=True)
    engine.query_settings["log_comment"] = OWN_COMMENT
    run_dir: store.RunDir | None = None
    try:
        info = engine.info()
        admin = engine.admin
        replicas = check_cluster(admin, cluster) if cluster else 1
        run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        out = options.out or Path("runs") / f"observe-{run_id}"
        if out.exists():
            raise LockprofError(f"{out} already exists; choose another --out")
        clock = RunClock()
        origin_unix = time.time() - clock.now()
        locks = catalog(admin.frame(CATALOG_SQL))
        manifest = Manifest.begin(
            run_id,
            scenario={"name": "observe", "path": "", "sha256": "", "definition": {}},
            parameters={"schemas": [SCHEMA], "concurrency": [], "warmup_s": 0.0, "duration_s": options.duration_s,
                        "repetitions": 1, "seed": None, "samplers": ["events", "metrics", "query_log", "trace_log"],
                        "sample_interval_s": options.sample_interval_s, "mode": "observe", "cluster": cluster},
            engines=[{"label": spec.label, "spec": spec.public_spec, **info.as_dict()}],
            datasets={},
            host=_host(),
            clock_origin_unix_s=origin_unix,
            notes=["observe mode: no load generated; the queries are whatever other clients ran in the window"],
        )
        run_dir = store.RunDir(out, manifest)
        store.write_part(run_dir.path, "locks", store.file_name(spec.label), locks.assign(engine=spec.label))
        where = f"cluster {cluster} ({replicas} replicas) through " if cluster else ""
        progress(f"observing {where}{spec.public_spec} (ClickHouse {info.clickhouse_version}) "
                 f"for {options.duration_s:g} s")
        interrupted = _watch(engine, run_dir, spec.label, clock, origin_unix, options)
        status = "incomplete" if interrupted else "complete"
        if interrupted:
            run_dir.manifest.fail("interrupted by the user (Ctrl-C)")
        run_dir.finish(status)
        return run_dir.path
    finally:
        engine.close()


def _watch(engine: ServerEngine, run_dir: store.RunDir, label: str, clock: RunClock, origin_unix: float,
           options: ObserveOptions) -> bool:
    stop = threading.Event()
    cluster = options.cluster or None
    samplers = registry.open_polling(SAMPLERS, SamplerContext(clock, options.sample_interval_s,
                                                              lambda _name: engine.connect(), cluster))
    host = HostSampler(clock)  # this machine's load; a server on it is one of the other processes
    interrupted = False
    start = clock.now()
    with contextlib.ExitStack() as running:
        running.enter_context(host)
        for sampler in samplers:
            running.enter_context(sampler)
        try:
            stop.wait(options.duration_s)
        except KeyboardInterrupt:
            interrupted = True
    end = clock.now()
    keys = {"engine": label, "schema": SCHEMA}
    window = {"start": origin_unix + start, "end": origin_unix + end, "own": OWN_COMMENT}
    queries, query_events, stacks, errors = _read_logs(engine, run_dir, window, origin_unix, options)
    sampled = {table.name: frame for s in samplers for table, frame in s.frames().items()}
    concurrency = _mean_running(sampled.get("metrics", pd.DataFrame()))
    level_keys = {**keys, "concurrency": concurrency, "repetition": 0}
    sampler_errors = [s.error for s in samplers if s.error] + errors
    level_row = {
        **level_keys, "seq": 0, "measure_start_s": start, "measure_end_s": end,
        "queries": len(queries), "errors": int(queries["error"].notna().sum()) if not queries.empty else 0,
        "active_parts_before": float("nan"), "active_parts_after": float("nan"), "interrupted": interrupted,
        "sampler_errors": "; ".join(sampler_errors) or None, **host.window(start, end),
    }
    with LevelWriter(run_dir.path, label, 0, level_keys) as parts:
        if not queries.empty:
            parts.write("queries", queries, level_keys)
            parts.write("query_events", query_events, {"engine": label})
        parts.sampled(samplers)
        if not stacks.empty:
            from lockprof.stacks import write_exports

            parts.write("stacks", stacks)  # as the trace_log reader gives them: the window is the level
            write_exports(stacks, run_dir.path / "stacks", parts.part)
        parts.finish(level_row)
    return interrupted


def _read_logs(engine: ServerEngine, run_dir: store.RunDir, window: dict, origin_unix: float,
               options: ObserveOptions) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """What the server's logs hold of the window once they flushed: its queries with their ProfileEvents, and
    its stacks; a log that cannot be read is an error of the level, not of the run."""
    cluster = options.cluster or None
    queries, query_events, stacks, errors = pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), []
    if engine.capabilities.query_log:
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(options.settle_s)
        try:
            queries, query_events = _read_queries(engine, window, origin_unix, cluster)
        except Exception as exc:  # a missing grant on query_log loses the per-query view, not the run
            errors.append(f"query_log: {exc}")
    if options.stacks and not _has_table(engine, "trace_log"):
        # Servers create the table with its first flushed sample; none yet means no profiler ran.
        run_dir.manifest.note("no stacks: the server has no system.trace_log (yet); its query "
                              "profilers are off or trace_log is not configured")
    elif options.stacks:
        try:
            reader = TraceLogReader(engine.admin, flush=False, cluster=cluster)
            stacks = reader.read_window(window["start"], window["end"])
        except Exception as exc:
            errors.append(f"trace_log: {exc}")
    return queries, query_events, stacks, errors


def _read_queries(engine: ServerEngine, window: dict, origin_unix: float,
                  cluster: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw = engine.admin.frame(on_replicas(QUERIES_SQL, cluster), window)
    if raw.empty:
        return pd.DataFrame(), pd.DataFrame()
    latency_ms = raw["engine_duration_ms"].astype("float64")
    start_s = raw["end_unix_s"].astype("float64") - origin_unix - latency_ms / 1000.0
    queries = pd.DataFrame({
        "worker": 0, "role": "query", "query_name": raw["query_name"].astype(str).replace("", "query"),
        "query_id": raw["query_id"].astype(str), "phase": "measure", "intended_start_s": start_s,
        "start_s": start_s, "latency_ms": latency_ms,
        "error": raw["exception"].astype(str).where(raw["exception_code"].astype(int) != 0, None),
        "engine_query_id": raw["query_id"].astype(str), "engine_duration_ms": latency_ms,
        "read_rows": raw["read_rows"], "result_rows": raw["result_rows"], "memory_usage": raw["memory_usage"],
        "replica": raw["replica"].astype(str),
    })
    events = engine.admin.frame(on_replicas(EVENTS_SQL, cluster), window)
    if not events.empty:
        events["value"] = events["value"].astype("int64")
    return queries, events


def _has_table(engine: ServerEngine, name: str) -> bool:
    found = engine.admin.frame(
        "SELECT count() AS n FROM system.tables WHERE database = 'system' AND name = {t:String}", {"t": name}
    )
    return int(found["n"].iloc[0]) > 0


def _mean_running(metrics: pd.DataFrame) -> int:
    """Observed concurrency: the mean of the server's running-queries gauge, at least 1."""
    if metrics.empty:
        return 1
    running = metrics[metrics["metric"] == "Query"]
    if running.empty:
        return 1
    # on a cluster each poll has one row per replica: the cluster's concurrency is their sum
    return max(1, round(float(running.groupby("t_s")["value"].sum().mean())))


def _host() -> dict:
    from lockprof.run import host_info

    return host_info()

