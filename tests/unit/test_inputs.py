"""Every input checked before expensive work: one message, the documented exit code, nothing written."""

from __future__ import annotations

import json

import pytest

from lockprof import store
from lockprof.errors import RunDirError


def test_a_manifest_must_hold_what_readers_rely_on(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": store.FORMAT_VERSION}))
    with pytest.raises(RunDirError, match="'run_id' is missing"):
        store.read_manifest(tmp_path)
