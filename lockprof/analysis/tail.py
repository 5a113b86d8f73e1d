"""Beyond the mean: how each lock is spread over the queries, rare exclusive holds, and what the slowest
queries are made of.

The incident this tool exists for was queries timing out: a tail, caused by an exclusive lock held now and
then for milliseconds while every reader waited. A per-query mean turns such a hold into microseconds, so
these figures read each query's own counters (:mod:`lockprof.analysis.per_query`):

* :func:`lock_distribution`: per level and lock mode, the share of queries that took it and the spread of
  its wait and hold over queries (p50, p99, max), not only their mean;
* :func:`exclusive_holds`: every statement that held a lock exclusively, and the queries that ran beside it;
* :func:`rare_exclusive_holds`: locks that a few queries (under 5%) or background statements held
  exclusively for a millisecond or more: how often, how long, and what the queries overlapping them cost
  against the rest;
* :func:`tail_attribution`: per level, the slowest queries (p99 and above, at least three) against the middle
  half on every counter, whether they overlapped an exclusive hold, and whether they cluster in time (a
  stall), ending in one sentence.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lockprof.analysis.accounting import LEVEL, WINDOW
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run
from lockprof.analysis.per_query import counters_of, lock_columns

RARE_SHARE = 0.05  # of queries: a lock held exclusively by fewer is held rarely (a writer's race is not rare)
RARE_HOLD_US = 1000.0  # the longest hold from which a rare exclusive hold is worth a sentence
BRIEF_HOLD_US = 50.0  # per hold: an exclusive hold this long or longer can make readers wait visibly
MIDDLE_SAMPLE = 2000  # queries of the middle half whose counters are read for its means
MIN_SLOW = 3  # the tail is at least this many queries, so one odd query is not called a pattern
MIN_QUERIES = 30  # fewer queries in a level: too few to tell a tail from the middle
OVERLAP_SHARE = 0.5  # of the slow queries: overlapping an exclusive hold explains the tail when this many did…
OVERLAP_RATIO = 2.0  # …and at least this many times the share of the middle half…
LOCK_SHARE_OF_EXTRA = 0.25  # …and, where counters exist, waiting for that lock is this share of their extra time
CLUSTER_SHARE = 0.8  # a stall: this share of the slow queries started within…
CLUSTER_SPAN = 0.1  # …this share of their window
COMPONENT_TEXT = {"cpu_wait_us": "waiting for a CPU", "on_cpu_us": "on a CPU", "io_wait_us": "waiting for IO",
                  "other_us": "in \"other\" (no counter)"}


@per_run
def timed_queries(run: Run) -> pd.DataFrame:
    """The successful measured queries with their window, start, end and latency (every engine, query log or
    not)."""
    timed = run.measured([*WINDOW, "query_id", "query_name", "start_s", "latency_ms", "error"])
    timed = timed[timed["error"].isna()].drop(columns="error").drop_duplicates("query_id")
    return timed.assign(role="query", end_s=timed["start_s"] + timed["latency_ms"] / 1000.0).reset_index(drop=True)


@per_run
def lock_distribution(run: Run) -> pd.DataFrame:
    """Per (engine, schema, concurrency, lock, mode) that any query touched: how many queries took it, and
    the spread over queries of its wait, hold and hold per acquisition (µs)."""
    counters = counters_of(run, part="locks")
    counters = counters[counters["role"] == "query"] if not counters.empty else counters
    columns = [*LEVEL, "lock", "mode", "queries", "takers", "taken_share", "acquisitions_per_query",
               "hold_us_per_query", "hold_us_p50", "hold_us_p99", "hold_us_max", "hold_us_per_acquisition_max",
               "wait_us_per_query", "wait_us_p50", "wait_us_p99", "wait_us_max"]
    if counters.empty:
        return pd.DataFrame(columns=columns)
    by_mode: dict[tuple[str, str], dict[str, str]] = {}
    for lock, mode, role, column in lock_columns(counters):
        by_mode.setdefault((lock, mode), {})[role] = column
    rows = []
    for keys, level in counters.groupby(LEVEL, sort=True):
        for (lock, mode), cols in sorted(by_mode.items()):
            values = {role: level[c].to_numpy(dtype=float) for role, c in cols.items()}
            if all(np.isnan(v).all() or not np.nansum(np.abs(v)) for v in values.values()):
                continue
            took = np.zeros(len(level), dtype=bool)
            for v in values.values():
                took |= np.nan_to_num(v) > 0
            hold, count, wait = values.get("hold"), values.get("count"), values.get("wait")
            held = hold[took] if hold is not None else np.array([])
            per_acq = (hold / np.where(count > 0, count, np.nan)) if hold is not None and count is not None else None
            rows.append({
                **dict(zip(LEVEL, keys)), "lock": lock, "mode": mode, "queries": len(level), "takers": int(took.sum()),
                "taken_share": took.mean(),
                "acquisitions_per_query": float(np.nanmean(count)) if count is not None else math.nan,
                "hold_us_per_query": float(np.nanmean(hold)) if hold is not None else math.nan,
                "hold_us_p50": _quantile(held, 0.5), "hold_us_p99": _quantile(held, 0.99),
                "hold_us_max": float(held.max()) if held.size else math.nan,
                "hold_us_per_acquisition_max": float(np.nanmax(per_acq)) if per_acq is not None
                and np.isfinite(per_acq).any() else math.nan,
                "wait_us_per_query": float(np.nanmean(wait)) if wait is not None else math.nan,
                "wait_us_p50": _quantile(wait, 0.5), "wait_us_p99": _quantile(wait, 0.99),
                "wait_us_max": float(np.nanmax(wait)) if wait is not None else math.nan,
            })
    return pd.DataFrame(rows, columns=columns)


def _quantile(values: np.ndarray | None, q: float) -> float:
    if values is None or not values.size or np.isnan(values).all():
        return math.nan
    return float(np.nanquantile(values, q))


@per_run
def exclusive_holds(run: Run) -> pd.DataFrame:
    """Every statement of the measured windows (queries and background statements) that held a lock
    exclusively: when, how long, and how many of the window's queries ran beside it."""
    counters = counters_of(run, part="exclusive")
    columns = [*WINDOW, "role", "query_name", "query_id", "lock", "start_s", "end_s", "hold_us", "acquisitions",
               "overlapping_queries"]
    frames = []
    for lock, mode, role, column in lock_columns(counters) if not counters.empty else []:
        if mode != "exclusive" or role != "hold":
            continue
        count = column.removesuffix("hold_us") + "acquisitions"
        holders = counters[counters[column].fillna(0) > 0]
        frames.append(holders[[*WINDOW, "role", "query_name", "query_id", "start_s", "end_s"]].assign(
            lock=lock, hold_us=holders[column].astype(float),
            acquisitions=holders[count].astype(float) if count in holders else np.nan))
    if not frames:
        return pd.DataFrame(columns=columns)
    holds = pd.concat(frames, ignore_index=True)
    windows = dict(tuple(timed_queries(run).groupby(WINDOW, sort=False)))
    holds["overlapping_queries"] = 0
    for keys, mine in holds.groupby(WINDOW, sort=False):
        window = windows.get(keys, timed_queries(run).iloc[:0])
        starts, ends = np.sort(window["start_s"].to_numpy()), np.sort(window["end_s"].to_numpy())
        # Queries that ran at some moment of [start, end]: those started before its end, less those ended by its
        # start (a query that ended by then started before it too); less the holder itself.
        beside = (np.searchsorted(starts, mine["end_s"].to_numpy(), side="left")
                  - np.searchsorted(ends, mine["start_s"].to_numpy(), side="right"))
        holds.loc[mine.index, "overlapping_queries"] = beside - (mine["role"] == "query").to_numpy()
    return holds[columns].sort_values([*WINDOW, "start_s"], ignore_index=True)


def _beside(queries: pd.DataFrame, holds: pd.DataFrame) -> np.ndarray:
    """Which queries ran at some moment of a hold of their own window (their own holds included)."""
    out = np.zeros(len(queries), dtype=bool)
    if holds.empty or queries.empty:
        return out
    for repetition, mine in holds.groupby("repetition"):
        spans = _union(mine["start_s"].to_numpy(), mine["end_s"].to_numpy())
        same = (queries["repetition"] == repetition).to_numpy()
        first = np.searchsorted(spans[:, 1], queries["start_s"].to_numpy(), side="right")  # first span ending after
        hit = first < len(spans)
        hit[hit] &= spans[first[hit], 0] < queries["end_s"].to_numpy()[hit]
        out |= same & hit
    return out


def _union(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Intervals merged into disjoint ones, in order: rows of (start, end)."""
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)  # the furthest end of the intervals so far
    new = np.ones(len(starts), dtype=bool)
    new[1:] = starts[1:] > reach[:-1]  # an interval that starts after every earlier one ended opens a span
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(starts)) - 1
    return np.column_stack([starts[first], reach[last]])


@per_run
def rare_exclusive_holds(run: Run) -> pd.DataFrame:
    """Per level and lock that under ``RARE_SHARE`` of the queries held exclusively, for ``RARE_HOLD_US`` or
    more at least once: how many held it, how often per second, how long, its mean per query (what the lock
    budget shows), and the latency of the queries that overlapped a hold against the rest."""
    holds = exclusive_holds(run)
    counters = timed_queries(run)
    columns = [*LEVEL, "lock", "queries", "holders", "holders_share", "holds_per_s", "hold_us_p50", "hold_us_max",
               "hold_us_per_query", "background_holders", "overlapped_queries", "overlapped_p50_ms",
               "overlapped_p99_ms", "others_p50_ms", "others_p99_ms", "sentence"]
    if holds.empty:
        return pd.DataFrame(columns=columns)
    windows = run.levels.assign(window_s=run.levels["measure_end_s"] - run.levels["measure_start_s"])
    window_s = windows.drop_duplicates(WINDOW).groupby(LEVEL)["window_s"].sum()
    rows = []
    for (engine, schema, concurrency, lock), mine in holds.groupby([*LEVEL, "lock"], sort=True):
        level = counters[(counters["engine"] == engine) & (counters["schema"] == schema)
                         & (counters["concurrency"] == concurrency)]
        own = mine[mine["role"] == "query"]
        share = len(own) / len(level) if len(level) else math.nan
        if share >= RARE_SHARE or not mine["hold_us"].max() >= RARE_HOLD_US:
            continue
        beside = _beside(level, mine) & ~level["query_id"].isin(own["query_id"]).to_numpy()
        row = {"engine": engine, "schema": schema, "concurrency": concurrency, "lock": lock, "queries": len(level),
               "holders": len(own), "holders_share": share,
               "holds_per_s": len(mine) / float(window_s.get((engine, schema, concurrency), math.nan)),
               "hold_us_p50": float(mine["hold_us"].median()), "hold_us_max": float(mine["hold_us"].max()),
               "hold_us_per_query": float(own["hold_us"].sum() / len(level)) if len(level) else math.nan,
               "background_holders": int((mine["role"] != "query").sum()),
               "overlapped_queries": int(beside.sum()),
               "overlapped_p50_ms": _quantile(level["latency_ms"][beside].to_numpy(), 0.5),
               "overlapped_p99_ms": _quantile(level["latency_ms"][beside].to_numpy(), 0.99),
               "others_p50_ms": _quantile(level["latency_ms"][~beside].to_numpy(), 0.5),
               "others_p99_ms": _quantile(level["latency_ms"][~beside].to_numpy(), 0.99)}
        row["sentence"] = _rare_sentence(row, mine)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _rare_sentence(row: dict, holds: pd.DataFrame) -> str:
    where = f"{row['engine']} / {row['schema']} c={row['concurrency']}"
    lock = row["lock"].replace("_", " ")
    who = []
    for name, mine in holds.groupby(np.where(holds["role"] == "query", "", holds["query_name"].astype(str))):
        whom = (f"the background statement {name} {len(mine)} time{'s' if len(mine) > 1 else ''}" if name else
                f"{len(mine)} of its {row['queries']} queries" if len(mine) > 1 else f"1 query in {row['queries']}")
        size = (_duration(mine['hold_us'].iloc[0]) if len(mine) == 1 else
                f"{_duration(mine['hold_us'].median())} each at the median, {_duration(mine['hold_us'].max())} "
                "the longest")
        who.append(f"{whom} ({size})")
    text = (f"{where}: exclusive holds of the {lock} lock, which the queries' lock budget shows only as "
            f"{row['hold_us_per_query']:.1f} µs per query (their own holds, averaged): {' and '.join(who)}, "
            f"{row['holds_per_s']:.2g} per second. "
            "Every reader needing the lock waits out such a hold: ")
    if row["overlapped_queries"]:
        text += (f"the {row['overlapped_queries']} queries that ran beside a hold took "
                 f"{row['overlapped_p50_ms']:.1f} ms at the median and {row['overlapped_p99_ms']:.1f} ms at p99, "
                 f"against {row['others_p50_ms']:.1f} and {row['others_p99_ms']:.1f} ms for the rest.")
    else:
        text += "no other query ran beside one."
    return text


@per_run
def tail_attribution(run: Run) -> pd.DataFrame:
    """Per level: the slowest queries (p99 and above, at least ``MIN_SLOW``) against the middle half (p25–p75),
    on every counter; the share of each group that overlapped an exclusive hold by another statement (or held
    one); how tightly the slow ones cluster in time; and the sentence that says what the tail is made of.

    The middle half's counter means are read from at most ``MIDDLE_SAMPLE`` of its queries, evenly spaced in
    latency order, so a million-query run compares a few thousand rows, not all of them. A level of an engine that logs
    no per-query counters keeps its timing (percentiles, clustering) and says that its counters cannot be read
    per query."""
    timed = timed_queries(run)
    columns = [*LEVEL, "queries", "p50_ms", "p99_ms", "slow_queries", "slow_mean_ms", "middle_mean_ms",
               "extra_thread_ms", "extra_ms", "slow_overlap_share", "middle_overlap_share", "overlap_lock",
               "cluster_span_s", "window_s", "cause", "sentence"]
    if timed.empty:
        return pd.DataFrame(columns=columns)
    groups = {}
    for keys, level in timed.groupby(LEVEL, sort=True):
        level = level.sort_values("latency_ms", kind="stable")
        n = len(level)
        p99 = np.percentile(level["latency_ms"], 99)
        slow_n = max(MIN_SLOW, int(np.sum(level["latency_ms"].to_numpy() >= p99)))
        middle = level.iloc[n // 4: n - n // 4]
        middle = middle.iloc[np.unique(np.linspace(0, len(middle) - 1, min(len(middle), MIDDLE_SAMPLE)).astype(int))]
        groups[keys] = (level, level.iloc[max(n - slow_n, 0):], middle)
    wanted = pd.concat([g for _, slow, middle in groups.values() for g in (slow, middle)])["query_id"]
    own = _own_counters(run, run.queries[run.queries["query_id"].isin(wanted)], timed)
    holds = exclusive_holds(run)
    holds_by_level = dict(tuple(holds.groupby(LEVEL, sort=False))) if not holds.empty else {}
    windows = run.levels.assign(window_s=run.levels["measure_end_s"] - run.levels["measure_start_s"])
    windows = windows.drop_duplicates(WINDOW).set_index(WINDOW)["window_s"]
    components = ["cpu_wait_us", "on_cpu_us", "io_wait_us", "other_us"]
    waits = [(lock, mode, c) for lock, mode, role, c in lock_columns(own) if role == "wait"]
    rows = []
    for keys, (level, slow, middle) in groups.items():
        n = len(level)
        row = {**dict(zip(LEVEL, keys)), "queries": n, "p50_ms": float(level["latency_ms"].median()),
               "p99_ms": float(np.percentile(level["latency_ms"], 99))}
        if n < MIN_QUERIES:
            rows.append({**row, "cause": "too_few", "sentence": ""})
            continue
        slow, middle = slow.merge(own, on="query_id", how="left"), middle.merge(own, on="query_id", how="left")
        extra = {c: (slow[c].mean() - middle[c].mean()) / 1000.0 for c in components}
        for lock, mode, c in waits:
            gap = (slow[c].mean() - middle[c].mean()) / 1000.0
            if gap == gap and gap > 0:
                extra[f"{lock} ({mode})"] = gap
        mine = holds_by_level.get(keys, holds.iloc[:0])
        overlap_slow, lock_slow = _overlap_share(slow, mine)
        overlap_middle, _ = _overlap_share(middle, mine)
        span, window_s = _cluster(slow, windows)
        row.update(slow_queries=len(slow), slow_mean_ms=float(slow["latency_ms"].mean()),
                   middle_mean_ms=float(level["latency_ms"].iloc[n // 4: n - n // 4].mean()),
                   extra_thread_ms=float((slow["thread_us"].mean() - middle["thread_us"].mean()) / 1000.0),
                   extra_ms={k: float(v) for k, v in extra.items()}, slow_overlap_share=overlap_slow,
                   middle_overlap_share=overlap_middle, overlap_lock=lock_slow, cluster_span_s=span,
                   window_s=window_s)
        row["cause"], row["sentence"] = _tail_sentence(row, slow, mine)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _own_counters(run: Run, statements: pd.DataFrame, timed: pd.DataFrame) -> pd.DataFrame:
    """The counters of some queries, keyed by query_id, with the time components NaN where none were logged."""
    counters = counters_of(run, statements, part="time")
    own = (counters.drop(columns=[c for c in counters if c in timed and c != "query_id"]) if not counters.empty
           else pd.DataFrame({"query_id": pd.Series(dtype=str)}))
    for c in ("thread_us", "cpu_wait_us", "on_cpu_us", "io_wait_us", "other_us"):
        if c not in own:
            own[c] = np.nan
    return own


def _overlap_share(group: pd.DataFrame, holds: pd.DataFrame) -> tuple[float, str]:
    """The share of the group's queries that held a lock exclusively or ran beside a statement that did, and
    the lock most of them met."""
    if holds.empty or group.empty:
        return 0.0, ""
    met = {lock: _beside(group, mine) for lock, mine in holds.groupby("lock")}
    hit = np.logical_or.reduce(list(met.values()))
    return float(hit.mean()), max(met, key=lambda lock: int(met[lock].sum()))


def _cluster(slow: pd.DataFrame, windows: pd.Series) -> tuple[float, float]:
    """(shortest span holding ``CLUSTER_SHARE`` of the slow queries of the window with most of them, that
    window's length)."""
    by_window = slow.groupby("repetition")
    repetition, mine = max(by_window, key=lambda kv: len(kv[1]))
    level = tuple(slow.iloc[0][k] for k in WINDOW[:-1])
    window_s = float(windows.get((*level, repetition), math.nan))
    starts = np.sort(mine["start_s"].to_numpy())
    k = max(2, math.ceil(CLUSTER_SHARE * len(starts)))
    if len(starts) < k:
        return math.nan, window_s
    return float(np.min(starts[k - 1:] - starts[: len(starts) - k + 1])), window_s


def _tail_sentence(row: dict, slow: pd.DataFrame, holds: pd.DataFrame) -> tuple[str, str]:
    where = f"{row['engine']} / {row['schema']} c={row['concurrency']}"
    head = (f"{where}: the tail (p99 {row['p99_ms']:.1f} ms against a median of {row['p50_ms']:.1f} ms; "
            f"the {row['slow_queries']} slowest queries, {row['slow_mean_ms']:.1f} ms on average against "
            f"{row['middle_mean_ms']:.1f} ms for the middle half)")
    extra = {k: v for k, v in row["extra_ms"].items() if v > 0}
    parts = sorted(extra.items(), key=lambda kv: -kv[1])
    total = row["extra_thread_ms"]
    breakdown = ", ".join(f"{v:.1f} ms {COMPONENT_TEXT.get(k, 'waiting for the ' + k.replace('_', ' ') + ' lock')}"
                          for k, v in parts[:3] if v >= 0.05 * max(total, 1e-9))
    if total != total:
        made = "the engine logged no counters per query, so only the queries' timing can be read"
    elif total > 0:
        made = (f"they spent {total:.1f} ms more thread time per query than the middle half"
                + (f" ({breakdown})" if breakdown else ""))
    else:
        made = "their own counters show no more thread time than the middle half's"
    stalled = (row["cluster_span_s"] == row["cluster_span_s"]
               and row["cluster_span_s"] <= CLUSTER_SPAN * row["window_s"])
    bunched = (f"{math.ceil(CLUSTER_SHARE * 100)}% of them started within {row['cluster_span_s']:.2f} s of each "
               f"other in a {row['window_s']:.0f} s window" if stalled else "")
    stall = f"; they cluster in time, a stall: {bunched}" if stalled else ""
    overlap, middle = row["slow_overlap_share"], row["middle_overlap_share"]
    # Two kinds of evidence, either enough: the slowest queries ran beside exclusive holds far more often than
    # the middle half, or their largest extra cost is waiting for a lock that statements held exclusively for
    # long (``BRIEF_HOLD_US`` or more) in the level.
    waited = parts[0][0] if parts and parts[0][0] not in COMPONENT_TEXT else ""
    waited_lock = waited.rsplit(" (", 1)[0].replace(" ", "_")
    behind = holds[holds["lock"] == waited_lock] if waited else holds.iloc[:0]
    by_counter = not behind.empty and behind.groupby("role")["hold_us"].median().max() >= BRIEF_HOLD_US
    # Overlap alone is evidence only where the counters cannot say what the slow queries waited for, or agree:
    # beside a writer committing 70 times a second every query overlaps some hold.
    if row["overlap_lock"] and total == total:
        lock_extra = sum(v for k, v in extra.items() if k.rsplit(" (", 1)[0].replace(" ", "_") == row["overlap_lock"])
        agree = lock_extra >= LOCK_SHARE_OF_EXTRA * max(total, 0.0)
    else:
        agree = True
    by_overlap = overlap >= OVERLAP_SHARE and overlap >= OVERLAP_RATIO * middle and agree
    if by_overlap or by_counter:
        lock_key = waited_lock if by_counter else row["overlap_lock"]
        mine = holds[holds["lock"] == lock_key]
        evidence = (f"they waited {extra[waited]:.1f} ms more per query for it ({waited.rsplit(' (', 1)[1][:-1]}) "
                    "than the middle half" if by_counter else "")
        beside = f"{overlap:.0%} of them held it or ran beside a statement holding it exclusively, against " \
                 f"{middle:.0%} of the middle half"
        return "exclusive_hold", (
            f"{head} is made of exclusive holds of the {lock_key.replace('_', ' ')} lock ({_holder_text(mine)}): "
            f"{'; '.join(t for t in (evidence, beside) if t)}; {made}{stall}.")
    if stalled:
        return "stall", f"{head} is a stall: {bunched}; {made}."
    if parts:
        top = parts[0][0]
        name = COMPONENT_TEXT.get(top, f"waiting for the {top.replace('_', ' ')} lock")
        return "component", f"{head} is mostly time {name}: {made}."
    return "none", f"{head}: {made}."


def _duration(us: float) -> str:
    return f"{us / 1000:.1f} ms" if us >= 1000 else f"{us:.0f} µs"


def _holder_text(holds: pd.DataFrame) -> str:
    kinds = []
    queries = holds[holds["role"] == "query"]
    background = holds[holds["role"] != "query"]
    if not background.empty:
        names = ", ".join(sorted(set(background["query_name"].astype(str))))
        kinds.append(f"the background statement {names}, {_duration(background['hold_us'].median())} per hold")
    if not queries.empty:
        kinds.append(f"{len(queries)} queries, {_duration(queries['hold_us'].median())} per hold")
    return "; ".join(kinds)


def tail_lines(run: Run) -> list[str]:
    """The tail sentences and the rare exclusive holds, as every output shows them."""
    tails = tail_attribution(run)
    rare = rare_exclusive_holds(run)
    return [*(s for s in tails["sentence"] if s), *rare["sentence"]]
