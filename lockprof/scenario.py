"""The scenario model: what scenario scripts build, and how lockprof loads them.

A scenario script is a plain Python file that assigns a :class:`Scenario` to a
module-level name ``scenario``. Everything is declarative data, so the same
scenario runs unchanged on any engine and is recorded verbatim in the run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockprof.errors import ScenarioError
from lockprof.sqltext import READING, strip_comments

ParamFactory = Callable[[random.Random], Mapping[str, Any]]


@dataclass(frozen=True)
class Schema:
    """One schema variant: a table DDL (with ``{table}`` for its name) and how to fill it.

    ``populate`` statements run once per dataset, with merges stopped, and the
    result is cached; ``{table}`` in them is replaced by the table's full name.
    """

    name: str
    ddl: str
    populate: Sequence[str] = ()
    description: str = ""


@dataclass(frozen=True)
class Query:
    """A query template. ``{table}`` names the schema's table; values come from
    ClickHouse query parameters (``{ns:UInt32}``) drawn by ``params`` from a seeded RNG.
    """

    name: str
    sql: str
    params: ParamFactory | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class Background:
    """A statement repeated in its own thread during every measured level, such as
    an INSERT that keeps creating parts while the queries read."""

    name: str
    sql: str
    params: ParamFactory | None = None
    pause_s: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """A workload: schema variants, queries, and the sweep to run them through."""

    name: str
    schemas: Sequence[Schema]
    queries: Sequence[Query]
    concurrency: Sequence[int] = (1, 2, 4)
    warmup_s: float = 1.0
    duration_s: float = 5.0
    seed: int = 42
    background: Sequence[Background] = ()
    # ClickHouse settings sent with every measured query and background statement (and their check before
    # measuring), beside the text like lockprof's own; the engine must know each name.
    settings: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ScenarioError("; ".join(problems))

    @property
    def writes(self) -> bool:
        """Whether running it changes its table: a background writer, or a measured query that is not a read
        (an INSERT measured as a query). Its dataset then serves one run and is described as it is after the
        check before measuring."""
        return bool(self.background) or any(not READING.match(strip_comments(q.sql)) for q in self.queries)

    def schema(self, name: str) -> Schema:
        for schema in self.schemas:
            if schema.name == name:
                return schema
        known = ", ".join(s.name for s in self.schemas)
        raise ScenarioError(f"scenario {self.name!r} has no schema {name!r} (it has: {known})")

    def describe(self) -> dict[str, Any]:
        """The declarative part of the scenario, as recorded in the manifest."""
        return {
            "name": self.name,
            "description": self.description,
            "schemas": [
                {"name": s.name, "ddl": s.ddl, "populate": list(s.populate), "description": s.description}
                for s in self.schemas
            ],
            "queries": [{"name": q.name, "sql": q.sql, "weight": q.weight} for q in self.queries],
            "background": [{"name": b.name, "sql": b.sql, "pause_s": b.pause_s} for b in self.background],
            "concurrency": list(self.concurrency),
            "warmup_s": self.warmup_s,
            "duration_s": self.duration_s,
            "seed": self.seed,
            "settings": dict(self.settings),
        }


def _problems(s: Scenario) -> list[str]:
    problems = []
    if not s.name or not s.name.replace("_", "").isalnum():
        problems.append(f"name must be letters, digits and underscores, got {s.name!r}")
    if not s.schemas:
        problems.append("at least one schema is needed")
    if not s.queries:
        problems.append("at least one query is needed")
    if not all(isinstance(x, Schema) for x in s.schemas) or not all(isinstance(q, Query) for q in s.queries) \
            or not all(isinstance(b, Background) for b in s.background):
        return [*problems, "schemas, queries and background must be Schema, Query and Background objects"]
    names = [x.name for x in s.schemas]
    if len(set(names)) != len(names):
        problems.append(f"schema names repeat: {names}")
    for schema in s.schemas:
        if "{table}" not in schema.ddl:
            problems.append(f"schema {schema.name!r}: its ddl must name the table as {{table}}")
    qnames = [q.name for q in s.queries]
    if len(set(qnames)) != len(qnames):
        problems.append(f"query names repeat: {qnames}")
    for q in s.queries:
        if not _number(q.weight) or not q.weight > 0:
            problems.append(f"query {q.name!r}: weight must be a positive number")
    for b in s.background:
        if not _number(b.pause_s) or not 0 <= b.pause_s <= 3600:
            problems.append(f"background {b.name!r}: pause_s must be from 0 to 3600 seconds")
    for item in [*s.queries, *s.background]:
        if not isinstance(item.sql, str) or not item.sql.strip():
            problems.append(f"{item.name!r}: sql must be a non-empty string")
        if item.params is not None and not callable(item.params):
            problems.append(f"{item.name!r}: params must be a function of a random.Random")
    if not s.concurrency or any(not _number(c) or int(c) != c or not 1 <= c <= 1024 for c in s.concurrency):
        problems.append(f"concurrency must be positive whole numbers (at most 1024), got {list(s.concurrency)}")
    if not (_number(s.duration_s) and 0 < s.duration_s <= 86_400 and _number(s.warmup_s) and 0 <= s.warmup_s <= 86_400):
        problems.append("duration_s must be positive and warmup_s not negative (finite, at most a day)")
    if not isinstance(s.seed, int) or isinstance(s.seed, bool):
        problems.append(f"seed must be a whole number, got {s.seed!r}")
    return problems + _settings_problems(s.settings)


# Settings lockprof sets on every query itself: the driver's id (query-log matching), the time limit, the thread log.
RESERVED_SETTINGS = ("log_comment", "max_execution_time", "log_query_threads", "query_id")
SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _settings_problems(settings: Any) -> list[str]:
    """What is wrong with ``Scenario.settings``: not a mapping of setting names to plain values, or a name
    lockprof sets itself on every query (the user's value would be overwritten or break the query log)."""
    if not isinstance(settings, Mapping):
        return [f"settings must be a dict of ClickHouse settings, got {type(settings).__name__}"]
    problems = []
    for name, value in settings.items():
        if not isinstance(name, str) or not SETTING_NAME.match(name):
            problems.append(f"settings: {name!r} is not a setting name")
        elif name in RESERVED_SETTINGS:
            problems.append(f"settings: {name!r} is set by lockprof on every query; leave it out")
        elif not isinstance(value, (str, int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            problems.append(f"settings: {name!r} must be a string or a finite number, got {value!r}")
    return problems


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class LoadedScenario:
    """A scenario together with the file it came from."""

    scenario: Scenario
    path: Path
    sha256: str


def load_scenario(path: str | Path) -> LoadedScenario:
    """Execute a scenario script and return its ``scenario``; any failure is one clear message."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    source = path.read_bytes()
    module_name = f"lockprof_scenario_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ScenarioError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except ScenarioError as exc:  # Scenario(...) refused its fields: the line that built it
        raise ScenarioError(f"{path}{_user_line(exc, path)}: {exc}") from None
    except SyntaxError as exc:
        raise ScenarioError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except SystemExit as exc:  # sys.exit(0) passed through would read as success
        raise ScenarioError(f"{path}{_user_line(exc, path)}: the scenario called sys.exit({exc.code!r}) while "
                            "loading; a scenario file defines `scenario` and must not end the process") from None
    except Exception as exc:  # a scenario is user code: any failure is reported, not raised
        line = _user_line(exc, path)
        raise ScenarioError(f"{path}{line}: {type(exc).__name__}: {exc}") from None
    finally:
        sys.modules.pop(module_name, None)
    scenario = getattr(module, "scenario", None)
    if not isinstance(scenario, Scenario):
        raise ScenarioError(f"{path}: must define `scenario = lockprof.Scenario(...)` at module level")
    return LoadedScenario(scenario, path.resolve(), hashlib.sha256(source).hexdigest())


PROBE_TIMEOUT_S = 300.0
_PROBE = """
import json, os, sys
from lockprof.errors import ScenarioError
from lockprof.scenario import load_scenario
try:
    load_scenario(sys.argv[1])
    result = {"ok": True}
except ScenarioError as exc:
    result = {"ok": False, "error": str(exc)}
with open(sys.argv[2], "w") as fh:
    json.dump(result, fh)
os._exit(0)  # a thread the scenario started must not keep the probe alive
"""


def probe_scenario(path: str | Path) -> None:
    """Load the scenario once in a child process first: loading runs user code, and a file that ends the process
    (``os._exit``, a fatal signal) would otherwise end lockprof with the scenario's exit code and no message."""
    import subprocess
    import tempfile

    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    with tempfile.TemporaryDirectory(prefix="lockprof-probe-") as tmp:
        answer = Path(tmp) / "result.json"
        try:
            child = subprocess.run([sys.executable, "-c", _PROBE, str(path), str(answer)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ScenarioError(f"{path}: loading the scenario did not finish in {PROBE_TIMEOUT_S:.0f} s") from None
        try:
            result = json.loads(answer.read_text())
        except (OSError, ValueError):
            how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
            said = child.stderr.decode(errors="replace").strip().splitlines()
            last = f": {said[-1]}" if said else ""
            raise ScenarioError(f"{path}: loading the scenario ended the process ({how}){last}; "
                                "a scenario file defines `scenario` and must not end the process") from None
    if not result["ok"]:
        raise ScenarioError(result["error"])


def _user_line(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f":{frames[-1].lineno}" if frames else ""


def dataset_key(scenario: Scenario, schema: Schema) -> str:
    """A short hash that changes whenever the data a schema holds would change."""
    blob = json.dumps({"scenario": scenario.name, "ddl": schema.ddl, "populate": list(schema.populate)})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def draw_params(factory: ParamFactory | None, rng: random.Random) -> dict[str, Any]:
    return dict(factory(rng)) if factory else {}
