"""Samplers: each captures one view of the engine while a level runs.

``EventsSampler`` and ``MetricsSampler`` poll system tables from their own thread
and connection; ``QueryLogReader`` collects per-query ProfileEvents once a level
has finished. Each returns tidy frames that the worker writes to the run.
"""

from lockprof.samplers.events import EventsSampler
from lockprof.samplers.metrics import MetricsSampler
from lockprof.samplers.query_log import QueryLogReader

__all__ = ["EventsSampler", "MetricsSampler", "QueryLogReader"]
