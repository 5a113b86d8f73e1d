"""Which lock counters each installed release has, and what its own description says they count.

A counter's meaning can change between releases while its name stays (upstream PRs
101502 and 108806 made profiled locks time only contended waits and dropped hold
time for the locks they wrap). Asking each release's engine for its ``system.events``
list, rather than keeping a table here, states the fact as measured: which counters
exist where, and where a description changed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from lockprof.engines import managed
from lockprof.errors import EngineError
from lockprof.locks import CATALOG_SQL, catalog

_LIST = f"""
import json, chdb
rows = chdb.query({CATALOG_SQL!r}, "JSONEachRow")
print(json.dumps([json.loads(line) for line in str(rows).splitlines() if line.strip()]))
"""
TIMEOUT_S = 120


def release_catalog(python: Path) -> pd.DataFrame:
    """The lock catalog of the engine a managed environment runs (events, lock, mode, role, description)."""
    with tempfile.TemporaryDirectory() as cwd:
        done = subprocess.run([str(python), "-I", "-c", _LIST], cwd=cwd, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)  # fmt: skip
    if done.returncode != 0:
        raise EngineError(f"could not list the counters of {python}: {done.stderr.strip().splitlines()[-1:]}")
    return catalog(pd.DataFrame(json.loads(done.stdout.strip().splitlines()[-1])))


def installed_python(version: str) -> Path:
    """The Python of an installed release's environment; one clear error if it is not installed."""
    managed.release_for(version)  # an unknown version names the known ones
    status = next(s for s in managed.list_engines() if s.version == version)
    if status.state != "installed":
        raise EngineError(f"ClickHouse {version} is not installed ({status.state}): lockprof engines install {version}")
    return managed.python_of(status.path)


def lock_counters(versions: list[str]) -> pd.DataFrame:
    """One row per lock counter and release: ``present`` and the release's description of it (tidy)."""
    frames = []
    for version in versions:
        frames.append(release_catalog(installed_python(version)).assign(release=version))
    found = pd.concat(frames, ignore_index=True)
    grid = found[["event", "lock", "mode", "role"]].drop_duplicates().merge(pd.DataFrame({"release": versions}),
                                                                            how="cross")  # fmt: skip
    out = grid.merge(found[["event", "release", "description"]], on=["event", "release"], how="left")
    out["present"] = out["description"].notna()
    return out.sort_values(["lock", "mode", "role", "event", "release"], ignore_index=True)


def changed_descriptions(counters: pd.DataFrame) -> pd.DataFrame:
    """Counters whose description differs between the releases that have them: one row per distinct wording,
    with the releases that use it."""
    present = counters[counters["present"]]
    wordings = present.astype({"release": str}).groupby(["event", "description"], sort=False)["release"]
    wordings = wordings.agg(", ".join).reset_index()
    several = wordings.groupby("event")["description"].transform("size") > 1
    return wordings[several].reset_index(drop=True)
