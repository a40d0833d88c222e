"""Retrieved pages -> multimodal chat message content (LangChain's standard content blocks).

Page images sent to a model are bounded (``max_side``, ``quality``; see :mod:`.images`). A page
Document without an image of its own (one a text retriever returned, fused with the page
retriever by ``page_id``) gets its image from ``index``; without ``index`` it is an error, never a
page silently sent without its image.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage

from sap_rag.errors import InvalidInputError

from .images import DEFAULT_MAX_SIDE, DEFAULT_QUALITY, bounded_image, check_bounds, page_image

logger = logging.getLogger(__name__)

__all__ = ["page_content_blocks", "page_image_blocks", "page_images_message"]


def _label(metadata: dict[str, Any]) -> str:
    source = metadata.get("filename") or metadata.get("source") or metadata.get("doc_id", "?")
    return f"Page {metadata.get('page_number', '?')} of {source}"


def _page_id(document: Document) -> str | None:
    """The sap-rag page a Document is (``metadata["page_id"]``), if any."""
    value = (document.metadata or {}).get("page_id")
    return value if isinstance(value, str) and value else None


def _image_block(document: Document, index: Any, max_side: int | None, quality: int | None) -> dict[str, Any] | None:
    found = page_image(document.metadata or {}, _page_id(document), index, max_side=max_side)
    if found is None:
        return None
    data, mime = bounded_image(found[0], found[1], max_side=max_side, quality=quality)
    return {"type": "image", "base64": base64.b64encode(data).decode("ascii"), "mime_type": mime}


def page_image_blocks(
    documents: Sequence[Document],
    *,
    labels: bool = True,
    index: Any = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    quality: int | None = DEFAULT_QUALITY,
) -> list[dict[str, Any]]:
    """Content blocks for retrieved pages: per page ``{"type": "image", "base64": ..., "mime_type": ...}``
    (LangChain's standard image block, which chat-model integrations translate for their
    provider), preceded by a ``{"type": "text", "text": "Page 2 of report.pdf"}`` label when
    ``labels`` is set.

    The image comes from ``metadata["image_base64"]``, else ``metadata["image_path"]``, else
    ``index`` (by ``metadata["page_id"]``). It is scaled to at most ``max_side`` pixels on its longer
    side and, where that helps, sent as a JPEG of ``quality`` (defaults 1280 and 75: 45-65 kB
    for a 144-dpi report page); ``max_side=None, quality=None`` sends the stored image as it is.

    Raises:
        InvalidInputError: a document has no page image (none in its metadata, and none in
            ``index``), or it is a page without one in its metadata and no ``index`` is given.
    """
    check_bounds(max_side, quality)
    blocks: list[dict[str, Any]] = []
    for document in documents:
        metadata = document.metadata or {}
        image = _image_block(document, index, max_side, quality)
        if image is None:
            raise InvalidInputError(
                f"{_label(metadata)} carries no page image (no image_path or image_base64 in its metadata"
                + (", and the index holds none for it)" if index is not None and _page_id(document) else ")")
            )
        if labels:
            blocks.append({"type": "text", "text": _label(metadata)})
        blocks.append(image)
    return blocks


def page_content_blocks(
    documents: Sequence[Document],
    *,
    images: bool = True,
    index: Any = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    quality: int | None = DEFAULT_QUALITY,
) -> list[dict[str, Any]]:
    """Content blocks that let a model read retrieved pages: per page, its text, then its image.

    Each page gives ``{"type": "text", "text": "[<page id>] Page 2 of report.pdf\\n<page text>"}``
    and, with ``images``, LangChain's standard image block ``{"type": "image", "base64": ...,
    "mime_type": ...}`` (found and bounded as in :func:`page_image_blocks`). Used as a tool's content
    (see :func:`~langchain_sap_rag.create_page_retriever_tool`) or in a ``HumanMessage``. A Document
    that is no sap-rag page (no ``page_id``, no image: e.g. a web search result) gives its text only.

    Raises:
        InvalidInputError: with ``images``, a page without an image in its metadata and no ``index``.
    """
    check_bounds(max_side, quality)
    blocks: list[dict[str, Any]] = []
    for document in documents:
        metadata = document.metadata or {}
        page_id = _page_id(document) or document.id
        header = f"[{page_id}] {_label(metadata)}" if page_id else _label(metadata)
        blocks.append({"type": "text", "text": f"{header}\n{document.page_content}".rstrip()})
        image = _image_block(document, index, max_side, quality) if images else None
        if image is not None:
            blocks.append(image)
        elif images and _page_id(document):
            logger.warning("%s has no stored page image; the model gets its text only", _label(metadata))
    return blocks


def page_images_message(
    documents: Sequence[Document],
    question: str | None = None,
    *,
    index: Any = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    quality: int | None = DEFAULT_QUALITY,
) -> HumanMessage:
    """A ``HumanMessage`` holding the pages' images (labelled), then ``question`` as text if given.

    ``index``, ``max_side`` and ``quality`` as in :func:`page_image_blocks`.
    """
    content: list[Any] = list(page_image_blocks(documents, index=index, max_side=max_side, quality=quality))
    if question is not None:
        content.append({"type": "text", "text": question})
    return HumanMessage(content=content)
