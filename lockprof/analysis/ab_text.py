"""One sentence per engine pair and schema that says what an A/B comparison found, with its intervals.

It reads the frame of :func:`lockprof.analysis.ab.compare`; ``compare``, the report and the
validate_fix notebook print these same sentences.
"""

from __future__ import annotations

import pandas as pd

from lockprof.analysis.ab import MIN_CHANGE, MIN_REPETITIONS

PERFORMANCE = ("latency_ms", "throughput_qps")
_BETTER = {"faster"}
_WORSE = {"slower"}


def ab_headlines(frame: pd.DataFrame, min_change: float = MIN_CHANGE) -> list[str]:
    """Per (engine_a, engine_b, schema): the verdict on latency and throughput across concurrency levels.

    "The same" is said only when every point showed it (its whole interval within ± ``min_change``);
    a mixture of unchanged and inconclusive points is listed as such.
    """
    perf = frame[frame["metric"].isin(PERFORMANCE)] if not frame.empty else frame
    out = []
    for (a, b, schema), rows in perf.groupby(["engine_a", "engine_b", "schema"], sort=False):
        out.append(_headline(a, b, schema, rows, min_change))
    return out


def _headline(a: str, b: str, schema: str, rows: pd.DataFrame, min_change: float) -> str:
    verdicts = set(rows["verdict"].astype(str))
    levels = sorted(rows["concurrency"].unique())
    at = f"at every concurrency ({', '.join(map(str, levels))})"
    if verdicts <= _BETTER:
        state = f"{b} is faster than {a} {at}"
    elif verdicts <= _WORSE:
        state = f"{b} is slower than {a} {at}"
    elif verdicts <= {"unchanged"}:
        state = f"{b} and {a} perform the same within ±{min_change:.0%} {at}: every 95% interval lies within it"
    elif verdicts <= {"too_few_repetitions"}:
        reps = int(rows[["repetitions_a", "repetitions_b"]].min().min()) if "repetitions_a" in rows else 0
        state = (f"{b} vs {a}: too few repetitions to judge ({reps} paired windows per point; run with "
                 f"--repetitions {MIN_REPETITIONS} or more)")
    elif verdicts <= {"inconclusive", "unchanged"} and "inconclusive" in verdicts:
        state = (f"{b} vs {a}: no change shown, and not shown to be within ±{min_change:.0%} either; "
                 + "; ".join(f"{label} {_by_verdict(rows[rows['metric'] == metric])}"
                             for metric, label in (("latency_ms", "latency"), ("throughput_qps", "throughput"))
                             if (rows["metric"] == metric).any())
                 + " (more repetitions narrow the intervals)")
    else:
        state = f"{b} vs {a}: " + "; ".join(
            f"{label} {_by_verdict(rows[rows['metric'] == metric])}"
            for metric, label in (("latency_ms", "latency"), ("throughput_qps", "throughput"))
            if (rows["metric"] == metric).any())
    return f"{schema}: {state}. {_ranges(rows)}"


def _by_verdict(rows: pd.DataFrame) -> str:
    by = rows.groupby("verdict")["concurrency"].agg(lambda c: ", ".join(map(str, sorted(set(c)))))
    return ", ".join(f"{v.replace('_', ' ')} at c={c}" for v, c in by.items())


def _ranges(rows: pd.DataFrame) -> str:
    parts = []
    for metric, label in (("latency_ms", "median latency"), ("throughput_qps", "throughput")):
        m = rows[(rows["metric"] == metric) & rows["ratio"].notna()]
        if m.empty:
            continue
        low, high = m["ratio"].min(), m["ratio"].max()
        ratio = f"{low:.2f}×" if abs(high - low) < 0.005 else f"{low:.2f}× to {high:.2f}×"
        ci = m[["ci_low", "ci_high"]].dropna()
        interval = f" (95% intervals within {ci['ci_low'].min():.2f}–{ci['ci_high'].max():.2f}×)" if not ci.empty \
            else ""
        parts.append(f"{label} {ratio} of {rows['engine_a'].iloc[0]}'s{interval}")
    return ("Ratios: " + "; ".join(parts) + ".") if parts else ""
