"""Reading system tables from one server, or from every replica of a cluster.

Every sampler writes its query once, as a plain SELECT over ``system.*`` that names
its replica with the ``{replica}`` placeholder, and :func:`on_replicas` makes it
either

- one server: ``{replica}`` becomes ``''`` (so runs of one server and of the
  embedded engine carry an empty ``replica`` column), or
- a cluster: ``{replica}`` becomes ``displayName()`` and the whole SELECT runs on every
  replica as ``SELECT * FROM clusterAllReplicas('NAME', view(SELECT …))``.

The whole SELECT goes inside ``view()`` rather than only the table
(``clusterAllReplicas('NAME', system.events)``) so that everything in it is
computed on the replica that holds the rows: ``displayName()`` names that replica
(its ``display_name`` setting, else its FQDN: servers sharing a host differ only there),
and in the trace_log reader ``addressToSymbol`` resolves addresses in that
replica's own process and binary, and the GROUP BY happens there too. With only
the table wrapped, expressions over grouping keys may be computed on the
initiator after the merge, which would symbolize another process's addresses.
Settings such as ``allow_introspection_functions`` go on the outer query, which
passes them on to every replica.
"""

from __future__ import annotations

import re

from lockprof.engines.base import Connection
from lockprof.errors import LockprofError

REPLICA = "{replica}"
# Cluster names in remote_servers are XML element names; anything else is refused rather than quoted.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def check_name(cluster: str | None) -> str | None:
    """The cluster name if it can be a remote_servers entry; None stays None (one server)."""
    if cluster is None or cluster == "":
        return None
    if not _NAME.match(cluster):
        raise LockprofError(f"--cluster {cluster!r} is not a cluster name (letters, digits, _ . -)")
    return cluster


def on_replicas(select: str, cluster: str | None = None, settings: str = "") -> str:
    """``select`` (with its ``{replica}`` placeholder) for one server or for every replica of ``cluster``."""
    select = select.strip().rstrip(";")
    if check_name(cluster) is None:
        sql = select.replace(REPLICA, "''")
    else:
        sql = f"SELECT * FROM clusterAllReplicas('{cluster}', view({select.replace(REPLICA, 'displayName()')}))"
    return f"{sql}\nSETTINGS {settings}" if settings else sql


def check_cluster(conn: Connection, cluster: str) -> int:
    """Number of replicas the server knows for ``cluster``; a clear error when it knows none."""
    check_name(cluster)
    found = conn.frame("SELECT count() AS n FROM system.clusters WHERE cluster = {c:String}", {"c": cluster})
    replicas = int(found["n"].iloc[0]) if not found.empty else 0
    if replicas == 0:
        known = conn.frame("SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster")
        names = ", ".join(known["cluster"].astype(str)) or "none"
        raise LockprofError(f"the server has no cluster {cluster!r} in system.clusters (it knows: {names}); "
                            "give --cluster one of those names")
    return replicas
