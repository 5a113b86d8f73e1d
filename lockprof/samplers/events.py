"""Deltas of ``system.events`` counters over each polling interval.

The counters are process-wide, so they include the samplers' own queries; the
per-query figures from ``query_log`` do not, and the analysis prefers them. On a
cluster every replica's counters are read in one query, and each replica's deltas
are taken against that replica's previous snapshot: counters of different
processes are never subtracted from each other.
"""

from __future__ import annotations

from lockprof.dirformat.tables import EVENTS
from lockprof.samplers.cluster import on_replicas
from lockprof.samplers.polling import PollingSampler

SQL = "SELECT {replica} AS replica, name, value FROM system.events"
TABLE = EVENTS


class EventsSampler(PollingSampler):
    name = "events"
    table = TABLE

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sql = on_replicas(SQL, self.cluster)
        self._last: dict[str, tuple[float, dict[str, int]]] = {}  # replica -> (time, counters) of its last snapshot

    def poll(self) -> None:
        snap = self.conn.frame(self._sql)
        t = self.clock.now()
        for replica, group in snap.groupby(snap["replica"].astype(str), sort=True):
            values = dict(zip(group["name"].astype(str), group["value"].astype("int64")))
            if replica in self._last:
                last_t, last = self._last[replica]
                for name, value in values.items():
                    delta = value - last.get(name, 0)
                    if delta:
                        self.rows.append({"t_s": t, "interval_s": t - last_t, "event": name, "delta": delta,
                                          "replica": replica})
            self._last[replica] = (t, values)

    def totals(self) -> dict[str, int]:
        """Sum of each counter's deltas over the sampler's life (over all replicas)."""
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["event"]] = out.get(row["event"], 0) + int(row["delta"])
        return out
