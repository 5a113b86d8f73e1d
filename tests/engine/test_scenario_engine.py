"""A scenario whose SQL the real engine rejects fails cleanly."""

import textwrap

import pytest
from conftest import lockprof_cli


def write(tmp_path, body: str):
    path = tmp_path / "scenario.py"
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    "ddl, populate, expected",
    [
        ("CREATE TABLE {table} (x UInt8) ENGINE = MergeTre ORDER BY x", "", "schema 's', ddl: ClickHouse rejected it"),
        (
            "CREATE TABLE {table} (x UInt8) ENGINE = MergeTree ORDER BY x",
            "INSERT INTO {table} SELECT nope FROM numbers(3)",
            "schema 's', populate[0]: ClickHouse rejected it",
        ),
    ],
)
def test_sql_the_engine_rejects_fails_cleanly_and_leaves_no_run_directory(tmp_path, ddl, populate, expected):
    path = write(
        tmp_path,
        f"""
        from lockprof import Scenario, Schema, Query
        scenario = Scenario(
            "rejected",
            [Schema("s", {ddl!r}, populate=[{populate!r}] if {populate!r} else [])],
            [Query("q", "SELECT count() FROM {{table}}")],
        )
        """,
    )
    out = tmp_path / "runs" / "r"
    result = lockprof_cli("run", str(path), "--out", str(out), "--duration", "0.5")
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert str(path) in result.stderr or "rejected" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not any((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else True
