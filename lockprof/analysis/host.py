"""Was the machine busy with other work while the levels ran?

Other processes take cores from the engine's threads, and the CPU-wait a query reports then
includes their load, not only the run's. The levels table records, per window, the share of
all the machine's cores the run's processes and all other processes used
(:mod:`lockprof.samplers.host`).
"""

from __future__ import annotations

import pandas as pd

# Other processes using a quarter of the machine (half a core of two): the engine's threads then have about
# three quarters of the cores they would otherwise have, and at a concurrency at or above the core count the
# CPU-wait per query grows by about a third from that load alone, an effect the size of those the verdict
# reads. Below it, short bursts of background work and the few percent by which the kernel's tick counts of
# the machine and of processes disagree are not worth a warning.
BUSY_OTHER_SHARE = 0.25

COLUMNS = ["engine", "schema", "concurrency", "repetition", "host_other_cpu_share", "run_cpu_share", "host_cpus",
           "load_avg", "busy_levels", "levels"]


def busy_host(levels: pd.DataFrame, threshold: float = BUSY_OTHER_SHARE) -> pd.DataFrame:
    """Per engine whose levels include one where other processes used more than ``threshold`` of the machine:
    the worst such level, its figures (``load_avg`` is the larger of the window's two 1-minute load averages),
    how many of the engine's levels were above the threshold and how many had a figure. Levels without the
    figure (older runs, a machine without /proc) are left out, never taken as idle or busy."""
    if levels.empty or "host_other_cpu_share" not in levels:
        return pd.DataFrame(columns=COLUMNS)
    rows = levels.assign(
        host_other_cpu_share=pd.to_numeric(levels["host_other_cpu_share"], errors="coerce"),
        load_avg=levels[["load_avg_start", "load_avg_end"]].apply(pd.to_numeric, errors="coerce").max(axis=1),
    ).dropna(subset=["host_other_cpu_share"])
    out = []
    for engine, group in rows.groupby("engine", sort=True):
        busy = group[group["host_other_cpu_share"] > threshold]
        if busy.empty:
            continue
        worst = busy.loc[busy["host_other_cpu_share"].idxmax()]
        out.append({**{c: worst.get(c) for c in COLUMNS[:8]}, "engine": engine, "busy_levels": len(busy),
                    "levels": len(group)})
    return pd.DataFrame(out, columns=COLUMNS)
