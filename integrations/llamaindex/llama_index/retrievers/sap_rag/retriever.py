"""SAPRetriever: a LlamaIndex ``BaseRetriever`` over a ``SAPIndex``."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import MetadataFilters

from sap_rag.errors import InvalidInputError
from sap_rag.index import parse_filter
from sap_rag.ingest import load_image

from ._core import OPEN_OPTIONS, check_keywords, open_index, page_ids_by_doc, page_image
from .filters import to_index_filter
from .nodes import ScoreMode, hit_to_node

logger = logging.getLogger(__name__)

__all__ = ["SAPRetriever"]

_OWN_KEYWORDS = (
    "similarity_top_k",
    "filters",
    "score",
    "two_stage",
    "prefetch",
    "coarse",
    "callback_manager",
    "verbose",
)


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
        index: the path of an index (opened read-only: any number of retrievers and processes
            search it at once; :meth:`close` closes it), or an open index object used as it is
            (a ``SAPIndex``, a ``SAPClient`` from ``sap_rag.connect(url)``, anything with the
            index's read methods; its owner closes it).
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
        open_kwargs: for an index given as a path, options of ``SAPIndex.open`` (``encoder``,
            ``pruner``, ``client``, ``qdrant_api_key``; ``read_only=False`` to open it for writing).

    Raises:
        sap_rag.InvalidInputError: an unknown keyword (``top_k`` names ``similarity_top_k``), open
            options with an index object, a bad filter or ``similarity_top_k``.
        sap_rag.SapRagError: the core's errors (no index at the path, the index open for writing
            elsewhere, an empty query, a bad search option), with their messages.
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
        check_keywords("SAPRetriever", open_kwargs, [*_OWN_KEYWORDS, *OPEN_OPTIONS])
        if isinstance(similarity_top_k, bool) or not isinstance(similarity_top_k, int) or similarity_top_k < 1:
            raise InvalidInputError(f"similarity_top_k must be a positive integer, got {similarity_top_k!r}")
        self._score = ScoreMode(score)
        self._similarity_top_k = similarity_top_k
        self._filters = filters
        self._search_options = {"two_stage": two_stage, "prefetch": prefetch, "coarse": coarse}
        # Translate and check now, so a bad filter fails here rather than at the first query.
        self._index_filter = to_index_filter(filters)
        parse_filter(self._index_filter)
        if isinstance(index, (str, os.PathLike)):
            open_kwargs.setdefault("read_only", True)  # a retriever only reads: share the index
        self._index, self._owns_index = open_index(index, owner="SAPRetriever", **open_kwargs)
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @property
    def index(self) -> Any:
        """The index searched (a ``SAPIndex``, or the index object given)."""
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
        page_ids = page_ids_by_doc(self._index, hits)
        return [hit_to_node(hit, page_ids[hit.doc_id], self._score, page_image(self._index, hit)) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The model and the engine are synchronous: run them off the event loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)
