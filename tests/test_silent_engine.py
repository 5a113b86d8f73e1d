"""Nothing silent, on the real engine: the hostile cases of issue 31 that need one (the rest are in
``test_silent.py``)."""

from __future__ import annotations

from conftest import TINY, lockprof_cli

from lockprof.analysis import load_run

# One short level per engine: what these tests check does not need a long window.
SHORT = ("--concurrency", "1", "--duration", "0.3", "--warmup", "0.1", "--schema", "day", "--samplers", "off")


def test_an_engine_label_with_a_slash_keeps_both_sides_of_an_ab(tmp_path):
    berlin = "embedded?session_timezone=Europe/Berlin"
    result = lockprof_cli(
        "run",
        str(TINY),
        "--engine",
        "embedded",
        "--engine",
        berlin,
        "--repetitions",
        "1",
        *SHORT,
        "--out",
        str(tmp_path / "run"),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    run = load_run(tmp_path / "run")
    labels = sorted(e["label"] for e in run.manifest["engines"])
    assert sorted(run.levels["engine"].unique()) == labels == ["embedded", "embedded+session_timezone=Europe/Berlin"]
    assert sorted(run.queries["engine"].unique()) == labels
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_dir() and p.parent.name in ("queries", "levels")]


def test_a_misspelled_engine_setting_is_refused_with_the_nearest_name(tmp_path):
    result = lockprof_cli("run", str(TINY), "--engine", "embedded?max_threadz=1", *SHORT, "--out", str(tmp_path / "r"))
    assert result.returncode == 3, result.stderr + result.stdout
    assert "unknown setting 'max_threadz'; did you mean 'max_threads'?" in result.stderr
    assert result.stderr.count("lockprof: error:") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()
