"""lockprof engines: list the ClickHouse versions lockprof can run, and prepare their environments."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lockprof.engines import managed


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engines", help="list or install managed engine versions", description=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = actions.add_parser("list", help="known ClickHouse versions: installed or available")
    ls.set_defaults(handler=list_main)
    inst = actions.add_parser("install", help="prepare the environment of one or more versions ahead of a run")
    inst.add_argument("versions", nargs="+", metavar="VERSION", help=f"one of {', '.join(managed.known_versions())}")
    inst.set_defaults(handler=install_main)
    locks = actions.add_parser("locks", help="which lock counters each installed release has (asked of the engine)")
    locks.add_argument("versions", nargs="*", metavar="VERSION", help="releases to ask (default: every installed one)")
    locks.add_argument("--csv", type=Path, help="also write the tidy table (event, release, present, description)")
    locks.set_defaults(handler=locks_main)


def list_main(args: argparse.Namespace) -> int:
    table = Table(title=f"Managed engines (environments under {managed.engines_dir()})")
    for column in ("version", "package", "state", "ClickHouse"):
        table.add_column(column)
    for status in managed.list_engines():
        style = "green" if status.state == "installed" else ("yellow" if status.state.startswith("stale") else "")
        table.add_row(status.version, status.pin, f"[{style}]{status.state}[/]" if style else status.state,
                      status.clickhouse_version)  # fmt: skip
    console = Console()
    console.print(table)
    console.print("'embedded' is the chDB installed next to lockprof itself.", highlight=False)
    return 0


def install_main(args: argparse.Namespace) -> int:
    for version in args.versions:
        managed.release_for(version)  # every name checked before anything is downloaded
    for version in args.versions:
        env = managed.ensure_env(version, progress=lambda text: print(text, flush=True))
        print(f"{version}: ClickHouse {env.identity.get('clickhouse_version')} in {env.path}", flush=True)
    return 0


def locks_main(args: argparse.Namespace) -> int:
    from lockprof.engines.lock_counters import changed_descriptions, lock_counters

    versions = args.versions or [s.version for s in managed.list_engines() if s.state == "installed"]
    counters = lock_counters(versions)
    table = Table(title="Lock counters by release (✓ the engine has it; — it does not)")
    for column in ("lock", "mode", "role", "event", *versions):
        table.add_column(column)
    for (lock, mode, role, event), rows in counters.groupby(["lock", "mode", "role", "event"], sort=False):
        have = dict(zip(rows["release"], rows["present"], strict=True))
        table.add_row(lock, mode, role, event, *("✓" if have[v] else "—" for v in versions))
    console = Console(width=None if Console().is_terminal else 200)
    console.print(table)
    for r in changed_descriptions(counters).itertuples():
        console.print(f"{r.event} is described differently on {r.release}: {r.description}", highlight=False)
    if args.csv:
        counters.to_csv(args.csv, index=False)
    return 0
