"""Engines: how a worker talks to ClickHouse.

An engine spec on the command line is parsed by :func:`parse_spec` in the
orchestrator; the worker process opens it with :func:`open_engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lockprof.errors import EngineError


@dataclass(frozen=True)
class EngineSpec:
    kind: str  # "embedded"
    label: str
    options: dict[str, Any]
    public_spec: str = ""  # what may be written to disk: never a password

    def as_request(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.options}


def parse_spec(text: str) -> EngineSpec:
    """Turn a command-line engine spec into an EngineSpec, or say which specs exist."""
    if text == "embedded":
        return EngineSpec("embedded", "embedded", {}, "embedded")
    raise EngineError(f"unknown engine {text!r}; known engines: embedded")


def open_engine(request: dict[str, Any]) -> Any:
    kind = request.get("kind")
    if kind == "embedded":
        from lockprof.engines.embedded import EmbeddedEngine

        return EmbeddedEngine()
    raise EngineError(f"unknown engine kind {kind!r}")
