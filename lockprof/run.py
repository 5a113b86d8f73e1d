"""The orchestrator: plan the steps, drive one engine worker process per engine, write one run directory.

A run is four parts: :func:`resolve` fills in and checks the options before any engine starts;
:class:`EngineProcesses` starts and prepares the engine worker processes (:class:`lockprof.workerproc.WorkerProcess`,
each running :mod:`lockprof.worker`) and restarts them; :class:`Measurement` sends each step's level and records
its reply; :class:`StopController` is what Ctrl-C and SIGTERM do meanwhile. :func:`run` ties them together.

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
from lockprof.protocol import LevelReply, LevelRequest, PrepareReply, PrepareRequest, SelfCheckRequest
from lockprof.samplers.pyspy import PySpySampler
from lockprof.samplers.registry import names as sampler_names
from lockprof.scenario import LoadedScenario, Scenario, load_scenario, probe_scenario
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


@dataclass
class ResolvedOptions:
    """A run's options with the scenario's and the A/B defaults filled in, all checked before any engine starts."""

    options: RunOptions
    loaded: LoadedScenario
    schemas: list[str]
    concurrency: list[int]
    warmup_s: float
    duration_s: float
    repetitions: int
    run_id: str
    out: Path
    specs: list[EngineSpec]  # prepared, with distinct labels
    rates_qps: list[float | None] | None  # open loop: each concurrency level's rate

    @property
    def scenario(self) -> Scenario:
        return self.loaded.scenario


def resolve(options: RunOptions) -> ResolvedOptions:
    """Fill in the defaults and refuse bad options, cheapest checks first: installing an engine takes minutes."""
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
    preview = plan(["-"], schemas[:1], concurrency, 1, options.rates)  # rejects a bad --rate before any work
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
    rates_qps = [st.rate_qps for st in preview] if options.rates else None
    return ResolvedOptions(options, loaded, schemas, concurrency, warmup_s, duration_s, repetitions, run_id, out,
                           specs, rates_qps)


class StopController:
    """What Ctrl-C and SIGTERM do to a run, and whether one came.

    The first signal asks every engine worker process to end its level early (:meth:`WorkerProcess.interrupt`),
    then gives a request that cannot be cut short :data:`ABANDON_AFTER_S` and a level :data:`STUCK_AFTER_S`
    before the process is stopped. A second signal stops every process at once, except that one storing the
    level the first signal cut short gets :data:`FINISH_LEVEL_S` to write it.
    """

    def __init__(self, processes: dict[str, WorkerProcess]) -> None:
        self.processes = processes  # the run's, by engine label: the live mapping (restarts replace its values)
        self.requested = False  # a stop signal came (or the run ended as if one had)
        self.signal_name = "SIGINT"
        self._previous: dict[signal.Signals, Any] = {}
        self._timers: list[threading.Timer] = []

    def install(self) -> None:
        self._previous = {sig: signal.signal(sig, self.on_signal) for sig in STOP_SIGNALS}

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def on_signal(self, signum: int, _frame: object = None) -> None:
        if self.requested:
            self._insist()
            return
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        for process in self.processes.values():
            process.interrupt()  # Ctrl-C reached them too; SIGTERM did not
        for delay, action in ((ABANDON_AFTER_S, _abandon_busy), (STUCK_AFTER_S, _kill_stuck)):
            self._later(delay, action, list(self.processes.values()))

    def _insist(self) -> None:
        """A second signal: stop waiting for anyone, but a worker storing the level the first signal cut short
        gets FINISH_LEVEL_S to write it (the first level of a run would otherwise be all it measured, lost)."""
        for process in self.processes.values():
            if process.busy == "level":
                self._later(FINISH_LEVEL_S, process.kill)
            else:
                process.kill()

    def _later(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        timer = threading.Timer(delay, action, args=args)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def cancel_timers(self) -> None:
        """Once every worker process is closed, nothing is left for the timers to stop."""
        for timer in self._timers:
            timer.cancel()

    def check(self, doing: str) -> None:
        """Raise :class:`Interrupted` if a stop signal came; ``doing`` says when."""
        if self.requested:
            raise Interrupted(f"interrupted while {doing}")

    @property
    def note(self) -> str:
        """The failure a stopped run records."""
        how = "Ctrl-C" if self.signal_name == "SIGINT" else self.signal_name
        return f"interrupted by the user ({how})"


StartProcess = Callable[[EngineSpec, RunOptions], WorkerProcess]


def start_worker_process(spec: EngineSpec, options: RunOptions) -> WorkerProcess:
    """Start one engine's worker process; the run's options for the process itself go here."""
    return WorkerProcess(spec.label, spec.python, spec.pin)


class EngineProcesses:
    """The run's engine worker processes, by engine label: started, prepared, restarted and closed together."""

    def __init__(self, resolved: ResolvedOptions, clock: RunClock, start_process: StartProcess) -> None:
        self.resolved = resolved
        self.clock = clock
        self.start_process = start_process
        self.by_label: dict[str, WorkerProcess] = {}
        self.order = list(resolved.specs)  # the order they were last started in
        self.stop: StopController | None = None

    def prepare_request(self, spec: EngineSpec) -> PrepareRequest:
        r, options = self.resolved, self.resolved.options
        return PrepareRequest(engine=spec.as_request(), engine_label=spec.label, scenario_path=str(r.loaded.path),
                              schemas=r.schemas, clock_origin=self.clock.origin,
                              sample_interval_s=options.sample_interval_s, samplers=list(options.samplers),
                              cluster=options.cluster, run_pid=os.getpid())

    def start(self, spec: EngineSpec) -> PrepareReply:
        """Start and prepare one engine's worker process (a stop signal meanwhile ends the run)."""
        self.by_label[spec.label] = self.start_process(spec, self.resolved.options)
        if self.stop is not None:
            self.stop.check("starting the engines")
        reply = self.by_label[spec.label].request(self.prepare_request(spec))
        if self.stop is not None:
            self.stop.check("starting the engines")
        return reply

    def restart_reversed(self, run_dir: RunDir) -> None:
        """Stop every worker process (keeping its log), and start and prepare them again in the reverse order."""
        restarts = len(run_dir.manifest.worker_restarts)
        for spec in self.order:
            self.by_label.pop(spec.label).close(
                keep_log=run_dir.path / "logs" / f"{file_name(spec.label)}.{restarts}.log")
        self.order.reverse()
        placed = {spec.label: self.start(spec).engine.get("data_path") for spec in self.order}
        run_dir.manifest.restarted([spec.label for spec in self.order], placed)

    def close(self, run_dir: RunDir | None) -> None:
        """Close every worker process, keeping its log in the run directory if the run keeps one."""
        for label, process in self.by_label.items():
            kept = run_dir is not None and run_dir.path.exists()
            keep = run_dir.path / "logs" / f"{file_name(label)}.log" if kept else None
            process.close(keep_log=keep)


def run(options: RunOptions, reporter: Reporter | None = None,
        start_process: StartProcess = start_worker_process) -> Path:
    """Run a scenario and return the run directory it wrote.

    ``start_process`` starts an engine's worker process (tests give one that answers without an engine)."""
    reporter = reporter or reporter_for()
    resolved = resolve(options)
    clock = RunClock()
    processes = EngineProcesses(resolved, clock, start_process)
    stop = processes.stop = StopController(processes.by_label)
    run_dir: RunDir | None = None
    stop.install()
    try:
        prepared = _start_engines(processes, reporter)
        run_dir = _begin_run_dir(resolved, prepared, clock)
        Measurement(resolved, processes, run_dir, reporter, stop).all()
        return _finish(run_dir, stop)
    except StorageError as exc:
        raise _stopped_by_storage(exc, run_dir) from None
    except BaseException as exc:
        return _after_stop(exc, run_dir, stop)
    finally:
        stop.restore()
        reporter.stop()
        processes.close(run_dir)
        stop.cancel_timers()


def _start_engines(processes: EngineProcesses, reporter: Reporter) -> dict[str, PrepareReply]:
    """Start and prepare every engine in turn, saying what each prepared; a stop signal ends the run here."""
    resolved = processes.resolved
    prepared: dict[str, PrepareReply] = {}
    for spec in resolved.specs:
        reporter.message(f"engine {spec.label}: starting and preparing datasets {', '.join(resolved.schemas)}")
        try:
            prepared[spec.label] = processes.start(spec)
        except Interrupted:
            raise Interrupted("interrupted before any measurement; nothing was written") from None
        if max(resolved.concurrency) > 1:
            check = processes.by_label[spec.label].request(SelfCheckRequest(seconds=resolved.options.self_check_s))
            prepared[spec.label].engine["self_check"] = check.to_json()
            if check.verdict == "serialized":
                reporter.message(
                    f"WARNING: engine {spec.label} runs queries one at a time (speed-up {check.speedup:.2f}x "
                    "from 1 to 2 concurrent queries); its concurrency results say nothing about lock contention"
                )
        for schema, ds in prepared[spec.label].datasets.items():
            how = "reused from cache" if ds["cached"] else f"built in {ds['build_s']:.1f} s"
            if ds.get("rebuilt_because"):
                reporter.message(f"  {schema}: the cached dataset was rebuilt: {ds['rebuilt_because']}")
            reporter.message(
                f"  {schema}: {ds['active_parts']} active parts, {ds['rows']} rows ({how}); "
                f"PARTITION BY {ds['partition_key']}"
            )
    return prepared


def _begin_run_dir(resolved: ResolvedOptions, prepared: dict[str, PrepareReply], clock: RunClock) -> RunDir:
    """Create the run directory: its manifest, and each engine's lock catalog."""
    options, scenario, specs = resolved.options, resolved.scenario, resolved.specs
    manifest = Manifest.begin(
        resolved.run_id,
        scenario={
            "name": scenario.name,
            "path": str(options.scenario_path),
            "sha256": resolved.loaded.sha256,
            "definition": scenario.describe(),
        },
        parameters={
            "schemas": resolved.schemas,
            "concurrency": resolved.concurrency,
            "warmup_s": resolved.warmup_s,
            "duration_s": resolved.duration_s,
            "repetitions": resolved.repetitions,
            "seed": scenario.seed,
            "samplers": list(options.samplers),
            "sample_interval_s": options.sample_interval_s,
            "cluster": options.cluster,
            "mode": "open_loop" if options.rates else "closed_loop",
            "rates_qps": resolved.rates_qps,
        },
        engines=[
            {"label": s.label, "spec": s.public_spec, **prepared[s.label].engine, **pinned(s)} for s in specs
        ]
        + [
            {"label": s.label + NO_SAMPLERS, "spec": s.public_spec, **prepared[s.label].engine, **pinned(s),
             "variant": "overhead control: the same engine with no samplers"}
            for s in specs
            if options.overhead_control
        ],
        datasets={label: p.datasets for label, p in prepared.items()},
        host=host_info(),
        clock_origin_unix_s=time.time() - clock.now(),
    )
    run_dir = RunDir(resolved.out, manifest)
    for label, p in prepared.items():
        write_part(run_dir.path, "locks", file_name(label), pd.DataFrame(p.locks).assign(engine=label))
    return run_dir


def _finish(run_dir: RunDir, stop: StopController) -> Path:
    """Mark the run complete or incomplete; a run that measured nothing leaves no directory."""
    if not run_dir.has_measurements() and stop.requested:
        raise Interrupted("interrupted before any measurement; nothing was written")
    if not run_dir.has_measurements():
        failures = run_dir.manifest.failures
        run_dir.discard()
        raise EngineError("no level could be measured: " + (failures[0] if failures else "no queries ran"))
    # A failed level is a result (exit 5, failed_levels): the run is complete when every level ran.
    status = "incomplete" if stop.requested or run_dir.manifest.failures else "complete"
    if stop.requested:
        run_dir.manifest.fail(stop.note)
    run_dir.finish(status)
    return run_dir.path


def _stopped_by_storage(exc: StorageError, run_dir: RunDir | None) -> StorageError:
    """The error a full disk ends the run with; the levels written before it are kept, marked incomplete."""
    if run_dir is None or not run_dir.has_measurements():
        if run_dir is not None:
            run_dir.discard()
        return exc
    with contextlib.suppress(StorageError):  # the padded manifest has room for this, but never hide exc
        run_dir.manifest.fail(f"the run stopped: {exc}")
        run_dir.finish("incomplete")
    return StorageError(f"{exc}; the run stopped, {run_dir.path} keeps the levels written before "
                        "(marked incomplete)")


def _after_stop(exc: BaseException, run_dir: RunDir | None, stop: StopController) -> Path:
    """Whatever broke after a stop signal (a worker killed because the user insisted) is the interruption:
    the run keeps what it measured, marked incomplete. Any other error is raised again."""
    if not (stop.requested or isinstance(exc, (KeyboardInterrupt, Interrupted))):
        _discard_if_empty(run_dir)
        raise exc
    stop.requested = True
    if run_dir is not None and run_dir.has_measurements():
        run_dir.manifest.fail(stop.note)
        run_dir.finish("incomplete")
        return run_dir.path
    if run_dir is not None:
        run_dir.discard()
    raise Interrupted("interrupted before any measurement; nothing was written") from None


class Measurement:
    """The measuring part of a run: each step on its engine's worker process, every reply said and recorded.

    A worker process that dies is reported and its engine's later steps skipped; the other engines go on."""

    def __init__(self, resolved: ResolvedOptions, processes: EngineProcesses, run_dir: RunDir, reporter: Reporter,
                 stop: StopController) -> None:
        self.resolved, self.processes, self.run_dir = resolved, processes, run_dir
        self.reporter, self.stop = reporter, stop
        self.dead: set[str] = set()  # engines whose worker process died
        self.said: set[str] = set()  # errors and notes already printed
        self.window_s = resolved.warmup_s + resolved.duration_s
        self.profile_driver = "pyspy" in resolved.options.samplers
        several = len(resolved.specs) > 1
        self.swap = Swap(lambda: processes.restart_reversed(run_dir)) if several else None

    def steps(self) -> list[Step]:
        r = self.resolved
        steps = plan([s.label for s in r.specs], r.schemas, r.concurrency, r.repetitions, r.options.rates)
        return with_overhead_control(steps) if r.options.overhead_control else steps

    def all(self) -> None:
        steps = self.steps()
        self.reporter.start(len(steps) * self.window_s)
        for seq, step in enumerate(steps):
            if self.stop.requested or not self._restarted_if_due(step):
                break
            label = step_label(step, several=len(self.processes.by_label) > 1)
            if step.engine in self.dead:
                continue
            self.reporter.step(label, self.window_s)
            try:
                reply = self._level(seq, step)
            except WorkerCrashed as exc:
                if self._crashed(step, exc):
                    break
                continue
            except EngineError as exc:
                self._fail(str(exc))
                self.reporter.step_done(f"failed: {exc}")
                continue
            self._said(reply, step, label)

    def _fail(self, reason: str) -> None:
        self.run_dir.manifest.fail(reason)
        self.run_dir.update()

    def _restarted_if_due(self, step: Step) -> bool:
        """Before a new repetition of an A/B, restart the engines in the reverse order; False if that failed."""
        swap = self.swap
        if swap is None or step.repetition == swap.repetition or self.dead:
            return True
        swap.repetition = step.repetition
        self.reporter.message(f"restarting the engines in the reverse order from repetition {step.repetition}")
        try:
            swap.restart()
        except EngineError as exc:
            self._fail(f"restarting the engines failed: {exc}")
            self.reporter.message(str(exc))
            return False
        self.run_dir.manifest.restarts_before(step.repetition)
        self.run_dir.update()
        return True

    def _level(self, seq: int, step: Step) -> LevelReply:
        """One level on its engine's worker process, with py-spy on that process if the run profiles it."""
        r, process = self.resolved, self.processes.by_label[step.engine]
        profiled = self.profile_driver and not step.no_samplers
        spy = PySpySampler(process.proc.pid) if profiled else contextlib.nullcontext()
        with spy:
            reply = process.request(LevelRequest(
                run_dir=str(self.run_dir.path), schema=step.schema, concurrency=step.concurrency,
                repetition=step.repetition, warmup_s=r.warmup_s, duration_s=r.duration_s, seq=seq,
                id_prefix=r.run_id, rate_qps=step.rate_qps, position=step.position,
                **({"label": step.label, "samplers": []} if step.no_samplers else {}),
            ))
        if isinstance(spy, PySpySampler):
            _keep_driver_profile(spy, self.run_dir, step, part_name(step.label, seq), self.reporter)
        return reply

    def _crashed(self, step: Step, exc: WorkerCrashed) -> bool:
        """Record a worker process that died in a level; True if the run ends with it."""
        process = self.processes.by_label[step.engine]
        if process.stuck:
            self.run_dir.manifest.fail(process.stuck)
            self.reporter.message(f"{process.stuck}\n{exc}")
        if self.stop.requested:
            return True  # killed by a second Ctrl-C, or stuck: the run ends as interrupted
        self.dead.add(step.engine)
        self._fail(str(exc))
        self.reporter.step_done("worker died")
        self.reporter.message(str(exc))
        # the run ends incomplete, keeping and summarising what was measured (or saying nothing was)
        return len(self.dead) == len(self.processes.by_label)

    def _said(self, reply: LevelReply, step: Step, label: str) -> None:
        """The level's progress line, what qualifies it (each kind said once a run), and a failed level."""
        self.reporter.step_done(level_note(reply, step))
        if too_few(reply, step) and "too few" not in self.said:
            self.said.add("too few")
            self.run_dir.manifest.note(
                f"some windows measured too few queries to say much (first: {label}, {reply.queries} queries at "
                f"concurrency {step.concurrency}); a longer --duration gives a measurement")
            self.run_dir.update()
        for kind in reply.error_kinds or []:
            if kind not in self.said:  # each kind of error once per run, with its text (and the user's file and line)
                self.said.add(kind)
                self.reporter.message(f"  {label}: first error of its kind: {kind}")
        if reply.first_background_error and "background" not in self.said:
            self.said.add("background")
            self.reporter.message(f"  {label}: a background statement failed ({reply.background_errors} of "
                                  f"{reply.background}; not counted as query errors): {reply.first_background_error}")
        if reply.failed:
            failure = {"engine": step.label, "schema": step.schema, "concurrency": step.concurrency,
                       "repetition": step.repetition, "error_share": reply.error_share,
                       "first_error": reply.first_error}
            self.run_dir.manifest.fail_level(failure)
            self.run_dir.update()
            self.reporter.message(f"LEVEL FAILED: {label}: {describe_failed_level(failure)}")


def step_label(step: Step, several: bool) -> str:
    """How the progress lines name a step; ``several``: the run has more than one engine worker process."""
    label = f"{step.schema} c={step.concurrency}"
    if step.no_samplers:
        label += " (no samplers)"
    if step.rate_qps:
        label += f" @{step.rate_qps:g}/s"
    if several:
        label += f" rep {step.repetition} [{step.engine}]"
    return label


def too_few(reply: LevelReply, step: Step) -> bool:
    """A closed-loop window in which each query thread completed only one or two queries: a rate and percentiles
    of so few say little, and a query longer than the window is not measured at all."""
    return not reply.interrupted and not step.rate_qps and reply.queries < FEW_PER_THREAD * step.concurrency


def level_note(reply: LevelReply, step: Step) -> str:
    """The progress line of a finished level: its queries and rate, and everything that qualifies them."""
    window = reply.measure_end_s - reply.measure_start_s
    qps = reply.queries / window if window > 0 else float("nan")
    note = f"{reply.queries} queries, {qps:.1f}/s"
    if step.rate_qps and qps < ACHIEVED_FRACTION * step.rate_qps:
        note += f" (target {step.rate_qps:g}/s not achieved)"
    if reply.errors:
        note += f", {reply.errors} errors"
    if reply.censored:
        note += f", {reply.censored} still running when the window closed (censored, not failures)"
    if reply.background_errors:
        note += f", {reply.background_errors} of {reply.background} background statements failed"
    if too_few(reply, step):
        note += (f" — too few to measure: {reply.queries / step.concurrency:.1f} per thread in a {window:.2f} s "
                 "window; a longer --duration gives a measurement")
    if reply.interrupted:
        note += " (interrupted)"
    return note


def describe_failed_level(failure: dict[str, Any]) -> str:
    """One line for a failed level: how many of its queries failed and the first error."""
    share = failure.get("error_share")
    how = "nothing was measured" if share is None or share != share else f"{share:.0%} of its queries failed"
    return (f"{how} (a level fails above {ERROR_SHARE_LIMIT:.0%}); "
            f"first error: {failure.get('first_error')}")


def _abandon_busy(processes: list[WorkerProcess]) -> None:
    """After a first Ctrl-C: a worker process still in a request other than a level (a dataset build) is stopped."""
    for process in processes:
        if process.busy not in (None, "level"):
            process.kill()


def _kill_stuck(processes: list[WorkerProcess]) -> None:
    """Long after a first Ctrl-C: a worker process still in a request will not end it; the run must."""
    for process in processes:
        if process.busy is not None:
            process.kill_stuck(f"engine worker {process.label!r} had not ended its {process.busy} "
                               f"{STUCK_AFTER_S:.0f} s after the stop signal and was killed; its log holds the "
                               "stacks of its threads")


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
