"""lockprof report: write one self-contained HTML report of a run (figures embedded, opens offline)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lockprof import store
from lockprof.report import write_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a run", description=__doc__)
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run directory (several are analysed together)")
    p.add_argument("--out", type=Path, help="HTML file to write (default RUN/report.html)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    out = args.out or Path(args.runs[0]) / "report.html"
    store.check_output_file(out, "--out" if args.out else "report")  # before the analysis, which takes a while
    with store.writing(out, "--out" if args.out else "report"):
        path = write_report(args.runs, out)
    print(f"report: {path}")
    return 0
