"""The base of polling samplers: one poll at start, one every interval from its own thread, one at stop.

A subclass names its table (a run-format declaration) and writes :meth:`PollingSampler.poll`;
the rows it appends become the table's frame (see :mod:`lockprof.samplers.base`)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pandas as pd

from lockprof.clock import RunClock
from lockprof.dirformat.tables import Table
from lockprof.engines.base import Connection
from lockprof.samplers.base import SamplerContext
from lockprof.samplers.cluster import check_name


class PollingSampler:
    """Start with ``with``; :meth:`poll` is called once at start, every interval, and once at stop."""

    table: ClassVar[Table]
    columns: ClassVar[tuple[str, ...]] = ()
    name: ClassVar[str] = ""  # the registry name: its engine connection is kept under it across levels

    def __init__(self, conn: Connection | None, clock: RunClock, interval_s: float = 0.2,
                 cluster: str | None = None) -> None:
        self.conn = conn
        self.clock = clock
        self.interval_s = interval_s
        self.cluster = check_name(cluster)  # read every replica of this cluster (see lockprof.samplers.cluster)
        self.rows: list[dict[str, Any]] = []
        self.error: str | None = None
        self.polls = 0  # polls that succeeded; waiting on it beats sleeping for a number of intervals
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=type(self).__name__, daemon=True)

    @classmethod
    def open(cls, ctx: SamplerContext) -> PollingSampler:
        """The sampler for one level, on the connection the context keeps for it."""
        return cls(ctx.connection(cls.name), ctx.clock, ctx.interval_s, ctx.cluster)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "table" in cls.__dict__:  # the columns it fills: those its table declares by="sampler" (keys: the writer)
            cls.columns = tuple(cls.table.written_by("sampler"))

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

    def frames(self) -> dict[Table, pd.DataFrame]:
        return {self.table: self.frame()}
