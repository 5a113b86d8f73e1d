"""A sampler that polls a system table from its own thread at a fixed interval."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd

from lockprof.clock import RunClock
from lockprof.engines.base import Connection
from lockprof.samplers.cluster import check_name


class PollingSampler:
    """Start with ``with``; :meth:`poll` is called once at start, every interval, and once at stop."""

    columns: tuple[str, ...] = ()

    def __init__(self, conn: Connection, clock: RunClock, interval_s: float = 0.2, cluster: str | None = None) -> None:
        self.conn = conn
        self.clock = clock
        self.interval_s = interval_s
        self.cluster = check_name(cluster)  # read every replica of this cluster (see lockprof.samplers.cluster)
        self.rows: list[dict[str, Any]] = []
        self.error: str | None = None
        self.polls = 0  # polls that succeeded; waiting on it beats sleeping for a number of intervals
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)

    def poll(self) -> None:
        raise NotImplementedError

    def _safe_poll(self) -> None:
        try:
            self.poll()
            self.polls += 1
        except Exception as exc:  # a sampler failure must not end the measurement; it is reported
            self.error = f"{type(self).__name__}: {exc}"

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._safe_poll()

    def __enter__(self) -> PollingSampler:
        self._safe_poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._safe_poll()

    def frame(self) -> pd.DataFrame:
        """The rows so far; safe while sampling (the copy is taken at once, the poll thread may append after)."""
        return pd.DataFrame(self.rows.copy(), columns=list(self.columns))
