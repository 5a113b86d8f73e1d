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
from lockprof.analysis.per_query import query_counters
from lockprof.analysis.scalability import fit_usl, level_throughput, usl_fits, usl_peak, usl_throughput
from lockprof.analysis.tail import (
    exclusive_holds,
    lock_distribution,
    rare_exclusive_holds,
    tail_attribution,
    tail_lines,
)
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
    "exclusive_holds",
    "fit_usl",
    "forecast_vs_measured",
    "forecast_wait_us",
    "has_parts_range",
    "level_summary",
    "level_throughput",
    "load_run",
    "lock_budget",
    "lock_distribution",
    "lock_waits",
    "lock_utilization",
    "parts_dependence",
    "time_accounting",
    "parts_slopes",
    "query_counters",
    "queueing_wait_us",
    "rare_exclusive_holds",
    "tail_attribution",
    "tail_lines",
    "usl_fits",
    "usl_peak",
    "usl_throughput",
    "verdict_lines",
    "wait_forecast",
    "window_totals",
]
