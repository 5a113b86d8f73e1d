"""The lock catalog: which ProfileEvents measure which lock, in which mode and role.

It is built from the engine's own ``system.events`` list at run time, so a new
ClickHouse release that adds or drops lock counters is described as it is. Known
locks are named explicitly; other lock counters are recognised by the shape of
their names and keep mode ``unknown`` rather than a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from lockprof.dirformat.tables import LOCKS

# role: "wait" (time spent waiting to acquire), "hold" (time held), "count" (acquisitions)
# mode: "exclusive", "shared" or "unknown"


@dataclass(frozen=True)
class LockEvent:
    event: str
    lock: str
    mode: str
    role: str
    unit: str  # "us", "ms", "ns" for times, "count" for counts

    @property
    def to_us(self) -> float:
        """Factor that turns the event's value into microseconds (1 for counts)."""
        return {"us": 1.0, "ms": 1000.0, "ns": 0.001}.get(self.unit, 1.0)


KNOWN: dict[str, tuple[str, str, str, str]] = {
    # The MergeTree data-parts mutex. Before 25.11 every SELECT took it exclusively;
    # from 25.11 readers take it shared (ClickHouse PR 85535).
    "PartsLockWaitMicroseconds": ("parts", "exclusive", "wait", "us"),
    "PartsLockHoldMicroseconds": ("parts", "exclusive", "hold", "us"),
    "PartsLocks": ("parts", "exclusive", "count", "count"),
    "SharedPartsLockWaitMicroseconds": ("parts", "shared", "wait", "us"),
    "SharedPartsLockHoldMicroseconds": ("parts", "shared", "hold", "us"),
    "SharedPartsLocks": ("parts", "shared", "count", "count"),
    # The table-level RWLock: readers share it, ALTER/DROP take it exclusively.
    "RWLockAcquiredReadLocks": ("table_rwlock", "shared", "count", "count"),
    "RWLockAcquiredWriteLocks": ("table_rwlock", "exclusive", "count", "count"),
    "RWLockReadersWaitMilliseconds": ("table_rwlock", "shared", "wait", "ms"),
    "RWLockWritersWaitMilliseconds": ("table_rwlock", "exclusive", "wait", "ms"),
    # The global Context mutex.
    "ContextLock": ("context", "exclusive", "count", "count"),
    "ContextLockWaitMicroseconds": ("context", "exclusive", "wait", "us"),
    # Thread pools guard their job queues with one mutex each.
    "GlobalThreadPoolLockWaitMicroseconds": ("global_thread_pool", "exclusive", "wait", "us"),
    "LocalThreadPoolLockWaitMicroseconds": ("local_thread_pool", "exclusive", "wait", "us"),
    "DictCacheLockWriteNs": ("dictionary_cache", "exclusive", "wait", "ns"),
    "DictCacheLockReadNs": ("dictionary_cache", "shared", "wait", "ns"),
    "StorageBufferLayerLockReadersWaitMilliseconds": ("buffer_layer", "shared", "wait", "ms"),
    "StorageBufferLayerLockWritersWaitMilliseconds": ("buffer_layer", "exclusive", "wait", "ms"),
    "KeeperStorageLockWaitMicroseconds": ("keeper_storage", "exclusive", "wait", "us"),
    "KeeperStorageSharedLockWaitMicroseconds": ("keeper_storage", "shared", "wait", "us"),
}

_UNITS = {"Microseconds": "us", "Milliseconds": "ms", "Nanoseconds": "ns", "Ns": "ns"}
_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b)|[A-Z]?[a-z]+|\d+|[A-Z]+")


def classify(event: str) -> LockEvent | None:
    """Describe a ProfileEvent as a lock event, or return None if it is not one."""
    if event in KNOWN:
        return LockEvent(event, *KNOWN[event])
    words = _WORDS.findall(event)
    if "Lock" not in words:
        return None
    unit = _UNITS.get(words[-1])
    if unit is None:
        return None  # counts of unknown meaning (errors, retries, conflicts) are not lock timings
    role = "hold" if "Hold" in words else "wait"
    mode = _mode(words)
    mode_words = {"Lock", "Wait", "Hold", "Shared", "Exclusively", "For", "Share"}
    stem = [
        w
        for i, w in enumerate(words[:-1])
        if w not in mode_words and not (w in {"Read", "Write"} and words[i + 1] == "Lock")
    ]
    return LockEvent(event, "_".join(w.lower() for w in stem) or "lock", mode, role, unit)


def _mode(words: list[str]) -> str:
    pairs = set(zip(words, words[1:]))
    if {"Shared", "Share"} & set(words) or ("Read", "Lock") in pairs:
        return "shared"
    if {"Exclusively", "Exclusive"} & set(words) or ("Write", "Lock") in pairs:
        return "exclusive"
    return "unknown"


def catalog(events: pd.DataFrame) -> pd.DataFrame:
    """Lock catalog from a frame of ``system.events`` with ``name`` and ``description`` columns."""
    rows = []
    for name, description in zip(events["name"], events.get("description", [""] * len(events))):
        found = classify(str(name))
        if found:
            rows.append(
                {
                    "event": found.event,
                    "lock": found.lock,
                    "mode": found.mode,
                    "role": found.role,
                    "unit": found.unit,
                    "to_us": found.to_us,
                    "description": str(description),
                }
            )
    frame = pd.DataFrame(rows, columns=LOCKS.written_by("catalog"))
    return frame.sort_values(["lock", "mode", "role"], ignore_index=True)


CATALOG_SQL = (
    "SELECT name, description FROM system.events SETTINGS system_events_show_zero_values = 1"
)
