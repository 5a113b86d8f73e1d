"""lockprof observe: watch a live server for a window, read-only, and write a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from lockprof.cli.run import interval, seconds, warmup_seconds
from lockprof.observe import ObserveOptions, observe
from lockprof.run import check_out
from lockprof.summary import print_summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("observe", help="sample a live server read-only, without load", description=__doc__)
    p.add_argument("--engine", required=True, metavar="URL", help="http(s)://user@host:port of the server")
    # The same checks as run's: a value that is not finite, not positive or beyond its range is exit 1 before
    # the server is reached, never a nonsense run or a traceback.
    p.add_argument("--duration", type=seconds, default=60.0, help="seconds to watch (default 60)")
    p.add_argument("--interval", type=interval, default=1.0, help="sampling period in seconds (default 1)")
    p.add_argument("--settle", type=warmup_seconds, default=8.0,
                   help="seconds to wait after the window for the server to flush its logs (default 8)")
    p.add_argument("--no-stacks", dest="stacks", action="store_false", help="do not read system.trace_log")
    p.add_argument("--password-file", type=Path,
                   help="file holding the password (else LOCKPROF_PASSWORD or LOCKPROF_PASSWORD_FILE)")
    p.add_argument("--cluster", metavar="NAME",
                   help="read the system tables of every replica of this cluster (clusterAllReplicas); "
                        "each row records its replica")
    p.add_argument("--out", type=Path, help="run directory to create (default runs/observe-<time>)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.out:
        check_out(args.out)  # before the server is reached
    path = observe(
        ObserveOptions(
            engine=args.engine,
            duration_s=args.duration,
            out=args.out,
            sample_interval_s=args.interval,
            settle_s=args.settle,
            stacks=args.stacks,
            password_file=args.password_file,
            cluster=args.cluster,
        )
    )
    print_summary(path)
    return 0
