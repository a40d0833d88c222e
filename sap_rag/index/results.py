"""What search and stats return, and page ids.

A page's id is derived from its document id and page number (``"report:p3"``), so it is stable
across re-opens and the same in every framework adapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..pipeline.texts import page_label

__all__ = [
    "DocumentInfo",
    "IndexCheck",
    "IndexStats",
    "SearchHit",
    "page_id",
    "page_label",
    "parse_page_id",
    "relevance_score",
]

PAGE_ID_SEPARATOR = ":p"


def page_id(doc_id: str, page_number: int) -> str:
    """The id of page ``page_number`` (1-based) of ``doc_id``.

    >>> page_id("report", 3)
    'report:p3'
    """
    if isinstance(page_number, bool) or not isinstance(page_number, int) or page_number < 1:
        raise InvalidInputError(f"page_number must be an integer >= 1, got {page_number!r}")
    return f"{doc_id}{PAGE_ID_SEPARATOR}{page_number}"


def parse_page_id(value: str) -> tuple[str, int]:
    """``(doc_id, page_number)`` of a page id made by :func:`page_id` (the doc id may contain ``:p``).

    >>> parse_page_id("a:p1:p12")
    ('a:p1', 12)
    """
    if not isinstance(value, str):
        raise InvalidInputError(f"a page id must be a string like 'report:p3', got {type(value).__name__}")
    doc_id, sep, number = value.rpartition(PAGE_ID_SEPARATOR)
    if not sep or not doc_id.strip() or not number.isascii() or not number.isdigit() or int(number) < 1:
        raise InvalidInputError(
            f"{value!r} is not a page id; page ids look like '<doc_id>:p<page number>', e.g. 'report:p3'"
        )
    if number != str(int(number)):  # "doc:p03" would name page 3 under a second id
        raise InvalidInputError(f"{value!r} is not a page id: write the page number without leading zeros")
    return doc_id, int(number)


def relevance_score(score: float, num_query_tokens: int) -> float:
    """A MaxSim ``score`` normalised to ``[0, 1]``: ``(score / num_query_tokens + 1) / 2``, clipped.

    MaxSim sums one best dot product per query token, each in ``[-1, 1]`` for unit vectors, so
    ``score / num_query_tokens`` is in ``[-1, 1]``; for one query the mapping is monotone in
    ``score``. Comparable across queries only roughly (longer queries spread differently).

    >>> relevance_score(12.0, 16), relevance_score(-40.0, 16), relevance_score(5.0, 0)
    (0.875, 0.0, 0.0)
    """
    if num_query_tokens <= 0:
        return 0.0
    return min(1.0, max(0.0, (float(score) / num_query_tokens + 1.0) / 2.0))


@dataclass(frozen=True)
class SearchHit:
    """One retrieved page (from ``search``, or from ``get_pages`` with ``score`` 0).

    Attributes:
        doc_id: the document it belongs to.
        page_number: 1-based page number within the document.
        score: MaxSim of the query against the page's stored anchors (raw, unbounded).
        image_path: the page image kept in the index, or None when it was added without one.
        metadata: the document's metadata.
        point_id: the engine's id of the page.
        text: the page's text: its PDF text layer, the text given at add time, or a label such
            as ``"page 3 of report.pdf"``; never empty.
        relevance: ``score`` normalised to ``[0, 1]`` (:func:`relevance_score`); monotone in
            ``score`` for one query; 0 for pages not found by a search.
        num_query_tokens: how many query vectors scored the page (0 outside a search).
        page_id: ``"<doc_id>:p<page_number>"`` (:func:`page_id`).
    """

    doc_id: str
    page_number: int
    score: float
    image_path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    point_id: int = 0
    text: str = ""
    relevance: float = 0.0
    num_query_tokens: int = 0
    page_id: str = ""

    def __post_init__(self) -> None:
        # Filled here so every hit has them, also one built by hand or from an older index.
        if not self.page_id:
            object.__setattr__(self, "page_id", f"{self.doc_id}{PAGE_ID_SEPARATOR}{self.page_number}")
        if not self.text or not self.text.strip():
            name = self.metadata.get("filename") if isinstance(self.metadata, dict) else None
            label = page_label(self.page_number, name if isinstance(name, str) and name else self.doc_id)
            object.__setattr__(self, "text", label)


@dataclass(frozen=True)
class DocumentInfo:
    """A committed document, as returned by ``add_images`` / ``add_pages`` / ``SAPIndex.document``.

    Attributes:
        doc_id: the document's id.
        num_pages: pages it holds now.
        num_vectors: anchor vectors over those pages.
        metadata: its metadata.
        image_paths: per page, its stored image or None (aligned with ``page_ids``).
        page_ids: its pages' ids, in page order (``page_numbers`` may have gaps after
            ``delete_pages``).
        page_numbers: its pages' 1-based numbers, in order.
    """

    doc_id: str
    num_pages: int
    num_vectors: int
    metadata: dict[str, Any]
    image_paths: list[Path | None]
    page_ids: list[str] = field(default_factory=list)
    page_numbers: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.page_numbers:
            object.__setattr__(self, "page_numbers", list(range(1, self.num_pages + 1)))
        if not self.page_ids:
            ids = [f"{self.doc_id}{PAGE_ID_SEPARATOR}{n}" for n in self.page_numbers]
            object.__setattr__(self, "page_ids", ids)


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
