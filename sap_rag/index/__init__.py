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
    IndexLockTimeoutError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexStorageError,
)
from .filters import parse_filter, validate_metadata
from .index import SAPIndex
from .manifest import FORMAT_VERSION, Manifest
from .options import StorageType, TwoStageMode
from .results import DocumentInfo, IndexCheck, IndexStats, SearchHit, page_id, parse_page_id, relevance_score

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
    "IndexLockTimeoutError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReadOnlyError",
    "IndexStats",
    "IndexStorageError",
    "Manifest",
    "SAPIndex",
    "SearchHit",
    "StorageType",
    "TwoStageMode",
    "as_index",
    "page_id",
    "parse_filter",
    "parse_page_id",
    "relevance_score",
    "validate_metadata",
]
