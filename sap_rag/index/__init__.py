"""The page index: SAP-pruned multi-vector pages in Qdrant (embedded Qdrant Edge or a server).

>>> from sap_rag.index import SAPIndex, StorageType
>>> StorageType("float16").exact
True
"""

from .coerce import as_index
from .documents import AddReport
from .errors import (
    BackendError,
    DocumentNotFoundError,
    EncoderMismatchError,
    IndexClosedError,
    IndexExistsError,
    IndexFormatError,
    IndexLockedError,
    IndexNotFoundError,
)
from .filters import parse_filter, validate_metadata
from .index import SAPIndex
from .manifest import FORMAT_VERSION, Manifest
from .options import StorageType, TwoStageMode
from .results import DocumentInfo, IndexCheck, IndexStats, SearchHit

__all__ = [
    "FORMAT_VERSION",
    "AddReport",
    "BackendError",
    "DocumentInfo",
    "DocumentNotFoundError",
    "EncoderMismatchError",
    "IndexCheck",
    "IndexClosedError",
    "IndexExistsError",
    "IndexFormatError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexStats",
    "Manifest",
    "SAPIndex",
    "SearchHit",
    "StorageType",
    "TwoStageMode",
    "as_index",
    "parse_filter",
    "validate_metadata",
]
