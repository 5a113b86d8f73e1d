"""The engine contract: what a spec declares, and what the driver and samplers need from an engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

if TYPE_CHECKING:
    from lockprof.cpus import Pinning


@dataclass(frozen=True)
class Capabilities:
    """What an engine kind can do, declared by the kind so the worker never probes an engine's type."""

    # Rows per query in system.query_log. Declared by the kind; an opened engine says whether this
    # one has it (a chDB release may ignore the config, a server may not keep or show it).
    query_log: bool
    # The client sets each query's query_id (chDB cannot: the driver's id then travels only in log_comment).
    query_id: bool
    # Period of the query profilers whose stacks trace_log keeps for the run's queries; 0: no stack samples.
    stack_period_ms: float
    # --cluster: system tables read from every replica through clusterAllReplicas.
    cluster: bool
    # lockprof may KILL its own overdue queries; on a server the guard sends no KILL (it is shared).
    cancel: bool
    # The engine's data is lockprof's alone: a run opens a data path of its own datasets and drops stale ones there.
    private: bool = False

    def __post_init__(self) -> None:
        # trace_log finds a level's stacks by query_id: an engine that cannot choose ids has none to find.
        if self.stack_period_ms and not self.query_id:
            raise ValueError("stack samples need client-chosen query ids")


@dataclass(frozen=True)
class EngineSpec:
    """A parsed ``--engine``: which kind, its label, what its worker needs, and what it can do."""

    kind: str  # a name in lockprof.engines.registry.KINDS
    label: str
    options: dict[str, Any]  # sent to the worker, which opens the engine from them
    public_spec: str  # what may be written to disk: never a password
    capabilities: Capabilities
    python: str | None = None  # the interpreter the worker runs under (a managed environment's); None: this one
    pin: Pinning | None = None  # --cpus: the cores its worker (and a server the worker launches) is held to

    def as_request(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.options}


@dataclass(frozen=True)
class EngineInfo:
    """Identity of the engine a worker measured, recorded on every run."""

    kind: str  # "embedded" or "server"
    clickhouse_version: str
    package: str  # e.g. "chdb-core 26.9.0", or the server's host
    has_query_log: bool
    data_path: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Connection(Protocol):
    """One connection, used by one thread at a time."""

    def execute(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        query_id: str | None = None,
        settings: dict[str, Any] | None = None,
        log_tag: str | None = None,
    ) -> None:
        """Run a statement to completion, discarding its result. ``query_id`` and ``settings`` reach the
        engine beside the text (never edited into it); query_log finds the query by ``log_comment = query_id``.
        An engine that cannot take a query id (``Capabilities.query_id`` false) logs ``log_tag`` instead when
        given: one tag for all of a connection's statements, which query_log then keeps in their order."""

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame."""

    def close(self) -> None: ...


class Engine(Protocol):
    @property
    def capabilities(self) -> Capabilities:
        """The kind's declared capabilities, with ``query_log`` as found on this engine."""

    @property
    def admin(self) -> Connection:
        """The connection lockprof itself uses for DDL and system tables."""

    def connect(self) -> Connection: ...

    def info(self) -> EngineInfo: ...

    def close(self) -> None: ...
