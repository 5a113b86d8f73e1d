"""Launched local servers (``--engine server:26.9``, ``lockprof server``): genuine ClickHouse 26.9 servers.

What these prove, against the real server chDB 26.9 contains: a scenario runs through
the clickhouse-connect engine with query-log matching and per-query ProfileEvents;
the self-check calls the server parallel; the password exists only in memory (and
in the 0600 file ``lockprof server`` prints); versions without a listener get one
clear error; and no server process or directory outlives a run, however it ends
(success, Ctrl-C, SIGTERM, a killed worker, a crashed server).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, lockprof_cli, wait_for
from launched import VERSION, alive, listener_pids, server_dirs, server_python

from lockprof.engines.local_server import LaunchedServerEngine
from lockprof.engines.registry import parse_spec
from lockprof.engines.server import ServerEngine
from lockprof.errors import EngineError

DEADLINE_S = 180.0  # generous: the machine may be busy


@pytest.fixture(scope="module")
def python26() -> Path:
    return server_python()


def test_versions_without_a_listener_get_one_clear_error() -> None:
    for version in ("25.8", "26.1", "26.3", "26.5"):
        with pytest.raises(EngineError, match=rf"cannot launch a server of ClickHouse {version}: .*no network "
                                              r"listener\. Launchable: server:26\.7, server:26\.9"):
            parse_spec(f"server:{version}")
    with pytest.raises(EngineError, match=r"unknown ClickHouse version '27\.1'; known versions: 25\.8"):
        parse_spec("server:27.1")
    result = lockprof_cli("run", str(TINY), "--engine", "server:25.8")
    assert result.returncode == EngineError.exit_code and "no network listener" in result.stderr


def test_a_scenario_runs_on_a_launched_server(launched_run: Path) -> None:
    from lockprof.analysis import load_run

    run = load_run(launched_run)
    engine = run.manifest["engines"][0]
    assert engine["kind"] == "server" and engine["spec"] == f"server:{VERSION}" and engine["has_query_log"]
    assert engine["clickhouse_version"].startswith(VERSION)
    # a genuine server runs two queries at once: the self-check must say so (it once said "serialized")
    assert engine["self_check"]["verdict"] == "parallel", engine["self_check"]
    measured = run.measured()
    assert len(measured) > 0 and measured["error"].isna().all()
    # every driver id came back from the server's query_log, with its ProfileEvents
    assert measured["engine_duration_ms"].notna().all()
    assert set(measured["query_id"]) <= set(run.query_events["query_id"])
    assert "RealTimeMicroseconds" in set(run.query_events["event"])
    # query_thread_log is on: the own-thread waits of every query; over HTTP no executor thread, so no W
    own = run.query_events[run.query_events["event"] == "LockprofOwnThreadsWaitMicroseconds"]
    assert set(measured["query_id"]) <= set(own["query_id"]) and (own["value"] >= 0).all()
    assert "LockprofPipelineWallMicroseconds" not in set(run.query_events["event"])
    # the server and its directory are gone
    tmp = launched_run.parent / "tmp"
    assert server_dirs(tmp) == set() and listener_pids(tmp) == []


def test_the_password_lives_only_in_memory(python26: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    engine = LaunchedServerEngine(VERSION, python26)
    server = engine.server
    root, pid = server.root, server.proc.pid
    try:
        password = engine._password
        assert len(password) >= 24
        secret = password.encode()
        assert [p for p in root.rglob("*") if p.is_file() and secret in p.read_bytes()] == []
        assert hashlib.sha256(secret).hexdigest() in (root / "users.xml").read_text()
        assert oct((root / "users.xml").stat().st_mode & 0o777) == "0o600"
        for name in ("cmdline", "environ"):
            assert secret not in Path(f"/proc/{pid}/{name}").read_bytes()
        # the password works, a wrong one is refused with advice
        assert engine.info().clickhouse_version.startswith(VERSION)
        with pytest.raises(EngineError, match="wrong or missing password"):
            ServerEngine(engine.target, password="wrong")
        # the in-process user has no password but may only start listeners and count: no writes, no queries seen
        import urllib.request

        for sql in ("CREATE DATABASE intruder", "SELECT * FROM system.processes"):
            request = urllib.request.Request(f"http://127.0.0.1:{server.http_port}/", data=sql.encode())
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(request, timeout=30)
            assert denied.value.headers.get("X-ClickHouse-Exception-Code") == "497"  # ACCESS_DENIED
    finally:
        engine.close()
    assert not root.exists() and not alive(pid)


def test_a_crashed_server_is_an_error_and_is_cleaned_up(python26: Path) -> None:
    engine = LaunchedServerEngine(VERSION, python26)
    root, proc = engine.server.root, engine.server.proc
    try:
        proc.kill()
        proc.wait(timeout=30)
        with pytest.raises(Exception, match="(?i)connect|refused|reach"):
            engine.admin.frame("SELECT 1")
    finally:
        engine.close()
    assert not root.exists()


def _start_run(tmp: Path, out: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": str(tmp)}
    with open(log, "w") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "lockprof", "run", str(TINY), "--engine", f"server:{VERSION}", "--schema", "day",
             "--concurrency", "1", "--duration", "30", "--warmup", "0", "--out", str(out)],
            stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)


def _children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"\nPPid:\t{pid}\n" in status.read_text():
                out.append(int(status.parent.name))
        except OSError:
            continue
    return out


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "worker-killed", "server-crashed"])
def test_no_server_outlives_a_run_however_it_ends(python26: Path, tmp_path: Path, how: str) -> None:
    tmp, log = tmp_path / "tmp", tmp_path / "run.log"
    tmp.mkdir()
    run = _start_run(tmp, tmp_path / "run", log)
    try:
        wait_for(lambda: "measuring:" in log.read_text() or run.poll() is not None,
                 timeout=DEADLINE_S, what="the run to start measuring")
        assert run.poll() is None, log.read_text()
        listeners = listener_pids(tmp)
        assert len(listeners) == 2 and len(server_dirs(tmp)) == 1  # the supervisor and the serving child
        if how == "ctrl-c":
            os.killpg(run.pid, signal.SIGINT)  # a terminal sends it to the whole foreground group
        elif how == "sigterm":
            run.send_signal(signal.SIGTERM)
        elif how == "worker-killed":
            workers = [p for p in _children(run.pid) if b"lockprof.worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
            assert len(workers) == 1
            os.kill(workers[0], signal.SIGKILL)
        else:  # the process that serves, not its supervisor
            serving = [p for p in listeners if any(f"\nPPid:\t{q}\n" in Path(f"/proc/{p}/status").read_text()
                                                   for q in listeners)]
            assert len(serving) == 1
            os.kill(serving[0], signal.SIGKILL)
        run.wait(timeout=DEADLINE_S)
        wait_for(lambda: listener_pids(tmp) == [] and server_dirs(tmp) == set(),
                 timeout=DEADLINE_S, what="the server and its directory to go")
        assert not any(alive(p) for p in listeners)
        if how != "ctrl-c":
            assert run.returncode != 0, log.read_text()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def test_lockprof_server_prints_its_url_and_password_file_until_stopped(python26: Path, tmp_path: Path) -> None:
    tmp, log = tmp_path / "tmp", tmp_path / "server.log"
    tmp.mkdir()
    pw_file = tmp_path / "pw"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "lockprof", "server", VERSION, "--password-file", str(pw_file)],
                                stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp)},
                                start_new_session=True)
    try:
        wait_for(lambda: "password file:" in log.read_text() or proc.poll() is not None,
                 timeout=DEADLINE_S, what="the server's URL")
        text = log.read_text()
        assert proc.poll() is None, text
        url = next(line.split()[1] for line in text.splitlines() if line.startswith("url: "))
        assert url.startswith("http://lockprof@127.0.0.1:")
        assert oct(pw_file.stat().st_mode & 0o777) == "0o600"
        password = pw_file.read_text().strip()
        assert password not in text and password.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        # another client uses it through the printed URL and file
        from lockprof.engines.server import parse_url

        engine = ServerEngine(parse_url(f"{url}?password_file={pw_file}"))
        try:
            assert int(engine.admin.frame("SELECT 1 AS x")["x"].iloc[0]) == 1
            assert engine.info().has_query_log  # the log tables exist from the start
        finally:
            engine.close()
        # an existing password file is never overwritten
        again = lockprof_cli("server", VERSION, "--password-file", str(pw_file))
        assert again.returncode == EngineError.exit_code and "cannot create the password file" in again.stderr
        assert pw_file.read_text().strip() == password
        assert len(listener_pids(tmp)) == 2
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=DEADLINE_S)
        assert proc.returncode == 0, log.read_text()
        wait_for(lambda: listener_pids(tmp) == [], timeout=DEADLINE_S, what="the server to stop")
        assert server_dirs(tmp) == set() and not pw_file.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_an_ab_between_two_launched_servers(python26: Path, tmp_path: Path) -> None:
    """Two genuine servers at once, each with its own process, ports, password and directory, interleaved."""
    out, tmp = tmp_path / "ab", tmp_path / "tmp"
    tmp.mkdir()
    spec = f"server:{VERSION}"
    result = lockprof_cli("run", str(TINY), "--engine", spec, "--engine", spec, "--repetitions", "1", "--schema",
                          "day", "--concurrency", "1", "--duration", "0.5", "--warmup", "0", "--out", str(out),
                          env={"TMPDIR": str(tmp)})
    assert result.returncode == 0, result.stderr + result.stdout
    from lockprof.analysis import load_run

    run = load_run(out)
    labels = [e["label"] for e in run.manifest["engines"]]
    assert len(labels) == 2 and len(set(labels)) == 2
    assert all(e["spec"] == spec and e["has_query_log"] for e in run.manifest["engines"])
    measured = run.measured()
    assert set(measured["engine"]) == set(labels) and measured["engine_duration_ms"].notna().all()
    assert lockprof_cli("compare", str(out)).returncode in (0, 5)
    assert server_dirs(tmp) == set() and listener_pids(tmp) == []


def test_lockprof_server_killed_with_9_leaves_no_password_behind(python26: Path, tmp_path: Path) -> None:
    tmp, log = tmp_path / "tmp", tmp_path / "server.log"
    tmp.mkdir()
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "lockprof", "server", VERSION], stdout=f,
                                stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp)},
                                start_new_session=True)
    try:
        wait_for(lambda: "password file:" in log.read_text() or proc.poll() is not None,
                 timeout=DEADLINE_S, what="the server's URL")
        assert proc.poll() is None, log.read_text()
        assert list(tmp.glob("lockprof-password-*/password"))
        proc.kill()  # kill -9: nothing of lockprof's own runs
        proc.wait(timeout=DEADLINE_S)
        wait_for(lambda: not list(tmp.glob("lockprof-password-*")),
                 timeout=DEADLINE_S, what="the password directory to go")
        wait_for(lambda: not listener_pids(tmp), timeout=DEADLINE_S, what="the server to go")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_preflight_bound_holds_on_a_server_against_a_querys_own_time_limit(python26: Path, tmp_path: Path) -> None:
    """On a server no watchdog cancels a level's queries (it may be shared), yet the preflight cancels its own
    statement, by an id no one else uses, once it outlives its bound: a query that lifts max_execution_time in
    its own SETTINGS and would take 600 s is stopped before measuring starts."""
    slow = ('SELECT sleepEachRow(0.1) FROM numbers(6000) SETTINGS max_block_size = 1, max_execution_time = 900')
    scenario = tmp_path / "slow.py"
    scenario.write_text(TINY.read_text() + "\nimport dataclasses\nfrom lockprof import Query\n"
                        f"scenario = dataclasses.replace(scenario, queries=[Query('slow', {slow!r})])\n")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        args = ["run", str(scenario), "--engine", f"server:{VERSION}", "--concurrency", "1", "--duration", "0.3",
                "--warmup", "0.1", "--schema", "day", "--samplers", "off", "--out", str(tmp_path / "run")]
        proc = subprocess.Popen([sys.executable, "-m", "lockprof", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # the progress line of the first level appears only once the preflight has returned
        wait_for(lambda: "c=1" in log.read_text() or proc.poll() is not None, what="the first level to start",
                 timeout=300.0)
        assert "c=1" in log.read_text(), log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=DEADLINE_S)
