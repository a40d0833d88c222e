"""SAPVectorStore: a LangChain ``VectorStore`` over a ``SAPIndex`` (pages of PDFs and images, searched with MaxSim)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever

from sap_rag.errors import InvalidInputError

from ._adding import add_documents
from ._core import (
    SEARCH_OPTIONS,
    IndexHandle,
    check_options,
    delete_ids,
    get_pages,
    index_paths,
    open_or_create_index,
    search_pages,
)
from .documents import hit_to_document

logger = logging.getLogger(__name__)

__all__ = ["SAPVectorStore", "SAPVectorStoreRetriever"]

_QUERY_OPTIONS = (*SEARCH_OPTIONS, "include_image")
_RETRIEVER_OPTIONS = ("k", "score_threshold", *_QUERY_OPTIONS)


class SAPVectorStore(VectorStore):
    """Pages of PDFs and images in a ``SAPIndex``, as a LangChain ``VectorStore``.

    A page is a record: its ``id`` is the id its Document was added with (``add_documents(docs,
    ids=[...])``, ``Document.id``, the record manager's key after LangChain's ``index()``), else its
    page id ``<doc_id>:p<page_number>``; its ``page_content`` is the page's text (the text it was
    added with, else its PDF text layer, else a short label), and its metadata is the Document's
    plus ``page_id``, ``doc_id``, ``page_number`` (the page of the file), ``score`` (raw MaxSim),
    ``relevance`` (in [0, 1]) and ``image_path``.

    Documents added name a file in ``metadata["source"]`` (what LangChain's loaders set) or
    ``metadata["file_path"]``, and a page in ``metadata["page"]`` (0-based, as the PDF loaders set);
    see :meth:`add_documents` for ids. Queries are text, an image (:meth:`similarity_search_by_image`)
    or precomputed query embeddings (:meth:`similarity_search_by_vector`).

    Search options, per call or in ``as_retriever(search_kwargs=...)``: ``k``, ``filter`` (the
    ``SAPIndex`` filter dict), ``two_stage``, ``prefetch``, ``coarse`` (staged search, see
    ``SAPIndex.search``), ``include_image`` (the page image as base64 in the metadata; off by default
    so images stay out of callbacks and traces) and, for relevance searches, ``score_threshold``. An
    unknown keyword is an error.

    Given a path, the store opens the index read-only (shared with retrievers and other
    processes) and reopens it for writing the first time it writes (``add_*``, ``delete``); if others
    have it open then, that write raises ``IndexLockedError`` saying so, and the store goes on
    searching. ``read_only=True`` never writes; ``read_only=False`` opens for writing at once.
    ``close()`` (or ``with SAPVectorStore(...) as store:``) closes the index and releases its lock.
    """

    def __init__(self, index: Any, *, read_only: bool | None = None, **open_kwargs: Any) -> None:
        """Wrap ``index``: a ``SAPIndex`` (or an object with its API, e.g. a client of a sap-rag
        server), or the path of one, opened with ``SAPIndex.open(path, read_only=..., **open_kwargs)``
        (see the class for ``read_only``)."""
        self._handle = IndexHandle(index, read_only=read_only, owner="SAPVectorStore", **open_kwargs)

    @property
    def index(self) -> Any:
        """The index searched (after a store opened by path writes, a new object: don't keep it)."""
        return self._handle.index

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the index (idempotent); the store cannot be used afterwards."""
        self.index.close()

    def __enter__(self) -> SAPVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def embeddings(self) -> Embeddings | None:
        """None: pages are embedded by the index's multi-vector page encoder, not a LangChain ``Embeddings``."""
        return None

    # --- writes --------------------------------------------------------------------------

    def add_documents(
        self, documents: list[Document], *, ids: Sequence[str | None] | None = None, **kwargs: Any
    ) -> list[str]:
        """Index the pages ``documents`` name; return one id per Document.

        Each Document names a PDF or image in ``metadata["source"]`` (or ``["file_path"]``) and,
        optionally, a page in ``metadata["page"]`` (0-based; without it, every page of the file).

        - With an id (``ids=[...]``, or ``Document.id``; LangChain's indexing API gives them), the
          Document becomes the document of that id, holding the page it names; its
          ``page_content``, if any, is the page text. Adding the id again replaces it (upsert);
          ``delete([id])`` removes it.
        - Without ids, the Documents naming one file index that file as one document whose id is a
          hash of its content (as ``SAPIndex.add_documents`` does): adding it again is a no-op, a
          changed file replaces its old pages. Each Document gets back the page id it names.

        Every file is read and every Document checked before anything is written.

        Args:
            documents: the Documents.
            ids: one id per Document (None entries fall back to ``Document.id``).
            kwargs: ``batch_size`` is accepted (LangChain's indexing API passes it) and has no
                effect: pages are encoded in the encoder's batches.
        """
        check_options(kwargs, ("batch_size",), "SAPVectorStore.add_documents")
        return add_documents(self._handle.writable(), documents, ids)

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """:meth:`add_documents` for texts whose metadata names their page (``source`` and ``page``)."""
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise InvalidInputError(f"got {len(texts)} texts but {len(metadatas)} metadatas; give one per text")
        docs = [Document(page_content=t, metadata=dict(m)) for t, m in zip(texts, metadatas or [{}] * len(texts))]
        return self.add_documents(docs, ids=ids, **kwargs)

    def add_paths(
        self,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        metadata: Mapping[str, Any] | None = None,
        skip_errors: bool = False,
    ) -> list[str]:
        """Index PDFs and images (files, or folders searched recursively); return their document ids."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return index_paths(self._handle.writable(), paths, metadata=metadata, skip_errors=skip_errors)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete by the ids Documents were added with, document ids and page ids; unknown ids are skipped.

        Raises:
            InvalidInputError: ``ids`` is None (deleting everything is not done implicitly) or
                another keyword is given.
        """
        check_options(kwargs, (), "SAPVectorStore.delete")
        if ids is None:
            raise InvalidInputError("SAPVectorStore.delete needs ids (page or document ids); it never deletes all")
        if isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        if not get_pages(self.index, ids):  # checks the ids; with nothing to delete, nothing is written
            return True
        removed = delete_ids(self._handle.writable(), ids)
        logger.info("deleted %d pages for %d ids", removed, len(ids))
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored pages named by ``ids``: the ids Documents were added with, page ids, or document
        ids (standing for all their pages).

        Unknown ids are skipped. ``score`` and ``relevance`` are None (there is no query).
        """
        if isinstance(ids, str):
            ids = [ids]
        return [hit_to_document(page) for page in get_pages(self.index, list(ids))]

    # --- search --------------------------------------------------------------------------

    def _search(self, query: Any, k: int, options: dict[str, Any]) -> list[tuple[Document, Any]]:
        check_options(options, _QUERY_OPTIONS, "SAPVectorStore search")
        include_image = bool(options.pop("include_image", False))
        hits = search_pages(self.index, query, k, options)
        return [(hit_to_document(hit, include_image=include_image, index=self.index), hit) for hit in hits]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` pages that best match ``query`` (text), best first; see the class for the options."""
        return [doc for doc, _ in self._search(query, k, kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """Pages and their raw MaxSim scores (higher is better; not bounded), best first."""
        return [(doc, float(hit.score)) for doc, hit in self._search(query, k, kwargs)]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        # The index's normalised relevance in [0, 1] (monotone in the raw score for one query).
        return [(doc, float(hit.relevance)) for doc, hit in self._search(query, k, kwargs)]

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return await run_in_executor(None, self._similarity_search_with_relevance_scores, query, k, **kwargs)

    def similarity_search_by_image(self, image: Any, k: int = 4, **kwargs: Any) -> list[Document]:
        """The ``k`` pages that best match an image (a ``PIL.Image.Image`` or the path of an image file)."""
        if isinstance(image, str):
            image = Path(image)
        return [doc for doc, _ in self._search(image, k, kwargs)]

    async def asimilarity_search_by_image(self, image: Any, k: int = 4, **kwargs: Any) -> list[Document]:
        return await run_in_executor(None, self.similarity_search_by_image, image, k, **kwargs)

    def similarity_search_by_vector(self, embedding: Any, k: int = 4, **kwargs: Any) -> list[Document]:
        """Search with precomputed query embeddings: ``(n_tokens, dim)`` (a single ``dim`` vector is one token)."""
        import numpy as np

        vectors = np.asarray(embedding, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None, :]
        return [doc for doc, _ in self._search(vectors, k, kwargs)]

    def max_marginal_relevance_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        raise InvalidInputError(
            "SAPVectorStore has no MMR search (pages are multi-vector; there is no single vector to diversify on); "
            "use similarity_search or search_type='similarity'"
        )

    # --- construction --------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        index_path: str | os.PathLike | None = None,
        encoder: Any = None,
        **create_kwargs: Any,
    ) -> SAPVectorStore:
        """A store at ``index_path`` (created with ``encoder`` if missing) holding the pages the texts' metadata names.

        ``embedding`` must be None: sap-rag embeds page images with its own encoder.
        """
        if embedding is not None:
            raise InvalidInputError(
                "SAPVectorStore embeds page images with the index's encoder; pass embedding=None and encoder=..."
            )
        if index_path is None:
            raise InvalidInputError("SAPVectorStore.from_texts needs index_path=... (where the index lives)")
        store = cls(open_or_create_index(index_path, encoder=encoder, **create_kwargs))
        try:
            store.add_texts(texts, metadatas, ids=ids)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def from_documents(
        cls, documents: list[Document], embedding: Embeddings | None = None, **kwargs: Any
    ) -> SAPVectorStore:
        """A store at ``index_path=...`` (created with ``encoder=...`` if missing) holding the pages ``documents`` name.

        ``embedding`` must be None (it is optional here): sap-rag embeds page images with its own encoder.
        """
        return super().from_documents(documents, embedding, **kwargs)  # type: ignore[return-value]

    @classmethod
    def from_paths(
        cls,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        index_path: str | os.PathLike,
        *,
        encoder: Any = None,
        metadata: Mapping[str, Any] | None = None,
        skip_errors: bool = False,
        **create_kwargs: Any,
    ) -> SAPVectorStore:
        """Index files into the index at ``index_path`` (created with ``encoder`` if missing); return the store.

        Args:
            paths: PDFs, images, or folders of them.
            index_path: where the index lives.
            encoder: a ``sap_rag.PageEncoder`` or a model spec (``"vidore/colqwen2-v1.0"``,
                ``"tiny:colqwen2"``); needed only when the index does not exist yet.
            metadata, skip_errors: as in :meth:`add_paths`.
            create_kwargs: passed to ``SAPIndex.create`` (``keep_ratio``...).
        """
        store = cls(open_or_create_index(index_path, encoder=encoder, **create_kwargs))
        try:
            store.add_paths(paths, metadata=metadata, skip_errors=skip_errors)
        except BaseException:
            store.close()  # release the index's lock: the caller never got hold of it
            raise
        return store

    def as_retriever(self, **kwargs: Any) -> SAPVectorStoreRetriever:
        """A retriever: ``search_type`` ``"similarity"`` (default) or ``"similarity_score_threshold"``,
        ``search_kwargs`` among ``k``, ``filter``, ``score_threshold``, ``two_stage``, ``prefetch``,
        ``coarse``, ``include_image``; an unknown one is refused here, not at the first query."""
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return SAPVectorStoreRetriever(vectorstore=self, tags=tags, **kwargs)


class SAPVectorStoreRetriever(VectorStoreRetriever):
    """``VectorStoreRetriever`` for :class:`SAPVectorStore`: checks the search type and keywords up front."""

    allowed_search_types: ClassVar[tuple[str, ...]] = ("similarity", "similarity_score_threshold")

    def __init__(self, **kwargs: Any) -> None:
        # Checked before pydantic validates, so the caller gets sap_rag's error, not a ValidationError.
        search_kwargs = kwargs.get("search_kwargs") or {}
        if not isinstance(search_kwargs, Mapping):
            raise InvalidInputError(f"search_kwargs must be a dict, got {type(search_kwargs).__name__}")
        check_options(search_kwargs, _RETRIEVER_OPTIONS, "SAPVectorStore.as_retriever(search_kwargs=...)")
        if kwargs.get("search_type", "similarity") == "similarity" and "score_threshold" in search_kwargs:
            raise InvalidInputError(
                "score_threshold needs search_type='similarity_score_threshold' (it would be ignored otherwise)"
            )
        if search_kwargs.get("filter") is not None:
            from sap_rag.index import parse_filter

            parse_filter(search_kwargs["filter"])  # a bad filter fails here, not at the first query
        super().__init__(**kwargs)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        check_options(kwargs, _RETRIEVER_OPTIONS, "SAPVectorStoreRetriever.invoke")
        return super()._get_relevant_documents(query, run_manager=run_manager, **kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        check_options(kwargs, _RETRIEVER_OPTIONS, "SAPVectorStoreRetriever.ainvoke")
        return await super()._aget_relevant_documents(query, run_manager=run_manager, **kwargs)
