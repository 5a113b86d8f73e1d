"""Errors a user can act on. Each carries the exit code `main` turns it into."""

from __future__ import annotations


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
