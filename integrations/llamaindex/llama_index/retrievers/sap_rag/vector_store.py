"""SAPPageStore: a ``SAPIndex`` as a LlamaIndex vector store.

It is what ``StorageContext.from_defaults(vector_store=...)`` takes, so LlamaIndex's own
``VectorStoreIndex`` (``from_documents``, ``from_vector_store``, ``insert``, ``delete_ref_doc``,
``as_retriever``, ``as_query_engine``) and ``IngestionPipeline(vector_store=...)`` work over a
page index. The store encodes the pages it is given itself (multi-vector, with the index's model
and SAP pruning): LlamaIndex's per-node text embedding is not used (pass
``embed_model=store.embed_model``, a constant, so none is computed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from pydantic import PrivateAttr

from sap_rag import parse_page_id
from sap_rag.errors import InvalidInputError, SapRagError
from sap_rag.index import IndexReadOnlyError
from sap_rag.ingest import load_image

from . import _query_image
from ._core import (
    OPEN_OPTIONS,
    check_keywords,
    delete_ref_docs,
    docs_by_ref,
    index_path,
    open_index,
    page_nodes,
)
from ._inputs import load_batches, write_all
from .filters import to_index_filter
from .nodes import REF_DOC_IDS_KEY

logger = logging.getLogger(__name__)

__all__ = ["SAPPageStore", "SAPStoreEmbedding"]

SEARCH_OPTIONS = ("two_stage", "prefetch", "coarse")
"""``VectorStoreQuery`` keywords passed to ``SAPIndex.search`` (``as_retriever(vector_store_kwargs=...)``)."""


_PER_QUERY = {
    "similarity_top_k": "is given per query: index.as_retriever(similarity_top_k=...)",
    "filters": "are given per query: index.as_retriever(filters=...)",
}


class SAPStoreEmbedding(MockEmbedding):
    """The embed model of a ``VectorStoreIndex`` over a :class:`SAPPageStore`: a constant.

    The store encodes pages (and queries) with the index's own multi-vector model; the one
    vector per node LlamaIndex computes before ``add`` is never used, so none is computed.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(embed_dim=1, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "SAPStoreEmbedding"


class SAPPageStore(BasePydanticVectorStore):
    """The pages of a ``SAPIndex`` as a LlamaIndex vector store.

    - ``add(nodes)``: encode and store the pages the nodes carry (``ImageDocument`` / ``ImageNode``
      with image bytes or an image path, pages from :class:`SAPPageReader` (one index document per
      file), nodes whose ``metadata["file_path"]`` is a PDF or image); chunks of one page from a
      node parser are one page again. Nodes that are pages of this index already are kept as they
      are. Returns each node's page id.
    - ``delete(ref_doc_id)``: remove the pages indexed from that LlamaIndex document;
    - ``get_nodes`` / ``delete_nodes`` by page ids and/or ``MetadataFilters``; ``clear()``;
    - ``query(VectorStoreQuery(query_str=..., similarity_top_k=..., filters=...))``: MaxSim search;
      ``similarities`` are the normalised relevance in ``[0, 1]``. Through ``VectorIndexRetriever``
      an image ``QueryBundle(query_str="", image_path=...)`` searches by that image.

    Args:
        index: the path of an index, or an open index object used as it is (a ``SAPIndex``, a
            ``SAPClient`` from ``sap_rag.connect``; its owner closes it). A path is opened
            read-only, so searching stores, retrievers and other processes share it; the first
            write (``add``, ``delete``...) reopens it for writing, which needs the index to itself
            (``sap_rag.index.IndexLockedError`` says who holds it otherwise). :meth:`close`
            closes an index opened from a path.
        read_only: for a path: never write (a write raises ``IndexReadOnlyError``).
        open_kwargs: options of ``SAPIndex.open`` for a path (``encoder``, ``pruner``, ``client``,
            ``qdrant_api_key``).

    Create a new index first (``SAPIndex.create(path, encoder=...)``), then hand the store the
    index or its path.
    """

    stores_text: bool = True
    is_embedding_query: bool = False
    flat_metadata: bool = False
    _index: Any = PrivateAttr(default=None)
    _owned: bool = PrivateAttr(default=False)
    _read_only: bool = PrivateAttr(default=False)
    _open_kwargs: dict[str, Any] = PrivateAttr(default_factory=dict)
    _reopen: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, index: Any, *, read_only: bool = False, **open_kwargs: Any) -> None:
        check_keywords("SAPPageStore", open_kwargs, OPEN_OPTIONS, _PER_QUERY)
        super().__init__()
        path = isinstance(index, (str, os.PathLike))
        opened, owned = open_index(index, owner="SAPPageStore", **({"read_only": True} if path else {}), **open_kwargs)
        self._index, self._owned, self._read_only = opened, owned, bool(read_only)
        self._open_kwargs = dict(open_kwargs)
        _query_image.install()

    @classmethod
    def class_name(cls) -> str:
        return "SAPPageStore"

    @property
    def index(self) -> Any:
        """The index the pages live in (after the first write of a store opened from a path, the
        index opened for writing)."""
        return self._index

    @property
    def client(self) -> Any:
        return self._index

    @property
    def embed_model(self) -> SAPStoreEmbedding:
        """For ``VectorStoreIndex(..., embed_model=store.embed_model)``: no text embedding is computed."""
        return SAPStoreEmbedding()

    def close(self) -> None:
        """Close the index if the store opened it (given as a path)."""
        if self._owned:
            self._index.close()

    def __enter__(self) -> SAPPageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing -------------------------------------------------------------------------

    def _writable(self, action: str, *, encodes: bool = False) -> Any:
        """The index, opened for writing first if the store opened it read-only (``encodes``: keep
        the encoder the read-only index loaded, rather than loading the model again)."""
        with self._reopen:  # two threads writing at once reopen it once
            return self._open_for_writing(action, encodes)

    def _open_for_writing(self, action: str, encodes: bool) -> Any:
        index = self._index
        where = index_path(index)
        if self._read_only:
            raise IndexReadOnlyError(
                f"SAPPageStore.{action}: the store was made with read_only=True, so the index at {where} is only "
                "searched; make it without read_only to write (it then needs the index to itself)"
            )
        if not self._owned or not getattr(index, "read_only", False):
            return index
        from sap_rag.index import SAPIndex

        options = dict(self._open_kwargs)
        if encodes and "encoder" not in options:
            options["encoder"] = index.encoder
        index.close()
        try:
            self._index = SAPIndex.open(where, **options)
        except SapRagError as exc:
            try:
                self._index = SAPIndex.open(where, read_only=True, **options)  # still searchable
            except SapRagError as again:
                logger.warning("SAPPageStore: cannot reopen %s for searching either: %s", where, again)
            raise type(exc)(
                f"SAPPageStore.{action} needs the index at {where} open for writing, which failed: {exc}"
            ) from exc
        logger.info("SAPPageStore: opened %s for writing (%s)", where, action)
        return self._index

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Encode and store the pages of ``nodes`` (see the class docstring); their page ids, in order.

        Every node is read before anything is written: an unreadable one fails the call
        (``sap_rag.UnreadableInputError`` naming it) and leaves the index as it was.
        """
        _ignored("add", add_kwargs)
        nodes = list(nodes)
        known = self._pages([n.node_id for n in nodes])
        new = [n for n, hit in zip(nodes, known) if hit is None]
        page_of: dict[str, str] = {}
        if new:
            loaded = load_batches(new)
            index = self._writable("add", encodes=True)
            for item, info in zip(loaded, write_all(index, loaded)):
                pages = list(info.page_ids)
                for at, inputs in enumerate(item.inputs):
                    for node_id in inputs:
                        page_of[node_id] = pages[at] if len(pages) == len(item.inputs) else pages[0]
            logger.info("SAPPageStore: stored %d pages from %d nodes", len(set(page_of.values())), len(new))
        return [hit.page_id if hit is not None else page_of[n.node_id] for n, hit in zip(nodes, known)]

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Remove the pages indexed from the LlamaIndex document ``ref_doc_id`` (a file's pages go together)."""
        _ignored("delete", delete_kwargs)
        if docs_by_ref(self._index, [ref_doc_id])[ref_doc_id]:  # opened for writing only when needed
            delete_ref_docs(self._writable("delete"), [ref_doc_id])

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Remove pages by page id and/or filter (both given: the pages matching both)."""
        _ignored("delete_nodes", delete_kwargs)
        if node_ids is None and filters is None:
            raise InvalidInputError("SAPPageStore.delete_nodes: give node_ids and/or filters (clear() removes all)")
        page_ids = [hit.page_id for hit in self._select(node_ids, filters)]
        if page_ids:
            self._writable("delete_nodes").delete_pages(page_ids, missing_ok=True)

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    def clear(self) -> None:
        """Remove every page."""
        doc_ids = list(self._index.documents())
        if doc_ids:
            index = self._writable("clear")
            for doc_id in doc_ids:
                index.delete(doc_id, missing_ok=True)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    # --- reading -------------------------------------------------------------------------

    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **kwargs: Any
    ) -> list[BaseNode]:
        """Pages by page id and/or filter (both: those matching both; neither: every page), as
        ``ImageNode``s; ids that are not pages of the index are left out."""
        _ignored("get_nodes", kwargs)
        return page_nodes(self._index, self._select(node_ids, filters))

    async def aget_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **kwargs: Any
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters, **kwargs)

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` best pages for the query text, or for the image of the
        ``QueryBundle`` a ``VectorIndexRetriever`` is running (see ``_query_image``)."""
        check_keywords("SAPPageStore.query", kwargs, SEARCH_OPTIONS)
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise InvalidInputError(
                f"SAPPageStore searches by MaxSim only (vector_store_query_mode='default'), got {query.mode.value!r}"
            )
        image = _query_image.take_query_image(query.query_str)
        if image is not None:
            question: Any = load_image(image, name=f"query image {image}")
        elif query.query_str and query.query_str.strip():
            question = query.query_str
        else:
            raise InvalidInputError(
                "SAPPageStore needs a query text (VectorStoreQuery(query_str=...)) or an image QueryBundle through "
                "a retriever; a single query embedding cannot be scored by MaxSim"
                if query.query_embedding is not None
                else "SAPPageStore got an empty query: give it a question, or a QueryBundle with an image_path"
            )
        hits = self._index.search(question, k=query.similarity_top_k, filter=self._query_filter(query), **kwargs)
        return VectorStoreQueryResult(
            nodes=page_nodes(self._index, hits),
            similarities=[float(hit.relevance) for hit in hits],
            ids=[hit.page_id for hit in hits],
        )

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    # --- helpers -------------------------------------------------------------------------

    def _query_filter(self, query: VectorStoreQuery) -> dict[str, Any] | None:
        """The query's filters, restricted to its ``doc_ids`` (LlamaIndex document ids) and to its
        ``node_ids`` when they are page ids (``VectorStoreIndex`` passes the ids of the nodes it
        was given, which are not pages when the store encoded them: then they do not restrict)."""
        parts = [f for f in [to_index_filter(query.filters)] if f]
        if query.doc_ids:
            parts.append({REF_DOC_IDS_KEY: {"$in": list(query.doc_ids)}})
        pages = _page_filter(query.node_ids or [])
        if pages is not None:
            parts.append(pages)
        return None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}

    def _pages(self, ids: Sequence[str]) -> list[Any]:
        """``get_pages`` for the ids that are page ids (None for the others and for missing pages)."""
        valid = [i for i in ids if _is_page_id(i)]
        found = dict(zip(valid, self._index.get_pages(valid))) if valid else {}
        return [found.get(node_id) for node_id in ids]

    def _filtered(self, index_filter: dict[str, Any] | None) -> list[Any]:
        """Every page matching a core filter: an exact scan (``two_stage=False``: the anchors have
        no graph) with a constant query vector, so all pages qualify and the engine's own filter
        decides, with the search's semantics."""
        import numpy as np

        index = self._index
        dim, total = getattr(index, "dim", None), len(index) if hasattr(index, "__len__") else None
        if not isinstance(dim, int) or total is None:
            raise InvalidInputError(
                "SAPPageStore: listing pages by filter needs a local SAPIndex (with dim and len), "
                f"got {type(index).__name__}"
            )
        if total == 0:
            return []
        probe = np.zeros((1, dim), dtype=np.float32)
        return index.search(probe, k=total, filter=index_filter, two_stage=False)

    def _select(self, node_ids: Sequence[str] | None, filters: MetadataFilters | None) -> list[Any]:
        """Pages by id and/or filter, in id order (by id) or index order (by filter only)."""
        if node_ids is not None:
            hits = [hit for hit in self._pages(list(node_ids)) if hit is not None]
            if filters is None:
                return hits
            matching = {hit.page_id for hit in self._filtered(to_index_filter(filters))}
            return [hit for hit in hits if hit.page_id in matching]
        hits = self._filtered(to_index_filter(filters))
        return sorted(hits, key=lambda hit: (hit.doc_id, hit.page_number))


def _ignored(method: str, kwargs: dict[str, Any]) -> None:
    """LlamaIndex passes its callers' extra keywords on to a vector store's writes (``insert_kwargs``);
    like other stores, this one has no use for them."""
    if kwargs:
        logger.debug("SAPPageStore.%s: ignoring keywords %s", method, sorted(kwargs))


def _is_page_id(value: Any) -> bool:
    try:
        parse_page_id(value)
    except InvalidInputError:
        return False
    return True


def _page_filter(node_ids: Sequence[str]) -> dict[str, Any] | None:
    """A core filter keeping the pages with these ids; None unless every id is a page id."""
    if not node_ids or not all(_is_page_id(i) for i in node_ids):
        return None
    by_doc: dict[str, list[int]] = {}
    for node_id in node_ids:
        doc_id, number = parse_page_id(node_id)
        by_doc.setdefault(doc_id, []).append(number)
    return {"$or": [{"doc_id": doc_id, "page_number": {"$in": numbers}} for doc_id, numbers in by_doc.items()]}
