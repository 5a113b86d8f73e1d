"""``python -m lockprof.dirformat``: print the tables' reference (docs/run-tables.md is its output)."""

from lockprof.dirformat.tables import markdown

print(markdown(), end="")
