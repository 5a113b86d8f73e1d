"""lockprof summary: print the summary table of an existing run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from lockprof.summary import print_summary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="print the summary of a run directory", description=__doc__)
    p.add_argument("run", type=Path, help="run directory")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    print_summary(args.run)
    return 0
