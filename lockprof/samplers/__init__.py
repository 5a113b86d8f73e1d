"""Samplers: each captures one view of the engine while a level runs.

Every sampler is a row of :mod:`lockprof.samplers.registry` (its ``--samplers`` name,
the tables it writes, how it runs; the contract is :mod:`lockprof.samplers.base`).
``EventsSampler`` and ``MetricsSampler`` poll system tables from their own thread
and connection, ``ThreadsSampler`` reads the engine's threads from ``/proc``;
``QueryLogReader`` collects per-query ProfileEvents once a level has finished.
Each returns tidy frames that the shared level writer stores in the run.
"""

from lockprof.samplers.events import EventsSampler
from lockprof.samplers.metrics import MetricsSampler
from lockprof.samplers.query_log import QueryLogReader

__all__ = ["EventsSampler", "MetricsSampler", "QueryLogReader"]
