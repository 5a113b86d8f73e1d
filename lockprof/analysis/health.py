"""Run health: the checks every renderer prints before the numbers, and the thresholds they use.

They live in the analysis so that the summary, the report and the notebooks print the same
sentences, and so that no renderer needs the orchestrator or a sampler to know a threshold.
"""

from __future__ import annotations

import pandas as pd

from lockprof.analysis.host import BUSY_OTHER_SHARE, busy_host
from lockprof.analysis.load import Run

ACHIEVED_FRACTION = 0.95  # an open-loop level below this share of its target rate did not achieve it
SATURATED_GIL_DEMAND = 0.8  # the driver's threads needed the GIL this share of the time: it may limit the load
FEW_PER_THREAD = 3  # a closed-loop window in which a query thread completes fewer queries than this measures little


def run_warnings(run: Run, summary: pd.DataFrame) -> list[str]:
    """What a reader must know before trusting the run's numbers, one sentence each: an incomplete run, an engine
    that serialized queries, a saturated driver, unmet target rates, failed levels and queries, sampler failures,
    and a machine busy with other processes. ``summary`` is :func:`level_summary` of the run."""
    out = []
    for m in run.manifests:
        if not m.complete:
            out.append(f"run {m.run_id} is incomplete: {'; '.join(m.failures) or 'it did not finish'}")
    for m in run.manifests:
        for engine in m.engines:
            check = engine.get("self_check") or {}
            if check.get("verdict") == "serialized":
                out.append(
                    f"engine {engine['label']} serialized queries in its self-check (speed-up "
                    f"{check['speedup']:.2f}x from 1 to 2): its results above concurrency 1 are not lock contention"
                )
    if not run.driver.empty:
        busy = run.driver[run.driver["gil_demand"] >= SATURATED_GIL_DEMAND]
        for _, r in busy.iterrows():
            out.append(
                f"the driver itself was saturated at {r['schema']} c={r['concurrency']} [{r['engine']}]: its threads "
                f"needed the GIL {r['gil_demand']:.0%} of the time, so the load generator may limit throughput"
            )
    for note in run.manifest.notes:
        out.append(note)
    short = summary[summary["throughput_qps"] < ACHIEVED_FRACTION * summary["target_qps"]]
    for _, r in short.iterrows():
        out.append(
            f"{r['engine']} / {r['schema']} c={r['concurrency']}: the target rate {r['target_qps']:g}/s was not "
            f"achieved ({r['throughput_qps']:.1f}/s); queries that never started are not in the latencies"
        )
    if "failed" in run.levels:
        for _, lv in run.levels[run.levels["failed"].fillna(False).astype(bool)].iterrows():
            share = lv.get("error_share", float("nan"))
            how = "it measured no query" if pd.isna(share) else f"{share:.0%} of its queries failed or were cut"
            out.append(f"level {lv['schema']} c={lv['concurrency']} rep {lv['repetition']} [{lv['engine']}] failed "
                       f"({how}): {str(lv.get('first_error') or '')[:300]}")
    if "p99_lower_bound" in summary:
        for _, r in summary[summary["p99_lower_bound"].fillna(False).astype(bool)].iterrows():
            out.append(f"{r['engine']} / {r['schema']} c={r['concurrency']}: {r['censored']} queries were still "
                       f"running when their window closed, one for {r['censored_max_ms']:.0f} ms, longer than the "
                       f"p99 of those that finished ({r['p99_ms']:.1f} ms): the true p99 is at least that (≥)")
    errors = int(summary["errors"].sum())
    if errors:
        out.append(f"{errors} measured queries failed; see the error column of the queries table")
    if "sampler_errors" in run.levels and run.levels["sampler_errors"].notna().any():
        out.append("a sampler failed during some levels: " + str(run.levels["sampler_errors"].dropna().iloc[0]))
    # Observe mode generates no load: the server it watches is one of the other processes, busy on purpose.
    observed = {m.run_id for m in run.manifests if m.mode == "observe"}
    by_url = {e.get("label") for m in run.manifests for e in m.engines
              if str(e.get("spec", "")).startswith(("http://", "https://"))}
    levels = run.levels[~run.levels["run_id"].isin(observed)] if "run_id" in run.levels else run.levels
    for _, b in busy_host(levels).iterrows():
        repeated = levels.loc[levels["engine"] == b["engine"], "repetition"].nunique() > 1
        rep = f" rep {b['repetition']}" if repeated else ""
        load = "" if pd.isna(b["load_avg"]) else f" (load average {b['load_avg']:.1f})"
        also = (f"; {b['busy_levels']} of its {b['levels']} levels were above {BUSY_OTHER_SHARE:.0%}"
                if b["busy_levels"] > 1 else "")
        url = (" (a server given by URL is not one of the run's processes: if it runs on this machine, its own work "
               "is counted here)" if b["engine"] in by_url else "")
        out.append(f"the machine was busy during {b['schema']} c={b['concurrency']}{rep} [{b['engine']}]: other "
                   f"processes used {b['host_other_cpu_share']:.0%} of its {b['host_cpus']:.0f} cores{load}{url}; "
                   f"CPU-wait figures include their load{also}")
    return out
