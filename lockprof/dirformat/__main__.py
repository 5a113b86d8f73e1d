"""``python -m lockprof.dirformat``: print the tables' reference (docs/run-tables.md is its output).

The samplers' registry is imported first, so the tables a sampler declares for itself (``threads``) are listed
beside the format's own.
"""

import lockprof.samplers.registry  # noqa: F401  (each sampler module registers its tables on import)
from lockprof.dirformat.tables import markdown

print(markdown(), end="")
