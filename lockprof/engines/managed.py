"""Managed engines: a ClickHouse version -> the chDB release that embeds it, in its own venv.

Two chDB versions cannot share a process, so each version gets an isolated
virtual environment under ``cache_root()/engines/<version>/``, and a worker for
that version runs under the environment's Python. An environment is built in a
temporary directory, checked by asking the engine for ``version()``, stamped
with an identity file and only then renamed into place, so a half-built or
foreign environment is never used. It is reused only while its identity still
matches the table below (asv does the same with its environments).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lockprof.engines import embedded
from lockprof.engines.base import EngineSpec
from lockprof.engines.embedded import cache_root
from lockprof.errors import EngineError

Progress = Callable[[str], None]

# Bump when the layout or the identity file changes; older environments are rebuilt.
ENV_FORMAT = 1
IDENTITY = "lockprof-engine.json"
# What a worker imports besides the engine itself; pip picks versions the pin allows
# (chdb 4.0.2 wants pandas < 3, for example).
COMPANIONS = ("pandas", "pyarrow", "numpy")


@dataclass(frozen=True)
class Release:
    """One row of the version table: the chDB distribution that embeds a ClickHouse version."""

    version: str  # ClickHouse major.minor, as a user types it
    dist: str
    dist_version: str

    @property
    def pin(self) -> str:
        return f"{self.dist}=={self.dist_version}"


# The one version table. Every pin was seen in the package index with
# `pip index versions chdb` / `pip index versions chdb-core` (chdb-core then had
# 26.1.0, 26.3.0, 26.5.0, 26.7.0, 26.7.3, 26.9.0; chdb had 4.0.2 among others).
# ensure_env checks each one against the engine's own version() when it builds it;
# built here, they reported 25.8.2.1, 26.1.2.1, 26.3.9.1, 26.5.1.1, 26.7.2.1, 26.9.2.1.
RELEASES: dict[str, Release] = {
    r.version: r
    for r in (
        Release("25.8", "chdb", "4.0.2"),  # pre-fix: SELECTs take the parts lock exclusively
        Release("26.1", "chdb-core", "26.1.0"),
        Release("26.3", "chdb-core", "26.3.0"),
        Release("26.5", "chdb-core", "26.5.0"),
        Release("26.7", "chdb-core", "26.7.0"),
        Release("26.9", "chdb-core", "26.9.0"),
    )
}


@dataclass(frozen=True)
class ManagedEnv:
    release: Release
    path: Path
    identity: dict[str, Any]

    @property
    def python(self) -> Path:
        return python_of(self.path)


@dataclass(frozen=True)
class EngineStatus:
    """One line of ``lockprof engines list``."""

    version: str
    pin: str
    state: str  # "installed", "available" or "stale: <why>"
    clickhouse_version: str
    path: Path


def known_versions() -> list[str]:
    return sorted(RELEASES, key=lambda v: tuple(int(x) for x in v.split(".")))


def release_for(version: str) -> Release:
    """The table row for a version, or an error that lists the known ones."""
    try:
        return RELEASES[version]
    except KeyError:
        raise EngineError(
            f"unknown ClickHouse version {version!r}; known versions: {', '.join(known_versions())}"
        ) from None


def parse_spec(text: str) -> EngineSpec:
    """``VERSION[?SETTING=VALUE&...]``: the embedded engine of that version, in its managed environment."""
    spec = embedded.parse_spec(text, kind="version")
    version = text.partition("?")[0]
    release_for(version)  # an unknown version: the error lists the known ones
    return replace(spec, options={**spec.options, "version": version})


def prepare(spec: EngineSpec, progress: Progress | None) -> EngineSpec:
    """The spec with its worker's interpreter: the version's environment, built first if it is missing."""
    return replace(spec, python=str(ensure_env(spec.options["version"], progress=progress).python))


def engines_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / "engines"


def python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_env(
    version: str,
    progress: Progress | None = None,
    root: Path | None = None,
    *,
    base_site_packages: Sequence[Path] = (),
) -> ManagedEnv:
    """Return the environment for a version, building it first if it is missing or stale.

    ``base_site_packages`` makes the new environment see packages of existing ones
    (a ``.pth`` file), so pip finds the pin already satisfied and downloads nothing:
    for offline machines and for tests. The identity check and the ``version()``
    verification run all the same.
    """
    release = release_for(version)
    say = progress or (lambda _text: None)
    home = engines_dir(root)
    home.mkdir(parents=True, exist_ok=True)
    target = home / release.version
    with _locked(home / f".{release.version}.lock"):
        _remove_abandoned_builds(home, release.version)
        if target.exists():
            problem = check_env(target, release)
            if problem is None:
                return ManagedEnv(release, target, read_identity(target))
            say(f"engine {version}: existing environment is stale ({problem}); rebuilding it")
            _remove(target, home)
        identity = _build(release, home, target, say, base_site_packages)
        return ManagedEnv(release, target, identity)


def read_identity(env: Path) -> dict[str, Any]:
    try:
        return json.loads((env / IDENTITY).read_text())
    except (OSError, ValueError):
        return {}


def check_env(env: Path, release: Release) -> str | None:
    """Why an existing environment cannot be reused, or None if it can."""
    ident = read_identity(env)
    if not ident:
        return "no identity file"
    if ident.get("format") != ENV_FORMAT:
        return f"format {ident.get('format')} is not {ENV_FORMAT}"
    if ident.get("pin") != release.pin:
        return f"built for {ident.get('pin')}, the table now says {release.pin}"
    try:
        probe = _probe(python_of(env), release.dist)
    except EngineError as exc:
        return str(exc)
    if probe["python"] != ident.get("python"):
        return f"its Python is now {probe['python']}, it was built with {ident.get('python')}"
    if probe["dist_version"] != release.dist_version:
        return f"{release.dist} {probe['dist_version'] or 'is missing'} instead of {release.dist_version}"
    return None


def list_engines(root: Path | None = None) -> list[EngineStatus]:
    """Every known version with whether its environment is installed, and usable."""
    out = []
    for version in known_versions():
        release = RELEASES[version]
        path = engines_dir(root) / version
        state, ch = "available", ""
        if path.exists():
            problem = check_env(path, release)
            state = "installed" if problem is None else f"stale: {problem}"
            ch = str(read_identity(path).get("clickhouse_version", ""))
        out.append(EngineStatus(version, release.pin, state, ch, path))
    return out


# --- building ---------------------------------------------------------------------------

_PROBE = """
import json, platform, sys
from importlib import metadata
try:
    v = metadata.version(sys.argv[1])
except metadata.PackageNotFoundError:
    v = ""
print(json.dumps({"python": platform.python_version(), "dist_version": v}))
"""

_VERIFY = """
import json, chdb
print(json.dumps({"clickhouse_version": str(chdb.query("SELECT version()", "TabSeparated")).strip()}))
"""


def _build(release: Release, home: Path, target: Path, say: Progress, base: Sequence[Path]) -> dict[str, Any]:
    tmp = home / f".{release.version}.building-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        say(f"engine {release.version}: creating an environment for {release.pin}")
        _run([sys.executable, "-m", "venv", str(tmp)], say, f"creating a virtual environment in {tmp}")
        python = python_of(tmp)
        if base:
            _link_site_packages(python, base)
        say(f"engine {release.version}: installing {release.pin} {' '.join(COMPANIONS)} (once; may take a minute)")
        _run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", release.pin, *COMPANIONS],
            say,
            f"installing {release.pin}",
            echo=("Collecting", "Downloading", "Installing", "Successfully", "Requirement already satisfied: chdb"),
        )
        say(f"engine {release.version}: verifying with SELECT version()")
        clickhouse = _verify(python, release)
        probe = _probe(python, release.dist)
        identity = {
            "format": ENV_FORMAT,
            "version": release.version,
            "pin": release.pin,
            "python": probe["python"],
            "clickhouse_version": clickhouse,
            "companions": list(COMPANIONS),
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        (tmp / IDENTITY).write_text(json.dumps(identity, indent=2) + "\n")
        # Only python -m ... is used from here on, which survives the rename; the
        # venv's console scripts keep the temporary path in their shebang lines.
        os.replace(tmp, target)
        say(f"engine {release.version}: ready, ClickHouse {clickhouse} ({release.pin})")
        return identity
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _verify(python: Path, release: Release) -> str:
    """Ask the engine itself which ClickHouse it is; the table could be wrong."""
    with tempfile.TemporaryDirectory() as cwd:
        out = _run([str(python), "-I", "-c", _VERIFY], None, f"running SELECT version() on {release.pin}", cwd=cwd)
    version = json.loads(out.strip().splitlines()[-1])["clickhouse_version"]
    if version.split(".")[:2] != release.version.split("."):
        raise EngineError(
            f"{release.pin} reports ClickHouse {version}, not {release.version}; the version table is wrong"
        )
    return version


def _probe(python: Path, dist: str) -> dict[str, str]:
    if not python.exists():
        raise EngineError(f"its interpreter {python} is missing")
    out = _run([str(python), "-I", "-c", _PROBE, dist], None, f"probing {python}")
    return json.loads(out.strip().splitlines()[-1])


def _link_site_packages(python: Path, base: Sequence[Path]) -> None:
    site = _run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], None, "")
    Path(site.strip()).joinpath("lockprof-base.pth").write_text("".join(f"{Path(p).resolve()}\n" for p in base))


def _run(
    cmd: list[str],
    say: Progress | None,
    what: str,
    echo: tuple[str, ...] = (),
    cwd: str | None = None,
) -> str:
    """Run a command; pass chosen output lines to progress; raise with the output's tail if it fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    from lockprof.workerproc import die_with_parent

    # pip dies with lockprof (even kill -9), and is stopped when lockprof is interrupted: no orphan finishes a build
    # nobody will use or remove.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
                            preexec_fn=die_with_parent)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if say and echo and line.strip().startswith(echo):
                say("  " + line.strip())
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.wait() != 0:
        tail = "\n    ".join(deque((x.rstrip() for x in lines), maxlen=15))
        raise EngineError(f"{what} failed (exit status {proc.returncode}):\n    {tail}")
    return "".join(lines)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder per version at a time, across processes."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_abandoned_builds(home: Path, version: str) -> None:
    """Delete the half-built environments of builders that died (killed with -9: nothing of theirs could clean up).
    Called under the version's lock, so no live builder of this version is at work."""
    for tmp in home.glob(f".{version}.building-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(target: Path, home: Path) -> None:
    """Move a stale environment aside before deleting it, so a crash never leaves half of one in place."""
    aside = home / f".{target.name}.stale-{uuid.uuid4().hex[:6]}"
    os.replace(target, aside)
    shutil.rmtree(aside, ignore_errors=True)
