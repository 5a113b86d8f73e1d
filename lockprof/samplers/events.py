"""Deltas of ``system.events`` counters over each polling interval.

The counters are process-wide, so they include the samplers' own queries; the
per-query figures from ``query_log`` do not, and the analysis prefers them.
"""

from __future__ import annotations

from lockprof.samplers.polling import PollingSampler


class EventsSampler(PollingSampler):
    columns = ("t_s", "interval_s", "event", "delta")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._last: dict[str, int] | None = None
        self._last_t = 0.0

    def poll(self) -> None:
        snap = self.conn.frame("SELECT name, value FROM system.events")
        t = self.clock.now()
        values = dict(zip(snap["name"].astype(str), snap["value"].astype("int64")))
        if self._last is not None:
            interval = t - self._last_t
            for name, value in values.items():
                delta = value - self._last.get(name, 0)
                if delta:
                    self.rows.append({"t_s": t, "interval_s": interval, "event": name, "delta": delta})
        self._last, self._last_t = values, t

    def totals(self) -> dict[str, int]:
        """Sum of each counter's deltas over the sampler's life."""
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["event"]] = out.get(row["event"], 0) + int(row["delta"])
        return out
