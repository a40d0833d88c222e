"""What search and stats return."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DocumentInfo", "IndexCheck", "IndexStats", "SearchHit"]


@dataclass(frozen=True)
class SearchHit:
    """One retrieved page.

    Attributes:
        doc_id: the document it belongs to.
        page_number: 1-based page number within the document.
        score: MaxSim of the query against the page's stored anchors.
        image_path: the page image kept in the index, or None when it was added without one.
        metadata: the document's metadata.
        point_id: the engine's id of the page.
    """

    doc_id: str
    page_number: int
    score: float
    image_path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    point_id: int = 0


@dataclass(frozen=True)
class DocumentInfo:
    """A committed document, as returned by ``add_images`` / ``add_pages`` / ``SAPIndex.document``."""

    doc_id: str
    num_pages: int
    num_vectors: int
    metadata: dict[str, Any]
    image_paths: list[Path | None]


@dataclass(frozen=True)
class IndexStats:
    """Size and settings of an index.

    Attributes:
        pages: pages stored.
        documents: documents stored.
        vectors: anchor vectors stored over all pages.
        vectors_per_page: ``vectors / pages``.
        bytes_on_disk: bytes allocated by the vector engine's files (vectors, payload, indexes),
            or None where they live on a remote server.
        bytes_per_page: ``bytes_on_disk / pages``.
        image_bytes: bytes of the stored page images.
        keep_ratio: the pruner's keep ratio.
        window: the encoder's SAP layer window.
        storage: how anchors are stored (``float16``, ``float32``, ``int8``).
        backend: ``edge`` or ``qdrant``.
        two_stage: whether a search with default settings runs in stages (prefetch, then exact MaxSim) now.
    """

    pages: int
    documents: int
    vectors: int
    vectors_per_page: float
    bytes_on_disk: int | None
    bytes_per_page: float | None
    image_bytes: int
    keep_ratio: float | None
    window: list[int] | None
    storage: str
    backend: str
    two_stage: bool


@dataclass(frozen=True)
class IndexCheck:
    """Result of ``SAPIndex.check``: does the engine hold exactly the committed documents?

    Attributes:
        ok: no stray points and no incomplete documents.
        documents: committed documents.
        points: points found in the engine.
        stray_points: points of no committed document version (left by a crash or a failed undo).
        incomplete_documents: doc_id -> number of committed pages missing from the engine.
        repaired: stray points were deleted.
    """

    ok: bool
    documents: int
    points: int
    stray_points: int
    incomplete_documents: dict[str, int]
    repaired: bool = False
