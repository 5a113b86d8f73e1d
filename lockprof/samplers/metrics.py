"""Gauges from ``system.metrics`` (threads waiting on RWLocks, the Context lock, queries running)."""

from __future__ import annotations

from lockprof.samplers.polling import PollingSampler


class MetricsSampler(PollingSampler):
    columns = ("t_s", "metric", "value")

    def poll(self) -> None:
        snap = self.conn.frame("SELECT metric, value FROM system.metrics")
        t = self.clock.now()
        for name, value in zip(snap["metric"].astype(str), snap["value"].astype("int64")):
            # Zero gauges are the common case; lock gauges are kept even at zero so a flat line shows.
            if value or "Lock" in name:
                self.rows.append({"t_s": t, "metric": name, "value": int(value)})
