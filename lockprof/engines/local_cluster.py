"""A real ClickHouse cluster on one machine: several launched servers that name each other.

Each replica is a launched server (:mod:`lockprof.engines.local_server`) with the
same generated password, its own ``display_name`` (``replica1``, ``replica2``, …:
on one host ``hostName()`` is the same for all, so ``--cluster`` names replicas by
``displayName()``) and a ``remote_servers`` entry listing every replica's native
port. Those ports must be in the config before the servers start, so they are
chosen free on loopback first, below the kernel's ephemeral range so that no
replica's automatic port takes them in between. Replicas authenticate to each other with
a per-cluster inter-server ``secret``, so the user's password is in no config.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from lockprof.engines.launch import free_port
from lockprof.engines.local_server import ChdbServer


def remote_servers(name: str, ports: list[int], secret: str) -> str:
    replicas = "".join(f"<replica><host>127.0.0.1</host><port>{p}</port></replica>" for p in ports)
    return f"<remote_servers><{name}><secret>{secret}</secret><shard>{replicas}</shard></{name}></remote_servers>"


@contextlib.contextmanager
def local_cluster(python: str | Path, version: str, password: str, name: str = "lockprof_cluster",
                  replicas: int = 3, extra_users: str = "") -> Iterator[list[ChdbServer]]:
    """``replicas`` launched servers forming cluster ``name``; all are stopped and removed on exit."""
    ports = [free_port() for _ in range(replicas)]
    cluster = remote_servers(name, ports, secrets.token_urlsafe(24))
    servers: list[ChdbServer] = []
    try:
        for i, port in enumerate(ports, start=1):
            server = ChdbServer(python, version)
            servers.append(server)
            server.start(password, extra_users=extra_users, tcp_port=port,
                         config_extra=f"<display_name>replica{i}</display_name>{cluster}")
        yield servers
    finally:
        for server in servers:
            server.stop()
