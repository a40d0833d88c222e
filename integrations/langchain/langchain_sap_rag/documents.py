"""Pages <-> LangChain ``Document``\\ s: what a retrieved page looks like, and which page a loaded Document names."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from sap_rag.errors import InvalidInputError

__all__ = [
    "LANGCHAIN_ID_KEY",
    "PAGE_METADATA_KEYS",
    "PATH_METADATA_KEYS",
    "PageRef",
    "hit_to_document",
    "page_ref",
]

PATH_METADATA_KEYS = ("source", "file_path")
"""Metadata keys read, in this order, as the file a LangChain ``Document`` came from (loaders set ``source``)."""

PAGE_METADATA_KEYS = ("page_id", "doc_id", "page_number", "score", "relevance", "image_path")
"""Keys every retrieved ``Document``'s metadata carries (over the document's own metadata)."""

LANGCHAIN_ID_KEY = "langchain_id"
"""Stored (``True``) with a Document added under an id of its own (a LangChain id, e.g. the record
manager's key): retrieved, its pages come back with that id (the document id) rather than their
page id. Never returned in a Document's metadata.
"""

# Indexes written before the index could store a page's own number kept it here (the page stored
# as its document's page 1); still read, so such pages keep citing their page until re-indexed.
_LEGACY_PAGE_KEY = "langchain_page"


def hit_to_document(hit: Any, *, include_image: bool = False, index: Any = None) -> Document:
    """One ``SAPIndex`` page (a search hit or a ``get_pages`` record) as a LangChain ``Document``.

    ``page_content`` is the page's text (the text given when it was added, its PDF text layer, else
    a short label; never empty). ``id`` is the id the page's Document was added with (a LangChain
    id, e.g. the record manager's key after ``index()``), else the page id. ``metadata`` is the
    document's metadata plus ``page_id``, ``doc_id``, ``page_number`` (the page of the file, as
    stored and cited), ``score`` (raw MaxSim; None for a page fetched by id), ``relevance`` (in [0, 1]; None
    likewise) and ``image_path`` (str, or None for a page stored without an image or held by a
    server). With ``include_image`` the metadata also holds ``image_base64`` and ``mime_type`` (from
    ``index`` where the hit has no ``image_path``); by default the image stays out of callbacks and
    traces (the page tool puts it into message content instead).
    """
    from .images import page_image

    stored = dict(hit.metadata or {})
    added_with_id = bool(stored.pop(LANGCHAIN_ID_KEY, False)) or _LEGACY_PAGE_KEY in stored
    legacy_page = stored.pop(_LEGACY_PAGE_KEY, None)
    page_number = hit.page_number
    if isinstance(legacy_page, int) and not isinstance(legacy_page, bool) and hit.page_number == 1:
        page_number = legacy_page
    image_path = os.fspath(hit.image_path) if hit.image_path is not None else None
    searched = hit.num_query_tokens > 0  # a page fetched by id has no score
    score = hit.score if searched else None
    relevance = hit.relevance if searched else None
    metadata = {
        **stored,
        "page_id": hit.page_id,
        "doc_id": hit.doc_id,
        "page_number": page_number,
        "score": float(score) if score is not None else None,
        "relevance": float(relevance) if relevance is not None else None,
        "image_path": image_path,
    }
    if include_image:
        image = page_image(metadata, hit.page_id, index)
        if image is not None:
            metadata["image_base64"] = base64.b64encode(image[0]).decode("ascii")
            metadata["mime_type"] = image[1]
    return Document(page_content=hit.text, metadata=metadata, id=hit.doc_id if added_with_id else hit.page_id)


@dataclass(frozen=True)
class PageRef:
    """The file (and page) a LangChain ``Document`` names, and its metadata.

    Attributes:
        path: the PDF or image file.
        page: 1-based page number, or None for every page of the file.
        text: the Document's ``page_content`` (the loader's page text), or "".
        metadata: the Document's metadata, as given.
    """

    path: Path
    page: int | None
    text: str
    metadata: dict[str, Any]


def _page_number(metadata: Mapping[str, Any], where: str) -> int | None:
    """The 1-based page a Document names: ``page`` is 0-based (LangChain's PDF loaders set it)."""
    page = metadata.get("page")
    if page is None:
        return None
    if isinstance(page, str) and page.isdigit():
        page = int(page)
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise InvalidInputError(
            f"{where}: metadata['page'] must be a 0-based page number (as LangChain's PDF loaders set), got {page!r}"
        )
    return page + 1


def page_ref(document: Document, where: str) -> PageRef:
    """Which file and page ``document`` names (``metadata["source"]`` or ``["file_path"]``, and ``["page"]``).

    Raises:
        InvalidInputError: it names no file (the error says which key to set).
    """
    if not isinstance(document, Document):
        raise InvalidInputError(f"{where} is a {type(document).__name__}, not a langchain_core Document")
    metadata = dict(document.metadata or {})
    path = next((metadata[key] for key in PATH_METADATA_KEYS if metadata.get(key)), None)
    if path is None:
        raise InvalidInputError(
            f"{where} (id={document.id!r}) names no file: set metadata['source'] to the path of a PDF or image "
            "(sap-rag indexes page images, not text)"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"{where}: metadata['source'] must be a file path, got {type(path).__name__}")
    return PageRef(Path(path), _page_number(metadata, where), document.page_content or "", metadata)
