"""The run directory: atomic parts, versioned manifest, nothing half-written."""

import json

import pandas as pd
import pytest

from lockprof import store
from lockprof.errors import OutExists, RunDirError


def test_run_dir_appears_with_an_incomplete_manifest_and_finishes(tmp_path):
    run = store.RunDir(tmp_path / "r", {"run_id": "x", "engines": []})
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete"
    assert manifest["format_version"] == store.FORMAT_VERSION
    run.finish("complete")
    assert store.read_manifest(tmp_path / "r")["status"] == "complete"
    # no temporary files or staging directories are left behind
    assert [p.name for p in tmp_path.iterdir()] == ["r"]
    assert [p.name for p in (tmp_path / "r").iterdir()] == ["manifest.json"]


def test_existing_directory_is_refused(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(OutExists, match="already exists") as refused:
        store.RunDir(tmp_path / "r", {})
    assert refused.value.exit_code == 1  # a bad --out (the race loser too), not an unreadable run directory


def test_parts_round_trip_and_empty_frames_write_nothing(tmp_path):
    store.write_part(tmp_path, "queries", "a-0", pd.DataFrame({"x": [1, 2]}))
    store.write_part(tmp_path, "queries", "a-1", pd.DataFrame({"x": [3]}))
    assert store.write_part(tmp_path, "events", "a-0", pd.DataFrame()) is None
    assert store.read_table(tmp_path, "queries")["x"].tolist() == [1, 2, 3]
    assert store.read_table(tmp_path, "events").empty
    assert not list((tmp_path / "queries").glob(".*"))


def test_a_failed_write_leaves_no_part(tmp_path):
    class Unwritable(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        store.write_part(tmp_path, "queries", "a-0", Unwritable({"x": [1]}))
    assert list((tmp_path / "queries").iterdir()) == []


@pytest.mark.parametrize(
    "content, message",
    [(None, "not a lockprof run directory"), ("{oops", "unreadable manifest"),
     ('{"format_version": 99}', "run format 99 is not readable")],
)
def test_unreadable_runs_are_refused_with_a_reason(tmp_path, content, message):
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(RunDirError, match=message):
        store.read_manifest(tmp_path)
