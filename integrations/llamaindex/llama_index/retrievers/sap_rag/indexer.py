"""VisualDocumentIndexer: a LlamaIndex ``NodeParser`` that indexes pages into a ``SAPIndex``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, NodeRelationship
from pydantic import Field, PrivateAttr

from sap_rag.errors import InvalidInputError

from ._core import delete_ref_docs, open_index
from ._inputs import load_batches, write_all
from .nodes import page_node

logger = logging.getLogger(__name__)

__all__ = ["VisualDocumentIndexer"]


class VisualDocumentIndexer(NodeParser):
    """Index the pages documents point at into a ``SAPIndex``; return one ``ImageNode`` per page.

    Works alone (``get_nodes_from_documents`` / ``aget_nodes_from_documents``) and as a
    transformation of an ``IngestionPipeline``. What a document is read from:

    - page documents from :class:`SAPPageReader` (image + ``file_hash``/``page_number`` metadata):
      the pages of one file are regrouped into one index document (the file's content hash);
    - any other image (``ImageDocument(image=...)`` / ``image_path``, ``ImageNode``): one page,
      whose id is the image's content hash: two different images are two documents;
    - else its ``file_path`` metadata (a PDF or image, as ``SimpleDirectoryReader`` sets it): every
      page of the file; several documents naming one file (a per-page PDF reader) index it once.

    Chunks of one document (a node parser such as ``SentenceSplitter`` before the indexer) are one
    page again, their text rejoined.

    A changed file replaces its pages (matched by its absolute path, as ``SAPIndex.add_documents``
    does), and a LlamaIndex document indexed again replaces what it indexed before (matched by its
    id): nothing accumulates. An unchanged document is not re-encoded. :meth:`delete_ref_doc`
    removes a document's pages by its id; :attr:`vector_store` lets an ``IngestionPipeline`` with a
    docstore do that itself (``docstore_strategy=UPSERTS`` / ``UPSERTS_AND_DELETE``).

    The returned nodes are those :class:`SAPRetriever` returns (ids, page text, metadata, page
    image, ``SOURCE``/``PREVIOUS``/``NEXT``), without scores. Every document is read before
    anything is written: an unreadable one fails the call (``sap_rag.UnreadableInputError`` naming
    it) and leaves the index untouched, unless ``skip_errors=True``, which logs and skips it.

    The indexer's output depends on the index and on image bytes that ``IngestionPipeline``'s
    cache key does not see, so it opts out of that cache (each run gets a fresh cache key).

    Args:
        index: a ``SAPIndex`` (share one object between indexer and retriever), or the path of
            an existing one (then the indexer opens it, and :meth:`close` closes it).
        skip_errors: skip unreadable documents instead of failing.
    """

    index: Any = Field(exclude=True, description="The SAPIndex that receives the pages.")
    skip_errors: bool = Field(default=False, description="Log and skip unreadable documents instead of raising.")
    # The page nodes carry the stored metadata and page relationships already (as the retriever's
    # do); NodeParser's merging would add the input's reader keys and relink pages by source.
    include_metadata: bool = Field(default=False, description="Also copy the input document's metadata.")
    include_prev_next_rel: bool = Field(default=False, description="Relink nodes by shared source.")
    _owns_index: bool = PrivateAttr(default=False)

    def __init__(self, index: Any, **kwargs: Any) -> None:
        opened, owned = open_index(index, owner="VisualDocumentIndexer")
        super().__init__(index=opened, **kwargs)
        self._owns_index = owned

    @classmethod
    def class_name(cls) -> str:
        return "VisualDocumentIndexer"

    def __getstate__(self) -> dict[str, Any]:
        # IngestionPipeline(num_workers>1) pickles its transformations into worker processes;
        # LlamaIndex would silently drop the open index and fail there with an AttributeError.
        raise InvalidInputError(
            "VisualDocumentIndexer cannot be sent to another process: its SAPIndex is open in this one "
            "(an index can be open only once); run the IngestionPipeline with num_workers=1 (the default)"
        )

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        # IngestionPipeline keys its cache on the input's text and metadata plus this dict. Two
        # different bare images look alike to it, and a cached result says nothing about what the
        # index holds now: a fresh token per call makes every run index (unchanged documents are
        # still not re-encoded, see write_batch).
        return {**super().to_dict(**kwargs), "run_token": uuid.uuid4().hex}

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the index if this indexer opened it (given as a path); an index object given to
        it stays open (its owner closes it)."""
        if self._owns_index:
            self.index.close()

    def __enter__(self) -> VisualDocumentIndexer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def as_retriever(self, **kwargs: Any) -> Any:
        """A :class:`SAPRetriever` over the same index (``similarity_top_k``, ``filters``...)."""
        from .retriever import SAPRetriever

        return SAPRetriever(index=self.index, **kwargs)

    @property
    def vector_store(self) -> Any:
        """A :class:`SAPPageStore` over the same index, for ``IngestionPipeline(vector_store=...)``."""
        from .vector_store import SAPPageStore

        return SAPPageStore(index=self.index)

    def delete_ref_doc(self, ref_doc_id: str) -> int:
        """Remove the pages indexed from the LlamaIndex document ``ref_doc_id`` (a file's pages go
        together); returns how many pages went (0 if none)."""
        return delete_ref_docs(self.index, [ref_doc_id])

    # --- NodeParser ----------------------------------------------------------------------

    def _nodes(self, info: Any, sources: list[BaseNode]) -> list[BaseNode]:
        hits = self.index.get_pages(info.page_ids)
        out: list[BaseNode] = []
        for i, hit in enumerate(h for h in hits if h is not None):
            node = page_node(hit, info.page_ids)
            source = sources[i] if len(sources) == len(info.page_ids) else sources[0]
            node.relationships[NodeRelationship.SOURCE] = source.as_related_node_info()
            out.append(node)
        return out

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        """Index every document's pages; return one ``ImageNode`` per page, in document order."""
        loaded = load_batches(nodes, skip_errors=self.skip_errors, show_progress=show_progress)
        out: list[BaseNode] = []
        for item, info in zip(loaded, write_all(self.index, loaded, show_progress)):
            out.extend(self._nodes(info, item.sources))
        logger.info("indexed %d pages from %d documents", len(out), len(loaded))
        return out

    async def _aparse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        """As :meth:`_parse_nodes`, in a worker thread so the event loop keeps running."""
        return await asyncio.to_thread(self._parse_nodes, nodes, show_progress, **kwargs)
