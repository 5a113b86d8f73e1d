"""The run's manifest: what ran, where, on which engines, and what happened on the way.

One typed, versioned object, built by :meth:`Manifest.begin` for both ``lockprof run`` and ``lockprof observe``
and changed only through its methods while the run goes on (a failure, a note, a failed level, a restart of
the workers, the end). :meth:`Manifest.from_dict` reads every manifest lockprof has written.

Format history (``format_version``):

1. the first format. Keys were added within it as lockprof grew; a manifest written before one of them lacks
   it and reads as if it were empty: ``notes``, ``failed_levels`` (levels whose queries failed too often) and
   ``worker_restarts`` (A/B runs restart their workers between repetitions). Observe runs wrote no
   ``failed_levels``, and runs wrote ``notes`` and ``worker_restarts`` only once there was one; now every
   manifest holds every key.

A reader meeting a format it does not know refuses it rather than guess. To change the format, raise
:data:`FORMAT_VERSION`, say here what changed, and add a step to :data:`UPGRADES` that turns a manifest of
the previous version into one of the new.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from lockprof import __version__

FORMAT_VERSION = 1

# version -> the step from it to the next one (none yet: version 1 is the only one).
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}

# What every reader relies on; a manifest without them is damaged, whatever else it holds.
REQUIRED: dict[str, type] = {"run_id": str, "status": str, "engines": list}
# What lockprof writes beside them (older runs may lack some): present with another type means damaged.
OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "scenario": dict, "parameters": dict, "datasets": dict, "host": dict, "clock": dict, "failures": list,
    "failed_levels": list, "notes": list, "worker_restarts": list,
    "lockprof_version": str, "started_at": str, "ended_at": (str, type(None)),
}


class ManifestError(ValueError):
    """A manifest that is not one lockprof can read (the store turns it into a RunDirError naming the file)."""


class UnknownFormat(ManifestError):
    """A manifest of a format this lockprof does not read (a newer one, or none at all)."""


@dataclass(eq=False)
class Manifest(Mapping[str, Any]):
    """The manifest of one run. Reading it as a mapping (``m["run_id"]``, ``m.get("host")``) gives the
    manifest's JSON keys, for notebooks and scripts; lockprof itself reads the attributes."""

    run_id: str
    engines: list[dict[str, Any]]  # one entry per engine: label, spec and what the engine said of itself
    status: str = "incomplete"  # complete once every level ran
    scenario: dict[str, Any] = field(default_factory=dict)  # name, path, sha256, definition
    parameters: dict[str, Any] = field(default_factory=dict)  # what the levels were asked to be
    datasets: dict[str, Any] = field(default_factory=dict)  # engine label -> schema -> dataset
    host: dict[str, Any] = field(default_factory=dict)
    clock: dict[str, Any] = field(default_factory=dict)  # origin_unix_s pins the run's clock to wall time
    lockprof_version: str = ""
    started_at: str = ""
    ended_at: str | None = None
    failures: list[str] = field(default_factory=list)  # why the run is incomplete
    failed_levels: list[dict[str, Any]] = field(default_factory=list)  # levels whose queries failed too often
    notes: list[str] = field(default_factory=list)  # what a reader should know, said once each
    worker_restarts: list[dict[str, Any]] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    others: dict[str, Any] = field(default_factory=dict)  # keys this lockprof does not know, kept as they were

    # --- building -------------------------------------------------------------------------------------------
    @classmethod
    def begin(cls, run_id: str, *, scenario: dict[str, Any], parameters: dict[str, Any],
              engines: list[dict[str, Any]], datasets: dict[str, Any], host: dict[str, Any],
              clock_origin_unix_s: float, notes: list[str] | None = None) -> Manifest:
        """The manifest of a run that starts now: incomplete, nothing failed yet."""
        return cls(run_id=run_id, engines=engines, scenario=scenario, parameters=parameters, datasets=datasets,
                   host=host, clock={"origin_unix_s": clock_origin_unix_s}, lockprof_version=__version__,
                   started_at=_now(), notes=list(notes or []))

    def fail(self, reason: str) -> None:
        """Something cut the run short: it will end incomplete, and this says why."""
        self.failures.append(reason)

    def note(self, text: str) -> bool:
        """Record a note once (a repeated one is dropped); whether it was new."""
        if text in self.notes:
            return False
        self.notes.append(text)
        return True

    def fail_level(self, failure: dict[str, Any]) -> None:
        """A level whose queries failed too often (engine, schema, concurrency, repetition, error_share,
        first_error): a result, so the run may still be complete."""
        self.failed_levels.append(failure)

    def restarted(self, order: list[str], data_paths: dict[str, Any]) -> None:
        """The workers were restarted in ``order`` (see :class:`lockprof.run.Swap`)."""
        self.worker_restarts.append({"order": order, "data_paths": data_paths})

    def restarts_before(self, repetition: int) -> None:
        """The last restart happened before ``repetition``."""
        self.worker_restarts[-1]["before_repetition"] = repetition

    def end(self, status: str) -> None:
        self.status = status
        self.ended_at = _now()

    # --- reading --------------------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def scenario_name(self) -> str | None:
        return self.scenario.get("name")

    @property
    def scenario_sha256(self) -> str | None:
        return self.scenario.get("sha256")

    @property
    def mode(self) -> str | None:
        """closed_loop, open_loop or observe."""
        return self.parameters.get("mode")

    @property
    def repetitions(self) -> int | None:
        return self.parameters.get("repetitions")

    @property
    def warmup_s(self) -> float | None:
        return self.parameters.get("warmup_s")

    @property
    def cpu_count(self) -> int | None:
        return self.host.get("cpu_count")

    @property
    def cpu_model(self) -> str | None:
        return self.host.get("cpu_model")

    @property
    def engine_labels(self) -> list[str]:
        return [e.get("label") for e in self.engines]

    def partition_keys(self) -> dict[str, str]:
        """schema -> partition key, as the engines reported it (the first engine's where they differ)."""
        keys: dict[str, str] = {}
        for datasets in self.datasets.values():
            for schema, ds in datasets.items():
                keys.setdefault(schema, ds.get("partition_key", ""))
        return keys

    def relabeled(self, renames: Mapping[str, str]) -> Manifest:
        """A copy whose engines carry new labels (old label -> new), as combined runs name them."""
        engines = [{**e, "label": renames.get(e.get("label"), e.get("label"))} for e in self.engines]
        return dataclasses.replace(self, engines=engines)

    # --- the JSON form --------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "others"}
        return {**self.others, **out}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Manifest:
        """A manifest from its JSON form, upgraded from an older format; :class:`ManifestError` says why not."""
        if isinstance(raw, Manifest):
            return raw
        if not isinstance(raw, Mapping):
            raise ManifestError("damaged manifest: not a JSON object")
        data = dict(raw)
        version = data.get("format_version")
        while isinstance(version, int) and version in UPGRADES:
            data = UPGRADES[version](data)
            version = data["format_version"]
        if version != FORMAT_VERSION:
            raise UnknownFormat(f"run format {version!r} is not readable by this lockprof "
                                f"(it reads format {FORMAT_VERSION})")
        problems = [f"{key!r} is {'missing' if key not in data else 'not ' + kind.__name__}"
                    for key, kind in REQUIRED.items() if not isinstance(data.get(key), kind)]
        problems += [f"{key!r} has the wrong type" for key, kind in OPTIONAL.items()
                     if key in data and not isinstance(data[key], kind)]
        if problems:
            raise ManifestError(f"damaged manifest: {'; '.join(problems)}")
        known = {f.name for f in fields(cls)} - {"others"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   others={k: v for k, v in data.items() if k not in known})

    @classmethod
    def of(cls, value: Mapping[str, Any]) -> Manifest:
        """A manifest built in memory (a test's or a benchmark's): the current format unless it says otherwise."""
        if isinstance(value, Manifest):
            return value
        return cls.from_dict({"format_version": FORMAT_VERSION, "status": "incomplete", **value})

    # --- a read-only mapping of the JSON keys, for notebooks and scripts ------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key == "others" or key not in self.to_dict():
            raise KeyError(key)
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()
