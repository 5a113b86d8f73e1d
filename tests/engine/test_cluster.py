"""--cluster: the generated SQL, per-replica deltas with known answers, and the samplers, observe and a run end
to end against a real cluster: three genuine ClickHouse 26.9 servers launched on loopback whose remote_servers
name each other (tests/launched.py), each with its own display name and its own counters.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import TINY, lockprof_cli
from launched import client_load, serve_real_cluster

from lockprof.clock import RunClock
from lockprof.engines.server import ServerEngine, ServerTarget
from lockprof.errors import LockprofError
from lockprof.samplers import EventsSampler, MetricsSampler, QueryLogReader
from lockprof.samplers.cluster import check_cluster, on_replicas
from lockprof.samplers.trace_log import TraceLogReader, stacks_sql

PASSWORD = "Clu-pw-8q2z-not-in-files"
CLUSTER = "lockprof_three"
REPLICAS = ("replica1", "replica2", "replica3")


def test_one_server_reads_system_tables_directly_with_an_empty_replica() -> None:
    sql = on_replicas("SELECT {replica} AS replica, name, value FROM system.events")
    assert sql == "SELECT '' AS replica, name, value FROM system.events"


def test_a_cluster_runs_the_whole_select_on_every_replica_named_by_its_host() -> None:
    sql = on_replicas("SELECT {replica} AS replica, name, value FROM system.events", "c1")
    assert sql == ("SELECT * FROM clusterAllReplicas('c1', view(SELECT displayName() AS replica, name, value "
                   "FROM system.events))")
    # symbolization and grouping inside the view (on the replica); the introspection setting outside
    stacks = stacks_sql(cluster="c1")
    assert stacks.startswith("SELECT * FROM clusterAllReplicas('c1', view(SELECT displayName() AS replica,")
    assert stacks.index("addressToSymbol") < stacks.index("))\nSETTINGS allow_introspection_functions = 1")
    assert stacks.rstrip().endswith("SETTINGS allow_introspection_functions = 1")


@pytest.mark.parametrize("name", ["a'b", "x) UNION SELECT 1 --", "two words"])
def test_a_cluster_name_that_could_not_be_one_is_refused(name: str) -> None:
    with pytest.raises(LockprofError, match="not a cluster name"):
        on_replicas("SELECT {replica} AS replica FROM system.one", name)


class FakeCluster:
    """A connection answering the events query with each replica's own counters, replicas interleaved."""

    def __init__(self, snapshots: list[dict[str, dict[str, int]]]) -> None:
        self.snapshots = snapshots
        self.sql: list[str] = []

    def frame(self, sql: str, params=None) -> pd.DataFrame:
        self.sql.append(sql)
        snap = self.snapshots.pop(0)
        rows = [(r, n, v) for n in ("Query", "SelectQuery") for r, counters in snap.items() if n in counters
                for v in [counters[n]]]
        return pd.DataFrame(rows, columns=["replica", "name", "value"])


def test_events_deltas_are_taken_per_replica() -> None:
    conn = FakeCluster([
        {"a": {"Query": 10, "SelectQuery": 5}, "b": {"Query": 1000, "SelectQuery": 900}},
        {"a": {"Query": 13, "SelectQuery": 5}, "b": {"Query": 1007, "SelectQuery": 901}},
        {"b": {"Query": 1010, "SelectQuery": 901}},  # a did not answer this time
        {"a": {"Query": 20, "SelectQuery": 6}, "b": {"Query": 1010, "SelectQuery": 903}},
    ])
    sampler = EventsSampler(conn, RunClock(), cluster="c1")
    for _ in range(4):
        sampler.poll()
    frame = sampler.frame()
    got = {(r, e): list(g["delta"]) for (r, e), g in frame.groupby(["replica", "event"])}
    assert got == {("a", "Query"): [3, 7], ("a", "SelectQuery"): [1], ("b", "Query"): [7, 3],
                   ("b", "SelectQuery"): [1, 2]}
    # a's last interval spans the poll it missed
    a_rows = frame[frame["replica"] == "a"]
    assert a_rows["interval_s"].iloc[-1] > frame[frame["replica"] == "b"]["interval_s"].iloc[-1]
    assert sampler.totals() == {"Query": 20, "SelectQuery": 4}
    assert all("clusterAllReplicas('c1'" in sql for sql in conn.sql)


def _engine(served) -> ServerEngine:
    return ServerEngine(ServerTarget("http", "lockprof", "127.0.0.1", served.port), password=PASSWORD)


@pytest.fixture(scope="module")
def cluster():
    with serve_real_cluster(PASSWORD, CLUSTER, len(REPLICAS)) as servers:
        yield servers


@contextlib.contextmanager
def load_on_every_replica(servers):
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(client_load(server))
        yield


def test_the_cluster_sql_runs_on_a_real_cluster(cluster) -> None:
    """No emulation: the replicas run clusterAllReplicas among themselves over the native protocol."""
    engine = _engine(cluster[0])
    try:
        conn = engine.connect()
        assert check_cluster(conn, CLUSTER) == len(REPLICAS)
        with pytest.raises(LockprofError, match=f"no cluster 'nope'.*{CLUSTER}"):
            check_cluster(conn, "nope")
        clock = RunClock()
        with load_on_every_replica(cluster), EventsSampler(conn, clock, 0.1, CLUSTER) as events, \
                MetricsSampler(engine.connect(), clock, 0.1, CLUSTER) as metrics:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(events.frame()["t_s"].unique()) < 4:
                time.sleep(0.1)
        assert events.error is None and metrics.error is None
        assert set(events.frame()["replica"]) == set(REPLICAS)
        assert set(metrics.frame()["replica"]) == set(REPLICAS)
        # every replica's own counters moved: each served its own client's queries
        moved = events.frame().query("event == 'Query'").groupby("replica")["delta"].sum()
        assert set(moved.index) == set(REPLICAS) and (moved > 0).all(), moved
        # the query_log and trace_log queries are accepted (trace_log stays empty in these builds)
        QueryLogReader(engine.admin, CLUSTER).read("no-such-prefix-")
        stacks = TraceLogReader(engine.admin, cluster=CLUSTER).read("no-such-prefix-")
        assert stacks.empty and "replica" in stacks.columns
    finally:
        engine.close()


def test_observe_with_cluster_records_every_replica_with_its_own_deltas(cluster, tmp_path: Path) -> None:
    out = tmp_path / "observed"
    # --settle: the server flushes its query_log every second; 4 s leave a loaded machine room to do it
    with load_on_every_replica(cluster):
        result = lockprof_cli("observe", "--engine", cluster[0].url, "--cluster", CLUSTER, "--duration", "2",
                              "--interval", "0.5", "--settle", "4", "--out", str(out),
                              env={"LOCKPROF_PASSWORD": PASSWORD}, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"cluster {CLUSTER} ({len(REPLICAS)} replicas)" in result.stdout
    from lockprof.analysis import load_run

    run = load_run(out)
    assert run.manifest["parameters"]["cluster"] == CLUSTER
    assert run.levels["sampler_errors"].isna().all(), run.levels["sampler_errors"].iloc[0]
    for table in (run.events, run.metrics, run.measured(), run.query_events):
        assert set(table["replica"]) == set(REPLICAS)
    # each replica's deltas come from its own snapshots: one row per replica, event and poll
    ev = run.events
    assert not ev.duplicated(["replica", "event", "t_s"]).any()
    queries = ev[ev["event"] == "Query"].groupby("replica")["delta"].sum()
    assert set(queries.index) == set(REPLICAS) and (queries > 5).all(), queries
    assert lockprof_cli("report", str(out), timeout=300).returncode == 0


def test_run_with_cluster_records_the_replica_and_refuses_the_embedded_engine(cluster, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = lockprof_cli("run", str(TINY), "--engine", cluster[0].url, "--cluster", CLUSTER, "--concurrency", "1",
                          "--duration", "0.5", "--warmup", "0", "--out", str(out),
                          env={"LOCKPROF_PASSWORD": PASSWORD}, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    from lockprof.analysis import load_run

    run = load_run(out)
    assert run.manifest["parameters"]["cluster"] == CLUSTER
    assert set(run.events["replica"]) == set(REPLICAS)
    # the scenario ran on the connected replica only, so its query_log rows come from there
    assert set(run.query_events["replica"]) == {REPLICAS[0]}
    assert run.measured()["engine_duration_ms"].notna().all()
    embedded = lockprof_cli("run", str(TINY), "--cluster", CLUSTER, "--concurrency", "1", "--duration", "0.2",
                            "--warmup", "0", "--out", str(tmp_path / "embedded"))
    assert embedded.returncode != 0 and "give a server --engine" in embedded.stderr


def test_a_cluster_leaves_no_server_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from launched import listener_pids, server_dirs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with serve_real_cluster(PASSWORD, "lockprof_pair", 2) as servers:
        assert len(server_dirs(tmp_path)) == 2 and len(listener_pids(tmp_path)) == 4  # supervisor + server each
        engine = _engine(servers[1])
        try:
            assert check_cluster(engine.admin, "lockprof_pair") == 2
        finally:
            engine.close()
    assert server_dirs(tmp_path) == set() and listener_pids(tmp_path) == []
