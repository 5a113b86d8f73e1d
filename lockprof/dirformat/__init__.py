"""The run-directory format: its tables (:mod:`.tables`).

Whatever writes or reads a run directory takes the names, columns and keys from here; :mod:`lockprof.store`
does the file work.
"""

from lockprof.dirformat.tables import Column, Table, register_table

__all__ = ["Column", "Table", "register_table"]
