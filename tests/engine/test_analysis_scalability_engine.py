"""USL fits on a real run: two levels are too few points, so NaN and a note, never a crash."""

from __future__ import annotations

from lockprof.analysis import load_run, usl_fits


def test_on_a_real_run_with_two_levels(tiny_run):
    fits = usl_fits(load_run(tiny_run))
    assert set(fits["schema"]) == {"day", "namespace_day"}
    assert fits["sigma"].isna().all()
    assert fits["note"].str.contains("got 2").all()
