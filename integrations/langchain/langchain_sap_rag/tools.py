"""A page retriever tool for agents: the pages' text and images go to the model, the Documents to the artifact."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, Field

from sap_rag.errors import InvalidInputError

from .messages import page_content_blocks

__all__ = ["PageSearchInput", "create_page_retriever_tool"]

DEFAULT_DESCRIPTION = (
    "Search the indexed document pages (PDFs and images) and return the best-matching pages: each page's "
    "id, file, page number and text, and the page image."
)


class PageSearchInput(BaseModel):
    """The tool's arguments."""

    query: str = Field(description="what to look for in the document pages")


def create_page_retriever_tool(
    retriever: BaseRetriever,
    name: str = "search_document_pages",
    description: str = DEFAULT_DESCRIPTION,
    *,
    images: bool = True,
) -> StructuredTool:
    """A tool an agent calls with a query; its ``ToolMessage`` holds the retrieved pages.

    The message ``content`` is a list of standard content blocks: per page, a text block (page id,
    file, page number, page text) and, with ``images``, an image block with the page image
    (base64), so a multimodal model reads the page itself. The ``artifact`` is the retrieved
    ``Document``\\ s (``response_format="content_and_artifact"``), for the application; their
    metadata holds the image's path, not its bytes.

    Args:
        retriever: any retriever returning sap-rag page Documents (``SAPRetriever``,
            ``SAPVectorStore.as_retriever()``, an ``EnsembleRetriever`` of them...).
        name, description: what the model sees.
        images: put the page images into the content (False: text only, for text-only models).
    """
    if not isinstance(retriever, BaseRetriever):
        raise InvalidInputError(f"retriever must be a LangChain BaseRetriever, got {type(retriever).__name__}")

    def func(query: str, callbacks: Callbacks = None) -> tuple[list[dict[str, Any]], list[Document]]:
        docs = retriever.invoke(query, config={"callbacks": callbacks})
        return page_content_blocks(docs, images=images), docs

    async def afunc(query: str, callbacks: Callbacks = None) -> tuple[list[dict[str, Any]], list[Document]]:
        docs = await retriever.ainvoke(query, config={"callbacks": callbacks})
        return page_content_blocks(docs, images=images), docs

    return StructuredTool(
        name=name,
        description=description,
        func=func,
        coroutine=afunc,
        args_schema=PageSearchInput,
        response_format="content_and_artifact",
    )
