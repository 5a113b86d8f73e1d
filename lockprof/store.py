"""The run directory: a versioned manifest plus Parquet tables, every file written atomically.

Layout::

    RUN/manifest.json            what ran, where, on which engines; status complete/incomplete
    RUN/<table>/<part>.parquet   one part per engine and level, so an interrupted run keeps
                                 every level it finished and nothing half-written
    RUN/logs/                    worker stderr, for crash reports

A run directory is created under a hidden temporary name and renamed into place
once its first manifest exists, so a reader never sees a directory without one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pandas as pd

from lockprof.dirformat import tables as declared
from lockprof.dirformat.manifest import FORMAT_VERSION as FORMAT_VERSION  # the store's readers know it as ours
from lockprof.dirformat.manifest import Manifest, ManifestError, UnknownFormat
from lockprof.errors import OutExists, RunDirError, StorageError

MANIFEST = "manifest.json"
# lockprof's own tables (lockprof.dirformat.tables); declared.names() also has those a sampler declared since.
TABLES = declared.names()


NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# The manifest is padded with spaces to a multiple of this, so that when the disk is full it can still be
# rewritten in place, inside blocks it already owns, and record why the run ended.
MANIFEST_RESERVE = 16 * 1024


@contextlib.contextmanager
def storage(path: Path):
    """Turn "no space left" while writing ``path`` into one StorageError that says where."""
    try:
        yield
    except OSError as exc:
        if exc.errno in NO_SPACE or "No space left" in str(exc) or "quota exceeded" in str(exc):  # pyarrow: no errno
            raise StorageError(f"cannot write {path}: {exc.strerror} (the disk or quota is full)") from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename it into place."""
    with storage(path):
        _atomic_write_bytes(path, data)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists: where a file or directory to be created would be probed."""
    while not path.exists():
        path = path.parent
    return path


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that cannot be written: a directory, a path under a file, or a
    directory lockprof may not create files in (probed, as rights and read-only disks decide it)."""
    from lockprof.errors import LockprofError

    path = Path(path)
    if path.is_dir():
        raise LockprofError(f"{option} {path}: is a directory; give a file name")
    ancestor = nearest_existing(path.absolute().parent)
    if not ancestor.is_dir():
        raise LockprofError(f"{option} {path}: {ancestor} is a file, not a directory")
    try:
        probe = tempfile.mkstemp(dir=ancestor, prefix=".lockprof-probe-")
        os.close(probe[0])
        os.unlink(probe[1])
    except OSError as exc:
        raise LockprofError(f"{option} {path}: cannot write in {ancestor}: {exc.strerror}") from None


@contextlib.contextmanager
def writing(path: Path, option: str):
    """Any failure writing an output file (after :func:`check_output_file`: a disk that filled, rights that
    changed) is one LockprofError naming the file, never a traceback."""
    from lockprof.errors import LockprofError

    try:
        with storage(path):
            yield
    except OSError as exc:
        raise LockprofError(f"{option} {path}: cannot write it: {exc.strerror or exc}") from None


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Atomically when there is room; on a full disk, in place over the padded old manifest."""
    text = (json.dumps(Manifest.of(manifest).to_dict(), indent=2, sort_keys=True, default=str) + "\n").encode()
    padded = text + b" " * (-len(text) % MANIFEST_RESERVE or MANIFEST_RESERVE)
    try:
        atomic_write_bytes(path, padded)
    except StorageError:
        if not path.exists() or path.stat().st_size < len(text):
            raise
        with open(path, "r+b") as fh:  # no new blocks needed: the old manifest's padding holds the new one
            fh.write(text + b" " * (path.stat().st_size - len(text)))
            fh.flush()
            os.fsync(fh.fileno())


# Characters a file name built from user text keeps as they are; every other one is %-escaped.
FILE_NAME_SAFE = "-_.,=+#@~"
MAX_FILE_NAME = 200  # bytes, leaving room under the usual 255 for a suffix and a temporary file's prefix


def file_name(text: str) -> str:
    """The one way user text (an engine label, a schema name) becomes a file name.

    A label is not a file name: ``embedded?session_timezone=Europe/Berlin`` would put a level's
    parts in a subdirectory no reader looks in. The name is %-escaped (``unquote`` gives the
    text back), never starts with a dot, and a name too long for a file system is cut and
    completed with a hash of the whole text. Readers take labels from the tables' columns,
    never from file names, so a label round-trips whatever it holds.
    """
    if not text:
        return "%"  # quote never makes a lone "%", so no other text gets this name
    name = quote(text.encode("utf-8", "surrogatepass"), safe=FILE_NAME_SAFE)
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name.encode()) > MAX_FILE_NAME:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[:MAX_FILE_NAME - 18].rstrip('%0123456789ABCDEF')}~{digest}"
    return name


def text_of(name: str) -> str:
    """The text a :func:`file_name` was built from (for names short enough not to be hashed)."""
    return "" if name == "%" else unquote(name, errors="surrogatepass")


def part_name(label: str, seq: int) -> str:
    """The file name of one engine's part of a table for level ``seq`` (without ``.parquet``)."""
    return f"{file_name(label)}-{seq:05d}"


def part_path(run_dir: Path, table: str, part: str) -> Path:
    """Where a part is stored. ``part`` must come from :func:`part_name` or :func:`file_name`: a name
    that would leave the table's folder or hide in it is a bug, refused loudly rather than written."""
    declared.table(table)  # an undeclared table is a bug: ValueError
    if not part or "/" in part or "\\" in part or part.startswith(".") or "\0" in part:
        raise ValueError(f"part name {part!r} is not a safe file name; build it with store.file_name")
    return Path(run_dir) / table / f"{part}.parquet"


def write_part(run_dir: Path, table: str, part: str, frame: pd.DataFrame) -> Path | None:
    """Write one Parquet part of a table atomically; empty frames write nothing."""
    path = part_path(run_dir, table, part)
    if frame.empty:
        return None
    with storage(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


# Long tables repeat a few names millions of times (dozens of ProfileEvents per query);
# reading those columns as categoricals keeps a million-query run in a few GiB, not tens.
CATEGORICAL = {t.name: t.categorical for t in declared.tables() if t.categorical}


def table_parts(run_dir: Path, table: str) -> list[Path]:
    """The Parquet parts of a table, in the order every reader concatenates them."""
    folder = Path(run_dir) / table
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """All parts of a table, concatenated; an empty frame if the run has none. A damaged part
    (truncated, not Parquet, unreadable) is a :class:`RunDirError` that names the file."""
    return read_parts(table, table_parts(run_dir, table))


def read_parts(table: str, parts: list[Path]) -> pd.DataFrame:
    """The given parts of a table (see :func:`read_table`)."""
    if not parts:
        return pd.DataFrame()
    try:
        return _read_parts(table, parts)
    except RunDirError:
        raise
    except Exception as exc:  # pyarrow's errors do not say which file; find it and name it
        raise RunDirError(_damaged_part(table, parts, exc)) from None


def _read_parts(table: str, parts: list[Path]) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    categorical = declared.table(table).categorical
    if not categorical:
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    pieces = []
    for p in parts:
        names = set(pq.read_schema(p).names)
        piece = pq.read_table(p, read_dictionary=[c for c in categorical if c in names])
        pieces.append(piece)
    merged = pa.concat_tables(pieces, promote_options="permissive").unify_dictionaries()
    return merged.to_pandas()


def check_parts(table: str, parts: list[Path]) -> None:
    """Read only the parts' footers: a truncated or foreign file, or parts whose columns do not fit
    together, are a :class:`RunDirError` naming the file before anything reads the rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not parts:
        return
    schemas = []
    for p in parts:
        try:
            schemas.append(pq.read_schema(p))
        except Exception as bad:
            raise RunDirError(f"{p}: damaged run file: {_first_line(bad)}") from None
    try:
        pa.unify_schemas(schemas, promote_options="permissive")
    except Exception as exc:
        raise RunDirError(f"{parts[0].parent}: the parts of table {table!r} do not fit together: "
                          f"{_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _damaged_part(table: str, parts: list[Path], exc: Exception) -> str:
    import pyarrow.parquet as pq

    for p in parts:
        try:
            pq.read_table(p)
        except Exception as bad:
            return f"{p}: damaged run file: {str(bad).splitlines()[0] if str(bad) else type(bad).__name__}"
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{parts[0].parent}: the parts of table {table!r} do not fit together: {first}"


def read_manifest(run_dir: Path) -> Manifest:
    """The run's manifest, upgraded from an older format; a :class:`RunDirError` names what is wrong."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a lockprof run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable manifest: {exc}") from None
    try:
        return Manifest.from_dict(manifest)
    except UnknownFormat as exc:
        raise RunDirError(f"{run_dir}: {exc}") from None
    except ManifestError as exc:
        raise RunDirError(f"{path}: {exc}") from None


class RunDir:
    """A run directory being written. The manifest says ``incomplete`` until :meth:`finish`,
    so a run killed at any point is never mistaken for a complete one."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise OutExists(f"{self.path} already exists; choose another --out")
        self.manifest = Manifest.of(manifest)  # a mapping too, as tests and benchmarks build them
        self.manifest.status = "incomplete"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}."))
        try:
            write_manifest(staging / MANIFEST, self.manifest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.rename(staging, self.path)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise OutExists(f"{self.path} already exists; choose another --out") from None

    def update(self) -> None:
        """Store what the manifest records now (see :class:`Manifest`'s methods)."""
        write_manifest(self.path / MANIFEST, self.manifest)

    def finish(self, status: str) -> None:
        self.manifest.end(status)
        self.update()

    def discard(self) -> None:
        """Remove a run that measured nothing, so no empty shell is left behind."""
        shutil.rmtree(self.path, ignore_errors=True)

    def has_measurements(self) -> bool:
        return any((self.path / "queries").glob("*.parquet"))
