"""Progress display: a live bar on a terminal, one plain line per step elsewhere (CI, logs)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter(Protocol):
    def message(self, text: str) -> None: ...

    def start(self, total_s: float) -> None: ...

    def step(self, description: str, planned_s: float) -> None: ...

    def step_done(self, text: str) -> None: ...

    def stop(self) -> None: ...


class PlainReporter:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total_s: float) -> None:
        self.message(f"measuring: about {total_s:.0f} s of load")

    def step(self, description: str, planned_s: float) -> None:
        self._current = description

    def step_done(self, text: str) -> None:
        self.message(f"  {self._current}: {text}")

    def stop(self) -> None:
        pass


class RichReporter:
    """A bar over the planned load time, moved by a ticker while a step runs."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self._task = None
        self._base = 0.0
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def start(self, total_s: float) -> None:
        self.progress.start()
        self._task = self.progress.add_task("measuring", total=total_s)

    def step(self, description: str, planned_s: float) -> None:
        self._finish_tick()
        self.progress.update(self._task, description=description)
        self._stop.clear()
        started = time.monotonic()

        def tick() -> None:
            while not self._stop.wait(0.2):
                done = min(time.monotonic() - started, planned_s)
                self.progress.update(self._task, completed=self._base + done)

        self._planned = planned_s
        self._ticker = threading.Thread(target=tick, daemon=True)
        self._ticker.start()

    def _finish_tick(self) -> None:
        if self._ticker is not None:
            self._stop.set()
            self._ticker.join()
            self._ticker = None

    def step_done(self, text: str) -> None:
        self._finish_tick()
        self._base += self._planned
        self.progress.update(self._task, completed=self._base)
        self.progress.console.print(f"  {self.progress.tasks[0].description}: {text}", highlight=False)

    def stop(self) -> None:
        self._finish_tick()
        self.progress.stop()


def reporter_for(stream=None) -> Reporter:
    stream = stream or sys.stderr
    return RichReporter() if stream.isatty() else PlainReporter(stream)
