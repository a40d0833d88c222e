"""SAPRetriever: a LangChain ``BaseRetriever`` over a ``SAPIndex``."""

from __future__ import annotations

import base64
import logging
import mimetypes
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field

from sap_rag.errors import InvalidInputError
from sap_rag.index import parse_filter

from ._core import index_paths, open_index, open_or_create_index

logger = logging.getLogger(__name__)

__all__ = ["PATH_METADATA_KEYS", "SAPRetriever", "hit_to_document"]

PATH_METADATA_KEYS = ("source", "file_path")
"""Metadata keys read, in this order, as the file a LangChain ``Document`` came from (loaders set ``source``)."""


def _mime_type(path: str | os.PathLike) -> str:
    return mimetypes.guess_type(os.fspath(path))[0] or "image/png"


def hit_to_document(hit: Any, *, include_image: bool = False) -> Document:
    """One ``SAPIndex`` search hit as a LangChain ``Document``.

    ``page_content`` is empty (the page is an image); ``metadata`` is the document's metadata plus
    ``doc_id``, ``page_number``, ``score`` and ``image_path`` (str, or None for a page stored
    without an image), and with ``include_image`` also ``image_base64`` and ``mime_type``.
    """
    image_path = os.fspath(hit.image_path) if hit.image_path is not None else None
    metadata = {
        **(hit.metadata or {}),
        "doc_id": hit.doc_id,
        "page_number": hit.page_number,
        "score": float(hit.score),
        "image_path": image_path,
    }
    if include_image and image_path is not None:
        metadata["image_base64"] = base64.b64encode(Path(image_path).read_bytes()).decode("ascii")
        metadata["mime_type"] = _mime_type(image_path)
    return Document(page_content="", metadata=metadata, id=f"{hit.doc_id}:p{hit.page_number}")


def _common_metadata(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The key/value pairs all of ``items`` agree on (per-file keys survive, per-page ones drop out)."""
    first = dict(items[0])
    return {key: value for key, value in first.items() if all(key in m and m[key] == value for m in items[1:])}


class SAPRetriever(BaseRetriever):
    """Retrieve page images from a ``SAPIndex`` (MaxSim over SAP-pruned ColPali-family anchors).

    Returns ``Document``\\ s with empty ``page_content`` whose ``metadata`` carries ``image_path``,
    ``doc_id``, ``page_number``, ``score`` and the document's metadata (and, with
    ``include_image=True``, ``image_base64`` and ``mime_type``). Per call, ``k``, ``filter`` and
    ``include_image`` override the fields: ``retriever.invoke("revenue 2023?", k=1)``.

    Build one from an index (``SAPRetriever(index=SAPIndex.open(path))``, or ``index=path``), or
    from files in one step with :meth:`from_paths`. :meth:`add_paths` and :meth:`add_documents` index
    more files through the retriever.

    Attributes:
        index: the ``SAPIndex`` searched (a path is opened with ``SAPIndex.open``).
        k: pages per query.
        filter: ``SAPIndex`` filter: payload key -> value or list of values (any of), all keys
            required; keys are ``doc_id``, ``page_number`` or document metadata keys.
        include_image: add each page's image as base64 to its metadata.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any = Field(description="The SAPIndex searched, or the path of one.")
    k: int = Field(default=4, ge=1, description="Pages per query.")
    filter: dict[str, Any] | None = Field(default=None, description="SAPIndex filter dict.")
    include_image: bool = Field(default=False, description="Add image_base64 and mime_type to the metadata.")

    def __init__(self, **kwargs: Any) -> None:
        # Opened before pydantic validates, so the core's errors reach the caller as they are
        # (pydantic would wrap them in a ValidationError).
        if "index" in kwargs:
            kwargs["index"] = open_index(kwargs["index"])
        if kwargs.get("filter") is not None:
            parse_filter(kwargs["filter"])  # a bad filter fails here, not at the first query
        super().__init__(**kwargs)

    # --- retrieval -----------------------------------------------------------------------

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: dict[str, Any] | None = None,
        include_image: bool | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        if kwargs:
            raise InvalidInputError(
                f"SAPRetriever got unknown arguments {sorted(kwargs)}; per call it takes k, filter and include_image"
            )
        hits = self.index.search(
            query,
            k=self.k if k is None else k,
            filter=self.filter if filter is None else filter,
        )
        with_image = self.include_image if include_image is None else include_image
        return [hit_to_document(hit, include_image=with_image) for hit in hits]

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
        return index_paths(self.index, paths, metadata=metadata, skip_errors=skip_errors)

    def add_documents(self, documents: Sequence[Document], *, skip_errors: bool = False) -> list[str]:
        """Index the files that LangChain ``Document``\\ s come from; return the doc ids, one per file.

        A document names its file in ``metadata["source"]`` (what LangChain's loaders set) or
        ``metadata["file_path"]``. Documents naming the same file (a loader's pages) index it once,
        with the metadata they all agree on.
        """
        groups: dict[str, list[Mapping[str, Any]]] = {}
        for number, document in enumerate(documents):
            meta = document.metadata or {}
            path = next((meta[key] for key in PATH_METADATA_KEYS if meta.get(key)), None)
            if path is None:
                raise InvalidInputError(
                    f"document {number} (id={document.id!r}) names no file: set metadata['source'] to the path "
                    "of a PDF or image"
                )
            groups.setdefault(os.fspath(path), []).append(meta)
        per_file = {path: _common_metadata(metas) for path, metas in groups.items()}
        return index_paths(self.index, list(groups), per_file_metadata=per_file, skip_errors=skip_errors)

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
        """
        if isinstance(encoder, str):
            from sap_rag import load_encoder

            encoder = load_encoder(encoder)
        index = open_or_create_index(index_path, encoder=encoder, **create_kwargs)
        try:
            retriever = cls(index=index, k=k, filter=filter, include_image=include_image)
            retriever.add_paths(paths, metadata=metadata, skip_errors=skip_errors)
        except BaseException:
            index.close()  # release the index's lock: the caller never got hold of it
            raise
        return retriever
