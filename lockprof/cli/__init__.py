"""The ``lockprof`` command. Argument parsing only: each subcommand is a module here
with ``register(subparsers)`` and ``main(args) -> int``; the work is in the library.
``main`` is the one place that turns a :class:`LockprofError` into a message and exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import threading
from typing import NoReturn

from lockprof import __version__
from lockprof.errors import LockprofError

SUBCOMMANDS = ("run", "summary", "compare", "forecast", "report", "engines", "observe", "server")


class Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as a LockprofError (exit 1, one message), not its own exit 2,
    which the exit-code table gives to broken scenarios."""

    def error(self, message: str) -> NoReturn:
        raise LockprofError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lockprof", description="Lock-contention profiling for ClickHouse.")
    parser.add_argument("--version", action="version", version=f"lockprof {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"lockprof.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lockprof.cli.{name}":
                continue  # a subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None and threading.current_thread() is threading.main_thread():
        # SIGTERM as Ctrl-C (exit 130), so what is running cleans up: a build's pip and temporary directory, a
        # scenario being imported; `run` installs its own handler while it measures.
        signal.signal(signal.SIGTERM, _terminated)
    code = _main(argv)
    if argv is None:  # the program itself, not a caller in the same process
        exit_leaving_threads(code)
    return code


def _terminated(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def exit_leaving_threads(code: int) -> None:
    """End the process now if a thread the user's code started (a scenario file's, a params function's) would keep
    it alive: the interpreter waits for non-daemon threads at exit, so lockprof would hang after its summary."""
    import atexit

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if not others:
        return
    print(f"lockprof: note: not waiting for {len(others)} thread(s) the scenario started and left running "
          f"({', '.join(t.name for t in others[:3])})", file=sys.stderr)
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a full disk or closed pipe under stdout is found here, not at exit
        return code
    except LockprofError as exc:
        print(f"lockprof: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("lockprof: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # writing the output failed (stdout on a full disk, a closed pipe): one line, no traceback
        _drop_stdout()
        what = f"{exc.filename}: {exc.strerror}" if exc.filename else f"cannot write the output: {exc.strerror or exc}"
        print(f"lockprof: error: {what}", file=sys.stderr)
        return 1


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush of what could not be written fails no more."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
