"""Gauges from ``system.metrics`` (threads waiting on RWLocks, the Context lock, queries running)."""

from __future__ import annotations

from lockprof.dirformat.tables import METRICS
from lockprof.samplers.cluster import on_replicas
from lockprof.samplers.polling import PollingSampler

SQL = "SELECT {replica} AS replica, metric, value FROM system.metrics"
TABLE = METRICS


class MetricsSampler(PollingSampler):
    name = "metrics"
    table = TABLE

    def poll(self) -> None:
        snap = self.conn.frame(on_replicas(SQL, self.cluster))
        t = self.clock.now()
        for replica, name, value in zip(snap["replica"].astype(str), snap["metric"].astype(str),
                                        snap["value"].astype("int64")):
            # Zero gauges are the common case; lock gauges are kept even at zero so a flat line shows.
            if value or "Lock" in name:
                self.rows.append({"t_s": t, "metric": name, "value": int(value), "replica": replica})
