"""The server engine end to end: real clickhouse-connect against a genuine ClickHouse 26.9 server
(chDB 26.9's own listener, launched as ``--engine server:26.9`` does: tests/launched.py).

What these prove: a scenario runs unchanged on a server spec and its run directory
(and report) never holds the password; each connection failure is one clear error
within a bounded time; the guard keeps writes inside databases lockprof created.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import TINY, lockprof_cli
from launched import LIMITED, serve_real

from lockprof.engines.guard import MARKER, targets
from lockprof.engines.registry import parse_spec
from lockprof.engines.server import ServerEngine, ServerTarget, parse_url
from lockprof.errors import EngineError

PASSWORD = "Pw-7rq2-not-in-files"


@pytest.fixture(scope="module")
def server():
    with serve_real(PASSWORD) as served:
        yield served


def _engine(server, user: str = "lockprof", password: str = PASSWORD, **kw) -> ServerEngine:
    return ServerEngine(ServerTarget("http", user, "127.0.0.1", server.port, **kw), password=password)


def test_scenario_runs_on_a_server_and_the_password_is_in_no_file(server, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = lockprof_cli("run", str(TINY), "--engine", server.url, "--concurrency", "1", "--duration", "0.5",
                          "--warmup", "0.1", "--out", str(out), env={"LOCKPROF_PASSWORD": PASSWORD}, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    from lockprof.analysis import load_run

    run = load_run(out)
    engine = run.manifest["engines"][0]
    assert engine["kind"] == "server" and engine["spec"] == server.url and engine["has_query_log"]
    assert engine["clickhouse_version"].startswith("26.")
    measured = run.measured()
    assert len(measured) > 0 and measured["error"].isna().all()
    # the driver's ids came back from the server's query_log (matched on log_comment)
    assert measured["engine_duration_ms"].notna().all()
    report = lockprof_cli("report", str(out), timeout=300)
    assert report.returncode == 0, report.stderr
    secret = PASSWORD.encode()
    leaks = [p for p in out.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaks == []
    for text in (result.stdout, result.stderr, report.stdout, report.stderr):
        assert PASSWORD not in text


def test_password_comes_from_a_file_too(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    monkeypatch.delenv("LOCKPROF_PASSWORD", raising=False)
    monkeypatch.setenv("LOCKPROF_PASSWORD_FILE", str(secret))
    engine = ServerEngine(parse_url(server.url))
    try:
        assert engine.info().clickhouse_version.startswith("26.")
    finally:
        engine.close()


def test_a_password_in_the_spec_is_refused_without_echoing_it() -> None:
    with pytest.raises(EngineError) as err:
        parse_spec("http://lockprof:hunter2@127.0.0.1:8123")
    assert "hunter2" not in str(err.value) and "LOCKPROF_PASSWORD" in str(err.value)


def test_wrong_password_says_so_and_what_to_do(server) -> None:
    with pytest.raises(EngineError, match="wrong or missing password.*LOCKPROF_PASSWORD"):
        _engine(server, password="wrong")


def test_unreachable_host_fails_within_the_connect_timeout() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(EngineError, match="cannot reach ClickHouse"):
        ServerEngine(ServerTarget("http", "lockprof", "127.0.0.1", port, timeout_s=1.0), password="x")
    # refused at once; the bound only has to catch retrying or waiting for longer than the 1 s timeout, with room
    # for a loaded machine's slow start of the client library
    assert time.monotonic() - started < 15


def test_tls_against_a_plain_http_port_is_a_tls_error_with_advice(server) -> None:
    with pytest.raises(EngineError, match="TLS with .* failed.*ca=PATH"):
        ServerEngine(ServerTarget("https", "lockprof", "127.0.0.1", server.port, timeout_s=2.0), password=PASSWORD)


def test_missing_introspection_rights_are_named_with_the_grant(server) -> None:
    engine = _engine(server, user=LIMITED)
    try:
        with pytest.raises(EngineError, match="GRANT INTROSPECTION"):
            engine.check_introspection()
    finally:
        engine.close()
    ok = _engine(server)
    try:
        ok.check_introspection()
    finally:
        ok.close()


def test_scenario_queries_carry_query_id_and_log_comment(server) -> None:
    engine = _engine(server, stack_period_ms=10)
    try:
        engine.admin.execute("SELECT 1", query_id="lpx-test-1")
        engine.admin.execute("SYSTEM FLUSH LOGS")
        row = engine.admin.frame(
            "SELECT Settings['query_profiler_real_time_period_ns'] AS period, Settings['trace_profile_events'] AS pe "
            "FROM system.query_log WHERE log_comment = 'lpx-test-1' AND type = 'QueryFinish'"
        )
        assert row.iloc[0].tolist() == ["10000000", "1"]
    finally:
        engine.close()


def test_guard_keeps_writes_inside_databases_lockprof_created(server) -> None:
    engine = _engine(server)
    admin = engine.admin
    try:
        for sql in ("CREATE TABLE default.t (a UInt8) ENGINE = Memory", "DROP DATABASE IF EXISTS system",
                    "INSERT INTO t VALUES (1)", "TRUNCATE TABLE default.t", "KILL QUERY WHERE 1",
                    "INSERT INTO FUNCTION file('x.csv') SELECT 1"):
            with pytest.raises(EngineError):
                admin.execute(sql)
        # A lockprof_ database someone else made is neither reused nor dropped.
        admin._client.command("CREATE DATABASE IF NOT EXISTS lockprof_not_ours")
        for sql in ("DROP DATABASE IF EXISTS lockprof_not_ours", "CREATE DATABASE IF NOT EXISTS lockprof_not_ours",
                    "CREATE TABLE lockprof_not_ours.t (a UInt8) ENGINE = Memory"):
            with pytest.raises(EngineError, match="lockprof did not create it"):
                admin.execute(sql)
        # One lockprof creates carries the marker, so it may be written and dropped.
        admin.execute("DROP DATABASE IF EXISTS lockprof_ours")
        admin.execute("CREATE DATABASE lockprof_ours")
        admin.execute("CREATE TABLE lockprof_ours.t (a UInt8) ENGINE = MergeTree ORDER BY a")
        admin.execute("INSERT INTO lockprof_ours.t VALUES (1)")
        tables = set(admin.frame("SELECT name FROM system.tables WHERE database = 'lockprof_ours'")["name"])
        assert tables == {"t", MARKER}
        admin.execute("DROP DATABASE lockprof_ours SYNC")
    finally:
        admin._client.command("DROP DATABASE IF EXISTS lockprof_not_ours")
        engine.close()


@pytest.mark.parametrize(
    ("sql", "kind", "dbs"),
    [
        ("SELECT 1", "read", []),
        ("  -- c\n WITH 1 AS x SELECT x", "read", []),
        ("SYSTEM FLUSH LOGS", "flush", []),
        ("CREATE DATABASE IF NOT EXISTS `lockprof_a`", "create_database", ["lockprof_a"]),
        ("DROP DATABASE lockprof_a SYNC", "drop_database", ["lockprof_a"]),
        ("CREATE TABLE lockprof_a.data (k UInt8) ENGINE = MergeTree ORDER BY k", "write", ["lockprof_a"]),
        ("INSERT INTO lockprof_a.data SELECT 1", "write", ["lockprof_a"]),
        ("SYSTEM STOP MERGES lockprof_a.data", "write", ["lockprof_a"]),
        ("ALTER TABLE x.y DELETE WHERE 1", "write", ["x"]),
        ("RENAME TABLE lockprof_a.t TO other.t", "write", ["lockprof_a", "other"]),
        ("DROP TABLE t", "write", [None]),
        ("GRANT SELECT ON *.* TO u", "unknown", []),
    ],
)
def test_guard_finds_the_databases_a_statement_writes(sql: str, kind: str, dbs: list) -> None:
    assert targets(sql) == (kind, dbs)


def test_guard_lets_lockprof_cancel_only_its_own_statements() -> None:
    """A shared server's queries are not lockprof's to stop: only a KILL matching an id lockprof made passes."""
    from lockprof.driver import KILL_SQL
    from lockprof.engines.guard import Guard

    guard = Guard(admin=None)
    guard.check(KILL_SQL, {"prefix": "lockprof-preflight-" + "0" * 32})  # the preflight's own statement
    guard.check(KILL_SQL, {"prefix": "20261205-081200-a1b2c3-embedded-3-"})  # a level's, by its run's prefix
    for sql, params in [
        (KILL_SQL, {"prefix": ""}),  # would match every query
        (KILL_SQL, {"prefix": "etl-"}),
        (KILL_SQL, None),
        ("KILL QUERY WHERE user = 'etl'", None),
        ("KILL QUERY WHERE startsWith(query_id, {prefix:String}) OR user = 'etl' ASYNC", {"prefix": "lockprof-x-0"}),
    ]:
        with pytest.raises(EngineError, match="does not send"):
            guard.check(sql, params)
    with pytest.raises(EngineError, match="read-only"):
        Guard(admin=None, readonly=True).check(KILL_SQL, {"prefix": "lockprof-preflight-" + "0" * 32})


def test_a_fresh_server_is_found_to_keep_a_query_log() -> None:
    """A new server creates system.query_log at its first flush; the engine asks for one before saying 'none'."""
    from launched import VERSION, server_python

    from lockprof.engines.local_server import ChdbServer

    server = ChdbServer(server_python(), VERSION).start(PASSWORD)
    try:
        target = ServerTarget("http", "lockprof", "127.0.0.1", server.http_port, timeout_s=30)
        engine = ServerEngine(target, password=PASSWORD)
        try:
            assert engine.info().has_query_log
        finally:
            engine.close()
    finally:
        server.stop()
