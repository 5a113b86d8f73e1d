"""lockprof: lock-contention profiling for ClickHouse.

Scenario scripts build a :class:`Scenario`; ``lockprof run`` drives it on one or
more engines and writes a run directory; :mod:`lockprof.analysis` reads it back.
"""

__version__ = "0.1.0"

from lockprof.scenario import Background, Query, Scenario, Schema  # noqa: E402

__all__ = ["Background", "Query", "Scenario", "Schema", "__version__"]
