"""lockprof run: drive a scenario on one or more engines and print the summary."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lockprof.errors import Interrupted
from lockprof.run import RunOptions, run
from lockprof.store import read_manifest
from lockprof.summary import print_summary
from lockprof.worker import ALL_SAMPLERS


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    return values


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


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
                   help="engine to measure: 'embedded' (default); repeat for an interleaved A/B run")
    p.add_argument("--password-file", type=Path,
                   help="file holding a server's password (else LOCKPROF_PASSWORD); never pass it on the command line")
    p.add_argument("--cluster", metavar="NAME",
                   help="server engines: read system tables from every replica of this cluster (clusterAllReplicas); "
                        "each sampled row records its replica")
    p.add_argument("--concurrency", type=int_list, help="levels to sweep, e.g. 1,2,4,8 (default: the scenario's)")
    p.add_argument("--rate", type=float_list, dest="rates",
                   help="open loop: queries per second, one for every level or one per concurrency level "
                        "(then --concurrency is the most queries in flight)")
    p.add_argument("--duration", type=float,
                   help="measured seconds per level (default: the scenario's; 2 for an A/B)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per level (default: the scenario's; 0.5 for an A/B)")
    p.add_argument("--repetitions", type=int, help="repetitions of every level (default 1; 6 for an A/B)")
    p.add_argument("--schema", action="append", dest="schemas", help="only this schema variant (repeatable)")
    p.add_argument("--samplers", type=samplers, default=ALL_SAMPLERS,
                   help=f"'all' (default), 'off', or a subset of {','.join(ALL_SAMPLERS)}")
    p.add_argument("--overhead-control", action="store_true",
                   help="also run every level with no samplers, interleaved, as engine '<label>+no-samplers'; "
                        "`lockprof compare` then shows what the samplers cost")
    p.add_argument("--sample-interval", type=float, default=0.2, help="sampler period in seconds (default 0.2)")
    p.add_argument("--out", type=Path, help="run directory to create (default runs/<scenario>-<time>)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.password_file:
        # Workers inherit the environment; the file's path is not a secret, its content is never copied.
        os.environ["LOCKPROF_PASSWORD_FILE"] = str(args.password_file.resolve())
    path = run(
        RunOptions(
            scenario_path=args.scenario,
            engines=args.engines or ["embedded"],
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
        )
    )
    print_summary(path)
    manifest = read_manifest(path)
    if manifest["status"] == "complete":
        return 0
    interrupted = any("interrupted" in f for f in manifest.get("failures", []))
    return Interrupted.exit_code if interrupted else 1
