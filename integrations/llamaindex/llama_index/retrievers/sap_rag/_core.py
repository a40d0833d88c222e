"""The few calls into ``sap_rag`` this package makes, in one place.

Everything that decides anything (reading files, pruning, storing, searching) is ``sap_rag``'s;
these helpers only pick the right entry point.
"""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

from sap_rag.errors import InvalidInputError, UnreadableInputError
from sap_rag.index.filters import validate_metadata
from sap_rag.ingest import Document, content_id, load_document, load_image

logger = logging.getLogger(__name__)

__all__ = ["add_to_index", "load_source", "node_id", "open_index"]


def open_index(index: Any, **open_kwargs: Any) -> Any:
    """``index`` itself when it is a ``SAPIndex`` object; ``SAPIndex.open(index)`` when it is a path."""
    from sap_rag.index import as_index

    return as_index(index, hint="", **open_kwargs)


def node_id(doc_id: str, page_number: int) -> str:
    """The id shared by the node an indexer makes for a page and the node a retriever returns for it.

    >>> node_id("report-2024", 3)
    'report-2024:p3'
    """
    return f"{doc_id}:p{page_number}"


def load_source(
    *,
    image_data: bytes | None,
    image_path: str | os.PathLike | None,
    file_path: str | os.PathLike | None,
    metadata: dict[str, Any],
    label: str,
) -> Document:
    """Read what a framework document points at into a ``sap_rag`` :class:`Document` (pages decoded).

    ``image_data`` is base64 image bytes (LlamaIndex's storage form); ``image_path`` an image file;
    ``file_path`` a PDF or image file. The first one given wins.

    The metadata is checked here too (string keys, JSON values), so a batch fails before any write.

    Raises:
        UnreadableInputError: nothing to read, or it cannot be read as pages.
        InvalidInputError: the metadata cannot be stored in the index.
    """
    try:
        validate_metadata(metadata)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{label}: {exc}") from exc
    if image_data is not None:
        try:
            raw = base64.b64decode(image_data, validate=True)
        except ValueError as exc:
            raise UnreadableInputError(f"{label}: the image data is not valid base64 ({exc})") from exc
        page = load_image(raw, name=label)
        return Document(doc_id=content_id(raw), source=label, pages=[page], metadata=dict(metadata))
    path = image_path if image_path is not None else file_path
    if path is None:
        raise UnreadableInputError(
            f"{label} points at no page: give it a 'file_path' in its metadata (a PDF or an image), "
            "or make it an ImageDocument with image bytes or an image_path"
        )
    return load_document(Path(path), metadata=metadata)


def add_to_index(index: Any, document: Document) -> Any:
    """Store one loaded document's pages in the index; returns the index's ``DocumentInfo``.

    Pages here are already in memory (image bytes, ``ImageDocument``s, or files a node parser was
    handed), so this is ``add_images``; files and folders go through ``SAPIndex.add_documents``.
    """
    logger.debug("indexing %s (%d pages) as %s", document.source, document.num_pages, document.doc_id)
    return index.add_images(document.pages, doc_id=document.doc_id, metadata=document.metadata)
