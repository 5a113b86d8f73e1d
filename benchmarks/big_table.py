"""The big table: namespace_partitioning at 100 000+ active parts; what it costs to build and keep.

Sets LOCKPROF_NAMESPACE_DAYS (200 tenants x DAYS parts) before loading the scenario,
builds the namespace_day dataset once in a private cache with lockprof's own
``ensure_dataset``, after the same DDL and INSERT typed by hand (timed, then dropped, as in
``dataset_build``), and prints the build time and its ratio to that raw build, the dataset's ``bytes_on_disk``, what
the files really occupy on the filesystem (tens of thousands of small files cost whole
blocks each), and the peak RSS of this process, which hosts the engine.

    python -m benchmarks.big_table            # 500 days = 100 000 parts; minutes, several GB
    python -m benchmarks.big_table --quick    # 10 days = 2 000 parts
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

from benchmarks.common import SCENARIOS, arguments, host_line, private_cache

DISK_PER_PART = 80 * 1024  # measured ~52 KiB of filesystem blocks per small part; keep a margin


def disk_usage(path: Path) -> int:
    """Bytes the filesystem allocates under path (st_blocks), not the files' apparent size."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while walking
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.splitlines()[0], repetitions=1)
    parser.add_argument("--days", type=int, default=500, help="days retained; parts = 200 x days")
    parser.add_argument("--queries", type=int, default=20, help="billing queries timed on the built table")
    args = parser.parse_args(argv)
    days = 10 if args.quick else args.days
    queries = 3 if args.quick else args.queries
    os.environ["LOCKPROF_NAMESPACE_DAYS"] = str(days)
    cache = private_cache("big-table")
    need = 200 * days * DISK_PER_PART
    free = shutil.disk_usage(cache).free
    if free < need:
        print(f"big_table: needs about {need / 1e9:.1f} GB free for {200 * days} parts, the cache's filesystem "
              f"has {free / 1e9:.1f} GB", file=sys.stderr)
        return 1

    import random

    from benchmarks.dataset_build import raw_build
    from lockprof.dataset import ensure_dataset
    from lockprof.engines.embedded import EmbeddedEngine
    from lockprof.scenario import load_scenario

    print(host_line(), flush=True)
    scenario = load_scenario(SCENARIOS / "namespace_partitioning.py").scenario
    schema = scenario.schema("namespace_day")
    engine = EmbeddedEngine()
    rss_before = peak_rss_bytes()
    raw_s = raw_build(engine.admin._raw, schema.ddl, list(schema.populate), "lockprof_bench_raw")
    started = time.perf_counter()
    built = ensure_dataset(engine.admin, scenario, schema)
    build_s = time.perf_counter() - started
    rss_build = peak_rss_bytes()
    started = time.perf_counter()
    cached = ensure_dataset(engine.admin, scenario, schema)
    cached_s = time.perf_counter() - started
    on_disk = disk_usage(engine.data_path)

    query = scenario.queries[0]
    rng = random.Random(1)
    conn = engine.connect()
    sql = query.sql.replace("{table}", built.full_name)
    latencies = []
    for _ in range(queries):
        t = time.perf_counter()
        conn.execute(sql, query.params(rng))
        latencies.append((time.perf_counter() - t) * 1000)

    print(f"RESULT big_table parts: {built.active_parts} active parts, {built.partitions} partitions, "
          f"{built.rows} rows (days={days})")
    print(f"RESULT big_table build: {build_s:.1f} s ({build_s / built.active_parts * 1000:.2f} ms per part); "
          f"cached second call {cached_s:.2f} s (cached={cached.cached})")
    print(f"RATIO big_table build lockprof/raw time: {build_s / raw_s:.2f} (raw DDL + INSERT {raw_s:.1f} s, "
          f"one pair, raw first; target <= 1.2)")
    print(f"RESULT big_table disk: bytes_on_disk {built.bytes_on_disk / 1e9:.3f} GB, filesystem usage "
          f"{on_disk / 1e9:.2f} GB ({on_disk / built.active_parts / 1024:.1f} KiB per part)")
    print(f"RESULT big_table memory: peak RSS {rss_build / 2**30:.2f} GiB after the build "
          f"({rss_before / 2**30:.2f} GiB before it), {peak_rss_bytes() / 2**30:.2f} GiB at the end")
    print(f"RESULT big_table query: tenant_billing at concurrency 1, median {statistics.median(latencies):.1f} ms "
          f"over {queries} queries (min {min(latencies):.1f}, max {max(latencies):.1f})")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
