"""Genuine ClickHouse servers for the tests: chDB 26.9's own listener, launched as ``--engine server:26.9`` does.

The managed 26.9 environment is built in the test session's cache and sees the
chDB of the test environment through a .pth file, so pip downloads nothing (as in
test_managed_engines). :func:`serve_real` yields what the HTTP emulator's ``serve``
yields (port, password, url, process), so a test module switches by its fixture.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import site
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lockprof.engines import managed
from lockprof.engines.local_server import USER, ChdbServer

VERSION = "26.9"
LIMITED = "limited"  # same password; may read everything but system.trace_log, and has no INTROSPECTION grant


def current_site_packages() -> list[Path]:
    import chdb

    paths = {Path(sysconfig.get_paths()["purelib"]), Path(chdb.__file__).resolve().parent.parent}
    return sorted(p for p in paths | {Path(p) for p in site.getsitepackages()} if p.is_dir())


def server_python(version: str = VERSION) -> Path:
    """The managed environment's Python (built once per test cache)."""
    return managed.ensure_env(version, base_site_packages=current_site_packages()).python


def limited_user(password: str) -> str:
    digest = hashlib.sha256(password.encode()).hexdigest()
    return (f"<{LIMITED}><password_sha256_hex>{digest}</password_sha256_hex>"
            "<networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota>"
            "<grants><query>GRANT SELECT ON *.*</query><query>REVOKE SELECT ON system.trace_log</query></grants>"
            f"</{LIMITED}>")


@dataclass
class RealServer:
    server: ChdbServer
    password: str

    @property
    def port(self) -> int:
        return self.server.http_port

    @property
    def url(self) -> str:
        return f"http://{USER}@127.0.0.1:{self.port}"

    @property
    def process(self):
        return self.server.proc


@contextlib.contextmanager
def serve_real(password: str, version: str = VERSION) -> Iterator[RealServer]:
    """A launched real server for the ``with`` block; its log tables exist (flushed once) when it is yielded."""
    server = ChdbServer(server_python(version), version).start(password, extra_users=limited_user(password))
    try:
        server.flush_logs(password)
        yield RealServer(server, password)
    finally:
        server.stop()


def server_dirs(tmp: Path | None = None) -> set[Path]:
    """Launched servers' directories under ``tmp`` (default: the temporary directory)."""
    return set(Path(tmp or tempfile.gettempdir()).glob("lockprof-chserver-*"))


def listener_pids(under: Path) -> list[int]:
    """Live listener processes whose command line names a directory under ``under``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
            state = (cmdline.parent / "status").read_text()
        except OSError:
            continue
        if "lockprof.engines.listener" in text and str(under) in text and "\nState:\tZ" not in state:
            pids.append(int(cmdline.parent.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


@contextlib.contextmanager
def serve_real_cluster(password: str, name: str, replicas: int = 3,
                       version: str = VERSION) -> Iterator[list[RealServer]]:
    """``replicas`` launched real servers forming cluster ``name`` (see lockprof.engines.local_cluster)."""
    from lockprof.engines.local_cluster import local_cluster

    with local_cluster(server_python(version), version, password, name, replicas) as servers:
        for server in servers:
            server.flush_logs(password)
        yield [RealServer(s, password) for s in servers]


@contextlib.contextmanager
def client_load(served: RealServer) -> Iterator[None]:
    """Another client's small queries against a server while the block runs, for observe and samplers to see."""
    import threading
    import time

    import clickhouse_connect

    stop = threading.Event()

    def loop() -> None:
        client = clickhouse_connect.get_client(host="127.0.0.1", port=served.port, username=USER,
                                               password=served.password, autogenerate_session_id=False)
        while not stop.is_set():
            client.query("SELECT count() FROM numbers(10000)")
            time.sleep(0.02)  # a pace for the other client, not a wait for a condition
        client.close()

    loader = threading.Thread(target=loop)
    loader.start()
    try:
        yield
    finally:
        stop.set()
        loader.join()
