"""SAPPageStore: a ``SAPIndex`` seen as a LlamaIndex vector store, for pipelines with a docstore.

``IngestionPipeline`` applies ``docstore_strategy=UPSERTS`` / ``UPSERTS_AND_DELETE`` only with a
vector store: it deletes a changed or removed document from it by ``ref_doc_id`` before the
transformations run again. The pages are written by :class:`VisualDocumentIndexer`; this store
deletes, fetches and searches them. It holds no state of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryResult,
)
from pydantic import Field

from sap_rag import parse_page_id
from sap_rag.errors import InvalidInputError

from ._core import delete_ref_docs, open_index
from .filters import to_index_filter
from .nodes import page_node

__all__ = ["SAPPageStore"]


class SAPPageStore(BasePydanticVectorStore):
    """The pages of a ``SAPIndex`` as a vector store (``VisualDocumentIndexer.vector_store``).

    - ``delete(ref_doc_id)``: remove the pages indexed from that LlamaIndex document;
    - ``delete_nodes(node_ids)``: remove pages by page id; ``get_nodes(node_ids)``: fetch them;
    - ``query(VectorStoreQuery(query_str=..., similarity_top_k=..., filters=...))``: search;
      ``similarities`` are the normalised relevance in ``[0, 1]``;
    - ``add(nodes)``: accepts only pages already in the index (the indexer writes them), so a
      pipeline can pass its output through; anything else is an error.
    """

    stores_text: bool = True
    is_embedding_query: bool = False
    index: Any = Field(exclude=True, description="The SAPIndex holding the pages.")

    def __init__(self, index: Any, **kwargs: Any) -> None:
        opened, _ = open_index(index)
        super().__init__(index=opened, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "SAPPageStore"

    @property
    def client(self) -> Any:
        return self.index

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        ids = [node.node_id for node in nodes]
        missing = [i for i, found in zip(ids, self._pages(ids)) if found is None]
        if missing:
            raise InvalidInputError(
                f"SAPPageStore.add: {missing[:3]} are not pages of the index; pages are written by "
                "VisualDocumentIndexer (put it in the pipeline's transformations)"
            )
        return ids

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        delete_ref_docs(self.index, [ref_doc_id])

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        if filters is not None:
            raise InvalidInputError("SAPPageStore.delete_nodes deletes by page id only; pass node_ids")
        if node_ids:
            self.index.delete_pages(node_ids, missing_ok=True)

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **kwargs: Any
    ) -> list[BaseNode]:
        if filters is not None or node_ids is None:
            raise InvalidInputError("SAPPageStore.get_nodes fetches by page id only; pass node_ids")
        hits = [hit for hit in self._pages(node_ids) if hit is not None]
        page_ids = {hit.doc_id: list(self.index.document(hit.doc_id).page_ids) for hit in hits}
        return [page_node(hit, page_ids[hit.doc_id]) for hit in hits]

    def clear(self) -> None:
        for doc_id in self.index.documents():
            self.index.delete(doc_id, missing_ok=True)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        if not query.query_str:
            raise InvalidInputError(
                "SAPPageStore searches by query text (VectorStoreQuery(query_str=...)); a single query "
                "embedding cannot be scored by MaxSim"
            )
        hits = self.index.search(query.query_str, k=query.similarity_top_k, filter=to_index_filter(query.filters))
        page_ids = {hit.doc_id: list(self.index.document(hit.doc_id).page_ids) for hit in hits}
        return VectorStoreQueryResult(
            nodes=[page_node(hit, page_ids[hit.doc_id]) for hit in hits],
            similarities=[float(hit.relevance) for hit in hits],
            ids=[hit.page_id for hit in hits],
        )

    def _pages(self, ids: Sequence[str]) -> list[Any]:
        valid = []
        for node_id in ids:
            try:
                parse_page_id(node_id)
                valid.append(node_id)
            except InvalidInputError:
                pass
        found = dict(zip(valid, self.index.get_pages(valid))) if valid else {}
        return [found.get(node_id) for node_id in ids]
