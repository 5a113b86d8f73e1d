"""Errors a user can act on. Each carries the exit code `main` turns it into."""

from __future__ import annotations

from typing import NamedTuple


class LockprofError(Exception):
    """A problem with a clear message for the user; never a traceback."""

    exit_code = 1


class ScenarioError(LockprofError):
    """The scenario file cannot be loaded or is rejected by the engine."""

    exit_code = 2


class EngineError(LockprofError):
    """The engine cannot be started, reached or understood."""

    exit_code = 3


class RunDirError(LockprofError):
    """A run directory is missing, unreadable or of an unknown format."""

    exit_code = 4


class OutExists(LockprofError):
    """The run directory to create exists (another run took the name first, after the early check): a bad
    ``--out``, exit 1, like the check before any engine starts; no unreadable run directory is involved."""

    exit_code = 1


class StorageError(LockprofError):
    """The run directory cannot be written (disk full, quota): the run ends, keeping what was written."""

    exit_code = 1


class Interrupted(LockprofError):
    """The user stopped the run; what was measured is kept."""

    exit_code = 130


class LevelsFailed(LockprofError):
    """The run finished, but some level's queries failed too often to be a measurement."""

    exit_code = 5


class PipeError(NamedTuple):
    """How an error a worker reports is raised again in the orchestrator: its class and message."""

    error: type[LockprofError]
    message: str  # a format of {engine} (the worker's label) and {error} (the worker's text)


# The kinds of error that cross the pipe from an engine worker process, by name. Anything else a worker
# reports (another LockprofError, a bug in it: "internal") is the engine's problem, an EngineError naming it.
PIPE_ERRORS: dict[str, PipeError] = {
    "ScenarioError": PipeError(ScenarioError, "{error}"),
    "StorageError": PipeError(StorageError, "{error}"),
    "Interrupted": PipeError(Interrupted, "{engine}: interrupted"),
    "EngineError": PipeError(EngineError, "engine {engine}: {error}"),
}
INTERNAL = "internal"  # the kind of an exception that is not a LockprofError (its traceback is in the log)


def pipe_kind(exc: BaseException) -> str:
    """The name an error crosses the pipe under (Ctrl-C in a worker is an interruption)."""
    if isinstance(exc, KeyboardInterrupt):
        return "Interrupted"
    for name, kind in PIPE_ERRORS.items():
        if isinstance(exc, kind.error):
            return name
    return "EngineError" if isinstance(exc, LockprofError) else INTERNAL


def from_pipe(kind: str, error: str, engine: str) -> LockprofError:
    """The error to raise in the orchestrator for a worker's failed reply."""
    known = PIPE_ERRORS.get(kind, PIPE_ERRORS["EngineError"])
    return known.error(known.message.format(engine=engine, error=error))
