"""Launched local servers: ``--engine server:26.9`` runs a genuine ClickHouse server of that version.

chDB releases from 26.7 on contain clickhouse-local's network listener, so a
managed environment (see :mod:`lockprof.engines.managed`) can serve ClickHouse's
HTTP and native protocols from its own process (:mod:`lockprof.engines.listener`).
The scenario then runs through the same clickhouse-connect engine as a remote URL.

Each server gets a private directory (config, data, logs), OS-assigned loopback
ports and two users: ``lockprof``, with a password generated here and kept only
in memory (users.xml holds its SHA-256), and the password-less ``default`` that
chDB's in-process session must use, which may only start listeners and read
``system.numbers``. The server is stopped and its directory removed on close, at
interpreter exit, and by the server process itself when its launcher dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lockprof import reaper
from lockprof.engines import managed
from lockprof.engines.base import EngineInfo, EngineSpec
from lockprof.engines.listener import PORTS_FILE
from lockprof.engines.process import OwnedServer, OwnedServerEngine
from lockprof.engines.server import ServerEngine, ServerTarget, declared
from lockprof.errors import EngineError

SPEC_PREFIX = "server:"
USER = "lockprof"
READY_TIMEOUT_S = 120.0  # a busy 2-core machine; startup takes ~1 s when idle
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# Which pinned versions have the listener, found by launching each (see docs/servers.md, "Launched servers").
# 26.1 to 26.5 answer "SYSTEM START LISTEN query is not supported in clickhouse-local".
NO_LISTENER = {
    "25.8": "chdb 4.0.2 (ClickHouse 25.8) has no network listener",
    "26.1": "chdb-core 26.1.0 has no network listener",
    "26.3": "chdb-core 26.3.0 has no network listener",
    "26.5": "chdb-core 26.5.0 has no network listener",
}


LAUNCHABLE = [v for v in managed.known_versions() if v not in NO_LISTENER]
SYNTAX = f"{SPEC_PREFIX}VERSION ({', '.join(LAUNCHABLE)})"


def parse_spec(text: str) -> EngineSpec:
    """``server:VERSION`` -> an EngineSpec whose worker runs here and whose server runs in VERSION's environment."""
    version = text[len(SPEC_PREFIX):].strip()
    managed.release_for(version)  # an unknown version: the error lists the known ones
    if version in NO_LISTENER:
        launchable = ", ".join(f"{SPEC_PREFIX}{v}" for v in LAUNCHABLE)
        raise EngineError(f"cannot launch a server of ClickHouse {version}: {NO_LISTENER[version]}. "
                          f"Launchable: {launchable}; or use --engine {version} (embedded)")
    return EngineSpec("server", f"server-{version}", {"version": version}, f"{SPEC_PREFIX}{version}", declared())


def prepare(spec: EngineSpec, progress: Callable[[str], None] | None) -> EngineSpec:
    """The spec with the Python of the version's environment, which runs the server (built first if missing)."""
    env = managed.ensure_env(spec.options["version"], progress=progress)
    return replace(spec, options={**spec.options, "server_python": str(env.python)})


def config_xml(root: Path, tcp_port: int = 0, extra: str = "") -> str:
    """The server's config: loopback only, ports 0 (the kernel picks) unless a cluster needs its native
    port known in advance, query_log, query_thread_log and trace_log flushed every second; ``extra``: more
    elements (display_name, remote_servers)."""
    logs = "".join(
        f"<{t}><database>system</database><table>{t}</table>"
        f"<flush_interval_milliseconds>1000</flush_interval_milliseconds></{t}>"
        for t in ("query_log", "query_thread_log", "trace_log")
    )
    return f"""<clickhouse>
    <listen_host>127.0.0.1</listen_host>
    <http_port>0</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <users_config>{root}/users.xml</users_config>
    {logs}
    {extra}
</clickhouse>
"""


def users_xml(password: str, extra_users: str = "") -> str:
    """Users: ``lockprof`` (full rights, by password), the in-process ``default`` (listeners only),
    and ``extra_users`` (XML of more ``<users>`` entries, e.g. one with fewer grants)."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    loopback = "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>"
    return f"""<clickhouse>
    <profiles><default><allow_introspection_functions>1</allow_introspection_functions></default></profiles>
    <users>
        <{USER}><password_sha256_hex>{digest}</password_sha256_hex>{loopback}
            <profile>default</profile><quota>default</quota><access_management>1</access_management></{USER}>
        <default><password></password>{loopback}<profile>default</profile><quota>default</quota>
            <grants><query>GRANT SYSTEM LISTEN ON *.*</query><query>GRANT SELECT ON system.numbers</query></grants>
        </default>{extra_users}
    </users>
    <quotas><default></default></quotas>
</clickhouse>
"""


class ChdbServer(OwnedServer):
    """One launched server process of a managed environment, and its directory."""

    def __init__(self, python: str | Path, version: str) -> None:
        super().__init__()
        self.python = str(python)
        self.version = version
        self.name = f"the ClickHouse {version} server"
        self.user = USER
        self.tcp_port = 0

    def start(self, password: str, ready_timeout_s: float = READY_TIMEOUT_S, extra_users: str = "",
              tcp_port: int = 0, config_extra: str = "") -> ChdbServer:
        def popen(root: Path) -> subprocess.Popen:
            for sub in ("data", "tmp", "user_files", "log"):
                (root / sub).mkdir()
            config = root / "config.xml"
            config.touch(mode=0o600)  # a cluster's inter-server secret may be in it
            config.write_text(config_xml(root, tcp_port, config_extra))
            users = root / "users.xml"
            users.touch(mode=0o600)
            users.write_text(users_xml(password, extra_users))
            env = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONHOME", "VIRTUAL_ENV", "LOCKPROF_PASSWORD", "LOCKPROF_PASSWORD_FILE")}
            env["PYTHONPATH"] = str(PACKAGE_ROOT)  # the listener module only; it imports nothing else of lockprof
            with open(root / "log" / "stderr.log", "wb") as log:
                return subprocess.Popen(
                    [self.python, "-m", "lockprof.engines.listener", str(root)],
                    stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=root, env=env,
                    start_new_session=True,  # a Ctrl-C for the run reaches the launcher, which stops it in order
                )

        self.launch("lockprof-chserver-", popen, ready_timeout_s)
        return self

    def find_port(self) -> int:
        """The ports the kernel chose, once the listener has written them (in full: a last newline)."""
        if not self.http_port and self.root is not None:
            with contextlib.suppress(OSError, ValueError):
                text = (self.root / PORTS_FILE).read_text()
                if text.endswith("\n"):
                    self.http_port, self.tcp_port = (int(x) for x in text.split())
        return self.http_port

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def flush_logs(self, password: str) -> None:
        """Create the log tables now (a server makes them at its first flush), so a client's first look finds
        query_log."""
        engine = ServerEngine(ServerTarget("http", USER, "127.0.0.1", self.http_port, timeout_s=30.0), password)
        try:
            engine.admin.execute("SYSTEM FLUSH LOGS")
        finally:
            engine.close()

    def ask_to_stop(self, proc: subprocess.Popen) -> None:
        """Close the server's stdin: its supervisor ends the server and removes the directory itself."""
        if proc.stdin is not None:
            proc.stdin.close()


class LaunchedServerEngine(OwnedServerEngine):
    """A server engine on a server lockprof launched; closing it stops the server and removes its directory."""

    def __init__(self, version: str, python: str | Path) -> None:
        password = secrets.token_urlsafe(24)
        super().__init__(ChdbServer(python, version).start(password), password, timeout_s=30.0)

    def info(self) -> EngineInfo:
        return replace(super().info(), package=f"{managed.release_for(self.server.version).pin}, launched server")


def open_engine(request: dict[str, Any]) -> LaunchedServerEngine:
    return LaunchedServerEngine(request["version"], request["server_python"])


@contextlib.contextmanager
def launched(version: str, password_file: Path | None = None,
             progress: Any = None) -> Iterator[tuple[ChdbServer, Path]]:
    """A launched server for the user's own clients, and the file holding its password (mode 0600).

    The file is the only place the password exists outside this process; it is
    created fresh (an existing file is never overwritten) and removed with the server.
    """
    spec = prepare(parse_spec(f"{SPEC_PREFIX}{version}"), progress)
    password = secrets.token_urlsafe(24)
    holder = None if password_file else Path(tempfile.mkdtemp(prefix="lockprof-password-"))
    path = Path(password_file) if password_file else holder / "password"  # type: ignore[operator]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        reaper.watch(holder or path)  # the password goes with lockprof, even killed with -9
    except OSError as exc:
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)
        reaper.release(holder or path)
        raise EngineError(f"cannot create the password file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        server = ChdbServer(spec.options["server_python"], version).start(password)
        try:
            server.flush_logs(password)
            yield server, path
        finally:
            server.stop()
    finally:
        path.unlink(missing_ok=True)
        if holder is not None:
            shutil.rmtree(holder, ignore_errors=True)
        reaper.release(holder or path)
