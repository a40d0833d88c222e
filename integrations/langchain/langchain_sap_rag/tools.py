"""A page retriever tool for agents: the pages' text and images go to the model, the Documents to the artifact."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from sap_rag.errors import InvalidInputError

from .images import DEFAULT_MAX_SIDE, DEFAULT_QUALITY, check_bounds
from .messages import page_content_blocks

__all__ = ["PageSearchInput", "create_page_retriever_tool", "find_index"]

DEFAULT_DESCRIPTION = (
    "Search the indexed document pages (PDFs and images) and return the best-matching pages: each page's "
    "id, file, page number and text, and the page image."
)

_MAX_DEPTH = 8


class PageSearchInput(BaseModel):
    """The tool's arguments."""

    query: str = Field(description="what to look for in the document pages")


def find_index(retriever: Any, _depth: int = 0) -> Any:
    """The sap-rag index behind ``retriever``, if one can be found: a ``SAPRetriever``'s index, a
    ``SAPVectorStore`` retriever's store's, or the first one among the retrievers a composite
    retriever (ensemble, compression, multi-vector) wraps; None otherwise."""
    from .retrievers import SAPRetriever
    from .vectorstores import SAPVectorStore

    if _depth > _MAX_DEPTH or retriever is None:
        return None
    if isinstance(retriever, SAPRetriever):
        return retriever.index
    store = getattr(retriever, "vectorstore", None)
    if isinstance(store, SAPVectorStore):
        return store.index
    inner = [getattr(retriever, "base_retriever", None), *(getattr(retriever, "retrievers", None) or [])]
    for candidate in inner:
        found = find_index(candidate, _depth + 1)
        if found is not None:
            return found
    return None


def create_page_retriever_tool(
    retriever: BaseRetriever,
    name: str = "search_document_pages",
    description: str = DEFAULT_DESCRIPTION,
    *,
    images: bool = True,
    index: Any = None,
    max_side: int | None = DEFAULT_MAX_SIDE,
    quality: int | None = DEFAULT_QUALITY,
) -> StructuredTool:
    """A tool an agent calls with a query; its ``ToolMessage`` holds the retrieved pages.

    The message ``content`` is a list of standard content blocks: per page, a text block (page id,
    file, page number, page text) and, with ``images``, an image block with the page image
    (base64, at most ``max_side`` pixels on its longer side, re-encoded as a JPEG of ``quality``
    where that makes it smaller), so a multimodal model reads the page itself. The ``artifact`` is
    the retrieved ``Document``\\ s (``response_format="content_and_artifact"``), for the
    application; their metadata holds the image's path, not its bytes.

    Args:
        retriever: any retriever returning sap-rag page Documents (``SAPRetriever``,
            ``SAPVectorStore.as_retriever()``, an ``EnsembleRetriever`` of them and a text
            retriever over ``SAPPageLoader`` pages...).
        name, description: what the model sees.
        images: put the page images into the content (False: text only, for text-only models).
        index: where the images of pages returned without one (a text retriever's) are fetched,
            by page id; default: the index behind ``retriever`` (see :func:`find_index`).
        max_side, quality: the bound on each image (None, None: the stored image as it is).
    """
    if not isinstance(retriever, BaseRetriever):
        raise InvalidInputError(f"retriever must be a LangChain BaseRetriever, got {type(retriever).__name__}")
    check_bounds(max_side, quality)

    def content(docs: list[Document]) -> list[dict[str, Any]]:
        # Looked up per call: a store reopened for writing holds a new index object.
        source = index if index is not None else find_index(retriever)
        return page_content_blocks(docs, images=images, index=source, max_side=max_side, quality=quality)

    def func(query: str, callbacks: Callbacks = None) -> tuple[list[dict[str, Any]], list[Document]]:
        docs = retriever.invoke(query, config={"callbacks": callbacks})
        return content(docs), docs

    async def afunc(query: str, callbacks: Callbacks = None) -> tuple[list[dict[str, Any]], list[Document]]:
        docs = await retriever.ainvoke(query, config={"callbacks": callbacks})
        return content(docs), docs

    return StructuredTool(
        name=name,
        description=description,
        func=func,
        coroutine=afunc,
        args_schema=PageSearchInput,
        response_format="content_and_artifact",
    )
