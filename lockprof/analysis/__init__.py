"""Analysis: run directories in, tidy pandas frames out. Reads only the run directory.

Every function here is pure over a :class:`Run`; figures, the summary table, the
HTML report and the notebooks are renderers on top of these frames.
"""

from lockprof.analysis.accounting import choose_source, lock_waits, time_accounting, window_totals
from lockprof.analysis.budget import lock_budget
from lockprof.analysis.diagnosis import diagnose, verdict_lines
from lockprof.analysis.levels import level_summary
from lockprof.analysis.load import Run, load_run
from lockprof.analysis.parts import has_parts_range, parts_dependence, parts_slopes
from lockprof.analysis.scalability import fit_usl, level_throughput, usl_fits, usl_peak, usl_throughput
from lockprof.analysis.utilization import (
    ceiling_qps,
    exclusive_ceilings,
    forecast_vs_measured,
    forecast_wait_us,
    lock_utilization,
    queueing_wait_us,
    wait_forecast,
)

__all__ = [
    "Run",
    "ceiling_qps",
    "choose_source",
    "diagnose",
    "exclusive_ceilings",
    "fit_usl",
    "forecast_vs_measured",
    "forecast_wait_us",
    "has_parts_range",
    "level_summary",
    "level_throughput",
    "load_run",
    "lock_budget",
    "lock_waits",
    "lock_utilization",
    "parts_dependence",
    "time_accounting",
    "parts_slopes",
    "queueing_wait_us",
    "usl_fits",
    "usl_peak",
    "usl_throughput",
    "verdict_lines",
    "wait_forecast",
    "window_totals",
]
