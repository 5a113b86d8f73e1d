"""Shared fixtures, the fast/engine test layers, and waiting helpers.

Every test uses one dataset cache per session, so datasets are built once, and the
embedded engine (one data path per process) is opened once per test process.

Layers: the folder decides. Tests in ``tests/unit`` are ``fast`` (synthetic data, parsing,
errors: no engine); tests in ``tests/engine`` are ``engine`` (they open the real engine,
start a server, run lockprof against one, or run pytest itself). ``python -m pytest -m fast``
runs the unit folder, and a session that runs only fast tests installs an engine guard
(``tests/engine_guard``) in itself and in every process it starts, so a unit test that
opens an engine anyway fails loudly instead of being counted as fast.

Helpers shared by both folders (this file, ``synthetic_runs``, ``ab_synthetic``, ``launched``,
``stack_cases``, ``figure_checks``) live in ``tests/``, which is on ``sys.path`` (the
``pythonpath`` setting in pyproject.toml, and pytest's rootdir conftest import), so
``from conftest import ...`` works in both folders.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SCENARIOS = TESTS / "scenarios"
TINY = SCENARIOS / "tiny.py"
GUARD_DIR = TESTS / "engine_guard"
# The layer folders and the marker each one's tests get.
LAYERS = {TESTS / "unit": "fast", TESTS / "engine": "engine"}

T = TypeVar("T")


def layer_of(path: Path) -> str | None:
    """The layer of a test file: the marker of the layer folder it lies in, or None outside both."""
    for folder, marker in LAYERS.items():
        if path.resolve().is_relative_to(folder):
            return marker
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test fast or engine by its folder, before ``-m`` selects among them."""
    outside = []
    for item in items:
        marker = layer_of(Path(item.path))
        if marker is None:
            outside.append(item.nodeid)
            continue
        if marker == "fast" and item.get_closest_marker("engine"):
            raise pytest.UsageError(f"{item.nodeid} is marked engine but lies in tests/unit: move it to tests/engine")
        item.add_marker(getattr(pytest.mark, marker))
    if outside:
        raise pytest.UsageError("tests outside tests/unit and tests/engine have no layer: " + ", ".join(outside))


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
