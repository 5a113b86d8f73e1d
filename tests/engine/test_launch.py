"""Launching a ClickHouse binary as a private local server: config, ports, readiness, shutdown, cleanup.

Verified with Debian's clickhouse-server 18.16 (apt-get install clickhouse-server), which is
also the "server too old" case for clickhouse-connect; skipped with a reason without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, TINY, lockprof_cli

from lockprof.engines.launch import LocalServer, server_config
from lockprof.engines.registry import open_engine, parse_spec
from lockprof.errors import EngineError

BINARY = shutil.which("clickhouse-server") or shutil.which("clickhouse") or "/usr/sbin/clickhouse-server"
needs_binary = pytest.mark.skipif(
    not Path(BINARY).is_file(),
    reason="no ClickHouse server binary here (Debian: apt-get install clickhouse-server)",
)


def _server_dirs(tmp: Path) -> set[Path]:
    """Launched servers' directories under ``tmp``: a test that counts them gives its lockprof a temporary
    directory of its own, since other test runs on this machine share the default one."""
    return set(tmp.glob("lockprof-server-*"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


def _server_processes(roots: set[Path]) -> list[int]:
    """Processes whose command line names one of these server directories."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(str(root) in text for root in roots) and "clickhouse" in text:
            pids.append(int(cmdline.parent.name))
    return pids


def test_config_dialect_follows_the_binary_version(tmp_path: Path) -> None:
    old, old_users = server_config(tmp_path, 18123, 19000, modern=False)
    new, new_users = server_config(tmp_path, 18123, 19000, modern=True)
    assert old.startswith("<yandex>") and new.startswith("<clickhouse>")
    for text in (old, new):
        assert "<http_port>18123</http_port>" in text and "<listen_host>127.0.0.1</listen_host>" in text
        assert "<query_log>" in text and "<trace_log>" in text and f"<path>{tmp_path}/data/</path>" in text
    assert "allow_introspection_functions" in new_users and "allow_introspection_functions" not in old_users


@needs_binary
def test_launch_lifecycle_config_ports_readiness_shutdown_cleanup() -> None:
    server = LocalServer(Path(BINARY)).start()
    root, pid, port = server.root, server.proc.pid, server.http_port
    try:
        assert root is not None and (root / "config.xml").is_file()
        assert server.ping()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?query=SELECT%201", timeout=5) as r:
            assert r.read().strip() == b"1"
        assert (root / "data").is_dir()
    finally:
        server.stop()
    assert not _alive(pid)
    assert not root.exists()
    server.stop()  # idempotent


@needs_binary
def test_a_server_too_old_for_the_client_is_one_clear_error_and_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    spec = parse_spec(f"binary:{BINARY}")
    assert spec.public_spec == f"binary:{Path(BINARY).resolve()}"
    with pytest.raises(EngineError, match=r"ClickHouse 18\.16.* is too old.*22\.8"):
        open_engine(spec.as_request())
    assert _server_dirs(tmp_path) == set()


@needs_binary
def test_a_run_on_a_too_old_binary_exits_3_and_leaves_no_server_behind(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    result = lockprof_cli("run", str(TINY), "--engine", f"binary:{BINARY}", "--duration", "0.2",
                          "--out", str(tmp_path / "run"), timeout=120, env={"TMPDIR": str(tmp)})
    assert result.returncode == 3, result.stderr
    assert "too old" in result.stderr
    assert not (tmp_path / "run").exists()
    assert _server_dirs(tmp) == set() and _server_processes({tmp}) == []


@needs_binary
def test_the_server_dies_with_a_killed_worker() -> None:
    code = (
        "import sys, time; from pathlib import Path; from lockprof.engines.launch import LocalServer\n"
        f"s = LocalServer(Path({BINARY!r})).start(); print(s.proc.pid, s.root, flush=True); time.sleep(60)\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pid_text, root_text = worker.stdout.readline().split()
    pid, root = int(pid_text), Path(root_text)
    try:
        assert _alive(pid)
        worker.send_signal(signal.SIGKILL)  # no cleanup code runs: only the kernel's parent-death signal
        worker.wait()
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # a SIGKILLed worker cannot remove it; the server is gone
