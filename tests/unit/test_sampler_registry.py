"""The sampler registry and the shared level writer, without an engine: real Parquet parts, a real sampler thread.

Every table a sampler declares must be one the run directory stores and the loader knows with the same
columns; the writer stores each polling sampler's frames with the keys its table declares, keeps the
levels row last, and leaves nothing of a level that failed while being written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import wait_for

from lockprof import store
from lockprof.clock import RunClock
from lockprof.dirformat import tables as declared
from lockprof.level_writer import LevelWriter
from lockprof.samplers import registry
from lockprof.samplers.base import SamplerContext, Table
from lockprof.samplers.polling import PollingSampler

KEYS = {"engine": "embedded", "schema": "plain", "concurrency": 2, "repetition": 0}


def test_the_registry_keeps_the_sampler_names_runs_have_always_used() -> None:
    assert registry.defaults() == ("events", "metrics", "query_log", "pyspy")
    assert set(registry.defaults()) <= set(registry.names())
    assert "trace_log" not in registry.names()  # lockprof reads it where the engine keeps stacks, never by name
    assert len(set(registry.names())) == len(registry.names())


@pytest.mark.parametrize("table", registry.tables(), ids=lambda t: t.name)
def test_every_sampler_table_is_the_run_formats_declaration(table: Table) -> None:
    assert declared.table(table.name) is table  # one declaration: the format's, registered when the sampler is
    assert store.part_path(Path("run"), table.name, "x-00000").parent.name == table.name


class Counting(PollingSampler):
    """A polling sampler of this process's own numbers, stored in the events table's layout."""

    name = "counting"
    table = declared.EVENTS

    def poll(self) -> None:
        self.rows.append({"t_s": self.clock.now(), "interval_s": self.interval_s, "event": "Polls",
                          "delta": 1, "replica": ""})


def test_a_polling_sampler_opened_through_a_context_is_written_with_its_tables_keys(tmp_path: Path) -> None:
    opened: list[str] = []
    ctx = SamplerContext(RunClock(), 0.01, lambda name: opened.append(name) or None)
    sampler = Counting.open(ctx)
    with sampler:
        wait_for(lambda: sampler.polls >= 3, what="three polls")
    assert opened == ["counting"] and sampler.error is None
    with LevelWriter(tmp_path, "embedded", 7, KEYS) as parts:
        parts.sampled([sampler])
        parts.write("query_events", pd.DataFrame({"query_id": ["q"], "event": ["E"], "value": [1]}),
                    {"engine": "embedded"})
        parts.finish({**KEYS, "seq": 7, "queries": 0})
    events = store.read_table(tmp_path, "events")
    assert len(events) == sampler.polls >= 4  # one at start, one at stop, the rest from its thread
    assert (events[list(KEYS)] == pd.Series(KEYS)).all(axis=None)
    assert list(events.columns) == [*declared.EVENTS.written_by("sampler"), *KEYS]  # the level's keys after its own
    assert declared.check([("events", events)]) == []
    assert list(store.read_table(tmp_path, "query_events").columns) == ["query_id", "event", "value", "engine"]
    assert parts.part == store.part_name("embedded", 7)
    assert [p.parent.name for p in parts.written] == ["events", "query_events", "levels"]  # levels last


def test_a_level_that_fails_while_being_written_leaves_none_of_its_parts(tmp_path: Path) -> None:
    class Failing(Counting):
        def frames(self) -> dict[Table, pd.DataFrame]:
            raise OSError("disk went away")

    sampler = Counting(None, RunClock(), 0.01)
    with sampler:
        pass
    with pytest.raises(OSError, match="disk went away"), LevelWriter(tmp_path, "embedded", 0, KEYS) as parts:
        parts.write("queries", pd.DataFrame({"query_id": ["q"], **KEYS}))
        parts.sampled([sampler, Failing(None, RunClock())])
        parts.finish({**KEYS, "seq": 0})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_registered_polling_sampler_is_started_by_its_name_only() -> None:
    ctx = SamplerContext(RunClock(), 0.05, lambda name: None)
    names = [s.name for s in registry.polling(["metrics", "query_log", "pyspy", "events"])]
    assert names == ["events", "metrics"]  # registry order, polling kinds only
    assert registry.open_polling([], ctx) == []


def test_after_level_readers_run_where_the_engine_keeps_their_log() -> None:
    """The query log where chosen and kept (by order where the engine cannot take ids); trace_log with any sampler,
    where the engine's profilers sample the run's queries. Opening one reads nothing yet."""
    from lockprof.engines.base import Capabilities
    from lockprof.samplers.query_log import QueryLogAfterLevel
    from lockprof.samplers.trace_log import TraceLogAfterLevel

    assert registry.after_level([]) == ()  # a no-samplers level reads no log
    assert [s.name for s in registry.after_level(["events"])] == ["trace_log"]
    assert [s.name for s in registry.after_level(["query_log", "pyspy"])] == ["query_log", "trace_log"]
    embedded = Capabilities(query_log=True, query_id=False, stack_period_ms=0.0, cluster=False, cancel=True)
    server = Capabilities(query_log=True, query_id=True, stack_period_ms=10.0, cluster=True, cancel=False)
    silent = Capabilities(query_log=False, query_id=True, stack_period_ms=0.0, cluster=True, cancel=False)

    def readers(caps: Capabilities) -> list:
        ctx = SamplerContext(RunClock(), 0.1, lambda name: None, admin=object(), capabilities=caps)
        return registry.open_after_level(["query_log"], ctx)

    on_embedded = readers(embedded)
    assert [type(r) for r in on_embedded] == [QueryLogAfterLevel] and on_embedded[0].by_order
    on_server = readers(server)
    assert [type(r) for r in on_server] == [QueryLogAfterLevel, TraceLogAfterLevel] and not on_server[0].by_order
    assert readers(silent) == []
    assert on_server[0].settings == {"log_query_threads": 1} and on_server[1].settings == {}

