"""Moving an index between engines without re-encoding: export to Parquet, import into a new index.

>>> from sap_rag.transfer import export_index, import_index  # doctest: +SKIP
>>> export_index(index, "export/")  # doctest: +SKIP
>>> import_index("export/", "cluster-index/", qdrant_url="http://qdrant:6333")  # doctest: +SKIP
"""

from __future__ import annotations

from .exporter import ExportReport, export_index
from .format import ImageMode, TransferError
from .importer import ImportReport, import_index
from .marker import incomplete_import
from .reader import ExportInfo, read_export_info

__all__ = [
    "ExportInfo",
    "ExportReport",
    "ImageMode",
    "ImportReport",
    "TransferError",
    "export_index",
    "import_index",
    "incomplete_import",
    "read_export_info",
]
