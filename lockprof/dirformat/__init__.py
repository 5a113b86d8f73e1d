"""The run-directory format: its tables (:mod:`.tables`) and its manifest (:mod:`.manifest`).

Whatever writes or reads a run directory takes the names, columns and keys from here; :mod:`lockprof.store`
does the file work.
"""

from lockprof.dirformat.manifest import FORMAT_VERSION, Manifest, ManifestError
from lockprof.dirformat.tables import Column, Table, register_table

__all__ = ["FORMAT_VERSION", "Column", "Manifest", "ManifestError", "Table", "register_table"]
