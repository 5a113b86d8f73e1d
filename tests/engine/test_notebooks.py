"""The analysts' notebooks execute headless against real runs; a notebook that errors fails the suite."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT, TINY, lockprof_cli
from nbclient import NotebookClient

from lockprof import plots
from lockprof.analysis import ab, forecast_vs_measured, load_run, tail_lines, verdict_lines
from lockprof.analysis.capacity import capacity_sentences
from lockprof.analysis.utilization import no_forecast_reason
from lockprof.report import load_runs

NOTEBOOKS = ROOT / "notebooks"


def execute(name: str, run: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    old = os.environ.get("LOCKPROF_RUN")
    os.environ["LOCKPROF_RUN"] = run  # the kernel inherits it: the notebook's parameter cell reads it
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        if old is None:
            os.environ.pop("LOCKPROF_RUN", None)
        else:
            os.environ["LOCKPROF_RUN"] = old
    return nb


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text the notebook showed, and how many images."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text.append(out.text)
            data = out.get("data", {})
            images += "image/png" in data
            text.extend(str(data[k]) for k in ("text/plain", "text/markdown") if k in data)
    return "\n".join(text), images


@pytest.fixture(scope="module")
def second_run(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short second single-engine run, to compare two runs."""
    out = tmp_path_factory.mktemp("second") / "tiny2"
    result = lockprof_cli("run", str(TINY), "--out", str(out), "--duration", "0.5", "--warmup", "0.1")
    assert result.returncode == 0, result.stderr
    return out


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} carries outputs"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "LOCKPROF_RUN" in tagged[0].source, path.name


def test_explore_run(tiny_run):
    text, images = outputs(execute("explore_run", str(tiny_run)))
    assert "namespace_day" in text and "thread_ms" in text
    for line in verdict_lines(load_run(tiny_run)):  # the verdicts, word for word as summary and report print them
        assert line in text
    assert "needs at least 3 concurrency levels" in text  # two levels: the USL fit says why it is empty
    if forecast_vs_measured(load_run(tiny_run)).empty:  # why not, in the report's words
        assert no_forecast_reason(load_run(tiny_run)) in text
    assert images >= 7  # with the latency over time and the latency distribution per level
    assert "window_t_s" in text  # the slowest queries of each level, with when they started
    for line in tail_lines(load_run(tiny_run)):  # beyond the mean: the summary's and the report's sentences
        assert line in text
    assert "own_threads_us" in text and "median of" in text  # the drill-down: every counter, beside the median
    for line in capacity_sentences(load_run(tiny_run), 64):  # the capacity forecast, as the report says it
        assert line in text


def test_partition_schemas(tiny_run):
    text, images = outputs(execute("partition_schemas", str(tiny_run)))
    assert "namespace_day" in text and "per_1000_parts" in text
    assert images >= 3


def test_validate_fix_with_one_engine_says_so(tiny_run):
    text, images = outputs(execute("validate_fix", str(tiny_run)))
    assert "Only one engine here" in text


def test_validate_fix_with_two_runs_compares_them(tiny_run, second_run):
    nb = execute("validate_fix", f"{tiny_run}{os.pathsep}{second_run}")
    text, images = outputs(nb)
    assert "Only one engine here" not in text
    assert "latency_ms" in text and "verdict" in text
    assert "not a sweep: this run has 2 engines" in text  # the sweep cell says why it shows nothing
    assert images >= 2  # the forest plot and the capacity figure
    sentences = capacity_sentences(load_runs([tiny_run, second_run]), 64)  # the runs as the notebook combines them
    assert " at 64 cores " in sentences[0]  # two engines: the difference first
    for line in sentences:
        assert line in text
    # the rows the forest plot promises (the notebook shows its frame beside it): latency and throughput
    forest = next(c for c in nb.cells if "ab_forest" in c.source)
    shown = "\n".join(str(o.get("data", {}).get("text/plain", "")) for o in forest.outputs)
    frame = ab.compare(load_run(tiny_run), load_run(second_run)).frame
    promised = plots.forest_frame(frame, metrics=("latency_ms", "throughput_qps"))["label"]
    assert any("latency_ms" in label for label in promised)
    for label in promised:
        assert label in shown
