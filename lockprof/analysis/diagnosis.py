"""The verdict: what costs the queries their time, named only on evidence.

Per (engine, schema) the time accounting at the lowest and the highest concurrency decides:

* a **lock** is the bottleneck only when its wait is at least ``MATERIAL_SHARE`` of thread time at
  the highest concurrency and is not explained by preemption. A lock's wait is explained by
  preemption when the queries queue for the cores (waiting for a CPU is a material share of thread
  time and more than doubled from the lowest to the highest concurrency) while the lock is held only
  briefly (under ``BRIEF_HOLD_US`` per acquisition, or no hold counter at all) and is not busy
  (held less than ``BUSY_UTILIZATION`` of the wall time): its holder was descheduled, the lock is
  a victim of CPU queueing, not its cause;
* otherwise the component of thread time that grew most from the lowest to the highest
  concurrency names the verdict: waiting for a CPU (``cpu_queueing``), time on a CPU (``cpu``),
  IO wait (``io``), or time no counter accounts for (``unexplained``); with no growth to explain,
  the largest component at the lowest concurrency does.

Beside the verdict, findings state how each lock that readers take exclusively is used, the
lock waits that preemption explains, and how much more CPU one schema needs per query than
another; a lock is never called the bottleneck in them.
"""

from __future__ import annotations

import math

import pandas as pd

from lockprof.analysis.accounting import (
    COMPONENT_TEXT,
    COMPONENTS,
    SOURCE_TEXT,
    per_query,
    time_accounting,
    window_totals,
)
from lockprof.analysis.budget import lock_budget
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run
from lockprof.analysis.per_query import PHASES, SELECTION
from lockprof.analysis.tail import exclusive_holds

MATERIAL_SHARE = 0.10  # of thread time: below this no component, and no lock, explains the latency
BRIEF_HOLD_US = 50.0  # per acquisition: a lock held this briefly cannot by itself queue waits of milliseconds
BUSY_UTILIZATION = 0.5  # a lock held this share of the wall time queues waits of its own, preempted or not
GROWTH = 1.2  # thread time per query must grow by this factor for growth to be explained
CPU_CONTRAST = 1.5  # one schema needs this many times the CPU per query of another: say so
EXCLUSIVE_USE = 0.5  # acquisitions per query from which a lock counts as taken exclusively by the queries
EXCLUSIVE_HOLD_US = 1.0  # hold per query from which it does, where the engine does not count acquisitions
CONTENDED_SHARE = 0.002  # of thread time: a table lock waited for this much (and CONTENDED_US) is named
CONTENDED_US = 5.0  # per query; an uncontended parts lock costs readers well under a microsecond
SHARED_BESIDE_WRITER_US = 1.0  # per query: readers waiting this long in shared mode while a writer ran
OTHER_SHARE = 0.25  # of thread time: a remainder this large gets a sentence even when another part is larger
THIN_MARGIN = 0.8  # the runner-up grew at least this share of the winner's growth: the margin is thin
# What the remainder of thread time is, measured on 26.9 (docs/remainder.md). Where the engine keeps a thread
# log, the own-thread waits are their own component and the rest is mostly CPU the per-thread counters miss.
REMAINDER_TEXT = ("the rest is mostly CPU time the per-thread counters miss (up to a scheduler tick per thread) "
                  "and waits no counter covers, where a lock without a counter would show.")
REMAINDER_WITH_OWN_THREADS = (
    "most of it is the query's calling thread (and, with worker threads, its pipeline executor) sleeping while "
    "the pipeline runs, which no counter covers and which repeats wall time another thread accounts for; the "
    "rest is CPU time the per-thread counters miss and waits no counter covers (this engine keeps no thread log "
    "to tell them apart).")
OWN_THREADS_TEXT = ("the query's calling thread (and, with worker threads, its pipeline executor) sleeping while "
                    "the pipeline runs, which no ProfileEvent counts (lockprof reads it from the thread log); it "
                    "repeats wall time another thread accounts for, so it is no cost of its own.")
# Components that repeat time another thread of the query accounts for: never a verdict or its runner-up.
ECHOES = ("own_threads",)
INTERNAL_LOCKS = ("global_thread_pool", "local_thread_pool", "context")  # mutexes every query takes briefly

VERDICTS = {"lock": "a lock", "cpu_queueing": "CPU (queueing for the cores)", "cpu": "CPU (work per query)",
            "io": "IO wait", "unexplained": "no counter explains it", "no_data": "no data"}
COLUMNS = ["engine", "schema", "verdict", "lock", "mode", "share", "concurrency_low", "concurrency_high",
           "latency_low_ms", "latency_high_ms", "thread_low_ms", "thread_high_ms", "source", "conclusion",
           "explanation", "headline", "findings"]


@per_run
def diagnose(run: Run) -> pd.DataFrame:
    """One verdict per (engine, schema) with the numbers behind it; ``findings`` lists supporting facts."""
    accounting = time_accounting(run)
    budget = lock_budget(run)
    q = run.queries
    background = q[(q["role"] != "query") & (q["phase"] == "measure")]
    writers = background.groupby(["engine", "schema"])["query_name"].agg(lambda n: sorted(set(n))).to_dict()
    holds = exclusive_holds(run)
    rows = []
    for (engine, schema), levels in accounting.groupby(["engine", "schema"], sort=True):
        levels = levels.sort_values("concurrency")
        locks = budget[(budget["engine"] == engine) & (budget["schema"] == schema)]
        hi = levels.iloc[-1]
        behind = holds[(holds["engine"] == engine) & (holds["schema"] == schema)
                       & (holds["concurrency"] == hi["concurrency"])]
        rows.append(_diagnose_one(engine, schema, levels.iloc[0], hi, locks, writers.get((engine, schema), []),
                                  dict(tuple(behind.groupby("lock")))))
    out = pd.DataFrame(rows, columns=COLUMNS)
    contrasts = _cpu_contrasts(accounting, run)
    for i, row in out.iterrows():
        out.at[i, "findings"] = [*row["findings"], *contrasts.get((row["engine"], row["schema"]), [])]
    return out


def _diagnose_one(engine: str, schema: str, lo: pd.Series, hi: pd.Series, locks: pd.DataFrame,
                  background: list[str], holders: dict[str, pd.DataFrame]) -> dict:
    """``holders``: per lock, the statements that held it exclusively at the highest concurrency (queries and
    background statements, where the engine logs them): a wait in shared mode is a wait behind them."""
    row = {"engine": engine, "schema": schema, "lock": "", "mode": "", "share": math.nan,
           "concurrency_low": int(lo["concurrency"]), "concurrency_high": int(hi["concurrency"]),
           "latency_low_ms": float(lo["latency_ms"]), "latency_high_ms": float(hi["latency_ms"]),
           "thread_low_ms": float(lo["thread_ms"]), "thread_high_ms": float(hi["thread_ms"]),
           "source": str(hi["source"]), "findings": []}
    where = f"{engine} / {schema}"
    if not hi["thread_ms"] > 0:
        return _finish(row, where, "no_data", math.nan, "no thread time was recorded",
                       f"The counters ({SOURCE_TEXT.get(row['source'], '')}) hold no thread time, so nothing can be "
                       "said about where the time went.")
    at_hi = locks[locks["concurrency"] == hi["concurrency"]].set_index(["lock", "mode"])
    at_lo = locks[locks["concurrency"] == lo["concurrency"]].set_index(["lock", "mode"])
    culprit, victims = None, []
    for key, lock in at_hi.sort_values("wait_us_per_query", ascending=False).iterrows():
        share = lock["wait_share_of_thread_time"]
        if not share >= MATERIAL_SHARE:
            continue
        behind = holders.get(key[0]) if key[1] != "exclusive" else None
        held_long = behind is not None and behind.groupby("role")["hold_us"].median().max() >= BRIEF_HOLD_US
        if not held_long and _preempted(lo, hi, lock, float(hi["throughput_qps"])):
            victims.append(key)
        elif culprit is None:
            culprit = (key, lock)
    row["findings"] += _mode_findings(where, at_lo, at_hi, lo, hi)
    row["findings"] += _contention_findings(where, at_lo, at_hi, lo, hi, culprit, background)
    largest = _largest_wait(at_hi)
    if culprit is not None:
        (name, mode), lock = culprit
        verdict, share = "lock", float(lock["wait_share_of_thread_time"])
        row.update(lock=name, mode=mode)
        conclusion = f"the {_lock_name(name)} lock ({mode}) is the bottleneck"
        explanation = (f"At concurrency {row['concurrency_high']} queries wait {lock['wait_us_per_query'] / 1000:.2f} "
                       f"ms for it per query, {share:.0%} of their {hi['thread_ms']:.1f} ms thread time"
                       f"{_hold_text(lock)}{_behind_text(holders.get(name) if mode != 'exclusive' else None)}; "
                       f"latency {_range(lo, hi)}.")
    else:
        verdict, component = _component_verdict(lo, hi)
        share = float(hi[f"{component}_share"])
        conclusion = VERDICTS[verdict]
        explanation = " ".join(t for t in (_component_text(verdict, component, lo, hi), _margin_text(component, lo, hi),
                                           _no_lock_text(largest, victims, lo, hi)) if t)
    other = _other_text(lo, hi)
    if other:
        row["findings"].append(f"{where}: {other}")
    return _finish(row, where, verdict, share, conclusion, explanation)


def _finish(row: dict, where: str, verdict: str, share: float, conclusion: str, explanation: str) -> dict:
    return {**row, "verdict": verdict, "share": share, "conclusion": conclusion, "explanation": explanation,
            "headline": f"{where}: {conclusion}. {explanation}"}


def _preempted(lo: pd.Series, hi: pd.Series, lock: pd.Series, throughput_qps: float) -> bool:
    """Lock wait that CPU queueing explains: the queries queue for the cores (CPU wait is a material share
    of thread time and grew with concurrency), while the lock is held too briefly and too rarely to make
    waits of its own; a descheduled holder makes the others wait."""
    if lo["concurrency"] == hi["concurrency"]:
        # One level shows no growth, so preemption cannot be told from contention: a lock is named only when
        # the queries wait for it longer than for a CPU.
        return bool(hi["cpu_wait_ms"] * 1000.0 > lock["wait_us_per_query"])
    queueing = hi["cpu_wait_share"] >= MATERIAL_SHARE and hi["cpu_wait_ms"] > 2 * lo["cpu_wait_ms"]
    per_acquisition = lock["hold_us_per_acquisition"]
    if math.isnan(per_acquisition):  # no acquisition count: the hold per query bounds the hold per acquisition
        per_acquisition = lock["hold_us_per_query"]
    brief = not per_acquisition >= BRIEF_HOLD_US  # NaN (no hold counter, e.g. thread pools) counts as brief
    busy = lock["hold_us_per_query"] * throughput_qps / 1e6  # utilization; NaN when the hold is not counted
    return bool(queueing and brief and not busy >= BUSY_UTILIZATION)


def _component_verdict(lo: pd.Series, hi: pd.Series) -> tuple[str, str]:
    """(verdict, deciding component) from the growth of thread time, else from its largest part."""
    components = {"cpu_wait": "cpu_queueing", "on_cpu": "cpu", "io_wait": "io", "other": "unexplained",
                  "lock_wait": "cpu_queueing"}  # lock waits left here are the preempted ones
    grew = hi["concurrency"] > lo["concurrency"] and hi["thread_ms"] > GROWTH * lo["thread_ms"]
    if grew:
        growth = {c: hi[f"{c}_ms"] - lo[f"{c}_ms"] for c in components}
        component = max(growth, key=growth.get)
    else:
        component = max(components, key=lambda c: lo[f"{c}_ms"])
    if component == "lock_wait":
        component = "cpu_wait"
    if hi[f"{component}_share"] < MATERIAL_SHARE and lo[f"{component}_share"] < MATERIAL_SHARE:
        return "unexplained", "other"
    return components[component], component


def _growth(lo: pd.Series, hi: pd.Series) -> dict[str, float]:
    """ms per query each component of thread time grew by from the lowest to the highest concurrency."""
    return {c: float(hi[f"{c}_ms"] - lo[f"{c}_ms"]) for c in COMPONENTS if c not in ECHOES}


def _margin_text(component: str, lo: pd.Series, hi: pd.Series) -> str:
    """A sentence when the component that names the verdict grew barely more than the next one."""
    if not (hi["concurrency"] > lo["concurrency"] and hi["thread_ms"] > GROWTH * lo["thread_ms"]):
        return ""
    growth = _growth(lo, hi)
    same = {component, "lock_wait"} if component == "cpu_wait" else {component}  # preempted waits: one story
    rivals = {c: g for c, g in growth.items() if c not in same}
    runner = max(rivals, key=rivals.get)
    if not growth[component] > 0 or rivals[runner] < THIN_MARGIN * growth[component]:
        return ""
    return (f"The margin is thin: {COMPONENT_TEXT[component]} grew {growth[component]:.1f} ms per query, "
            f"{COMPONENT_TEXT[runner]} {rivals[runner]:.1f} ms.")


def _other_text(lo: pd.Series, hi: pd.Series) -> str:
    """What the remainder is, whenever it is the largest component at either end, a quarter of thread time or
    more, or grew nearly as much as the largest growth: an unexplained share is where a lock without a counter
    would hide."""
    parts = [c for c in COMPONENTS if c not in ECHOES]
    largest = any(max(parts, key=lambda c, r=r: r[f"{c}_ms"]) == "other" or r["other_share"] >= OTHER_SHARE
                  for r in (lo, hi))
    growth = _growth(lo, hi)
    rival = hi["concurrency"] > lo["concurrency"] and growth["other"] >= THIN_MARGIN * max(growth.values())
    measured = lo["own_threads_ms"] == lo["own_threads_ms"]  # the thread log told the own-thread waits apart
    own_share = max(lo["own_threads_share"], hi["own_threads_share"]) if measured else 0.0
    if not (largest or rival) or not hi["other_ms"] > 0:
        if own_share >= MATERIAL_SHARE:  # say what the large part beside the counted ones is, and that it is no cost
            return (f"waiting for the query's own threads is {lo['own_threads_ms']:.1f} ms of "
                    f"{lo['thread_ms']:.1f} ms thread time per query at concurrency {int(lo['concurrency'])} "
                    f"({lo['own_threads_share']:.0%}): {OWN_THREADS_TEXT} What no counter explains (\"other\") is "
                    f"{lo['other_ms']:.1f} ms ({lo['other_share']:.0%}).")
        return ""
    text = (f"\"other\" is {lo['other_ms']:.1f} ms of {lo['thread_ms']:.1f} ms thread time per query at concurrency "
            f"{int(lo['concurrency'])} ({lo['other_share']:.0%})")
    if lo["concurrency"] != hi["concurrency"]:
        text += (f" and {hi['other_ms']:.1f} of {hi['thread_ms']:.1f} ms at {int(hi['concurrency'])} "
                 f"({hi['other_share']:.0%})")
    if measured:
        return (f"{text}, after {lo['own_threads_ms']:.1f} ms per query waiting for the query's own threads at "
                f"{int(lo['concurrency'])} is taken out: {REMAINDER_TEXT}")
    return f"{text}: {REMAINDER_WITH_OWN_THREADS}"


def _component_text(verdict: str, component: str, lo: pd.Series, hi: pd.Series) -> str:
    c_lo, c_hi = int(lo["concurrency"]), int(hi["concurrency"])
    one = c_lo == c_hi  # one level (an observed window): nothing to say about growth
    text = (f"Thread time per query is {hi['thread_ms']:.1f} ms at concurrency {c_hi} (latency {_range(lo, hi)}); "
            if one else f"Thread time per query is {lo['thread_ms']:.1f} ms at concurrency {c_lo} and "
            f"{hi['thread_ms']:.1f} ms at {c_hi} (latency {_range(lo, hi)}); ")
    part = COMPONENT_TEXT[component]
    if verdict == "cpu_queueing" and one:
        text += (f"{part} takes {hi['cpu_wait_ms']:.1f} ms of it ({hi['cpu_wait_share']:.0%}), more than time on a "
                 f"CPU ({hi['on_cpu_ms']:.1f} ms per query): the queries queue for the cores.")
    elif verdict == "cpu_queueing":
        text += (f"{part} takes {hi['cpu_wait_ms']:.1f} ms of it at {c_hi} ({hi['cpu_wait_share']:.0%}), up from "
                 f"{lo['cpu_wait_ms']:.1f} ms, while time on a CPU is {hi['on_cpu_ms']:.1f} ms per query "
                 f"({lo['on_cpu_ms']:.1f} ms at {c_lo}): the queries queue for the cores.")
    elif verdict == "cpu":
        text += (f"{lo['on_cpu_share']:.0%} of it at {c_lo} is spent on a CPU ({lo['on_cpu_ms']:.1f} ms per query): "
                 "the cost is the work each query does.")
    elif verdict == "io":
        text += f"{part} takes {hi['io_wait_ms']:.1f} ms of it at {c_hi} ({hi['io_wait_share']:.0%})."
    else:
        text += (f"{hi['other_share']:.0%} of it at {c_hi} is not accounted for by CPU, CPU wait, IO wait or any "
                 "lock counter.")
    return text


def _no_lock_text(largest: tuple | None, victims: list, lo: pd.Series, hi: pd.Series) -> str:
    if largest is None:
        return "No lock wait was recorded."
    (name, mode), lock = largest
    share = lock["wait_share_of_thread_time"]
    if (name, mode) in victims and lo["concurrency"] == hi["concurrency"]:
        why = (f"but waiting for a CPU takes longer ({hi['cpu_wait_ms']:.1f} ms per query), and with a single "
               "concurrency level preemption cannot be told from contention: run two levels to tell")
    elif (name, mode) in victims:
        why = (f"but the queries queue for the cores ({hi['cpu_wait_ms']:.1f} ms waiting for a CPU, up from "
               f"{lo['cpu_wait_ms']:.1f} ms) while the lock is held briefly: its holders are preempted, it is not "
               "the cause")
    else:
        why = f"under the {MATERIAL_SHARE:.0%} that would make it matter"
    others = [f"{_lock_name(n)} ({m})" for n, m in victims if (n, m) != (name, mode)]
    also = f" The same holds for {', '.join(others)}." if others else ""
    return (f"No lock explains it: the largest lock wait, {_lock_name(name)} ({mode}), is "
            f"{lock['wait_us_per_query'] / 1000:.2f} ms per query at concurrency {int(hi['concurrency'])} "
            f"({share:.1%} of thread time), {why}.{also}")


def _mode_findings(where: str, at_lo: pd.DataFrame, at_hi: pd.DataFrame, lo: pd.Series,
                   hi: pd.Series) -> list[str]:
    """How the queries take the parts lock (the lock of the motivating case) and any other table lock they
    take exclusively: mode, acquisitions and hold at the lowest concurrency (where the hold is the lock's own
    service time, not stretched by preemption), and the wait at the highest."""
    out = []
    for name, modes in at_lo.groupby(level="lock", sort=True):
        if name in INTERNAL_LOCKS:
            continue
        described = []
        for (_, mode), lock in modes.iterrows():
            count, hold = lock["acquisitions_per_query"], lock["hold_us_per_query"]
            used = count >= EXCLUSIVE_USE if not math.isnan(count) else hold >= EXCLUSIVE_HOLD_US
            if not used or (mode != "exclusive" and name != "parts"):
                continue
            word = "exclusively" if mode == "exclusive" else mode
            taken = f"{count:.3g}× per query" if not math.isnan(count) else "(the engine does not count acquisitions)"
            wait = at_hi["wait_us_per_query"].get((name, mode), math.nan) if (name, mode) in at_hi.index else math.nan
            share = (at_hi["wait_share_of_thread_time"].get((name, mode), math.nan)
                     if (name, mode) in at_hi.index else math.nan)
            described.append(f"{word} {taken}, holding it {_us(hold)} per query at concurrency "
                             f"{int(lo['concurrency'])} and waiting {_us(wait)} per query for it at "
                             f"{int(hi['concurrency'])} ({_pct(share)} of thread time)")
        if described:
            out.append(f"{where}: the queries take the {_lock_name(name)} lock {'; and '.join(described)}.")
    return out


def _us(value: float) -> str:
    return "n/a µs" if math.isnan(value) else f"{value:.1f} µs"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _contention_findings(where: str, at_lo: pd.DataFrame, at_hi: pd.DataFrame, lo: pd.Series, hi: pd.Series,
                         culprit: tuple | None, background: list[str]) -> list[str]:
    """Table locks the queries wait for, below the share that would make them the bottleneck: named, with
    the scenario's background statements that ran beside them (a writer's commits, in the insert race)."""
    out = []
    for (name, mode), lock in at_hi.iterrows():
        share = lock["wait_share_of_thread_time"]
        # A shared mode waits only while someone holds the lock exclusively: beside a writer any such wait is
        # contention with it (an uncontended reader waits well under a microsecond).
        beside_writer = bool(background) and mode == "shared" and lock["wait_us_per_query"] >= SHARED_BESIDE_WRITER_US
        contended = (share >= CONTENDED_SHARE and lock["wait_us_per_query"] >= CONTENDED_US) or beside_writer
        if name in INTERNAL_LOCKS or not contended or (culprit and culprit[0] == (name, mode)):
            continue
        before = at_lo["wait_us_per_query"].get((name, mode), 0.0) if (name, mode) in at_lo.index else 0.0
        text = (f"{where}: queries wait for the {_lock_name(name)} lock ({mode}) {lock['wait_us_per_query']:.0f} µs "
                f"per query at concurrency {int(hi['concurrency'])} ({share:.1%} of thread time; {before:.0f} µs at "
                f"{int(lo['concurrency'])})")
        if background:
            text += f", while the scenario's background statements ({', '.join(background)}) ran beside them"
        out.append(text + ".")
    return out


def _largest_wait(at_hi: pd.DataFrame) -> tuple | None:
    waits = at_hi["wait_us_per_query"].dropna()
    waits = waits[waits > 0]
    if waits.empty:
        return None
    key = waits.idxmax()
    return key, at_hi.loc[key]


def _cpu_contrasts(accounting: pd.DataFrame, run: Run) -> dict[tuple[str, str], list[str]]:
    """Per engine: how many times the CPU per query of the cheapest schema each other schema needs, at the
    lowest concurrency (where CPU time is not stretched by contention)."""
    parts = _active_parts(run)
    work = work_per_query(run)
    out: dict[tuple[str, str], list[str]] = {}
    for engine, group in accounting.groupby("engine", sort=True):
        low = group[group["concurrency"] == group["concurrency"].min()].set_index("schema")
        if len(low) < 2 or not (low["on_cpu_ms"] > 0).all():
            continue
        cheapest = low["on_cpu_ms"].idxmin()
        for schema, r in low.iterrows():
            times = r["on_cpu_ms"] / low.at[cheapest, "on_cpu_ms"]
            if schema == cheapest or times < CPU_CONTRAST:
                continue
            counts = ""
            if (engine, schema) in parts and (engine, cheapest) in parts:
                counts = f" ({parts[(engine, schema)]:,.0f} vs {parts[(engine, cheapest)]:,.0f} active parts)"
            where = work.get((engine, schema, int(r["concurrency"])), {})
            base = work.get((engine, cheapest, int(r["concurrency"])), {})
            out.setdefault((engine, schema), []).append(
                f"{engine}: {schema} needs {times:.1f}× the CPU per query of {cheapest}{counts}: "
                f"{r['on_cpu_ms']:.1f} vs {low.at[cheapest, 'on_cpu_ms']:.1f} ms on a CPU at concurrency "
                f"{int(r['concurrency'])}, so its extra latency is work each query does, not waiting"
                + (f". {_work_text(where, base, cheapest)}" if where else "."))
    return out


def work_per_query(run: Run) -> dict[tuple[str, str, int], dict[str, float]]:
    """Per level: the planning phases' wall timers (ms per query) and the parts and marks selected of the
    table's, from the same counters and queries as the time accounting."""
    long = per_query(window_totals(run))
    names = {**{v: k for k, v in PHASES.items()}, **{v: k for k, v in SELECTION.items()}}
    long = long[long["event"].isin(names)]
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    for (engine, schema, concurrency, event), value in zip(
            long[["engine", "schema", "concurrency", "event"]].itertuples(index=False), long["per_query"]):
        name = names[event]
        out.setdefault((engine, schema, int(concurrency)), {})[name] = value / 1000.0 if name in PHASES else value
    return out


PHASE_TEXT = {"analysis_us": "query analysis", "plan_build_us": "building the plan",
              "plan_optimize_us": "optimizing the plan", "pipeline_build_us": "building the pipeline"}


def _work_text(work: dict[str, float], base: dict[str, float], base_name: str) -> str:
    """Where the work goes, by the engine's phase timers (wall time; the phases may overlap), and what the
    query selected of the table."""
    phases = [(k, t) for k, t in PHASE_TEXT.items() if work.get(k, 0) >= 0.1]
    text = ""
    if phases:
        text = "Per query, " + ", ".join(f"{t} takes {work[k]:.1f} ms ({base.get(k, 0.0):.1f} for {base_name})"
                                         for k, t in phases) + " (the engine's wall timers)"
    if work.get("selected_parts_total"):
        text += ("; " if text else "Per query, ") + (
            f"it selects {work.get('selected_parts', 0):,.0f} of {work['selected_parts_total']:,.0f} parts"
            + (f" ({base.get('selected_parts', 0):,.0f} of {base['selected_parts_total']:,.0f} for {base_name})"
               if base.get("selected_parts_total") else ""))
    return text + "." if text else ""


def _active_parts(run: Run) -> dict[tuple[str, str], float]:
    levels = run.levels
    if "active_parts_before" not in levels:
        return {}
    return levels.groupby(["engine", "schema"])["active_parts_before"].mean().dropna().to_dict()


def _behind_text(holds: pd.DataFrame | None) -> str:
    """Who held the lock exclusively while the queries waited for it in shared mode, and how long per hold."""
    if holds is None or holds.empty:
        return ""
    who = []
    for role, mine in holds.groupby(holds["role"] == "query", sort=True):
        name = (f"{len(mine)} of the queries" if role else
                f"the background statement{'s' if mine['query_name'].nunique() > 1 else ''} "
                f"{', '.join(sorted(set(mine['query_name'].astype(str))))}")
        who.append(f"{name}, {mine['hold_us'].median() / 1000:.1f} ms per hold")
    return f", behind exclusive holds of it ({'; '.join(who)})"


def _hold_text(lock: pd.Series) -> str:
    per_acq = lock["hold_us_per_acquisition"]
    if not math.isnan(per_acq):
        return f", held {per_acq:.1f} µs per acquisition"
    if not math.isnan(lock["hold_us_per_query"]):
        return f", held {lock['hold_us_per_query']:.1f} µs per query"
    return ""


def _range(lo: pd.Series, hi: pd.Series) -> str:
    if lo["concurrency"] == hi["concurrency"]:
        return f"{hi['latency_ms']:.1f} ms"
    return f"{lo['latency_ms']:.1f} → {hi['latency_ms']:.1f} ms"


def _lock_name(lock: str) -> str:
    return lock.replace("_", " ")


def verdict_lines(run: Run) -> list[str]:
    """The verdicts and their findings as plain sentences, in the order every output shows them."""
    diagnosis = diagnose(run)
    if diagnosis.empty:
        return ["No lock events were recorded and no thread-time counters either: no successful measured query "
                "has counters (samplers off, every query failed, or nothing was measured), so no verdict can be "
                "given."]
    lines = []
    for _, row in diagnosis.iterrows():
        lines.append(row["headline"])
        lines.extend(row["findings"])
    return lines
