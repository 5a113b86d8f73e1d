"""Lock utilization, the 1/h ceiling and the queueing forecast on a real run."""

from __future__ import annotations

from lockprof.analysis import (
    forecast_vs_measured,
    load_run,
    lock_utilization,
)


def test_on_a_real_run(tiny_run):
    run = load_run(tiny_run)
    util = lock_utilization(run)
    assert not util.empty
    assert (util["utilization"] >= 0).all()
    parts = util[util["lock"] == "parts"]
    assert not parts.empty, "the tiny scenario plans over hundreds of parts under the parts lock"
    shared = parts[parts["mode"] == "shared"]
    assert shared["ceiling_qps"].isna().all()
    check = forecast_vs_measured(run)
    assert list(check.columns)[-2:] == ["relative_error", "note"]
    assert (check["concurrency"] > check["base_concurrency"]).all()
