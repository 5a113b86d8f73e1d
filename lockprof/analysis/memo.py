"""Each analysis result is computed once per Run, however many tables, figures and sentences use it.

The summary, the report, ``compare`` and the notebooks all call the same functions; keeping their
results on the Run makes one metric one number everywhere and keeps a large run's report from
recomputing the same aggregation dozens of times.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd

F = TypeVar("F", bound=Callable[..., Any])


def per_run(fn: F) -> F:
    """Cache fn(run, *args) on ``run.cache``; frames are handed out as copies, so callers may change them."""

    @functools.wraps(fn)
    def wrapper(run: Any, *args: Any, **kwargs: Any) -> Any:
        key = (fn.__module__, fn.__qualname__, args, tuple(sorted(kwargs.items())))
        try:
            hash(key)
        except TypeError:  # an argument that is not a plain value: compute without caching
            return fn(run, *args, **kwargs)
        if key not in run.cache:
            run.cache[key] = fn(run, *args, **kwargs)
        value = run.cache[key]
        return value.copy() if isinstance(value, pd.DataFrame) else value

    return wrapper  # type: ignore[return-value]
