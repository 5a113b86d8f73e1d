"""Every part of a real run (embedded, and on a launched server) fits the format's one declaration."""

from pathlib import Path

import pandas as pd

from lockprof import store
from lockprof.dirformat import tables as declared


def test_every_part_of_a_real_run_fits_the_declaration(tiny_run):
    assert_parts_fit(tiny_run, {"queries", "levels", "events", "metrics", "query_events", "locks"})


def test_every_part_of_a_run_on_a_launched_server_fits_the_declaration(launched_run):
    """The server path: query_log's columns as a server gives them."""
    assert_parts_fit(launched_run, {"queries", "levels", "events", "metrics", "query_events", "locks"})


def assert_parts_fit(run_dir: Path, expected: set[str]) -> None:
    written = [t for t in declared.tables() if store.table_parts(run_dir, t.name)]
    assert {t.name for t in written} >= expected
    for table in written:
        for part in store.table_parts(run_dir, table.name):
            assert table.problems(pd.read_parquet(part)) == [], part

