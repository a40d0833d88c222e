"""SAPRetriever: a LlamaIndex ``BaseRetriever`` over a ``SAPIndex``."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import MetadataFilters

from sap_rag.index import parse_filter

from ._core import node_id, open_index
from .filters import NO_MATCH, to_index_filter

logger = logging.getLogger(__name__)

__all__ = ["SAPRetriever", "hit_to_node"]


def hit_to_node(hit: Any) -> NodeWithScore:
    """One ``SAPIndex`` search hit as ``NodeWithScore(ImageNode)``.

    The node's metadata is the document's metadata plus ``doc_id`` and ``page_number``; its
    ``image_path`` is the page image stored in the index, which a multimodal LLM receives.
    """
    node = ImageNode(
        id_=node_id(hit.doc_id, hit.page_number),
        text="",
        image_path=os.fspath(hit.image_path) if hit.image_path is not None else None,
        metadata={**(hit.metadata or {}), "doc_id": hit.doc_id, "page_number": hit.page_number},
    )
    return NodeWithScore(node=node, score=float(hit.score))


class SAPRetriever(BaseRetriever):
    """Retrieve page images from a ``SAPIndex`` by MaxSim over their SAP anchors.

    Returns ``NodeWithScore(ImageNode)``, best first. Plug it into
    ``RetrieverQueryEngine.from_args(retriever, llm=..., multimodal=True)`` to send the pages to a
    multimodal chat LLM.

    Args:
        index: a ``SAPIndex``, or the path of one (opened with ``SAPIndex.open(path, **open_kwargs)``).
        similarity_top_k: pages per query.
        filters: LlamaIndex ``MetadataFilters`` on ``doc_id``, ``page_number`` or document metadata
            keys (``EQ``/``IN``, combined with ``AND``, or ``OR`` on one key). Checked when the
            retriever is built: anything else raises
            :class:`~llama_index.retrievers.sap_rag.filters.UnsupportedFilterError`, a bad value
            ``sap_rag.InvalidInputError``.
        callback_manager: LlamaIndex callbacks.
        verbose: LlamaIndex's verbose flag.
        open_kwargs: passed to ``SAPIndex.open`` when ``index`` is a path.

    Raises:
        sap_rag.SapRagError: the core's errors (no index at the path, a bad filter value, an empty
            query), with their messages.
    """

    def __init__(
        self,
        index: Any,
        *,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        **open_kwargs: Any,
    ) -> None:
        self._index = open_index(index, **open_kwargs)
        self._similarity_top_k = similarity_top_k
        self._filters = filters
        # Translate and check now, so a bad filter fails here rather than at the first query.
        self._index_filter = to_index_filter(filters)
        if isinstance(self._index_filter, dict):
            parse_filter(self._index_filter)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def index(self) -> Any:
        """The ``SAPIndex`` searched."""
        return self._index

    @property
    def similarity_top_k(self) -> int:
        return self._similarity_top_k

    @property
    def filters(self) -> MetadataFilters | None:
        return self._filters

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        if self._index_filter is NO_MATCH:
            logger.debug("filters %s exclude every page", self._filters)
            return []
        hits = self._index.search(query_bundle.query_str, k=self._similarity_top_k, filter=self._index_filter)
        return [hit_to_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The model and the engine are synchronous: run them off the event loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)
