"""The sampler contract: what every sampler declares, and the three ways one runs.

A sampler is a *kind*, like an engine: one row in :mod:`lockprof.samplers.registry`
names it (the ``--samplers`` name), names the run tables it writes (the run format's
declarations, :mod:`lockprof.dirformat.tables`; a sampler with a table of its own
registers it there with ``register_table``) and says how it runs:

- ``polling``: from its own thread in the engine's worker (or in ``observe``) while a
  level runs, started with ``with``; afterwards :meth:`LevelSampler.frames` gives a frame
  per table it declared, keyed by its :class:`Table` (:class:`lockprof.samplers.polling.PollingSampler`
  is the base).
- ``after_level``: reads the engine's logs once a level has ended, by the level's query
  ids (``query_log``, ``trace_log``): :class:`AfterLevelReader`. It may ask for settings on
  the level's queries, and give one row per query that joins the driver's records.
- ``parent``: profiles the worker process from the orchestrator around the level request
  (py-spy); the row names its tables, the orchestrator runs and stores it.

The shared level writer (:mod:`lockprof.level_writer`) stores every frame with the level keys
its table declares, so a new polling sampler is one module and one registry row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from lockprof.clock import RunClock
from lockprof.dirformat.tables import Table
from lockprof.engines.base import Capabilities, Connection

Role = Literal["polling", "after_level", "parent"]
# The level's keys; the level writer adds those a sampler's table declares (the sampler's frame has none of them).
LEVEL_KEYS = ("engine", "schema", "concurrency", "repetition")


@dataclass(frozen=True)
class SamplerContext:
    """What a sampler may use where it runs, handed over by the worker or by observe."""

    clock: RunClock
    interval_s: float
    connection: Callable[[str], Connection]  # a connection of the sampler's own, by its name (kept across levels)
    cluster: str | None = None  # read every replica of this cluster (see lockprof.samplers.cluster)
    engine_pid: int | None = None  # the engine's process on this machine, where lockprof knows it
    # for after-level readers: lockprof's own connection to the engine, what the engine can do, and the lock
    # catalog's wait events (event -> its to_us) that the query log's thread waits subtract
    admin: Connection | None = None
    capabilities: Capabilities | None = None
    lock_waits: Mapping[str, float] = field(default_factory=dict)


class LevelSampler(Protocol):
    """A polling sampler while it runs: ``with`` around the level, then its frames, one per declared table.
    A failure never ends the level: it is kept in ``error`` and reported in the level's ``sampler_errors``."""

    error: str | None

    def __enter__(self) -> LevelSampler: ...

    def __exit__(self, *exc: object) -> None: ...

    def frames(self) -> dict[Table, pd.DataFrame]:
        """What it sampled, one frame per table it declared, without the level's keys."""


@dataclass
class AfterLevel:
    """What an after-level reader found for one level."""

    frames: dict[Table, pd.DataFrame] = field(default_factory=dict)
    per_query: pd.DataFrame | None = None  # one row per query_id, joined to the driver's records in ``queries``
    problems: list[str] = field(default_factory=list)  # reported in the level's sampler_errors
    exports: Callable[[Path, str], None] | None = None  # files beside the tables: (run directory, part name)


class AfterLevelReader(Protocol):
    """Reads the engine's logs once a level has ended, by the prefix of the level's query ids."""

    # settings the level's queries run with, so the logs keep what the reader reads
    settings: Mapping[str, Any]

    def read(self, prefix: str, records: pd.DataFrame) -> AfterLevel: ...


@dataclass(frozen=True)
class Sampler:
    """One registry row: a sampler kind."""

    name: str  # as --samplers spells it and the manifest records it
    role: Role
    tables: tuple[Table, ...]
    # polling: the sampler for one level; one that cannot run where it is says why in its ``error``.
    # after_level: the reader for the engine, or None where the engine keeps no such log.
    open: Callable[[SamplerContext], Any] | None = None
    default: bool = True  # on unless --samplers names a subset
    connection: bool = False  # needs an engine connection of its own (a polling sampler querying system tables)
    chosen: bool = True  # named by --samplers; False: lockprof decides when it runs
