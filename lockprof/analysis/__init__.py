"""Analysis: run directories in, tidy pandas frames out. Reads only the run directory.

Every function here is pure over a :class:`Run`; figures, the summary table, the
HTML report and the notebooks are renderers on top of these frames.
"""

from lockprof.analysis.budget import dominant_lock_sentences, level_summary, lock_budget
from lockprof.analysis.load import Run, load_run

__all__ = ["Run", "dominant_lock_sentences", "level_summary", "load_run", "lock_budget"]
