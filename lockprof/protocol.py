"""The messages between the orchestrator and an engine worker process, one JSON object a line.

Each request is a small dataclass whose ``op`` names it on the pipe and whose ``reply`` is the
dataclass its answer is read into, so both sides agree on every field by construction instead of
by a dozen string keys; a reply that lacks a field is refused where it arrives. A failed request
answers ``{"ok": false, "kind": ..., "error": ...}``, the kind from :data:`lockprof.errors.PIPE_ERRORS`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lockprof.errors import LockprofError


class Message:
    """The JSON form of a request or reply: its fields, in their declared order."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Any:
        """The message ``raw`` holds; keys it does not declare are ignored (``op``, ``ok``, a newer side's)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        try:
            return cls(**{k: v for k, v in raw.items() if k in names})
        except TypeError as exc:  # a missing field: the other side speaks another protocol
            raise LockprofError(f"malformed {cls.__name__}: {exc}") from None


# --- replies ----------------------------------------------------------------------------------------------------
@dataclass
class PrepareReply(Message):
    engine: dict[str, Any]  # what the engine says of itself (EngineInfo), for the manifest
    datasets: dict[str, dict[str, Any]]  # schema -> the dataset as prepared (Dataset.as_dict)
    locks: list[dict[str, Any]]  # the engine's lock catalog, one record a row


@dataclass
class SelfCheckReply(Message):
    speedup: float
    wait_one_s: float
    wait_pair_s: float
    qps_1: float
    cpu_speedup: float
    control_speedup: float
    probe: str
    verdict: str  # "parallel", "serialized" or "inconclusive (...)"


@dataclass
class LevelReply(Message):
    """What the orchestrator says of a stored level; its rows are in the run directory already."""

    queries: int
    errors: int
    censored: int
    background: int
    background_errors: int
    measure_start_s: float
    measure_end_s: float
    interrupted: bool
    failed: bool
    error_share: float
    first_error: str | None = None
    first_background_error: str | None = None
    error_kinds: list[str] = field(default_factory=list)  # the first error of each kind, for the progress lines


@dataclass
class ExitReply(Message):
    pass


# --- requests ---------------------------------------------------------------------------------------------------
@dataclass
class PrepareRequest(Message):
    """Open the engine, build or reuse the datasets, check the scenario against them."""

    op: ClassVar[str] = "prepare"
    reply: ClassVar[type[Message]] = PrepareReply
    engine: dict[str, Any]  # EngineSpec.as_request()
    engine_label: str
    scenario_path: str
    schemas: list[str]
    clock_origin: float
    sample_interval_s: float = 0.2
    samplers: list[str] | None = None  # None: the default samplers
    cluster: str | None = None
    run_pid: int | None = None  # the orchestrator's process (None: the worker's own)


@dataclass
class SelfCheckRequest(Message):
    """Do two queries overlap in this engine?"""

    op: ClassVar[str] = "self_check"
    reply: ClassVar[type[Message]] = SelfCheckReply
    seconds: float = 1.0


@dataclass
class LevelRequest(Message):
    """Measure one level and store its parts in the run directory."""

    op: ClassVar[str] = "level"
    reply: ClassVar[type[Message]] = LevelReply
    run_dir: str
    schema: str
    concurrency: int
    repetition: int
    warmup_s: float
    duration_s: float
    seq: int
    id_prefix: str
    rate_qps: float | None = None
    position: int = 0  # order among its repetition's windows (0 = ran first)
    label: str | None = None  # an overhead-control step's engine label (None: the prepared one)
    samplers: list[str] | None = None  # None: the prepared samplers


@dataclass
class ExitRequest(Message):
    op: ClassVar[str] = "exit"
    reply: ClassVar[type[Message]] = ExitReply


Request = PrepareRequest | SelfCheckRequest | LevelRequest | ExitRequest
REQUESTS: dict[str, type[Message]] = {r.op: r for r in (PrepareRequest, SelfCheckRequest, LevelRequest, ExitRequest)}


def encode_request(request: Request) -> dict[str, Any]:
    return {"op": request.op, **request.to_json()}


def decode_request(raw: dict[str, Any]) -> Request:
    """The request a line holds; an unknown op is refused by name."""
    kind = REQUESTS.get(raw.get("op"))  # type: ignore[arg-type]
    if kind is None:
        raise LockprofError(f"unknown request {raw.get('op')!r}")
    return kind.from_json(raw)
