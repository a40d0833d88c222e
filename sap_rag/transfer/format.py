"""The export format: a directory of Parquet files any Arrow tool can read.

::

    export.json         what the export holds (format version, counts, image mode, source index, export_id)
    manifest.json       the source index's manifest, byte for byte what ``Manifest`` writes
    documents.parquet   one row per document, by ascending doc_id: doc_id, metadata (JSON), num_pages,
                        num_vectors, added_at
    pages.parquet       one row per page, grouped by document in the same order, pages by ascending
                        page number (columns below)

``pages.parquet`` columns: ``doc_id``, ``page_number`` (as in the index: a document whose pages
were deleted keeps its numbers, gaps included, so page ids are the same after an import),
``anchors`` (``(k, dim)`` float32 as a list
of fixed-size lists: the pruned vectors exactly as stored, i.e. already rounded to the storage
precision), ``pooled`` (``(p, dim)``, null where the index has none), ``mean`` (``(dim,)``),
``num_tokens``, ``positions`` (flattened ``(row, col)`` grid cell of each anchor), ``payload``
(every other payload field, JSON, carried verbatim: fields a newer sap-rag adds, such as the page
text, survive a round trip through an older one), ``image_name`` and ``image`` (the stored image
bytes, or null when images are referenced or left out). Row groups hold at most 256 pages and
about 8 M vector components (:mod:`sap_rag.transfer.limits` says what an import accepts).
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import numpy as np

from ..errors import InvalidInputError, SapRagError

__all__ = [
    "DOCUMENTS_FILE",
    "EXPORT_FILE",
    "EXPORT_FORMAT",
    "PAGES_FILE",
    "STORE_FIELDS",
    "ImageMode",
    "TransferError",
    "check_image_name",
    "matrices_to_arrow",
    "pages_schema",
]

EXPORT_FORMAT = 1
EXPORT_FILE = "export.json"
DOCUMENTS_FILE = "documents.parquet"
PAGES_FILE = "pages.parquet"

STORE_FIELDS = frozenset({"doc_id", "page_number", "gen", "image", "metadata"})
"""Payload fields the page store writes itself (never exported as payload: an import sets them anew)."""

_IMAGE_NAME = re.compile(r"^[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tif)$")


class TransferError(SapRagError):
    """An export cannot be written, or a directory is not a readable sap-rag export."""


class ImageMode(str, Enum):
    """What an export does with page images."""

    EMBED = "embed"
    """Copy the image bytes into ``pages.parquet`` (self-contained; the default)."""
    REFERENCE = "reference"
    """Record only the image names; the import reads them from the source index's ``images/``."""
    NONE = "none"
    """Leave images out (the imported index has no page images)."""

    @classmethod
    def parse(cls, value: ImageMode | str) -> ImageMode:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInputError(f"images must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None


def check_image_name(name: Any) -> str:
    """An image name read from an export (``<sha256>.<ext>``), or a :class:`TransferError`."""
    if not isinstance(name, str) or not _IMAGE_NAME.match(name):
        raise TransferError(f"the export names an invalid page image {name!r}; the export is damaged")
    return name


def pages_schema(dim: int) -> Any:
    """The Arrow schema of ``pages.parquet`` for vectors of ``dim``."""
    import pyarrow as pa

    vector = pa.list_(pa.float32(), dim)
    return pa.schema(
        [
            ("doc_id", pa.string()),
            ("page_number", pa.int32()),
            ("anchors", pa.list_(vector)),
            ("pooled", pa.list_(vector)),
            ("mean", vector),
            ("num_tokens", pa.int64()),
            ("positions", pa.list_(pa.float64())),  # as the payload holds them (JSON numbers)
            ("payload", pa.string()),
            ("image_name", pa.string()),
            ("image", pa.binary()),
        ]
    )


def matrices_to_arrow(matrices: list[np.ndarray | None], dim: int) -> Any:
    """A list of ``(n_i, dim)`` float32 matrices (or None) as an Arrow list-of-fixed-size-lists array."""
    import pyarrow as pa

    present = [m for m in matrices if m is not None]
    flat = np.concatenate([m.reshape(-1) for m in present]).astype(np.float32) if present else np.zeros(0, np.float32)
    rows = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim)
    offsets = [0]
    for m in matrices:
        offsets.append(offsets[-1] + (0 if m is None else int(m.shape[0])))
    mask = pa.array([m is None for m in matrices])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), rows, mask=mask)
