"""The sampler registry: every sampler kind, the tables it writes, and how it runs.

One row per sampler (see :class:`lockprof.samplers.base.Sampler`). The worker and
``observe`` start every chosen polling row around a level and hand what they sampled to
the shared level writer (:mod:`lockprof.level_writer`); ``--samplers`` takes its names
from here, and :func:`tables` lists every table the samplers write, with its columns,
for whoever reads a run directory.
"""

from __future__ import annotations

from collections.abc import Iterable

from lockprof.samplers import events, metrics, pyspy, query_log, threads, trace_log
from lockprof.samplers.base import AfterLevelReader, LevelSampler, Sampler, SamplerContext, Table

# In the order --samplers lists them (and the order their parts are written in).
SAMPLERS: tuple[Sampler, ...] = (
    Sampler("events", "polling", (events.TABLE,), events.EventsSampler.open, connection=True),
    Sampler("metrics", "polling", (metrics.TABLE,), metrics.MetricsSampler.open, connection=True),
    Sampler("query_log", "after_level", (query_log.TABLE,), query_log.QueryLogAfterLevel.open),
    Sampler("pyspy", "parent", pyspy.TABLES),
    Sampler("threads", "polling", (threads.TABLE,), threads.ThreadsSampler.open, default=False),
    # Not chosen by name: read after every level with any sampler, where the engine keeps stacks for its queries.
    Sampler("trace_log", "after_level", (trace_log.TABLE,), trace_log.TraceLogAfterLevel.open, default=False,
            chosen=False),
)
_BY_NAME = {s.name: s for s in SAMPLERS}


def names() -> tuple[str, ...]:
    """Every name --samplers accepts."""
    return tuple(s.name for s in SAMPLERS if s.chosen)


def defaults() -> tuple[str, ...]:
    """The samplers a run uses unless --samplers says otherwise."""
    return tuple(s.name for s in SAMPLERS if s.chosen and s.default)


def get(name: str) -> Sampler:
    return _BY_NAME[name]


def tables() -> tuple[Table, ...]:
    """Every run table a sampler writes, in registry order."""
    return tuple(t for s in SAMPLERS for t in s.tables)


def polling(chosen: Iterable[str]) -> tuple[Sampler, ...]:
    """The chosen polling samplers, in registry order."""
    wanted = set(chosen)
    return tuple(s for s in SAMPLERS if s.role == "polling" and s.name in wanted)


def open_polling(chosen: Iterable[str], ctx: SamplerContext) -> list[LevelSampler]:
    """One level's chosen polling samplers, ready to start with ``with``."""
    return [s.open(ctx) for s in polling(chosen) if s.open is not None]


def after_level(chosen: Iterable[str]) -> tuple[Sampler, ...]:
    """The after-level readers a level with these samplers runs: those chosen, and with any sampler at all,
    those lockprof runs by itself (trace_log)."""
    wanted = set(chosen)
    return tuple(s for s in SAMPLERS if s.role == "after_level" and (s.name in wanted or (wanted and not s.chosen)))


def open_after_level(chosen: Iterable[str], ctx: SamplerContext) -> list[AfterLevelReader]:
    """One level's after-level readers, those the engine keeps logs for."""
    readers = (s.open(ctx) for s in after_level(chosen) if s.open is not None)
    return [r for r in readers if r is not None]
