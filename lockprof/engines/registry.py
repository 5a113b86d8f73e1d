"""The engine registry: every ``--engine`` kind, how it is written, parsed, made ready and opened.

:func:`parse` checks a spec's syntax and lockprof's version table only (nothing is
installed, started or reached), so a run checks all its specs before its first slow
step; :func:`prepare` then builds the managed environment a spec runs in. The worker
opens the engine from the spec's request with :func:`open_engine`. What each kind can
do is declared on its spec and its engine (:class:`lockprof.engines.base.Capabilities`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockprof.engines import embedded, launch, local_server, managed, server
from lockprof.engines.base import Engine, EngineSpec
from lockprof.errors import EngineError

Progress = Callable[[str], None]


def _stderr(text: str) -> None:
    print(f"lockprof: {text}", file=sys.stderr, flush=True)


def _ready(spec: EngineSpec, _progress: Progress | None) -> EngineSpec:
    return spec


@dataclass(frozen=True)
class Kind:
    """One engine kind: the spec texts it claims, how it is written in messages, and its three steps."""

    name: str
    claims: re.Pattern[str]
    syntax: str
    parse: Callable[[str], EngineSpec]
    open: Callable[[dict[str, Any]], Engine]
    prepare: Callable[[EngineSpec, Progress | None], EngineSpec] = _ready


# In the order the "known engines" message lists them.
KINDS: tuple[Kind, ...] = (
    Kind("embedded", re.compile(r"^embedded(\?|$)"), "embedded", embedded.parse_spec, embedded.open_engine),
    Kind("version", re.compile(r"^\d+\.\d+(\?|$)"), ", ".join(managed.known_versions()), managed.parse_spec,
         embedded.open_engine, managed.prepare),
    Kind("server", re.compile(r"^server:"), local_server.SYNTAX, local_server.parse_spec, local_server.open_engine,
         local_server.prepare),
    Kind("url", re.compile(r"^https?://"), "http(s)://user@host:port", server.parse_spec, server.open_engine),
    Kind("binary", re.compile(r"^binary:"), "binary:/path/to/clickhouse", launch.parse_spec, launch.open_engine),
)
_BY_NAME = {k.name: k for k in KINDS}


def parse(text: str) -> EngineSpec:
    """A command-line engine spec -> its EngineSpec, or an EngineError that says which specs exist."""
    text = text.strip()
    for kind in KINDS:
        if kind.claims.match(text):
            return kind.parse(text)
    raise EngineError(f"unknown engine {text!r}; known engines: {', '.join(k.syntax for k in KINDS)}")


RANGE = re.compile(r"^(\d+\.\d+)\.\.(\d+\.\d+)$")


def expand(texts: list[str]) -> list[str]:
    """Release sweeps written short: ``all`` is every known version, ``25.8..26.5`` those from one to the other
    (both included), in release order; any other spec is itself."""
    known = managed.known_versions()
    out: list[str] = []
    for text in (t.strip() for t in texts):
        if text == "all":
            out += known
        elif m := RANGE.match(text):
            first, last = (managed.release_for(v).version for v in m.groups())  # an unknown one names the known
            if known.index(first) > known.index(last):
                raise EngineError(f"engine range {text!r} runs backwards; did you mean {last}..{first}?")
            out += known[known.index(first) : known.index(last) + 1]
        else:
            out.append(text)
    return out


def prepare(spec: EngineSpec, progress: Progress | None = _stderr) -> EngineSpec:
    """The spec ready to open: a managed version's environment is built first if it is missing
    (so ``lockprof run --engine 25.8`` works on a fresh machine)."""
    return _BY_NAME[spec.kind].prepare(spec, progress)


def parse_spec(text: str, progress: Progress | None = _stderr) -> EngineSpec:
    """:func:`parse` then :func:`prepare`: for one spec whose environment may be built right away."""
    return prepare(parse(text), progress)


def open_engine(request: dict[str, Any]) -> Engine:
    """In the worker: open the engine a spec's request describes."""
    kind = _BY_NAME.get(request.get("kind", ""))
    if kind is None:
        raise EngineError(f"unknown engine kind {request.get('kind')!r}")
    return kind.open(request)
