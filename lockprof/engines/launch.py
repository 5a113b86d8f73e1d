"""Launching a ClickHouse build: ``--engine binary:/path/to/clickhouse``.

The worker starts the binary as a private local server: a generated config in a
temporary directory (its own data path, free loopback ports, query_log,
query_thread_log and trace_log on, a passwordless ``default`` user reachable
from loopback only), waits until ``/ping`` answers, and talks to it as a server engine. The server
is always stopped and its directory removed: on close, at interpreter exit, and
(through the kernel's parent-death signal) if the worker itself dies. It runs
in its own session, so a Ctrl-C meant for the run does not stop it mid-level.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import re
import signal
import socket
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

from lockprof.engines.base import EngineInfo, EngineSpec
from lockprof.engines.process import OwnedServer, OwnedServerEngine
from lockprof.engines.server import declared
from lockprof.errors import EngineError

READY_TIMEOUT_S = 60.0
_LOG_TABLES = ("query_log", "query_thread_log", "trace_log")


def parse_spec(text: str) -> EngineSpec:
    """``binary:PATH``: that ClickHouse build, which the worker launches as a private server."""
    binary = Path(text[len("binary:"):]).expanduser()
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise EngineError(f"{binary}: no executable ClickHouse binary there")
    binary = binary.resolve()
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", f"bin-{binary.parent.name}-{binary.name}")
    return EngineSpec("binary", label, {"binary": str(binary)}, f"binary:{binary}", declared())


def open_engine(request: dict[str, Any]) -> LaunchedEngine:
    return LaunchedEngine(Path(request["binary"]))


def free_port() -> int:
    """A port free on loopback now, for a config that must name it before its server starts.

    It is chosen below the kernel's ephemeral range: the ports the kernel hands out by itself, to every
    listener on port 0 (another replica's HTTP port) and to every outgoing connection, come from that
    range, so one chosen there could be taken before its server starts. Where nothing lies below the
    range, the kernel chooses.
    """
    high = ephemeral_range()[0]
    low = max(1024, high - 16384)
    rng = random.SystemRandom()
    for _ in range(100 if low < high else 1):
        port = rng.randrange(low, high) if low < high else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use (or just closed): try another
                continue
            return int(s.getsockname()[1])
    raise EngineError(f"no free port on 127.0.0.1 between {low} and {high}")


def ephemeral_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    """The ports the kernel picks from by itself (Linux's default when it does not say)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def binary_version(binary: Path) -> tuple[int, ...]:
    """The version a binary reports, (0,) if it does not say; decides the config dialect."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"{binary} does not run: {exc}") from None
    m = re.search(r"version (\d+)\.(\d+)", out.stdout + out.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0,)


def server_config(root: Path, http_port: int, tcp_port: int, modern: bool) -> tuple[str, str]:
    """(config.xml, users.xml) for a private server under ``root``."""
    tag = "clickhouse" if modern else "yandex"  # releases before 21.x only read <yandex>
    logs = "".join(
        f"<{t}><database>system</database><table>{t}</table>"
        f"<flush_interval_milliseconds>1000</flush_interval_milliseconds></{t}>"
        for t in _LOG_TABLES
    )
    config = f"""<{tag}>
    <logger><level>information</level><log>{root}/log/server.log</log><errorlog>{root}/log/error.log</errorlog>
        <console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <mlock_executable>false</mlock_executable>
    {logs}
</{tag}>
"""
    introspection = "<allow_introspection_functions>1</allow_introspection_functions>" if modern else ""
    access = "<access_management>1</access_management>" if modern else ""
    users = f"""<{tag}>
    <profiles><default>{introspection}</default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
        <profile>default</profile><quota>default</quota>{access}</default></users>
    <quotas><default></default></quotas>
</{tag}>
"""
    return config, users


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills the server if the worker dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalServer(OwnedServer):
    """One private server process of a ClickHouse binary and its directory."""

    def __init__(self, binary: Path) -> None:
        super().__init__()
        self.binary = Path(binary)
        self.name = str(self.binary)
        self.log_files = ("stderr.log", "error.log")

    def start(self, ready_timeout_s: float = READY_TIMEOUT_S) -> LocalServer:
        modern = binary_version(self.binary) >= (21, 0)

        def popen(root: Path) -> subprocess.Popen:
            for sub in ("data", "tmp", "log", "user_files", "format_schemas"):
                (root / sub).mkdir()
            self.http_port, tcp_port = free_port(), free_port()
            config, users = server_config(root, self.http_port, tcp_port, modern)
            (root / "config.xml").write_text(config)
            (root / "users.xml").write_text(users)
            args = [str(self.binary)]
            if self.binary.name == "clickhouse":  # the multi-tool binary of a build
                args.append("server")
            args.append(f"--config-file={root / 'config.xml'}")
            return subprocess.Popen(
                args, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=open(root / "log" / "stderr.log", "wb"),  # noqa: SIM115  (closed by the child's exit)
                start_new_session=True, preexec_fn=_die_with_parent,
            )

        self.launch("lockprof-server-", popen, ready_timeout_s)
        return self


class LaunchedEngine(OwnedServerEngine):
    """A server engine on a binary lockprof started; closing it stops and removes the server."""

    def __init__(self, binary: Path) -> None:
        super().__init__(LocalServer(binary).start(), password="")

    def info(self) -> EngineInfo:
        return replace(super().info(), package=f"binary {self.server.binary}")
