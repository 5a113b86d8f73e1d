"""Dataset build: lockprof's ``ensure_dataset`` of the 10 000-part schema vs the same DDL and INSERT by hand.

The raw side is what a user would type: CREATE DATABASE, the schema's CREATE TABLE, and its
populate INSERT with the settings that allow one INSERT to fill 10 000 partitions. The
lockprof side is ``ensure_dataset`` on a database dropped beforehand (untimed), so every
repetition is a fresh build; on top of the raw work it checks the cache, stops merges,
writes the ready marker and describes the parts. Then a second ``ensure_dataset`` call,
which must find the dataset ready, is timed against the same raw build.

    python -m benchmarks.dataset_build [--quick] [--repetitions N]
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks.common import SCENARIOS, TINY_SCENARIO, arguments, host_line, interleaved, private_cache, ratio_line

TARGET = 1.3


def raw_build(conn: Any, ddl: str, populate: list[str], database: str) -> float:
    """Seconds for the statements a user would run by hand to get the same table."""
    from lockprof.dataset import POPULATE_SETTINGS
    from lockprof.engines.sql import session_settings

    conn.query(f"DROP DATABASE IF EXISTS {database} SYNC")
    full = f"{database}.data"
    started = time.perf_counter()
    conn.query(f"CREATE DATABASE {database}")
    conn.query(ddl.replace("{table}", full))
    conn.query(session_settings(POPULATE_SETTINGS))  # as lockprof does: beside the statements, not inside
    for statement in populate:
        conn.query(statement.replace("{table}", full))
    elapsed = time.perf_counter() - started
    conn.query(f"DROP DATABASE {database} SYNC")  # keep one copy on disk at a time
    return elapsed


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.splitlines()[0], repetitions=3).parse_args(argv)
    path = TINY_SCENARIO if args.quick else SCENARIOS / "namespace_partitioning.py"
    reps = 2 if args.quick else args.repetitions
    private_cache("dataset")

    import chdb

    from lockprof.dataset import database_name, ensure_dataset
    from lockprof.engines.embedded import EmbeddedEngine
    from lockprof.scenario import load_scenario

    print(host_line(), flush=True)
    scenario = load_scenario(path).scenario
    schema = scenario.schema("namespace_day")
    engine = EmbeddedEngine()
    raw = chdb.connect(f"{engine.data_path}?config-file={engine.home / 'config.xml'}")
    database = database_name(scenario, schema)
    cached_s: list[float] = []
    parts: list[int] = []

    def lockprof_build() -> float:
        engine.admin.execute(f"DROP DATABASE IF EXISTS {database} SYNC")
        started = time.perf_counter()
        built = ensure_dataset(engine.admin, scenario, schema)
        elapsed = time.perf_counter() - started
        assert not built.cached, "the dataset was dropped, so this build must be fresh"
        parts.append(built.active_parts)
        started = time.perf_counter()
        again = ensure_dataset(engine.admin, scenario, schema)
        cached_s.append(time.perf_counter() - started)
        assert again.cached, "a second ensure_dataset must reuse the first"
        return elapsed

    pairs = interleaved(reps, lambda: raw_build(raw, schema.ddl, list(schema.populate), "lockprof_bench_raw"),
                        lockprof_build)
    print(f"# {path.name} namespace_day ({parts[0]} parts); {reps} interleaved pairs; seconds raw "
          f"{', '.join(f'{a:.2f}' for a, _ in pairs)}; lockprof {', '.join(f'{b:.2f}' for _, b in pairs)}; "
          f"cached second call {', '.join(f'{c:.3f}' for c in cached_s)}")
    print(ratio_line("dataset_build fresh lockprof/raw time", [b / a for a, b in pairs], TARGET,
                     higher_is_better=False), flush=True)
    print(ratio_line("dataset_build cached second call/raw time", [c / a for (a, _), c in zip(pairs, cached_s)]),
          flush=True)
    raw.close()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
