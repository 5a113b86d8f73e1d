"""Per-level throughput and latency, the lock budget of a query, and the sentence that names the lock."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lockprof.analysis.load import Run

KEYS = ["engine", "schema", "concurrency"]


def level_summary(run: Run) -> pd.DataFrame:
    """Per (engine, schema, concurrency): throughput and latency over the measured windows."""
    levels = run.levels.copy()
    levels["window_s"] = levels["measure_end_s"] - levels["measure_start_s"]
    if "target_qps" not in levels:
        levels["target_qps"] = float("nan")  # runs from before open loop existed
    per_level = levels.groupby(KEYS, as_index=False).agg(
        window_s=("window_s", "sum"),
        queries=("queries", "sum"),
        errors=("errors", "sum"),
        repetitions=("repetition", "nunique"),
        active_parts=("active_parts_before", "mean"),
        interrupted=("interrupted", "any"),
        target_qps=("target_qps", "first"),
    )
    ok = run.measured()
    ok = ok[ok["error"].isna()]
    latency = ok.groupby(KEYS, as_index=False)["latency_ms"].agg(
        p50_ms="median",
        p99_ms=lambda s: float(np.percentile(s, 99)),
        mean_ms="mean",
    )
    out = per_level.merge(latency, on=KEYS, how="left")
    if "queue_delay_ms" in ok:
        delay = ok.groupby(KEYS, as_index=False)["queue_delay_ms"].agg(
            queue_delay_p99_ms=lambda s: float(np.percentile(s, 99))
        )
        out = out.merge(delay, on=KEYS, how="left")
    out["throughput_qps"] = out["queries"] / out["window_s"]
    return out.sort_values(KEYS, ignore_index=True)


def lock_budget(run: Run) -> pd.DataFrame:
    """Per (engine, schema, concurrency, lock, mode): wait, hold and acquisitions per query.

    Figures come from each query's own ProfileEvents where the engine keeps a query log
    (``source = query_log``); otherwise from ``system.events`` deltas over the level divided
    by the queries it ran (``source = events``), which also counts the samplers' own queries.
    """
    from_log = _budget_from_query_log(run)
    have = set(map(tuple, from_log[["engine"]].drop_duplicates().to_numpy())) if not from_log.empty else set()
    from_events = _budget_from_events(run, exclude_engines={e for (e,) in have})
    found = [f for f in (from_log, from_events) if not f.empty]
    budget = pd.concat(found, ignore_index=True) if found else pd.DataFrame()
    if budget.empty:
        return pd.DataFrame(columns=[*KEYS, "lock", "mode", "wait_us_per_query", "hold_us_per_query",
                                     "acquisitions_per_query", "wait_share_of_latency", "source"])
    summary = level_summary(run)[[*KEYS, "mean_ms"]]
    budget = budget.merge(summary, on=KEYS, how="left")
    budget["wait_share_of_latency"] = budget["wait_us_per_query"] / (budget["mean_ms"] * 1000.0)
    return budget.drop(columns="mean_ms").sort_values([*KEYS, "lock", "mode"], ignore_index=True)


def _with_catalog(frame: pd.DataFrame, locks: pd.DataFrame) -> pd.DataFrame:
    catalog = locks[["engine", "event", "lock", "mode", "role", "to_us"]].drop_duplicates(["engine", "event"])
    out = frame.merge(catalog, on=["engine", "event"], how="inner")
    out["amount"] = np.where(out["role"] == "count", out["value"], out["value"] * out["to_us"])
    return out


def _pivot(totals: pd.DataFrame, counts: pd.DataFrame, source: str) -> pd.DataFrame:
    grouped = totals.groupby([*KEYS, "lock", "mode", "role"], as_index=False)["amount"].sum()
    wide = grouped.pivot_table(index=[*KEYS, "lock", "mode"], columns="role", values="amount", fill_value=0.0)
    wide = wide.reindex(columns=["wait", "hold", "count"], fill_value=0.0).reset_index()
    wide = wide.merge(counts, on=KEYS, how="inner")
    wide = wide[(wide["wait"] + wide["hold"] + wide["count"]) > 0]
    return pd.DataFrame(
        {
            **{k: wide[k] for k in KEYS},
            "lock": wide["lock"],
            "mode": wide["mode"],
            "wait_us_per_query": wide["wait"] / wide["n"],
            "hold_us_per_query": wide["hold"] / wide["n"],
            "acquisitions_per_query": wide["count"] / wide["n"],
            "source": source,
        }
    )


def _budget_from_query_log(run: Run) -> pd.DataFrame:
    measured = run.measured()
    if run.query_events.empty or measured.empty:
        return pd.DataFrame()
    events = run.query_events
    # Membership through an Index of unique values: pandas' isin on a long column of strings is
    # orders of magnitude slower, and a run holds dozens of ProfileEvents per query.
    logged = measured[_member(measured["query_id"], events["query_id"])].drop_duplicates("query_id")
    counts = logged.groupby(KEYS, as_index=False).size().rename(columns={"size": "n"})
    events = events[_member(events["event"], run.locks["event"])]  # only lock events count here
    position = pd.Index(logged["query_id"]).get_indexer(events["query_id"])
    events = events[position >= 0].reset_index(drop=True)
    levels = logged[KEYS[1:]].iloc[position[position >= 0]].reset_index(drop=True)
    events = pd.concat([events, levels], axis=1)
    return _pivot(_with_catalog(events, run.locks), counts, "query_log")


def _member(values: pd.Series, allowed: pd.Series) -> np.ndarray:
    """values.isin(allowed), fast for long string columns."""
    return pd.Index(allowed.unique()).get_indexer(values) >= 0


def _budget_from_events(run: Run, exclude_engines: set[str]) -> pd.DataFrame:
    events = run.events[~run.events["engine"].isin(exclude_engines)]
    if events.empty:
        return pd.DataFrame()
    # Counter deltas span the whole level, warm-up and background included, so divide by all of it.
    queries = run.queries[~run.queries["engine"].isin(exclude_engines)]
    counts = queries.groupby(KEYS, as_index=False).size().rename(columns={"size": "n"})
    totals = events.rename(columns={"delta": "value"})
    return _pivot(_with_catalog(totals, run.locks), counts, "events")


def dominant_lock_sentences(
    run: Run, budget: pd.DataFrame | None = None, summary: pd.DataFrame | None = None
) -> list[str]:
    """One plain sentence per (engine, schema), computed from the lock budget at the highest concurrency.

    Callers that already hold the run's lock budget and level summary pass them, so a large run
    is not analysed twice.
    """
    budget = lock_budget(run) if budget is None else budget
    summary = level_summary(run) if summary is None else summary
    if budget.empty:
        return ["No lock events were recorded, so no lock can be named."]
    keys = run.partition_keys()
    budget = budget.assign(lock_time_us=budget["wait_us_per_query"] + budget["hold_us_per_query"])
    sentences = []
    for (engine, schema), group in budget.groupby(["engine", "schema"], sort=True):
        top_c = group["concurrency"].max()
        at_top = group[group["concurrency"] == top_c]
        by_lock = at_top.groupby("lock")["lock_time_us"].sum().sort_values(ascending=False)
        if by_lock.empty or by_lock.iloc[0] <= 0:
            sentences.append(f"{engine} / {schema}: no lock time was recorded.")
            continue
        lock = by_lock.index[0]
        rows = at_top[at_top["lock"] == lock].sort_values("lock_time_us", ascending=False)
        main = rows.iloc[0]
        latency = summary[(summary["engine"] == engine) & (summary["schema"] == schema)
                          & (summary["concurrency"] == top_c)]["mean_ms"]
        share = ""
        if not latency.empty and latency.iloc[0] > 0:
            share = f" ({main['wait_us_per_query'] / (latency.iloc[0] * 1000):.1%} of mean latency spent waiting)"
        modes = " and ".join(
            f"{r['mode']} ({r['hold_us_per_query']:.0f} µs held, {r['wait_us_per_query']:.0f} µs waited)"
            for _, r in rows.iterrows()
        )
        partition = f" (PARTITION BY {keys[schema]})" if keys.get(schema) else ""
        sentences.append(
            f"{engine} / {schema}{partition}: the dominant lock is the {lock.replace('_', ' ')} lock, "
            f"taken mostly in {main['mode']} mode; per query at concurrency {top_c}: {modes}{share}."
        )
    sentences.extend(_parts_lock_modes(budget))
    sentences.extend(_schema_contrast(budget))
    return sentences


def _parts_lock_modes(budget: pd.DataFrame) -> list[str]:
    """How SELECTs take the MergeTree parts lock, the lock of the motivating case, per schema."""
    parts = budget[budget["lock"] == "parts"]
    out = []
    for (engine, schema), group in parts.groupby(["engine", "schema"], sort=True):
        top_c = group["concurrency"].max()
        at_top = group[group["concurrency"] == top_c].set_index("mode")
        described = [
            f"{mode} {r['acquisitions_per_query']:.3g}×/query ({r['wait_us_per_query']:.1f} µs wait, "
            f"{r['hold_us_per_query']:.1f} µs hold)"
            for mode, r in at_top.iterrows()
            if r["acquisitions_per_query"] >= 0.001 or r["hold_us_per_query"] >= 0.05
        ]
        if described:
            out.append(f"{engine} / {schema}: the parts lock is taken {'; '.join(described)} at concurrency {top_c}.")
    return out


def _schema_contrast(budget: pd.DataFrame) -> list[str]:
    """Compare the parts-lock hold per query between schemas at the lowest concurrency, where the hold
    is the lock's own service time and not inflated by threads preempted while holding it."""
    parts = budget[budget["lock"] == "parts"]
    out = []
    for engine, group in parts.groupby("engine"):
        low_c = group["concurrency"].min()
        hold = group[group["concurrency"] == low_c].groupby("schema")["hold_us_per_query"].sum()
        if len(hold) < 2 or hold.min() <= 0:
            continue
        low, high = hold.idxmin(), hold.idxmax()
        out.append(
            f"{engine}: at concurrency {low_c} the parts lock is held {hold[high] / hold[low]:.1f}× longer "
            f"per query on {high} ({hold[high]:.0f} µs) than on {low} ({hold[low]:.0f} µs)."
        )
    return out
