"""SAPRetriever: a LlamaIndex ``BaseRetriever`` over a ``SAPIndex``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import MetadataFilters

from sap_rag.index import DocumentNotFoundError, parse_filter
from sap_rag.ingest import load_image

from ._core import open_index
from .filters import to_index_filter
from .nodes import ScoreMode, hit_to_node

logger = logging.getLogger(__name__)

__all__ = ["SAPRetriever"]


class SAPRetriever(BaseRetriever):
    """Retrieve pages from a ``SAPIndex`` by MaxSim over their SAP anchors.

    Returns ``NodeWithScore(ImageNode)``, best first: the page text as ``text``, the page image
    as ``image_path`` and ``metadata["file_path"]``, relationships to the source document and the
    neighbouring pages (see ``llama_index.retrievers.sap_rag.nodes``). Plug it into
    ``RetrieverQueryEngine.from_args(retriever, llm=..., multimodal=True)`` to send the pages to a
    multimodal chat LLM, or into ``RetrieverTool`` for an agent (it reads the page text).

    A ``QueryBundle(query_str=..., image_path="page.png")`` searches by image (the image is
    encoded as a page; its visual tokens are the query); the text is then not used.

    Args:
        index: a ``SAPIndex``, or the path of one (opened with ``SAPIndex.open(path, **open_kwargs)``,
            e.g. ``read_only=True``, and closed by :meth:`close`).
        similarity_top_k: pages per query.
        filters: LlamaIndex ``MetadataFilters`` on ``doc_id``, ``page_number`` or document metadata
            keys: every operator of :mod:`~llama_index.retrievers.sap_rag.filters`, nested with
            AND/OR/NOT. Checked when the retriever is built.
        score: what ``NodeWithScore.score`` is: ``"relevance"`` (default, in ``[0, 1]``, for
            ``SimilarityPostprocessor(similarity_cutoff=...)``) or ``"maxsim"`` (raw). Both are
            in the node metadata (``relevance``, ``maxsim``).
        two_stage, prefetch, coarse: the staged-search options of ``SAPIndex.search``.
        callback_manager: LlamaIndex callbacks.
        verbose: LlamaIndex's verbose flag.
        open_kwargs: passed to ``SAPIndex.open`` when ``index`` is a path.

    Raises:
        sap_rag.SapRagError: the core's errors (no index at the path, a bad filter, an empty
            query, a bad search option), with their messages.
    """

    def __init__(
        self,
        index: Any,
        *,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | None = None,
        score: ScoreMode | str = ScoreMode.RELEVANCE,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        **open_kwargs: Any,
    ) -> None:
        self._score = ScoreMode(score)
        self._index, self._owns_index = open_index(index, **open_kwargs)
        self._similarity_top_k = similarity_top_k
        self._filters = filters
        self._search_options = {"two_stage": two_stage, "prefetch": prefetch, "coarse": coarse}
        # Translate and check now, so a bad filter fails here rather than at the first query.
        self._index_filter = to_index_filter(filters)
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

    def close(self) -> None:
        """Close the index if this retriever opened it (given as a path); an index object given
        to it stays open (its owner closes it)."""
        if self._owns_index:
            self._index.close()

    def __enter__(self) -> SAPRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _query(self, query_bundle: QueryBundle) -> Any:
        if query_bundle.image_path:
            return load_image(query_bundle.image_path, name=f"query image {query_bundle.image_path}")
        return query_bundle.query_str

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self._index.search(
            self._query(query_bundle), k=self._similarity_top_k, filter=self._index_filter, **self._search_options
        )
        page_ids: dict[str, list[str]] = {}
        for hit in hits:
            if hit.doc_id not in page_ids:
                try:
                    page_ids[hit.doc_id] = list(self._index.document(hit.doc_id).page_ids)
                except DocumentNotFoundError:  # deleted since the search: no neighbours to link
                    page_ids[hit.doc_id] = []
        return [hit_to_node(hit, page_ids[hit.doc_id] or None, self._score) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The model and the engine are synchronous: run them off the event loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)
