"""``--cpus``: the engine held to a number of cores, and a sweep over core counts.

A machine with few cores can still measure how a query scales from 1 core to 2, and one with many
can measure the whole curve a capacity forecast predicts. A whole number of cores is CPU affinity:
the worker process is pinned in the child before it execs, so the interpreter, chDB and every thread
either starts are held to the same cores (affinity set on a pid from outside holds one thread
only), and a server the worker launches inherits it. The cores are the lowest of the ones lockprof
itself may use. A fractional count (1.5) needs a quota, which only the cgroup v2 CPU controller
(``cpu.max``) gives: it is used where lockprof may create a child cgroup with that controller, and
refused with the reason everywhere else. An engine lockprof did not start (a server URL) runs on
cores lockprof does not control: ``--cpus`` is refused for it.

Several counts multiply the engines: each spec runs once per count, labelled ``<label>@<N>cpu``,
interleaved like any multi-engine run, so the A/B analysis compares the core counts.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockprof.errors import EngineError

if TYPE_CHECKING:
    from lockprof.engines.base import EngineSpec

PINNABLE_KINDS = ("embedded", "version", "server", "binary")  # kinds whose engine process lockprof starts
CPU_PERIOD_US = 100_000  # cpu.max's period; the quota is this times the fractional core count
CGROUP_PREFIX = "lockprof-cpus-"
_CGROUPS = itertools.count()  # each fractional pinning's cgroup is its own


@dataclass(frozen=True)
class Pinning:
    """The cores one engine's worker runs on: ``cpus`` as asked, the CPU ids it is held to, and for a
    fractional count the cgroup whose ``cpu.max`` holds it to that share of them."""

    cpus: int | float
    cpu_ids: tuple[int, ...]
    cgroup: str | None = None

    def enter(self) -> None:
        """In the worker's child process before exec: every thread it will ever have inherits this."""
        try:
            if self.cgroup is not None:
                Path(self.cgroup, "cgroup.procs").write_text("0")  # "0": the writing process itself
            os.sched_setaffinity(0, self.cpu_ids)
        except OSError as exc:
            # stderr is already the worker's log: the orchestrator reports the worker's death with this line
            os.write(2, f"lockprof: the worker could not be held to its --cpus cores: {exc}\n".encode())
            os._exit(1)

    def record(self) -> dict[str, Any]:
        """What the manifest's engine entry says of it (the engine's own report adds the CPU ids it saw)."""
        return {"cpus": self.cpus, "pinned_cpu_ids": list(self.cpu_ids),
                **({"cpu_max": f"{self.quota_us()} {CPU_PERIOD_US}"} if self.cgroup else {})}

    def quota_us(self) -> int:
        return round(float(self.cpus) * CPU_PERIOD_US)


def parse_counts(text: str) -> list[int | float]:
    """``1,2`` or ``1.5`` -> the core counts, whole ones as int; a count that is no positive number is refused."""
    counts: list[int | float] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise EngineError(f"--cpus: expected core counts separated by commas (1,2 or 1.5), got {item!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise EngineError(f"--cpus: a core count must be a positive number, got {item!r}")
        counts.append(int(value) if value == int(value) else value)
    if not counts:
        raise EngineError(f"--cpus: expected core counts separated by commas (1,2 or 1.5), got {text!r}")
    if len(set(counts)) < len(counts):
        raise EngineError(f"--cpus: a core count is given twice in {text!r}")
    return counts


def allowed_cpus() -> list[int]:
    """The CPU ids lockprof itself may run on (its affinity, which a container or taskset may narrow), lowest first."""
    return sorted(os.sched_getaffinity(0))


def pinning(count: int | float, allowed: list[int] | None = None) -> Pinning:
    """The cores for ``count``: the lowest ``ceil(count)`` allowed ones, and a CPU quota for a fractional count."""
    if not hasattr(os, "sched_setaffinity"):
        raise EngineError("--cpus pins the engine by CPU affinity, which this operating system does not offer")
    allowed = allowed_cpus() if allowed is None else allowed
    if count > len(allowed):
        raise EngineError(f"--cpus {count:g}: lockprof may use only {len(allowed)} core(s) here "
                          f"(CPU ids {_ids(allowed)}); give at most {len(allowed)}")
    ids = tuple(allowed[: math.ceil(count)])
    if isinstance(count, int):
        return Pinning(count, ids)
    return Pinning(count, ids, cgroup=str(_quota_cgroup(count)))


def label(base: str, count: int | float) -> str:
    """An engine's label in a sweep over core counts (file-name safe: ``@`` and ``.`` are kept as they are)."""
    return f"{base}@{count:g}cpu"


def pin_specs(specs: list[EngineSpec], counts: list[int | float] | None) -> list[EngineSpec]:
    """Every spec once per core count, pinned (one count keeps the spec's own label); no counts: the specs."""
    if not counts:
        return specs
    for spec in specs:
        if spec.kind not in PINNABLE_KINDS:
            raise EngineError(f"--cpus: engine {spec.label} is a server lockprof did not start, on cores it does not "
                              "control; pin engines lockprof starts (embedded, a version, server:VERSION, binary:PATH)")
    allowed = allowed_cpus() if hasattr(os, "sched_getaffinity") else []
    # A pinning per engine, not per count: a fractional count's quota is its own worker's, never shared.
    return [
        dataclasses.replace(spec, pin=pinning(n, allowed),
                            label=spec.label if len(counts) == 1 else label(spec.label, n))
        for spec in specs
        for n in counts
    ]


def record(spec: EngineSpec) -> dict[str, Any]:
    """The manifest entry's pinning keys: ``cpus`` (the count) and the CPU ids chosen; nothing when not pinned."""
    pin = getattr(spec, "pin", None)
    return pin.record() if pin is not None else {}


def observed(pid: int | None) -> dict[str, Any]:
    """The CPU ids the engine's process may run on, as the kernel says (all its threads: ``cpu_ids`` is their union)."""
    if pid is None:
        return {}
    ids: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                ids |= set(task_cpus(task / "status"))
    return {"cpu_ids": sorted(ids)} if ids else {}


def task_cpus(status: Path) -> list[int]:
    """A /proc status file's ``Cpus_allowed_list`` (``0-1,3``) -> [0, 1, 3]."""
    for line in status.read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return expand_list(line.split(":", 1)[1])
    return []


def expand_list(text: str) -> list[int]:
    out: list[int] = []
    for item in (x.strip() for x in text.split(",")):
        if "-" in item:
            first, last = item.split("-")
            out += range(int(first), int(last) + 1)
        elif item:
            out.append(int(item))
    return out


def _ids(ids: list[int]) -> str:
    return ",".join(map(str, ids))


# --- fractional cores: the cgroup v2 CPU controller ---------------------------------------------------------------

def _quota_cgroup(count: float) -> Path:
    """A new child cgroup of lockprof's own, its ``cpu.max`` set to ``count`` cores; removed at exit."""
    parent = _own_cgroup_with_cpu(count)
    child = parent / f"{CGROUP_PREFIX}{os.getpid()}-{next(_CGROUPS)}"
    try:
        child.mkdir()
        atexit.register(_remove, child)
        (child / "cpu.max").write_text(f"{round(count * CPU_PERIOD_US)} {CPU_PERIOD_US}")
    except OSError as exc:
        raise _refuse(count, f"creating the cgroup {child} failed: {exc.strerror}") from None
    return child


def _own_cgroup_with_cpu(count: float | None) -> Path:
    """lockprof's own cgroup v2 directory, if the CPU controller can be handed to its children; else EngineError."""
    mount = _cgroup2_mount()
    if mount is None:
        raise _refuse(count, "no cgroup v2 hierarchy is mounted")
    own = _own_cgroup()
    if own is None:
        raise _refuse(count, "lockprof's process is in no cgroup v2 group (/proc/self/cgroup has no 0:: line)")
    path = mount / own.lstrip("/")
    try:
        controllers = (path / "cgroup.controllers").read_text().split()
        if "cpu" not in controllers:
            raise _refuse(count, f"the cgroup v2 hierarchy at {mount} does not have the CPU controller (it offers "
                                f"{', '.join(controllers) or 'none'}; on a hybrid host the controller is held by a "
                                "cgroup v1 hierarchy)")
        if "cpu" not in (path / "cgroup.subtree_control").read_text().split():
            (path / "cgroup.subtree_control").write_text("+cpu")
    except OSError as exc:
        raise _refuse(count, f"lockprof may not hand the CPU controller of {path} to a child cgroup "
                            f"({exc.strerror})") from None
    return path


def _refuse(count: float | None, why: str) -> EngineError:
    what = f"--cpus {count:g}" if count is not None else "a fractional --cpus"
    return EngineError(f"{what}: fractional cores need a CPU quota (cgroup v2 cpu.max) on a cgroup lockprof "
                       f"creates, and here {why}; give whole cores (affinity)")


def _cgroup2_mount() -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return Path(left.split()[4])
    return None


def _own_cgroup() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    return None


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
