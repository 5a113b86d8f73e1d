"""The one clock every timestamp of a run comes from.

``time.perf_counter`` is CLOCK_MONOTONIC on Linux, shared by all processes, so
times from the orchestrator and from each engine's worker line up. Every stored
time is seconds since the run's origin, which the manifest pins to wall time.
"""

from __future__ import annotations

import time


class RunClock:
    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.perf_counter() if origin is None else origin

    def now(self) -> float:
        """Seconds since the run's origin."""
        return time.perf_counter() - self.origin
