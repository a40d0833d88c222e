"""Errors raised by the index (each derives from the package's base classes in ``sap_rag.errors``)."""

from __future__ import annotations

from ..errors import InvalidInputError, SapRagError

__all__ = [
    "BackendError",
    "DocumentNotFoundError",
    "EncoderMismatchError",
    "IndexClosedError",
    "IndexExistsError",
    "IndexFormatError",
    "IndexLockTimeoutError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexReadOnlyError",
    "IndexStorageError",
]


class IndexLockedError(SapRagError):
    """Another process (or another ``SAPIndex`` object in this one) holds the index's write lock."""


class IndexLockTimeoutError(IndexLockedError):
    """An open waited its ``timeout`` for the index's lock (or another reader's load) and did not get
    it; the message names the processes holding it."""


class IndexStorageError(SapRagError):
    """The disk or folder holding the index cannot take what an open needs (full, or too small for
    the engine's files); the message says how much is needed and what to do."""


class IndexReadOnlyError(SapRagError):
    """A write was asked of an index opened read-only."""


class IndexFormatError(SapRagError):
    """The index directory is damaged, incomplete, or written by a newer version of sap-rag."""


class IndexNotFoundError(SapRagError, FileNotFoundError):
    """No index exists at the given path."""


class IndexExistsError(SapRagError, FileExistsError):
    """``SAPIndex.create`` was pointed at a directory that already holds an index (or other files)."""


class IndexClosedError(SapRagError):
    """The index was closed; open it again to use it."""


class EncoderMismatchError(InvalidInputError):
    """The encoder given to ``SAPIndex.open`` is not the one the index was built with."""


class DocumentNotFoundError(InvalidInputError):
    """No document with that ``doc_id`` is in the index."""


class BackendError(SapRagError):
    """The vector engine (Qdrant Edge or a Qdrant server) failed; the message carries its error."""
