"""lockprof run: drive a scenario on one or more engines and print the summary."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from lockprof.cpus import parse_counts
from lockprof.dirformat import Manifest
from lockprof.engines.registry import expand
from lockprof.errors import Interrupted, LevelsFailed
from lockprof.run import RunOptions, describe_failed_level, run
from lockprof.samplers.registry import names as sampler_names
from lockprof.store import read_manifest
from lockprof.summary import print_summary
from lockprof.worker import ALL_SAMPLERS

MAX_CONCURRENCY = 1024  # threads (and engine connections) in one worker: beyond this, refuse
MAX_SECONDS = 86_400.0  # a level longer than a day is a typo
MAX_REPETITIONS = 10_000


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    if max(values) > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"at most {MAX_CONCURRENCY} concurrent queries, got {max(values)}")
    return values


def number(text: str, low: float, high: float, inclusive_low: bool = True) -> float:
    """A finite number in [low, high] (or (low, high]); anything else is refused with the range."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value > high or value < low or (value == low and not inclusive_low):
        bound = "from" if inclusive_low else "above"
        raise argparse.ArgumentTypeError(f"expected a number {bound} {low:g} up to {high:g}, got {text!r}")
    return value


def seconds(text: str) -> float:
    return number(text, 0.0, MAX_SECONDS, inclusive_low=False)


def warmup_seconds(text: str) -> float:
    return number(text, 0.0, MAX_SECONDS)


def interval(text: str) -> float:
    return number(text, 0.01, 3600.0)


def repetitions(text: str) -> int:
    value = number(text, 1, MAX_REPETITIONS)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def float_list(text: str) -> list[float]:
    values = [number(x, 0.0, 1e6, inclusive_low=False) for x in text.split(",") if x.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}")
    return values


def samplers(text: str) -> tuple[str, ...]:
    if text == "off":
        return ()
    if text == "all":
        return ALL_SAMPLERS
    return tuple(x.strip() for x in text.split(",") if x.strip())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a scenario and write a run directory", description=__doc__)
    p.add_argument("scenario", type=Path, help="scenario script (a Python file defining `scenario`)")
    p.add_argument("--engine", action="append", dest="engines", metavar="SPEC",
                   help="engine to measure: 'embedded' (default); repeat for an interleaved A/B run; 'all' "
                        "or a range such as '25.8..26.5' sweeps the known releases (lockprof engines list)")
    p.add_argument("--password-file", type=Path,
                   help="file holding a server's password (else LOCKPROF_PASSWORD); never pass it on the command line")
    p.add_argument("--cluster", metavar="NAME",
                   help="server engines: read system tables from every replica of this cluster (clusterAllReplicas); "
                        "each sampled row records its replica")
    p.add_argument("--concurrency", type=int_list, help="levels to sweep, e.g. 1,2,4,8 (default: the scenario's)")
    p.add_argument("--rate", type=float_list, dest="rates",
                   help="open loop: queries per second, one for every level or one per concurrency level "
                        "(then --concurrency is the most queries in flight)")
    p.add_argument("--duration", type=seconds,
                   help="measured seconds per level (default: the scenario's; 2 for an A/B)")
    p.add_argument("--warmup", type=warmup_seconds,
                   help="warm-up seconds per level (default: the scenario's; 0.5 for an A/B)")
    p.add_argument("--repetitions", type=repetitions, help="repetitions of every level (default 1; 16 for an A/B)")
    p.add_argument("--schema", action="append", dest="schemas", help="only this schema variant (repeatable)")
    p.add_argument("--samplers", type=samplers, default=ALL_SAMPLERS,
                   help=f"'all' (default: {','.join(ALL_SAMPLERS)}), 'off', or a subset of "
                        f"{','.join(sampler_names())}")
    p.add_argument("--overhead-control", action="store_true",
                   help="also run every level with no samplers, interleaved, as engine '<label>+no-samplers'; "
                        "`lockprof compare` then shows what the samplers cost")
    p.add_argument("--sample-interval", type=interval, default=0.2, help="sampler period in seconds (default 0.2)")
    p.add_argument("--cpus", type=parse_counts, metavar="N[,M...]",
                   help="pin each engine to N cores (CPU affinity, the lowest allowed ones); several counts run every "
                        "engine once per count, labelled <label>@<N>cpu; fractional counts need the cgroup v2 "
                        "CPU controller")
    p.add_argument("--out", type=Path, help="run directory to create (default runs/<scenario>-<time>)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.password_file:
        # Workers inherit the environment; the file's path is not a secret, its content is never copied.
        os.environ["LOCKPROF_PASSWORD_FILE"] = str(args.password_file.resolve())
    path = run(
        RunOptions(
            scenario_path=args.scenario,
            engines=expand(args.engines or ["embedded"]),
            concurrency=args.concurrency,
            rates=args.rates,
            warmup_s=args.warmup,
            duration_s=args.duration,
            repetitions=args.repetitions,
            schemas=args.schemas,
            out=args.out,
            samplers=args.samplers,
            sample_interval_s=args.sample_interval,
            overhead_control=args.overhead_control,
            cluster=args.cluster,
            cpus=args.cpus,
        )
    )
    print_summary(path)
    return exit_code(read_manifest(path))


def exit_code(manifest: Manifest) -> int:
    """0 complete; 130 interrupted; 1 an engine failed; 5 every engine ran but some level failed."""
    failures, failed_levels = manifest.failures, manifest.failed_levels
    for failure in failed_levels:  # said again after the summary, where it cannot be missed
        print(f"lockprof: level failed: {failure['engine']} {failure['schema']} c={failure['concurrency']}: "
              f"{describe_failed_level(failure)}", file=sys.stderr)
    if any("interrupted" in f for f in failures):
        return Interrupted.exit_code
    if failures or not manifest.complete and not failed_levels:
        return 1
    return LevelsFailed.exit_code if failed_levels else 0
