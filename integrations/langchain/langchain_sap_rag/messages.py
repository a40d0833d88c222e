"""Retrieved pages -> multimodal chat message content (LangChain's standard content blocks)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage

from sap_rag.errors import InvalidInputError

from .documents import mime_type

__all__ = ["page_content_blocks", "page_image_blocks", "page_images_message"]


def _label(metadata: dict[str, Any]) -> str:
    source = metadata.get("filename") or metadata.get("source") or metadata.get("doc_id", "?")
    return f"Page {metadata.get('page_number', '?')} of {source}"


def _image_block(metadata: dict[str, Any]) -> dict[str, Any] | None:
    data = metadata.get("image_base64")
    path = metadata.get("image_path")
    if data is None:
        if not path:
            return None
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return {"type": "image", "base64": data, "mime_type": metadata.get("mime_type") or mime_type(path or "x.png")}


def page_image_blocks(documents: Sequence[Document], *, labels: bool = True) -> list[dict[str, Any]]:
    """Content blocks for the pages an :class:`~langchain_sap_rag.SAPRetriever` returned.

    Each page gives ``{"type": "image", "base64": ..., "mime_type": ...}`` (LangChain's standard
    image block, which chat-model integrations translate for their provider), preceded by a
    ``{"type": "text", "text": "Page 2 of report.pdf"}`` label when ``labels`` is set. The image
    comes from ``metadata["image_base64"]`` when the retriever included it, else from
    ``metadata["image_path"]``.

    Raises:
        InvalidInputError: a document carries no page image.
    """
    blocks: list[dict[str, Any]] = []
    for document in documents:
        metadata = document.metadata or {}
        image = _image_block(metadata)
        if image is None:
            raise InvalidInputError(
                f"{_label(metadata)} carries no page image (no image_path or image_base64 in its metadata)"
            )
        if labels:
            blocks.append({"type": "text", "text": _label(metadata)})
        blocks.append(image)
    return blocks


def page_content_blocks(documents: Sequence[Document], *, images: bool = True) -> list[dict[str, Any]]:
    """Content blocks that let a model read retrieved pages: per page, its text, then its image.

    Each page gives ``{"type": "text", "text": "[<page id>] Page 2 of report.pdf\\n<page text>"}``
    and, with ``images`` and where the page has an image, LangChain's standard image block
    ``{"type": "image", "base64": ..., "mime_type": ...}``. Used as a tool's content (see
    :func:`~langchain_sap_rag.create_page_retriever_tool`) or in a ``HumanMessage``.
    """
    blocks: list[dict[str, Any]] = []
    for document in documents:
        metadata = document.metadata or {}
        page_id = document.id or metadata.get("page_id")
        header = f"[{page_id}] {_label(metadata)}" if page_id else _label(metadata)
        blocks.append({"type": "text", "text": f"{header}\n{document.page_content}".rstrip()})
        image = _image_block(metadata) if images else None
        if image is not None:
            blocks.append(image)
    return blocks


def page_images_message(documents: Sequence[Document], question: str | None = None) -> HumanMessage:
    """A ``HumanMessage`` holding the pages' images (labelled), then ``question`` as text if given."""
    content: list[Any] = list(page_image_blocks(documents))
    if question is not None:
        content.append({"type": "text", "text": question})
    return HumanMessage(content=content)
