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
    "LANGCHAIN_PAGE_KEY",
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

LANGCHAIN_PAGE_KEY = "langchain_page"
"""Stored with a Document added with an id: the 1-based page of its file it holds (None: every page).

The index numbers a document's pages from 1, so the one page of a Document that names page 3 of
a PDF is the document's page 1; this key keeps page 3, which retrieved Documents cite as
``page_number`` (and a filter on ``page_number`` matches). Its presence also marks the document
as added under a LangChain id, which retrieved Documents carry as their ``id``. Never returned in
a Document's metadata.
"""


def hit_to_document(hit: Any, *, include_image: bool = False, index: Any = None) -> Document:
    """One ``SAPIndex`` page (a search hit or a ``get_pages`` record) as a LangChain ``Document``.

    ``page_content`` is the page's text (the text given when it was added, its PDF text layer, else
    a short label; never empty). ``id`` is the id the page's Document was added with (a LangChain
    id, e.g. the record manager's key after ``index()``), else the page id. ``metadata`` is the
    document's metadata plus ``page_id``, ``doc_id``, ``page_number`` (the page of the file, as
    cited), ``score`` (raw MaxSim; None for a page fetched by id), ``relevance`` (in [0, 1]; None
    likewise) and ``image_path`` (str, or None for a page stored without an image or held by a
    server). With ``include_image`` the metadata also holds ``image_base64`` and ``mime_type`` (from
    ``index`` where the hit has no ``image_path``); by default the image stays out of callbacks and
    traces (the page tool puts it into message content instead).
    """
    from .images import page_image

    stored = dict(hit.metadata or {})
    added_with_id = LANGCHAIN_PAGE_KEY in stored
    own_page = stored.pop(LANGCHAIN_PAGE_KEY, None)
    page_number = own_page if isinstance(own_page, int) and not isinstance(own_page, bool) else hit.page_number
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
