"""SAPRetriever: a LangChain ``BaseRetriever`` over a ``SAPIndex``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr

from sap_rag.errors import InvalidInputError
from sap_rag.index import parse_filter

from . import _adding
from ._core import (
    SEARCH_OPTIONS,
    IndexHandle,
    _loaded_encoder,
    check_options,
    index_paths,
    open_or_create_index,
    search_pages,
)
from .documents import PATH_METADATA_KEYS, hit_to_document

logger = logging.getLogger(__name__)

__all__ = ["PATH_METADATA_KEYS", "SAPRetriever", "hit_to_document"]

_CALL_OPTIONS = ("k", *SEARCH_OPTIONS, "include_image")


class SAPRetriever(BaseRetriever):
    """Retrieve pages from a ``SAPIndex`` (MaxSim over SAP-pruned ColPali-family anchors).

    Returns one ``Document`` per page: ``page_content`` is the page text (the text it was added
    with, else its PDF text layer, else a short label; never empty), ``id`` the id its Document was
    added with (see ``SAPVectorStore``), else the page id (``<doc_id>:p<n>``), and ``metadata`` the
    document's metadata plus ``page_id``, ``doc_id``, ``page_number`` (the page of the file),
    ``score`` (raw MaxSim), ``relevance`` (in [0, 1]) and ``image_path``. Per call, every field but ``index`` can be
    overridden: ``retriever.invoke("revenue 2023?", k=1, filter={...})``; an unknown keyword is an
    error. The query may also be a ``PIL.Image.Image`` (search by image).

    Build one from an index (``SAPRetriever(index=path)``, or an open ``SAPIndex`` or an object with
    its API, such as a client of a sap-rag server), or from files in one step with
    :meth:`from_paths`. Given a path, the retriever opens the index read-only, shared with other
    retrievers and processes; :meth:`add_paths` and :meth:`add_documents` reopen it for writing
    (``IndexLockedError`` while others have it open). :meth:`close` (or ``with``) closes the index.

    Attributes:
        index: the ``SAPIndex`` searched (a path is opened read-only with ``SAPIndex.open``).
        k: pages per query.
        filter: ``SAPIndex`` filter: payload key -> value or list of values (any of), all keys
            required; keys are ``doc_id``, ``page_number`` or document metadata keys.
        two_stage, prefetch, coarse: staged-search overrides (see ``SAPIndex.search``); None keeps
            the index's settings.
        include_image: add each page's image as base64 to its metadata (off by default: images
            stay out of callbacks and traces; ``create_page_retriever_tool`` and
            ``page_images_message`` put them into message content instead).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any = Field(description="The SAPIndex searched, or the path of one.")
    k: int = Field(default=4, ge=1, description="Pages per query.")
    filter: dict[str, Any] | None = Field(default=None, description="SAPIndex filter dict.")
    two_stage: bool | str | None = Field(default=None, description="Staged search: True, False or 'auto'.")
    prefetch: int | None = Field(default=None, ge=1, description="Candidates the exact MaxSim stage reranks.")
    coarse: int | None = Field(default=None, ge=1, description="Candidates of the first staged-search stage.")
    include_image: bool = Field(default=False, description="Add image_base64 and mime_type to the metadata.")

    _handle: Any = PrivateAttr(default=None)

    def __init__(
        self,
        *,
        read_only: bool | None = None,
        search_kwargs: Mapping[str, Any] | None = None,
        open_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ):
        """Fields as keywords. ``search_kwargs`` (LangChain's usual spelling) may set the search fields
        instead: ``SAPRetriever(index=..., search_kwargs={"k": 2, "filter": {...}})``. With an index
        path, ``read_only`` is None (read-only, reopened for writing by ``add_*``), True (never
        written) or False (opened for writing at once); ``open_kwargs`` go to ``SAPIndex.open``
        (``encoder``...). An unknown keyword is an error.
        """
        check_options(kwargs, type(self).model_fields, "SAPRetriever")
        if search_kwargs:
            check_options(search_kwargs, _CALL_OPTIONS, "SAPRetriever(search_kwargs=...)")
            both = sorted(set(search_kwargs) & set(kwargs))
            if both:
                raise InvalidInputError(
                    f"SAPRetriever got {both} both as keywords and in search_kwargs; give each once"
                )
            kwargs.update(search_kwargs)
        # Opened before pydantic validates, so the core's errors reach the caller as they are
        # (pydantic would wrap them in a ValidationError).
        handle = None
        if "index" in kwargs:
            handle = IndexHandle(kwargs["index"], read_only=read_only, owner="SAPRetriever", **(open_kwargs or {}))
            kwargs["index"] = handle.index
        try:
            if kwargs.get("filter") is not None:
                parse_filter(kwargs["filter"])  # a bad filter fails here, not at the first query
            super().__init__(**kwargs)
        except BaseException:
            if handle is not None and handle.opened_here:
                handle.close()  # release what this call opened
            raise
        self._handle = handle

    def _writable(self) -> Any:
        """The index, reopened for writing where the retriever opened it read-only from a path."""
        self.index = self._handle.writable() if self._handle is not None else self.index
        return self.index

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the index and release its lock (idempotent)."""
        self.index.close()

    def __enter__(self) -> SAPRetriever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- retrieval -----------------------------------------------------------------------

    def _get_relevant_documents(
        self, query: Any, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        check_options(kwargs, _CALL_OPTIONS, "SAPRetriever")
        settings = {name: kwargs.get(name, getattr(self, name)) for name in _CALL_OPTIONS}
        options = {name: settings[name] for name in SEARCH_OPTIONS if settings[name] is not None}
        hits = search_pages(self.index, query, settings["k"], options)
        include = bool(settings["include_image"])
        return [hit_to_document(hit, include_image=include, index=self.index) for hit in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        # The model and the engine are synchronous: run them in an executor, per-call arguments included.
        return await run_in_executor(
            None, self._get_relevant_documents, query, run_manager=run_manager.get_sync(), **kwargs
        )

    # --- indexing ------------------------------------------------------------------------

    def add_paths(
        self,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        *,
        metadata: Mapping[str, Any] | None = None,
        skip_errors: bool = False,
    ) -> list[str]:
        """Index PDFs and images (files, or folders searched recursively); return their doc ids.

        Ids are content hashes: adding a file again replaces it. ``metadata`` is stored with every
        file (and can be filtered on). An unreadable file raises ``sap_rag.UnreadableInputError``
        before anything is written, unless ``skip_errors=True``.
        """
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        return index_paths(self._writable(), paths, metadata=metadata, skip_errors=skip_errors)

    def add_documents(self, documents: Sequence[Document], *, ids: Sequence[str | None] | None = None) -> list[str]:
        """Index the pages LangChain ``Document``\\ s name; as ``SAPVectorStore.add_documents``.

        A document names its file in ``metadata["source"]`` (what LangChain's loaders set) or
        ``metadata["file_path"]``, and a page in ``metadata["page"]`` (0-based). Without ids,
        Documents naming the same file index it once (content-hash id; a changed file replaces its
        old pages) and each gets back its page id; with ids, each is the document of its id.
        """
        return _adding.add_documents(self._writable(), documents, ids)

    @classmethod
    def from_paths(
        cls,
        paths: str | os.PathLike | Iterable[str | os.PathLike],
        index_path: str | os.PathLike,
        *,
        encoder: Any = None,
        metadata: Mapping[str, Any] | None = None,
        skip_errors: bool = False,
        k: int = 4,
        filter: dict[str, Any] | None = None,
        include_image: bool = False,
        **create_kwargs: Any,
    ) -> SAPRetriever:
        """Index files into the index at ``index_path`` (created with ``encoder`` if missing); return a retriever.

        Args:
            paths: PDFs, images, or folders of them.
            index_path: where the index lives.
            encoder: a ``sap_rag.PageEncoder`` or a model spec (``"vidore/colqwen2-v1.0"``,
                ``"tiny:colqwen2"``); needed only when the index does not exist yet.
            metadata, skip_errors: as in :meth:`add_paths`.
            k, filter, include_image: the retriever's fields.
            create_kwargs: passed to ``SAPIndex.create`` (``keep_ratio``...).

        The files are indexed with the index open for writing; the retriever returned holds it
        read-only (as one given ``index=index_path``), so other retrievers and processes can search it.
        """
        if filter is not None:
            parse_filter(filter)  # refused before anything is written
        index = open_or_create_index(index_path, encoder=encoder, **create_kwargs)
        try:
            index_paths(
                index,
                [paths] if isinstance(paths, (str, os.PathLike)) else paths,
                metadata=metadata,
                skip_errors=skip_errors,
            )
            reopen = {"encoder": _loaded_encoder(index)} if _loaded_encoder(index) is not None else {}
            if create_kwargs.get("pruner") is not None:
                reopen["pruner"] = create_kwargs["pruner"]
        finally:
            index.close()  # the retriever reopens it read-only
        return cls(index=index_path, k=k, filter=filter, include_image=include_image, open_kwargs=reopen)
