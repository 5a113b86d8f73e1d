"""Observe mode against a genuine ClickHouse 26.9 server (tests/launched.py): a run directory from a window of
someone else's load, and the read-only guarantee (the server itself refuses a write sent through observe's
settings, code 164)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import lockprof_cli
from launched import client_load, serve_real

from lockprof.engines.server import ServerEngine, ServerTarget
from lockprof.errors import EngineError

PASSWORD = "Obs-pw-5xk1-not-in-files"


@pytest.fixture(scope="module")
def server():
    with serve_real(PASSWORD) as served:
        yield served


@pytest.fixture(scope="module")
def observed(server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of a 2-s window of another client's load on the launched server."""
    out = tmp_path_factory.mktemp("observe") / "observed"
    # --settle: the endpoint flushes its query_log every second; 4 s leave a loaded machine room to do it
    with client_load(server):
        result = lockprof_cli("observe", "--engine", server.url, "--duration", "2", "--interval", "0.5",
                              "--settle", "4", "--out", str(out), env={"LOCKPROF_PASSWORD": PASSWORD}, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    return out


def test_observe_writes_a_run_directory_of_the_window(observed: Path) -> None:
    from lockprof.analysis import load_run

    run = load_run(observed)
    assert run.complete and run.manifest["parameters"]["mode"] == "observe"
    assert len(run.levels) == 1 and run.levels["schema"].iloc[0] == "observed"
    assert run.levels["sampler_errors"].isna().all(), run.levels["sampler_errors"].iloc[0]
    assert not run.events.empty and not run.metrics.empty
    assert len(run.measured()) > 5  # the other client's queries, from query_log
    # none ended before the window (lockprof's own start-up queries, SELECT version() and system.settings, did)
    ended = run.queries["start_s"] + run.queries["latency_ms"] / 1000
    assert (ended >= run.levels["measure_start_s"].iloc[0] - 1e-3).all()
    assert not run.query_events.empty
    secret = PASSWORD.encode()
    assert [p for p in observed.rglob("*") if p.is_file() and secret in p.read_bytes()] == []


def test_full_runs_on_launched_servers_are_read_like_any_run(observed: Path, launched_run: Path, tiny_run: Path,
                                                             tmp_path: Path) -> None:
    """``--engine server:26.9`` and ``lockprof observe`` against a launched server each leave a run directory
    that summary and report read and name the engine of; compare sets the server run beside the embedded one."""
    from lockprof.analysis import load_run

    observed_label = load_run(observed).manifest["engines"][0]["label"]
    assert observed_label.startswith("server-127.0.0.1-")
    for run, label in ((launched_run, "server-26.9"), (observed, observed_label)):
        summary = lockprof_cli("summary", str(run))
        assert summary.returncode == 0 and label in summary.stdout, summary.stderr + summary.stdout
        html = tmp_path / f"{label}.html"
        report = lockprof_cli("report", str(run), "--out", str(html), timeout=300)
        assert report.returncode == 0 and label in html.read_text(), report.stderr
    compare = lockprof_cli("compare", str(tiny_run), str(launched_run))
    assert compare.returncode == 0, compare.stderr + compare.stdout
    assert "embedded: ClickHouse 26.9" in compare.stdout and "server-26.9: ClickHouse 26.9" in compare.stdout
    assert "launched server" in compare.stdout


def test_a_write_through_the_observe_connection_is_refused_by_the_server(server) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    engine = ServerEngine(ServerTarget("http", "lockprof", "127.0.0.1", server.port), password=PASSWORD,
                          readonly=True)
    try:
        assert engine.query_settings["readonly"] == "2"  # 1 would also refuse the samplers' settings
        # lockprof refuses before sending …
        for sql in ("CREATE DATABASE lockprof_ro", "SYSTEM FLUSH LOGS", "INSERT INTO lockprof_ro.t SELECT 1"):
            with pytest.raises(EngineError, match="read-only"):
                engine.admin.execute(sql)
        # … and the server refuses what gets past lockprof, because of the connection's settings.
        with pytest.raises(DatabaseError, match="code: 164.*READONLY"):
            engine.admin._client.command("CREATE DATABASE lockprof_ro", settings=dict(engine.query_settings))
        found = engine.admin.frame("SELECT count() AS n FROM system.databases WHERE name = 'lockprof_ro'")
        assert int(found["n"].iloc[0]) == 0
        assert int(engine.admin.frame("SELECT 1 AS x")["x"].iloc[0]) == 1
    finally:
        engine.close()


def test_observe_refuses_anything_but_a_server_url() -> None:
    result = lockprof_cli("observe", "--engine", "binary:/bin/true", "--duration", "1")
    assert result.returncode == 1 and "observe watches a running server" in result.stderr


def test_observe_measures_none_of_its_own_queries(server, tmp_path: Path) -> None:
    """With no one else's load on the server, every query of the window is observe's own (its samplers' polls,
    its flushes): none may be measured as the workload."""
    from lockprof.analysis import load_run

    out = tmp_path / "quiet"
    result = lockprof_cli("observe", "--engine", server.url, "--duration", "2", "--interval", "0.2", "--settle", "4",
                          "--out", str(out), env={"LOCKPROF_PASSWORD": PASSWORD}, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    run = load_run(out)
    assert run.levels["queries"].tolist() == [0]
    assert run.measured().empty, run.measured()[["query_name", "latency_ms"]].head(10)
    assert "too few" not in result.stdout  # other clients' queries are a rate however few: not lockprof's threads
