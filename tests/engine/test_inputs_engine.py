"""Every input checked before expensive work: one message, the documented exit code, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY, lockprof_cli

from lockprof.errors import RunDirError


@pytest.mark.parametrize(
    "args, message",
    [
        (["--duration", "nan"], "--duration"),
        (["--duration", "inf"], "--duration"),
        (["--duration", "-1"], "--duration"),
        (["--duration", "1e9"], "--duration"),
        (["--warmup", "-0.5"], "--warmup"),
        (["--sample-interval", "0"], "--sample-interval"),
        (["--repetitions", "0"], "--repetitions"),
        (["--repetitions", "1.5"], "--repetitions"),
        (["--concurrency", "100000"], "at most 1024"),
        (["--rate", "inf"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--no-such-option"], "unrecognized arguments"),
    ],
)
def test_bad_option_values_are_refused_with_exit_1(tmp_path, args, message):
    out = tmp_path / "r"
    result = lockprof_cli("run", str(TINY), "--out", str(out), *args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and result.stderr.count("error:") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("http://[::1", "malformed server spec"),
        ("http://host:99999", "malformed server spec"),
        ("http://host:x", "malformed server spec"),
        ("http://u@localhost:1?timeout=nan", "?timeout="),
        ("http://u@localhost:1?stacks=-5", "?stacks="),
        ("http://:80", "no host"),
    ],
)
def test_malformed_engine_specs_are_refused_before_any_engine_starts(tmp_path, spec, message):
    out = tmp_path / "r"
    # the valid first spec would install an engine environment; the bad second one is refused first
    result = lockprof_cli("run", str(TINY), "--out", str(out), "--engine", "25.8", "--engine", spec,
                          "--duration", "0.2")
    assert result.returncode == 3, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "installing" not in result.stderr.lower() and "starting" not in result.stderr
    assert not out.exists()


def test_out_that_cannot_be_created_is_refused_before_datasets_are_built(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    existing = tmp_path / "existing"
    existing.mkdir()
    for out, message in [(existing, "already exists"), (blocker / "run", "not a directory"),
                         (tmp_path / ("x" * 300), "longer than a file name")]:
        result = lockprof_cli("run", str(TINY), "--out", str(out), "--duration", "0.2")
        assert result.returncode == 1, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert "starting" not in result.stderr  # refused before the engine and its datasets


def damaged_copies(run: Path, tmp_path: Path) -> list[tuple[Path, str]]:
    """Copies of a real run, each damaged in one way, with the file the error must name."""
    cases = []

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(run, target)
        return target

    r = copy("truncated_parquet")
    part = sorted((r / "queries").glob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    cases.append((r, str(part)))
    r = copy("garbage_parquet")
    part = sorted((r / "levels").glob("*.parquet"))[0]
    part.write_bytes(b"not parquet at all")
    cases.append((r, str(part)))
    r = copy("manifest_not_object")
    (r / "manifest.json").write_text("[1, 2]")
    cases.append((r, "manifest.json"))
    r = copy("manifest_missing_keys")
    manifest = json.loads((r / "manifest.json").read_text())
    del manifest["engines"]
    (r / "manifest.json").write_text(json.dumps(manifest))
    cases.append((r, "manifest.json"))
    r = copy("manifest_wrong_type")  # found by the fuzzer: the analysis crashed on it
    manifest = json.loads((r / "manifest.json").read_text())
    manifest["datasets"] = []
    (r / "manifest.json").write_text(json.dumps(manifest))
    cases.append((r, "manifest.json"))
    r = copy("manifest_binary")
    (r / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    cases.append((r, "manifest.json"))
    return cases


def test_damaged_run_directories_exit_4_naming_the_file(tiny_run, tmp_path):
    from lockprof.analysis import load_run

    for run, name in damaged_copies(tiny_run, tmp_path):
        with pytest.raises(RunDirError, match=name.replace(".", r"\.")):
            load_run(run)
        for command in (["summary", str(run)], ["report", str(run), "--out", str(tmp_path / f"{run.name}.html")]):
            result = lockprof_cli(*command)
            assert result.returncode == 4, (run.name, command, result.stderr)
            assert name in result.stderr and "Traceback" not in result.stderr, result.stderr
