"""A synthetic run directory of any size, written through the real ``RunDir`` and ``write_part``.

Tables, columns and dtypes follow what a real embedded run writes (checked against one by
tests/engine/test_benchmarks_engine.py): one ``queries`` part per level with the query-log columns,
every query's non-zero ProfileEvents in ``query_events`` (a real chDB query has about 66),
``levels``, ``events`` and ``metrics`` samples, and the lock catalog classified by
``lockprof.locks.catalog`` from the same event names.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from lockprof.locks import catalog
from lockprof.store import RunDir, write_part

ENGINE = "embedded"
SCHEMAS = ("day", "namespace_day")
CONCURRENCY = (1, 2, 4, 8)
# The non-zero ProfileEvents of a real chDB SELECT on a MergeTree table, plus the lock timings
# that appear once queries contend.
_PROFILE_EVENTS_TEXT = (
    "Query SelectQuery InitialQuery InitialSelectQuery QueriesWithSubqueries SelectQueriesWithSubqueries "
    "SelectQueriesWithPrimaryKeyUsage FileOpen ReadBufferFromFileDescriptorReadBytes ReadCompressedBytes "
    "CompressedReadBufferBlocks CompressedReadBufferBytes OpenedFileCacheHits OpenedFileCacheMisses IOBufferAllocs "
    "IOBufferAllocBytes ArenaAllocChunks ArenaAllocBytes FunctionExecute MarkCacheHits QueryConditionCacheMisses "
    "CreatedReadBufferOrdinary DiskReadElapsedMicroseconds GlobalThreadPoolJobs LocalThreadPoolExpansions "
    "LocalThreadPoolThreadCreationMicroseconds LocalThreadPoolJobs QueryPlanOptimizeMicroseconds "
    "QueryParseMicroseconds QueryAnalysisMicroseconds QueryPlanBuildMicroseconds QueryPipelineBuildMicroseconds "
    "IndexAnalysisRounds SelectedParts SelectedPartsTotal SelectedRanges SelectedMarks SelectedMarksTotal "
    "SelectedRows SelectedBytes RowsReadByMainReader RowsReadByPrewhereReaders "
    "FilteringMarksWithPrimaryKeyProcessedMarks FilteringMarksWithPrimaryKeyMicroseconds ContextLock "
    "RWLockAcquiredReadLocks SharedPartsLocks RealTimeMicroseconds OSCPUWaitMicroseconds "
    "OSCPUVirtualTimeMicroseconds OSReadChars OSWriteChars MemoryAllocatedWithoutCheck "
    "MemoryAllocatedWithoutCheckBytes ThreadPoolReaderPageCacheHit ThreadPoolReaderPageCacheHitBytes "
    "ThreadPoolReaderPageCacheHitElapsedMicroseconds SynchronousReadWaitMicroseconds IndexBinarySearchAlgorithm "
    "UserTimeMicroseconds SharedPartsLockHoldMicroseconds SharedPartsLockWaitMicroseconds "
    "GlobalThreadPoolLockWaitMicroseconds ContextLockWaitMicroseconds RWLockReadersWaitMilliseconds "
    "PartsLockHoldMicroseconds"
)
PROFILE_EVENTS = tuple(_PROFILE_EVENTS_TEXT.split())
METRICS = ("Query", "QueryNonInternal", "GlobalThread", "GlobalThreadActive", "LocalThread", "LocalThreadActive",
           "MemoryTracking", "OpenFileForRead", "PartsActive", "ContextLockWait")


def write_synthetic_run(path: Path, queries: int, repetitions: int = 3, seed: int = 0) -> int:
    """Write a complete run of at least ``queries`` query records (the same number per level); return the
    number written."""
    rng = np.random.default_rng(seed)
    levels = list(itertools.product(SCHEMAS, CONCURRENCY, range(repetitions)))
    per_level = max(1, -(-queries // len(levels)))  # rounded up: a million asked is never 999 984 written
    names = pd.DataFrame({"name": list(PROFILE_EVENTS) + list(METRICS), "description": ""})
    manifest = {
        "run_id": "synthetic", "lockprof_version": "benchmark",
        "scenario": {"name": "synthetic", "path": "synthetic.py", "sha256": "", "definition": {}},
        "parameters": {"schemas": list(SCHEMAS), "concurrency": list(CONCURRENCY), "warmup_s": 1.0,
                       "duration_s": 5.0, "repetitions": repetitions, "seed": seed, "samplers": [],
                       "mode": "closed_loop"},
        "engines": [{"label": ENGINE, "spec": ENGINE, "kind": "embedded", "clickhouse_version": "26.9",
                     "package": "synthetic", "has_query_log": True}],
        "datasets": {ENGINE: {s: {"schema": s, "partition_key": "toDate(ts)", "active_parts": 100} for s in SCHEMAS}},
        "host": {"cpu_count": 2, "cpu_model": "synthetic"}, "failures": [],
    }
    run = RunDir(path, manifest)
    write_part(run.path, "locks", ENGINE, catalog(names).assign(engine=ENGINE))
    t = 0.0
    for seq, (schema, c, rep) in enumerate(levels):
        part = f"{ENGINE}-{seq:05d}"
        keys = {"engine": ENGINE, "schema": schema, "concurrency": c, "repetition": rep}
        start, end = t + 1.0, t + 6.0
        write_part(run.path, "queries", part, _queries(rng, per_level, keys, seq, t, end))
        write_part(run.path, "query_events", part, _query_events(rng, per_level, seq))
        write_part(run.path, "events", part, _samples(rng, t, end, PROFILE_EVENTS, "event", "delta", keys))
        write_part(run.path, "metrics", part, _samples(rng, t, end, METRICS, "metric", "value", keys))
        write_part(run.path, "levels", part, pd.DataFrame([{
            **keys, "seq": seq, "position": 0, "measure_start_s": start, "measure_end_s": end,
            "target_qps": float("nan"),
            "queries": per_level, "errors": 0, "active_parts_before": 100, "active_parts_after": 100,
            "interrupted": False, "sampler_errors": None, "scheduled": None, "cancelled": 0, "censored": 0,
            "background_errors": 0,
            "error_share": 0.0, "failed": False, "first_error": None, "background": 0, "first_background_error": None,
            # an idle two-core host, as the levels of a real run record it
            "host_cpus": 2, "load_avg_start": 1.0, "load_avg_end": 1.0, "run_cpu_share": 0.5,
            "host_other_cpu_share": 0.02}]))
        t = end
    run.finish("complete")
    return per_level * len(levels)


def _ids(n: int, seq: int) -> np.ndarray:
    return (f"synthetic-{ENGINE}-{seq}-" + pd.Series(np.arange(n)).astype(str)).to_numpy(dtype=object)


def _queries(rng: np.random.Generator, n: int, keys: dict, seq: int, t0: float, end: float) -> pd.DataFrame:
    starts = np.sort(rng.uniform(t0, end, n))
    latency = rng.lognormal(np.log(20.0), 0.5, n)
    ids = _ids(n, seq)
    return pd.DataFrame({
        "schema": keys["schema"], "concurrency": keys["concurrency"], "repetition": keys["repetition"],
        "worker": rng.integers(0, keys["concurrency"], n), "role": "query", "query_name": "tenant_billing",
        "query_id": ids, "phase": np.where(starts < t0 + 1.0, "warmup", "measure"), "intended_start_s": starts,
        "start_s": starts, "latency_ms": latency, "queue_delay_ms": 0.0, "error": None, "cancelled": False,
        "censored": False,
        "engine": keys["engine"],
        "engine_query_id": ids, "engine_duration_ms": latency.astype("uint64"),
        "read_rows": rng.integers(1000, 50000, n).astype("uint64"), "result_rows": np.ones(n, dtype="uint64"),
        "memory_usage": rng.integers(100_000, 1_000_000, n).astype("uint64"),
        "exception_code": np.zeros(n, dtype="int32"), "replica": "",
    })


def _query_events(rng: np.random.Generator, n: int, seq: int) -> pd.DataFrame:
    k = len(PROFILE_EVENTS)
    return pd.DataFrame({
        "query_id": np.repeat(_ids(n, seq), k),
        "event": np.tile(np.array(PROFILE_EVENTS, dtype=object), n),
        "value": rng.integers(1, 10_000, n * k, dtype="int64"),
        "engine": ENGINE,
        "replica": "",
    })


def _samples(rng: np.random.Generator, t0: float, end: float, names: tuple[str, ...] | list[str], name_col: str,
             value_col: str, keys: dict) -> pd.DataFrame:
    times = np.arange(t0, end, 0.2)
    frame = pd.DataFrame({"t_s": np.repeat(times, len(names)), name_col: np.tile(np.array(names, dtype=object),
                                                                                len(times))})
    if name_col == "event":
        frame["interval_s"] = 0.2
    frame[value_col] = rng.integers(0, 1000, len(frame), dtype="int64")
    return frame.assign(**keys)
