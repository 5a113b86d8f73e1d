"""Figures of a real run: each readable, with plain titles and units."""

from __future__ import annotations

from figure_checks import assert_readable

from lockprof import plots
from lockprof.analysis import load_run


def test_figures_on_a_real_run(tiny_run):
    run = load_run(tiny_run)
    figures = plots.report_figures(run)
    for fig in figures.values():
        assert_readable(fig)
    series = plots.sampler_series(run)
    assert any(ax.lines for ax in series.axes), "the events sampler recorded lock counters"
    latency = plots.latency_vs_concurrency(run)
    assert len(latency.axes[0].lines) == 4  # median and p99 for each of two schemas
