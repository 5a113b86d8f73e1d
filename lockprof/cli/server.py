"""lockprof server: launch a genuine ClickHouse server of a managed version and keep it up until Ctrl-C.

It prints the server's URL and the file that holds its generated password, so
``lockprof run``/``observe``, a notebook or any ClickHouse client can use it.
The server and the password file are removed when lockprof stops (Ctrl-C, SIGTERM)
or when the server dies.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from lockprof.engines.local_server import launched
from lockprof.errors import EngineError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("server", help="launch a local ClickHouse server (26.7, 26.9) until Ctrl-C",
                       description=__doc__)
    p.add_argument("version", help="ClickHouse version of a managed engine with a network listener, e.g. 26.9")
    p.add_argument("--password-file", type=Path,
                   help="create the password file here (mode 0600; must not exist) instead of a private "
                        "temporary directory")
    p.set_defaults(handler=main)


def _say(text: str) -> None:
    print(text, flush=True)


def _progress(text: str) -> None:
    print(f"lockprof: {text}", file=sys.stderr, flush=True)


def _terminate(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM takes the same way out as Ctrl-C: the server is stopped and removed


def main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)  # also when started in the background, where SIGINT is ignored
    with launched(args.version, args.password_file, _progress) as (server, password_file):
        _say(f"ClickHouse {args.version} server running (pid {server.proc.pid if server.proc else '?'})")
        _say(f"url: {server.url}")
        _say(f"native tcp port: {server.tcp_port}")
        _say(f"password file: {password_file}")
        _say(f"  lockprof run SCENARIO.py --engine '{server.url}?password_file={password_file}'")
        _say(f"  LOCKPROF_PASSWORD_FILE={password_file} lockprof observe --engine {server.url}")
        _say("Ctrl-C stops the server and removes its data and the password file")
        try:
            assert server.proc is not None
            while True:
                try:
                    server.proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    continue
        except KeyboardInterrupt:
            _say("stopping the server")
            return 0
        raise EngineError(f"the server exited with status {server.proc.returncode}; its log says:\n"
                          f"    {server.log_tail()}")
