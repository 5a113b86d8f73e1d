"""Shared fixtures, the fast/engine test layers, and waiting helpers.

Every test uses one dataset cache per session, so datasets are built once, and the
embedded engine (one data path per process) is opened once per test process.

Layers: a test is ``fast`` when its module is in :data:`FAST_MODULES` and neither it nor
any fixture it uses needs an engine (see :func:`needs_engine`), and it is not marked
``engine`` by hand (done for the slow checks that run pytest itself); every other test is
``engine``. ``python -m pytest -m fast`` runs the fast layer, and a session that runs
only fast tests installs an engine guard (``tests/engine_guard``) in itself and in every
process it starts, so a test that opens an engine anyway fails loudly instead of being
counted as fast.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TINY = SCENARIOS / "tiny.py"
GUARD_DIR = Path(__file__).resolve().parent / "engine_guard"

# Modules whose tests work on synthetic data, parse, or check errors. A test in one of them is still an
# engine test when it uses an engine fixture or its source (or a fixture's) starts one, see needs_engine.
FAST_MODULES = frozenset({
    "test_ab_stats",
    "test_notebook_run",
    "test_analysis_columnar",
    "test_analysis_scalability",
    "test_analysis_utilization",
    "test_benchmarks",
    "test_compare_cli",
    "test_diagnosis",
    "test_engines",
    "test_flamegraph",
    "test_host_load",
    "test_inputs",
    "test_layers",
    "test_locks",
    "test_outside",
    "test_packaging",
    "test_plots",
    "test_pyspy",
    "test_query_threads",
    "test_sampler_registry",
    "test_report",
    "test_scenario",
    "test_silent",
    "test_stacks",
    "test_tail",
    "test_store",
})
# Fixtures that open an engine or produce a run by running one.
ENGINE_FIXTURES = frozenset({"engine", "tiny_run", "launched_run", "server", "served", "emulated", "busy_process"})
# Calls in a test's (or a fixture's) source that open an engine or run one in a subprocess.
ENGINE_CALLS = ('lockprof_cli("run"', 'lockprof_cli("observe"', "open_engine(", "serve(", "run_module(")

T = TypeVar("T")


def needs_engine(item: pytest.Item) -> bool:
    """Whether a test needs an engine: by the fixtures it uses, or by what its source and theirs call."""
    names = set(getattr(item, "fixturenames", ()))
    if names & ENGINE_FIXTURES:
        return True
    functions: list[Callable[..., object]] = [getattr(item, "function", None)]
    infos = getattr(item, "_fixtureinfo", None)
    for defs in (infos.name2fixturedefs.values() if infos else ()):
        functions.extend(d.func for d in defs)
    for func in functions:
        if func is None:
            continue
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            continue
        if any(call in source for call in ENGINE_CALLS):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test fast or engine before ``-m`` selects among them."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        if module in FAST_MODULES and not item.get_closest_marker("engine") and not needs_engine(item):
            item.add_marker(pytest.mark.fast)
        else:
            item.add_marker(pytest.mark.engine)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A session of fast tests only gets the engine guard, in itself and in every process it starts."""
    if not session.items or any(item.get_closest_marker("engine") for item in session.items):
        return
    if "chdb" in sys.modules:
        raise pytest.UsageError("chdb was imported while collecting the fast subset: a fast test module imports "
                                "the engine at import time")
    # loaded by path: the name sitecustomize is for the child processes, which find it on PYTHONPATH
    spec = importlib.util.spec_from_file_location("lockprof_engine_guard", GUARD_DIR / "sitecustomize.py")
    guard = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(guard)
    guard.install()
    os.environ["LOCKPROF_TEST_ENGINE_GUARD"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))
    session.config.stash[GUARDED] = True


GUARDED = pytest.StashKey[bool]()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if config.stash.get(GUARDED, False):
        terminalreporter.write_line("engine guard: on (fast tests only; no engine was opened)")


def wait_for(condition: Callable[[], T], timeout: float = 60.0, interval: float = 0.02, what: str = "") -> T:
    """Poll until ``condition()`` is truthy and return it; fail after ``timeout`` s.

    Tests wait for what they need instead of sleeping a fixed time that a loaded machine may not honour;
    the timeout is generous because only a broken implementation should ever reach it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def lockprof_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("lockprof-cache")
    os.environ["LOCKPROF_CACHE"] = str(cache)
    return cache


def lockprof_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `lockprof` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "lockprof", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kwargs.pop("cwd", ROOT),
        env={**os.environ, **kwargs.pop("env", {})},
        **kwargs,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, lockprof_cache: Path) -> Path:
    """A real run of the tiny scenario through the CLI, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = lockprof_cli("run", str(TINY), "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def launched_run(tmp_path_factory: pytest.TempPathFactory, lockprof_cache: Path) -> Path:
    """The tiny scenario run through the CLI on a launched ClickHouse 26.9 server (``--engine server:26.9``),
    with the tiny run's own levels; the run's TMPDIR, where the server's directory lived, is ``RUN.parent / "tmp"``."""
    from launched import VERSION, server_python

    server_python()  # the 26.9 environment, built from this environment's chDB (nothing downloaded)
    base = tmp_path_factory.mktemp("launched")
    (base / "tmp").mkdir()
    result = lockprof_cli("run", str(TINY), "--engine", f"server:{VERSION}", "--out", str(base / "run"),
                          env={"TMPDIR": str(base / "tmp")})
    assert result.returncode == 0, result.stderr + result.stdout
    return base / "run"


@pytest.fixture(scope="session")
def engine(lockprof_cache: Path):
    """The embedded engine in this test process (on its own instance slot, as a worker would)."""
    from lockprof.engines.registry import open_engine

    eng = open_engine({"kind": "embedded"})
    yield eng
    eng.close()
