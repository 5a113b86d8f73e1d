"""The orchestrator: plan the steps, drive one worker per engine, write one run directory.

Steps alternate engines within each repetition, and the order of engines turns from
one repetition to the next (A B, B A, A B, ...), so neither slow drift of a noisy
machine nor running second falls on one engine more than another; between repetitions
the workers restart in the reverse order (:class:`Swap`). A worker that dies
is reported and dropped; the other engines go on. A level whose queries fail too often
(see :func:`lockprof.driver.level_verdict`) is recorded in ``failed_levels`` with its
first error. Ctrl-C or SIGTERM ends the current level early (its running queries
are cancelled), keeps everything measured, and leaves the run marked
``incomplete``; a request that cannot be cut short (a dataset build) is abandoned
after :data:`ABANDON_AFTER_S`, and a level still running :data:`STUCK_AFTER_S` later is
stopped too, with its threads' stacks in the worker's log: the run never hangs on a worker.
A second signal stops the workers at once, and the manifest is still finished: no
exception is raised into a file being written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import platform
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lockprof.analysis.health import ACHIEVED_FRACTION, FEW_PER_THREAD
from lockprof.clock import RunClock
from lockprof.cpus import pin_specs
from lockprof.cpus import record as pinned
from lockprof.dirformat import Manifest
from lockprof.driver import ERROR_SHARE_LIMIT
from lockprof.engines.base import EngineSpec
from lockprof.engines.registry import parse, prepare
from lockprof.errors import EngineError, Interrupted, LockprofError, StorageError
from lockprof.progress import Reporter, reporter_for
from lockprof.samplers.pyspy import PySpySampler
from lockprof.samplers.registry import names as sampler_names
from lockprof.scenario import load_scenario, probe_scenario
from lockprof.store import RunDir, file_name, nearest_existing, part_name, write_part
from lockprof.worker import ALL_SAMPLERS
from lockprof.workerproc import WorkerCrashed, WorkerProcess

NO_SAMPLERS = "+no-samplers"
# An A/B (two or more engines, or --overhead-control) unless told otherwise: many short windows in turned
# order. 16 pairs rather than the 6 the signed-rank test needs at all: with the false-discovery control over a
# comparison's points they find a 10% slowdown far more often than 10 (benchmarks/ab_power.py; what they achieve
# is in docs/performance.md).
AB_DEFAULTS = {"repetitions": 16, "warmup_s": 0.5, "duration_s": 2.0}
ABANDON_AFTER_S = 1.0  # after a first Ctrl-C, a worker busy with anything but a level is stopped this soon
FINISH_LEVEL_S = 3.0  # after a second Ctrl-C, a worker in a level (already told to stop) may still store it
STUCK_AFTER_S = 30.0  # ... and one still in its level this long after it (a level ends within ~1 s of it)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class RunOptions:
    scenario_path: Path
    engines: list[str] = field(default_factory=lambda: ["embedded"])
    concurrency: list[int] | None = None
    rates: list[float] | None = None  # open loop: one rate for every level, or one per concurrency level
    warmup_s: float | None = None
    duration_s: float | None = None
    repetitions: int | None = None  # None: 1 for one engine, AB_DEFAULTS for an A/B
    schemas: list[str] | None = None
    out: Path | None = None
    samplers: tuple[str, ...] = ALL_SAMPLERS
    sample_interval_s: float = 0.2
    self_check_s: float = 0.3
    overhead_control: bool = False  # also run every level without samplers, as engine "<label>+no-samplers"
    cluster: str | None = None  # server engines: samplers read every replica of this cluster (clusterAllReplicas)
    cpus: list[int | float] | None = None  # --cpus: each engine once per core count, its worker pinned to them


@dataclass(frozen=True)
class Step:
    engine: str
    schema: str
    concurrency: int
    repetition: int
    rate_qps: float | None = None
    no_samplers: bool = False  # an overhead-control step
    position: int = 0  # order of this window among its repetition's windows (0 = ran first)

    @property
    def label(self) -> str:
        return f"{self.engine}{NO_SAMPLERS}" if self.no_samplers else self.engine


@dataclass
class Swap:
    """In an A/B, all workers are restarted before every repetition but the first, in the reverse order.

    Why: each worker process has a speed of its own. Two workers of one engine on identical
    data differ by a few percent, and the difference lasts for the life of the two processes
    (the worker started second, which also takes the second data slot, is on average the
    faster). Repetitions measured by one pair of processes are therefore not independent:
    with restarts every 4 repetitions, the paired ratios of one restart period correlated
    (intraclass correlation 0.10-0.15), so the signed-rank intervals, which take every
    repetition as independent, were too narrow and an A/A run called changes too often.
    A fresh pair of processes per repetition makes the repetitions independent replicates,
    and the reversed start order makes each engine hold each worker position in half of them.
    """

    restart: Callable[[], None]
    repetition: int = 0  # the repetition the current workers measure


def plan(
    engines: list[str],
    schemas: list[str],
    concurrency: list[int],
    repetitions: int,
    rates: list[float] | None = None,
) -> list[Step]:
    """Every (schema, concurrency) point, repeated, engines in turn inside each repetition.

    A repetition visits every point before the next begins, so each point's windows spread
    over the whole run (slow drift of the machine averages out) and a worker restart
    between repetitions (:class:`Swap`) falls between the same repetitions of every point.
    Repetition r starts with engine r mod k (A B, B A, ... for two engines): each engine
    runs first as often as second, so an order effect cancels out and can be estimated.
    With open-loop rates, a single rate applies to every level and a list pairs with the concurrency levels.
    """
    if rates and len(rates) not in (1, len(concurrency)):
        raise LockprofError(
            f"--rate takes one rate or one per concurrency level ({len(concurrency)}), got {len(rates)}"
        )
    paired = (rates * len(concurrency) if len(rates) == 1 else rates) if rates else [None] * len(concurrency)
    return [
        Step(engine, schema, c, rep, rate, position=pos)
        for rep in range(repetitions)
        for schema in schemas
        for c, rate in zip(concurrency, paired)
        for pos, engine in enumerate(_rotated(engines, rep))
    ]


def _rotated(items: list[str], by: int) -> list[str]:
    k = by % len(items) if items else 0
    return items[k:] + items[:k]


def with_overhead_control(steps: list[Step]) -> list[Step]:
    """Each step beside its no-samplers twin, the twin first in odd repetitions; positions renumbered."""
    out: list[Step] = []
    for st in steps:
        pair = [st, dataclasses.replace(st, no_samplers=True)]
        out.extend(reversed(pair) if st.repetition % 2 else pair)
    return [dataclasses.replace(st, position=2 * st.position + (i % 2)) for i, st in enumerate(out)]


def host_info() -> dict[str, Any]:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def default_out(scenario_name: str, run_id: str) -> Path:
    return Path("runs") / f"{scenario_name}-{run_id}"


def check_out(out: Path) -> None:
    """Refuse a run directory that exists or could not be created, before any expensive work."""
    if any(len(part.encode()) > 255 for part in out.parts):
        raise LockprofError(f"--out {str(out)[:80]}...: a name in it is longer than a file name may be")
    try:
        if out.exists() or out.is_symlink():
            raise LockprofError(f"{out} already exists; choose another --out")
        parent = nearest_existing(out.absolute().parent)
        if not parent.is_dir():
            raise LockprofError(f"cannot create {out}: {parent} is not a directory")
        probe = tempfile.mkdtemp(dir=parent, prefix=".lockprof-probe-")  # a real probe: rights, read-only disks
        os.rmdir(probe)
    except OSError as exc:
        raise LockprofError(f"cannot create {out}: {exc.strerror}") from None


def run(options: RunOptions, reporter: Reporter | None = None) -> Path:
    """Run a scenario and return the run directory it wrote."""
    reporter = reporter or reporter_for()
    probe_scenario(options.scenario_path)  # user code that ends the process ends a child, not lockprof
    loaded = load_scenario(options.scenario_path)
    scenario = loaded.scenario
    schemas = options.schemas or [s.name for s in scenario.schemas]
    for name in schemas:
        scenario.schema(name)
    concurrency = options.concurrency or list(scenario.concurrency)
    ab = len(options.engines) > 1 or options.overhead_control
    defaults = AB_DEFAULTS if ab else {"repetitions": 1, "warmup_s": scenario.warmup_s,
                                       "duration_s": scenario.duration_s}  # fmt: skip
    warmup_s = defaults["warmup_s"] if options.warmup_s is None else options.warmup_s
    duration_s = defaults["duration_s"] if options.duration_s is None else options.duration_s
    repetitions = int(defaults["repetitions"] if options.repetitions is None else options.repetitions)
    if repetitions < 1:
        raise LockprofError("--repetitions must be at least 1")
    unknown = set(options.samplers) - set(sampler_names())
    if unknown:
        raise LockprofError(f"unknown samplers {sorted(unknown)}; known: {', '.join(sampler_names())}")
    steps_preview = plan(["-"], schemas[:1], concurrency, 1, options.rates)  # rejects a bad --rate before any work
    if options.rates and min(options.rates) <= 0:
        raise LockprofError("--rate must be positive")
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    out = options.out or default_out(scenario.name, run_id)
    check_out(out)  # before any engine is installed or dataset built
    specs = pin_specs([parse(text) for text in options.engines], options.cpus)  # syntax first: installs take minutes
    for spec in specs:
        if options.cluster and not spec.capabilities.cluster:
            raise EngineError(f"engine {spec.label}: --cluster reads the replicas of a server's cluster; "
                              "give a server --engine")
    specs = _unique_labels([prepare(spec) for spec in specs])
    clock = RunClock()
    interrupted: dict[str, Any] = {"flag": False}
    workers: dict[str, WorkerProcess] = {}
    run_dir: RunDir | None = None

    def on_interrupt(signum: int, _frame: object) -> None:
        if interrupted["flag"]:
            # A second signal: stop waiting for anyone, but a worker storing the level the first signal cut short
            # gets FINISH_LEVEL_S to write it (the first level of a run would otherwise be all it measured, lost).
            for w in workers.values():
                if w.busy == "level":
                    timer = threading.Timer(FINISH_LEVEL_S, w.kill)
                    timer.daemon = True
                    timer.start()
                else:
                    w.kill()
            return
        interrupted["flag"] = True
        interrupted["signal"] = signal.Signals(signum).name
        for w in workers.values():
            w.interrupt()  # Ctrl-C reached them too; SIGTERM did not
        for delay, action in ((ABANDON_AFTER_S, _abandon_busy), (STUCK_AFTER_S, _kill_stuck)):
            timer = threading.Timer(delay, action, args=(list(workers.values()),))
            timer.daemon = True
            timer.start()

    previous = {sig: signal.signal(sig, on_interrupt) for sig in STOP_SIGNALS}
    try:
        prepared: dict[str, dict[str, Any]] = {}
        prepare_fields = {"scenario_path": str(loaded.path), "schemas": schemas, "clock_origin": clock.origin,
                          "sample_interval_s": options.sample_interval_s, "samplers": list(options.samplers),
                          "cluster": options.cluster, "run_pid": os.getpid()}  # fmt: skip

        def start(spec: EngineSpec) -> dict[str, Any]:
            workers[spec.label] = WorkerProcess(spec.label, spec.python, spec.pin)
            if interrupted["flag"]:
                raise Interrupted("interrupted while starting the engines")
            reply = workers[spec.label].request("prepare", engine=spec.as_request(), engine_label=spec.label,
                                                **prepare_fields)  # fmt: skip
            if interrupted["flag"]:
                raise Interrupted("interrupted while starting the engines")
            return reply

        for spec in specs:
            reporter.message(f"engine {spec.label}: starting and preparing datasets {', '.join(schemas)}")
            try:
                prepared[spec.label] = start(spec)
            except Interrupted:
                raise Interrupted("interrupted before any measurement; nothing was written") from None
            if max(concurrency) > 1:
                check = workers[spec.label].request("self_check", seconds=options.self_check_s)
                prepared[spec.label]["engine"]["self_check"] = check
                if check["verdict"] == "serialized":
                    reporter.message(
                        f"WARNING: engine {spec.label} runs queries one at a time (speed-up {check['speedup']:.2f}x "
                        "from 1 to 2 concurrent queries); its concurrency results say nothing about lock contention"
                    )
            for schema, ds in prepared[spec.label]["datasets"].items():
                how = "reused from cache" if ds["cached"] else f"built in {ds['build_s']:.1f} s"
                if ds.get("rebuilt_because"):
                    reporter.message(f"  {schema}: the cached dataset was rebuilt: {ds['rebuilt_because']}")
                reporter.message(
                    f"  {schema}: {ds['active_parts']} active parts, {ds['rows']} rows ({how}); "
                    f"PARTITION BY {ds['partition_key']}"
                )
        manifest = Manifest.begin(
            run_id,
            scenario={
                "name": scenario.name,
                "path": str(options.scenario_path),
                "sha256": loaded.sha256,
                "definition": scenario.describe(),
            },
            parameters={
                "schemas": schemas,
                "concurrency": concurrency,
                "warmup_s": warmup_s,
                "duration_s": duration_s,
                "repetitions": repetitions,
                "seed": scenario.seed,
                "samplers": list(options.samplers),
                "sample_interval_s": options.sample_interval_s,
                "cluster": options.cluster,
                "mode": "open_loop" if options.rates else "closed_loop",
                "rates_qps": [st.rate_qps for st in steps_preview] if options.rates else None,
            },
            engines=[
                {"label": s.label, "spec": s.public_spec, **prepared[s.label]["engine"], **pinned(s)} for s in specs
            ]
            + [
                {"label": s.label + NO_SAMPLERS, "spec": s.public_spec, **prepared[s.label]["engine"], **pinned(s),
                 "variant": "overhead control: the same engine with no samplers"}
                for s in specs
                if options.overhead_control
            ],
            datasets={label: p["datasets"] for label, p in prepared.items()},
            host=host_info(),
            clock_origin_unix_s=time.time() - clock.now(),
        )
        run_dir = RunDir(out, manifest)
        for label, p in prepared.items():
            write_part(run_dir.path, "locks", file_name(label), pd.DataFrame(p["locks"]).assign(engine=label))
        steps = plan([s.label for s in specs], schemas, concurrency, repetitions, options.rates)
        if options.overhead_control:
            steps = with_overhead_control(steps)
        order = list(specs)
        swap = Swap(lambda: _restart_reversed(order, workers, start, run_dir))
        _measure(steps, workers, run_dir, warmup_s, duration_s, run_id, reporter, interrupted,
                 profile_driver="pyspy" in options.samplers, swap=swap if len(specs) > 1 else None)
        if not run_dir.has_measurements() and interrupted["flag"]:
            raise Interrupted("interrupted before any measurement; nothing was written")
        if not run_dir.has_measurements():
            failures = run_dir.manifest.failures
            run_dir.discard()
            run_dir = None
            raise EngineError("no level could be measured: " + (failures[0] if failures else "no queries ran"))
        # A failed level is a result (exit 5, failed_levels): the run is complete when every level ran.
        status = "incomplete" if interrupted["flag"] or run_dir.manifest.failures else "complete"
        if interrupted["flag"]:
            run_dir.manifest.fail(_interrupt_note(interrupted))
        run_dir.finish(status)
        return run_dir.path
    except StorageError as exc:
        if run_dir is None or not run_dir.has_measurements():
            if run_dir is not None:
                run_dir.discard()
            raise
        with contextlib.suppress(StorageError):  # the padded manifest has room for this, but never hide exc
            run_dir.manifest.fail(f"the run stopped: {exc}")
            run_dir.finish("incomplete")
        raise StorageError(f"{exc}; the run stopped, {run_dir.path} keeps the levels written before "
                           "(marked incomplete)") from None
    except BaseException as exc:
        if not (interrupted["flag"] or isinstance(exc, (KeyboardInterrupt, Interrupted))):
            _discard_if_empty(run_dir)
            raise
        # Whatever broke after a stop signal (a worker killed because the user insisted) is the interruption.
        interrupted["flag"] = True
        if run_dir is not None and run_dir.has_measurements():
            run_dir.manifest.fail(_interrupt_note(interrupted))
            run_dir.finish("incomplete")
            return run_dir.path
        if run_dir is not None:
            run_dir.discard()
        raise Interrupted("interrupted before any measurement; nothing was written") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reporter.stop()
        for label, w in workers.items():
            kept = run_dir is not None and run_dir.path.exists()
            keep = run_dir.path / "logs" / f"{file_name(label)}.log" if kept else None
            w.close(keep_log=keep)


def _measure(
    steps: list[Step],
    workers: dict[str, WorkerProcess],
    run_dir: RunDir,
    warmup_s: float,
    duration_s: float,
    run_id: str,
    reporter: Reporter,
    interrupted: dict[str, Any],
    profile_driver: bool,
    swap: Swap | None = None,
) -> None:
    reporter.start(len(steps) * (warmup_s + duration_s))
    dead: set[str] = set()
    said: set[str] = set()  # errors already printed
    for seq, step in enumerate(steps):
        if interrupted["flag"]:
            break
        if swap is not None and step.repetition != swap.repetition and not dead:
            swap.repetition = step.repetition
            reporter.message(f"restarting the engines in the reverse order from repetition {step.repetition}")
            try:
                swap.restart()
            except EngineError as exc:
                run_dir.manifest.fail(f"restarting the engines failed: {exc}")
                run_dir.update()
                reporter.message(str(exc))
                break
            run_dir.manifest.restarts_before(step.repetition)
            run_dir.update()
        label = f"{step.schema} c={step.concurrency}"
        if step.no_samplers:
            label += " (no samplers)"
        if step.rate_qps:
            label += f" @{step.rate_qps:g}/s"
        if len(workers) > 1:
            label += f" rep {step.repetition} [{step.engine}]"
        if step.engine in dead:
            continue
        reporter.step(label, warmup_s + duration_s)
        profiled = profile_driver and not step.no_samplers
        spy = PySpySampler(workers[step.engine].proc.pid) if profiled else contextlib.nullcontext()
        try:
            with spy:
                reply = workers[step.engine].request(
                    "level",
                    run_dir=str(run_dir.path),
                    schema=step.schema,
                    concurrency=step.concurrency,
                    repetition=step.repetition,
                    warmup_s=warmup_s,
                    duration_s=duration_s,
                    seq=seq,
                    id_prefix=run_id,
                    rate_qps=step.rate_qps,
                    position=step.position,
                    **({"label": step.label, "samplers": []} if step.no_samplers else {}),
                )
        except WorkerCrashed as exc:
            if workers[step.engine].stuck:
                run_dir.manifest.fail(workers[step.engine].stuck)
                reporter.message(f"{workers[step.engine].stuck}\n{exc}")
            if interrupted["flag"]:
                break  # killed by a second Ctrl-C, or stuck: the run ends as interrupted
            dead.add(step.engine)
            run_dir.manifest.fail(str(exc))
            run_dir.update()
            reporter.step_done("worker died")
            reporter.message(str(exc))
            if len(dead) == len(workers):
                break  # the run ends incomplete, keeping and summarising what was measured (or saying nothing was)
            continue
        except EngineError as exc:
            run_dir.manifest.fail(str(exc))
            run_dir.update()
            reporter.step_done(f"failed: {exc}")
            continue
        if isinstance(spy, PySpySampler):
            _keep_driver_profile(spy, run_dir, step, part_name(step.label, seq), reporter)
        reporter.step_done(level_note(reply, step))
        if too_few(reply, step) and "too few" not in said:
            said.add("too few")
            run_dir.manifest.note(
                f"some windows measured too few queries to say much (first: {label}, {reply['queries']} queries at "
                f"concurrency {step.concurrency}); a longer --duration gives a measurement")
            run_dir.update()
        for kind in reply.get("error_kinds") or []:
            if kind not in said:  # each kind of error once per run, with its text (and the user's file and line)
                said.add(kind)
                reporter.message(f"  {label}: first error of its kind: {kind}")
        if reply.get("first_background_error") and "background" not in said:
            said.add("background")
            reporter.message(f"  {label}: a background statement failed ({reply['background_errors']} of "
                             f"{reply['background']}; not counted as query errors): {reply['first_background_error']}")
        if reply.get("failed"):
            failure = {"engine": step.label, "schema": step.schema, "concurrency": step.concurrency,
                       "repetition": step.repetition, "error_share": reply["error_share"],
                       "first_error": reply["first_error"]}
            run_dir.manifest.fail_level(failure)
            run_dir.update()
            reporter.message(f"LEVEL FAILED: {label}: {describe_failed_level(failure)}")


def too_few(reply: dict[str, Any], step: Step) -> bool:
    """A closed-loop window in which each query thread completed only one or two queries: a rate and percentiles
    of so few say little, and a query longer than the window is not measured at all."""
    return not reply["interrupted"] and not step.rate_qps and reply["queries"] < FEW_PER_THREAD * step.concurrency


def level_note(reply: dict[str, Any], step: Step) -> str:
    """The progress line of a finished level: its queries and rate, and everything that qualifies them."""
    window = reply["measure_end_s"] - reply["measure_start_s"]
    qps = reply["queries"] / window if window > 0 else float("nan")
    note = f"{reply['queries']} queries, {qps:.1f}/s"
    if step.rate_qps and qps < ACHIEVED_FRACTION * step.rate_qps:
        note += f" (target {step.rate_qps:g}/s not achieved)"
    if reply["errors"]:
        note += f", {reply['errors']} errors"
    if reply.get("censored"):
        note += f", {reply['censored']} still running when the window closed (censored, not failures)"
    if reply.get("background_errors"):
        note += f", {reply['background_errors']} of {reply['background']} background statements failed"
    if too_few(reply, step):
        note += (f" — too few to measure: {reply['queries'] / step.concurrency:.1f} per thread in a {window:.2f} s "
                 "window; a longer --duration gives a measurement")
    if reply["interrupted"]:
        note += " (interrupted)"
    return note


def _restart_reversed(
    order: list[EngineSpec],
    workers: dict[str, WorkerProcess],
    start: Callable[[EngineSpec], dict[str, Any]],
    run_dir: RunDir,
) -> None:
    """Stop every worker (keeping its log), reverse ``order``, and start and prepare them again in it."""
    restarts = len(run_dir.manifest.worker_restarts)
    for spec in order:
        workers.pop(spec.label).close(keep_log=run_dir.path / "logs" / f"{file_name(spec.label)}.{restarts}.log")
    order.reverse()
    placed = {spec.label: start(spec)["engine"].get("data_path") for spec in order}
    run_dir.manifest.restarted([spec.label for spec in order], placed)


def describe_failed_level(failure: dict[str, Any]) -> str:
    """One line for a failed level: how many of its queries failed and the first error."""
    share = failure.get("error_share")
    how = "nothing was measured" if share is None or share != share else f"{share:.0%} of its queries failed"
    return (f"{how} (a level fails above {ERROR_SHARE_LIMIT:.0%}); "
            f"first error: {failure.get('first_error')}")


def _abandon_busy(workers: list[WorkerProcess]) -> None:
    """After a first Ctrl-C: a worker still in a request other than a level (a dataset build) is stopped."""
    for w in workers:
        if w.busy not in (None, "level"):
            w.kill()


def _kill_stuck(workers: list[WorkerProcess]) -> None:
    """Long after a first Ctrl-C: a worker still in a request will not end it; the run must."""
    for w in workers:
        if w.busy is not None:
            w.kill_stuck(f"engine worker {w.label!r} had not ended its {w.busy} {STUCK_AFTER_S:.0f} s after the "
                         "stop signal and was killed; its log holds the stacks of its threads")


def _interrupt_note(interrupted: dict[str, Any]) -> str:
    how = "Ctrl-C" if interrupted.get("signal", "SIGINT") == "SIGINT" else interrupted["signal"]
    return f"interrupted by the user ({how})"


def _discard_if_empty(run_dir: RunDir | None) -> None:
    if run_dir is not None and not run_dir.has_measurements():
        run_dir.discard()


def _keep_driver_profile(spy: PySpySampler, run_dir: RunDir, step: Step, part: str, reporter: Reporter) -> None:
    """Store what py-spy saw of the worker during a level, or say once why it saw nothing."""
    keys = {"engine": step.engine, "schema": step.schema, "concurrency": step.concurrency,
            "repetition": step.repetition}
    if spy.error:
        if run_dir.manifest.note(spy.error):
            run_dir.update()
            reporter.message(f"note: {spy.error}; the run goes on without the driver profile")
        return
    write_part(run_dir.path, "driver_stacks", part, spy.stacks.assign(**keys))
    write_part(run_dir.path, "driver", part,
               pd.DataFrame([{**keys, "seconds": spy.seconds, "rate_hz": spy.rate_hz, **spy.summary()}]))
    spy.write(run_dir.path / "pyspy", part)


def _unique_labels(specs: list[EngineSpec]) -> list[EngineSpec]:
    """Give repeated specs distinct labels (an A/A run names its sides embedded, embedded#2)."""
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        seen[spec.label] = seen.get(spec.label, 0) + 1
        if seen[spec.label] > 1:
            spec = dataclasses.replace(spec, label=f"{spec.label}#{seen[spec.label]}")
        out.append(spec)
    return out
