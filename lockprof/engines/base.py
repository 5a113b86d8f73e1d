"""What the driver and samplers need from an engine, whatever it is."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import pandas as pd


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
    ) -> None:
        """Run a statement to completion, discarding its result. ``query_id`` and ``settings`` reach the
        engine beside the text (never edited into it); query_log finds the query by ``log_comment = query_id``."""

    def frame(self, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Run a query and return its result as a DataFrame."""

    def close(self) -> None: ...


class Engine(Protocol):
    def connect(self) -> Connection: ...

    def info(self) -> EngineInfo: ...

    def close(self) -> None: ...
