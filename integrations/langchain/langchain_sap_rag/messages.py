"""Retrieved pages -> multimodal chat message content (LangChain's standard content blocks)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import HumanMessage

from sap_rag.errors import InvalidInputError

from .retrievers import _mime_type

__all__ = ["page_image_blocks", "page_images_message"]


def _label(metadata: dict[str, Any]) -> str:
    source = metadata.get("filename") or metadata.get("source") or metadata.get("doc_id", "?")
    return f"Page {metadata.get('page_number', '?')} of {source}"


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
        data = metadata.get("image_base64")
        path = metadata.get("image_path")
        if data is None:
            if not path:
                raise InvalidInputError(
                    f"{_label(metadata)} carries no page image (no image_path or image_base64 in its metadata)"
                )
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        mime_type = metadata.get("mime_type") or (_mime_type(path) if path else "image/png")
        if labels:
            blocks.append({"type": "text", "text": _label(metadata)})
        blocks.append({"type": "image", "base64": data, "mime_type": mime_type})
    return blocks


def page_images_message(documents: Sequence[Document], question: str | None = None) -> HumanMessage:
    """A ``HumanMessage`` holding the pages' images (labelled), then ``question`` as text if given."""
    content: list[Any] = list(page_image_blocks(documents))
    if question is not None:
        content.append({"type": "text", "text": question})
    return HumanMessage(content=content)
