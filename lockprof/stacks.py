"""Stack samples from ``system.trace_log``: folded stacks, lock classification, speedscope and folded exports.

A stack is kept as frames from root to leaf (the folded-stack order), one tidy
row per distinct (query, trace type, event, stack) with its sample count and
weight. :func:`classify` names the lock a stack is acquiring and in which mode
by reading its frames from the leaf up: it skips the locking machinery
(futex waits, ``std::mutex``, ``DB::SharedMutex``, ``std::unique_lock`` …), then
looks at the next few frames for the function that owns the lock. The
machinery says the mode when the owner does not, so an unknown mutex still gets
"shared" or "exclusive". Frame names follow ClickHouse's sources: the parts
mutex (``MergeTreeData::lockParts`` exclusive; ``readLockParts`` /
``lockPartsRead`` / ``DataPartsSharedLock`` shared), the table RWLock
(``RWLockImpl::getLock`` under ``IStorage::lockForShare`` or
``lockForAlter`` / ``lockExclusively``), the Context mutex
(``ContextSharedMutex::lockImpl`` / ``lockSharedImpl``) and the thread pools'
job-queue mutex (``ThreadPoolImpl<…>::scheduleImpl`` and friends).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from lockprof.dirformat.tables import STACKS

# What system.trace_log gives of a stack: the stacks table's columns it fills (lockprof.dirformat.tables).
STACK_COLUMNS = STACKS.written_by("trace_log")
# How many frames above the locking machinery may still name the lock's owner
# (small wrappers and inlining put a frame or two in between).
OWNER_REACH = 3


@dataclass(frozen=True)
class LockSite:
    lock: str
    mode: str  # "exclusive", "shared" or "unknown"
    waiting: bool  # a blocking primitive sits on top: the thread was waiting, not just acquiring
    frame: str  # the frame that named the lock


# Blocking primitives: a thread parked here is waiting.
_BLOCKING = re.compile(
    r"__lll_lock_wait|futex|pthread_mutex_lock|pthread_rwlock_(rd|wr)lock|pthread_cond_(timed)?wait|"
    r"condition_variable(_any)?::wait|__pthread_mutex_lock|^syscall$|^syscall\b|sem_wait",
)
_CONDVAR = re.compile(r"condition_variable|pthread_cond_")
# The profiler's own frames on top of a ProfileEvent or timer sample.
_PROFILER = re.compile(r"ProfileEvents::|TraceSender::|StackTrace::|QueryProfilerBase|signalHandler|"
                       r"CurrentMetrics::|Stopwatch|__restore_rt")
# Locking machinery that says nothing about which lock it is.
_MACHINERY = re.compile(
    _BLOCKING.pattern
    + r"|std::(__1::)?(mutex|shared_mutex|recursive_mutex|timed_mutex)::|std::(__1::)?(unique_lock|shared_lock|"
    r"lock_guard|scoped_lock)<|DB::SharedMutex::|DB::SharedMutexHelper<|std::(__1::)?__shared_mutex_base::|"
    r"DB::CancelableSharedMutex::|std::(__1::)?__libcpp_mutex_lock|std::(__1::)?__libcpp_condvar_wait",
)
_SHARED_MACHINERY = re.compile(r"lock_shared|shared_lock<|rdlock|lockSharedImpl|try_lock_shared")
_EXCLUSIVE_MACHINERY = re.compile(r"::lock\(\)|unique_lock<|lock_guard<|scoped_lock<|wrlock|mutex_lock|lockImpl")

# (frame pattern, lock, mode); mode None: decided by the callers (RWLock) or the machinery.
OWNERS: list[tuple[re.Pattern[str], str, str | None]] = [
    (re.compile(r"MergeTreeData::(readLockParts|lockPartsRead)\b|DataPartsSharedLock::~?DataPartsSharedLock"),
     "parts", "shared"),
    (re.compile(r"MergeTreeData::lockParts\b|DataPartsLock::~?DataPartsLock"), "parts", "exclusive"),
    (re.compile(r"IStorage::(try)?[lL]ockForShare\b"), "table_rwlock", "shared"),
    (re.compile(r"IStorage::(try)?[lL]ockForAlter\b|IStorage::lockExclusively\b"), "table_rwlock", "exclusive"),
    (re.compile(r"RWLockImpl::getLock\b"), "table_rwlock", None),
    (re.compile(r"ContextSharedMutex::lockSharedImpl|Context::get(Global|Local)SharedLock\b"), "context", "shared"),
    (re.compile(r"ContextSharedMutex::lockImpl|Context::get(Global|Local)?Lock\b"), "context", "exclusive"),
    (re.compile(r"ThreadPoolImpl<std::(__1::)?thread>::"), "global_thread_pool", "exclusive"),
    (re.compile(r"ThreadPoolImpl<DB::ThreadFromGlobalPoolImpl<|ThreadPoolImpl<ThreadFromGlobalPoolImpl<"),
     "local_thread_pool", "exclusive"),
]
_RW_CALLER = [
    (re.compile(r"IStorage::(try)?[lL]ockForShare\b"), "shared"),
    (re.compile(r"IStorage::(try)?[lL]ockForAlter\b|IStorage::lockExclusively\b"), "exclusive"),
]


def classify(frames: Sequence[str]) -> LockSite | None:
    """The lock a stack (frames root first) is acquiring, or None if it is not in locking code."""
    leaf_first = list(reversed(frames))
    i = 0
    while i < len(leaf_first) and (_MACHINERY.search(leaf_first[i]) or _PROFILER.search(leaf_first[i])):
        i += 1
    machinery = [f for f in leaf_first[:i] if not _PROFILER.search(f) or _MACHINERY.search(f)]
    rest = leaf_first[i:]
    # A ProfileEvent sample is taken inside the counter's increment, right in the lock's constructor.
    counted = i > len(machinery)
    waiting = any(_BLOCKING.search(f) for f in machinery)
    # A condition-variable wait is a thread parked for work or a signal, not a lock, except in the RWLock,
    # which queues its waiters on one.
    cv_only = any(_CONDVAR.search(f) for f in machinery)
    owner_window = rest[:OWNER_REACH] if machinery or counted else rest[:1]
    for j, frame in enumerate(owner_window):
        for pattern, lock, mode in OWNERS:
            if not pattern.search(frame):
                continue
            if lock.endswith("thread_pool") and not machinery:
                continue  # pool frames are on every worker thread; only a mutex on top makes it the pool's lock
            if cv_only and lock != "table_rwlock":
                return None
            if mode is None:
                mode = _caller_mode(rest[j + 1:]) or _machinery_mode(machinery)
            return LockSite(lock, mode, waiting, frame)
    if machinery and waiting and not cv_only:
        return LockSite("other_mutex", _machinery_mode(machinery), waiting, rest[0] if rest else machinery[-1])
    return None


def _caller_mode(callers: Sequence[str]) -> str | None:
    for frame in callers[:OWNER_REACH + 2]:
        for pattern, mode in _RW_CALLER:
            if pattern.search(frame):
                return mode
    return None


def _machinery_mode(machinery: Sequence[str]) -> str:
    text = " ".join(machinery)
    if _SHARED_MACHINERY.search(text):
        return "shared"
    if _EXCLUSIVE_MACHINERY.search(text):
        return "exclusive"
    return "unknown"


def clean_frame(symbol: str | None, address: int | None = None) -> str:
    """A frame name fit for folded text: unsymbolized frames become their address, ';' cannot split it."""
    text = (symbol or "").strip()
    if not text:
        return f"0x{address:x}" if address is not None else "[unknown]"
    return text.replace(";", ":").replace("\n", " ")


def split(stack: str) -> list[str]:
    return stack.split(";") if stack else []


def classify_frame(stacks: pd.DataFrame) -> pd.DataFrame:
    """Add ``lock``, ``mode``, ``waiting`` and ``lock_frame`` columns to a stacks frame."""
    sites = [classify(split(s)) for s in stacks["stack"]]
    out = stacks.copy()
    out["lock"] = [s.lock if s else None for s in sites]
    out["mode"] = [s.mode if s else None for s in sites]
    out["waiting"] = [bool(s and s.waiting) for s in sites]
    out["lock_frame"] = [s.frame if s else None for s in sites]
    return out


def lock_summary(stacks: pd.DataFrame) -> pd.DataFrame:
    """Share of each trace type's weight spent acquiring each lock, exclusive and shared apart."""
    classified = stacks if "lock" in stacks else classify_frame(stacks)
    if classified.empty:
        return pd.DataFrame(columns=["trace_type", "lock", "mode", "samples", "weight", "share"])
    total = classified.groupby("trace_type")["weight"].transform("sum")
    classified = classified.assign(share=classified["weight"] / total.where(total > 0))
    locked = classified[classified["lock"].notna()]
    return (
        locked.groupby(["trace_type", "lock", "mode"], as_index=False)[["samples", "weight", "share"]].sum()
        .sort_values(["trace_type", "weight"], ascending=[True, False], ignore_index=True)
    )


def to_folded(stacks: pd.DataFrame, weight: str = "samples") -> str:
    """Brendan Gregg's folded format (``root;…;leaf count``), heaviest first, for flamegraph.pl and friends."""
    folded = stacks.groupby("stack")[weight].sum().sort_values(ascending=False)
    return "".join(f"{stack} {int(round(value))}\n" for stack, value in folded.items() if value > 0)


def to_speedscope(stacks: pd.DataFrame, name: str = "lockprof", weight: str = "samples",
                  by: str = "trace_type") -> dict:
    """A speedscope file: one sampled profile per ``by`` value (e.g. Real, CPU, ProfileEvent)."""
    frames: list[dict[str, str]] = []
    index: dict[str, int] = {}

    def frame_id(frame: str) -> int:
        if frame not in index:
            index[frame] = len(frames)
            frames.append({"name": frame})
        return index[frame]

    profiles = []
    groups: Iterable = stacks.groupby(by, sort=True) if by in stacks and not stacks.empty else [(name, stacks)]
    for key, group in groups:
        samples, weights = [], []
        for stack, value in zip(group["stack"], group[weight]):
            samples.append([frame_id(f) for f in split(stack)])
            weights.append(float(value))
        profiles.append({
            "type": "sampled", "name": f"{name} {key}", "unit": "none",
            "startValue": 0, "endValue": float(sum(weights)), "samples": samples, "weights": weights,
        })
    return {
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": name,
        "exporter": "lockprof",
    }


def write_exports(stacks: pd.DataFrame, folder, name: str) -> list:
    """Write ``<name>.folded`` and ``<name>.speedscope.json`` under ``folder``; return their paths."""
    from pathlib import Path

    from lockprof.store import atomic_write_bytes

    folder = Path(folder)
    if stacks.empty:
        return []
    folded = folder / f"{name}.folded"
    speedscope = folder / f"{name}.speedscope.json"
    atomic_write_bytes(folded, to_folded(stacks).encode())
    atomic_write_bytes(speedscope, json.dumps(to_speedscope(stacks, name)).encode())
    return [folded, speedscope]
