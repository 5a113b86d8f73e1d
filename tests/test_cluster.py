"""--cluster: the generated SQL, per-replica deltas with known answers, the SQL on the real engine (chDB runs
clusterAllReplicas over a remote_servers cluster whose two replicas are itself), and observe / run end to end
against the HTTP test endpoint emulating two named replicas (see tests/chhttp.py for what that emulation is not).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from chhttp import client_load, serve
from conftest import TINY, lockprof_cli

from lockprof.clock import RunClock
from lockprof.engines.server import ServerEngine, ServerTarget
from lockprof.errors import LockprofError
from lockprof.samplers import EventsSampler, MetricsSampler, QueryLogReader
from lockprof.samplers.cluster import check_cluster, on_replicas
from lockprof.samplers.trace_log import TraceLogReader, stacks_sql

PASSWORD = "Clu-pw-8q2z-not-in-files"
CLUSTER = "lockprof_two"
REPLICAS = ("replica-a", "replica-b")


def test_one_server_reads_system_tables_directly_with_an_empty_replica() -> None:
    sql = on_replicas("SELECT {replica} AS replica, name, value FROM system.events")
    assert sql == "SELECT '' AS replica, name, value FROM system.events"


def test_a_cluster_runs_the_whole_select_on_every_replica_named_by_its_host() -> None:
    sql = on_replicas("SELECT {replica} AS replica, name, value FROM system.events", "c1")
    assert sql == ("SELECT * FROM clusterAllReplicas('c1', view(SELECT hostName() AS replica, name, value "
                   "FROM system.events))")
    # symbolization and grouping inside the view (on the replica); the introspection setting outside
    stacks = stacks_sql(cluster="c1")
    assert stacks.startswith("SELECT * FROM clusterAllReplicas('c1', view(SELECT hostName() AS replica,")
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


def test_the_cluster_sql_runs_on_the_real_engine(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No emulation: chDB itself executes clusterAllReplicas on a remote_servers cluster of two local replicas."""
    with serve(tmp_path_factory.mktemp("chcluster"), PASSWORD, cluster=CLUSTER) as served:
        engine = _engine(served)
        try:
            conn = engine.connect()
            assert check_cluster(conn, CLUSTER) == 2
            with pytest.raises(LockprofError, match="no cluster 'nope'.*lockprof_two"):
                check_cluster(conn, "nope")
            clock = RunClock()
            with EventsSampler(conn, clock, 0.1, CLUSTER) as events, \
                    MetricsSampler(engine.connect(), clock, 0.1, CLUSTER) as metrics:
                for _ in range(5):
                    engine.admin.frame("SELECT count() FROM numbers(1000)")
                time.sleep(0.25)
            assert events.error is None and metrics.error is None
            host = engine.admin.frame("SELECT hostName() AS h")["h"].iloc[0]
            assert set(events.frame()["replica"]) == {host} and events.totals().get("Query", 0) > 0
            assert set(metrics.frame()["replica"]) == {host}
            # the two local replicas answer the same rows: twice the rows of system.events
            one = len(engine.admin.frame(on_replicas("SELECT {replica} AS replica, name FROM system.events")))
            both = engine.admin.frame(on_replicas("SELECT {replica} AS replica, name FROM system.events", CLUSTER))
            assert len(both) >= 2 * one > 0
            # the query_log and trace_log queries are accepted (chDB's trace_log stays empty)
            QueryLogReader(engine.admin, CLUSTER).read("no-such-prefix-")
            stacks = TraceLogReader(engine.admin, cluster=CLUSTER).read("no-such-prefix-")
            assert stacks.empty and "replica" in stacks.columns
        finally:
            engine.close()


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory):
    with serve(tmp_path_factory.mktemp("chemulated"), PASSWORD, cluster=CLUSTER, replicas=REPLICAS) as served:
        yield served


def test_observe_with_cluster_records_every_replica_with_its_own_deltas(emulated, tmp_path: Path) -> None:
    out = tmp_path / "observed"
    # --settle: the endpoint flushes its query_log every second; 4 s leave a loaded machine room to do it
    with client_load(emulated):
        result = lockprof_cli("observe", "--engine", emulated.url, "--cluster", CLUSTER, "--duration", "2",
                              "--interval", "0.5", "--settle", "4", "--out", str(out),
                              env={"LOCKPROF_PASSWORD": PASSWORD}, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"cluster {CLUSTER} (2 replicas)" in result.stdout
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
    assert (queries > 5).all()
    # the emulated replicas are one engine under two names, so their deltas agree to within a poll's queries
    assert abs(queries[REPLICAS[0]] - queries[REPLICAS[1]]) <= 0.2 * queries.max()
    assert lockprof_cli("report", str(out), timeout=300).returncode == 0


def test_run_with_cluster_records_the_replica_and_refuses_the_embedded_engine(emulated, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = lockprof_cli("run", str(TINY), "--engine", emulated.url, "--cluster", CLUSTER, "--concurrency", "1",
                          "--duration", "0.5", "--warmup", "0", "--out", str(out),
                          env={"LOCKPROF_PASSWORD": PASSWORD}, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    from lockprof.analysis import load_run

    run = load_run(out)
    assert run.manifest["parameters"]["cluster"] == CLUSTER
    assert set(run.events["replica"]) == set(REPLICAS)
    assert set(run.query_events["replica"]) == set(REPLICAS)
    assert run.measured()["engine_duration_ms"].notna().all()
    embedded = lockprof_cli("run", str(TINY), "--cluster", CLUSTER, "--concurrency", "1", "--duration", "0.2",
                            "--warmup", "0", "--out", str(tmp_path / "embedded"))
    assert embedded.returncode != 0 and "give a server --engine" in embedded.stderr
