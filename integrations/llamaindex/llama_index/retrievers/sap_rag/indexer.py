"""VisualDocumentIndexer: a LlamaIndex ``NodeParser`` that indexes pages into a ``SAPIndex``."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, ImageNode, NodeRelationship
from llama_index.core.utils import get_tqdm_iterable
from pydantic import Field

from sap_rag.errors import InvalidInputError, UnreadableInputError
from sap_rag.ingest import Document

from ._core import add_to_index, load_source, node_id, open_index

logger = logging.getLogger(__name__)

__all__ = ["VisualDocumentIndexer"]

FILE_PATH_KEY = "file_path"
"""Metadata key read as the path of a PDF or image (as ``SimpleDirectoryReader`` sets it)."""


def _path_key(path: str | os.PathLike) -> str:
    try:
        return os.fspath(Path(path).resolve())
    except OSError:
        return os.fspath(path)


class VisualDocumentIndexer(NodeParser):
    """Turn documents that point at PDFs or images into one ``ImageNode`` per page, indexing the pages.

    Works alone (``get_nodes_from_documents`` / ``aget_nodes_from_documents``) and as a
    transformation of an ``IngestionPipeline``. A document is read from, in this order:

    - its image bytes (``ImageDocument(image=...)``, or any node's ``image_resource.data``);
    - its image path (``ImageDocument(image_path=...)``, ``ImageNode.image_path``);
    - its ``file_path`` metadata (a PDF or an image, as ``SimpleDirectoryReader`` sets it).

    Several documents naming the same file (a reader that splits a PDF per page) index it once: the
    first of them gets the nodes. Each page's pruned anchors go into ``index`` (a ``SAPIndex``);
    the nodes carry the stored page image (``image_path``), the page number, the index's
    ``doc_id`` (a content hash, so re-indexing the same file replaces it rather than duplicating it),
    the document's metadata, and a ``SOURCE`` relationship to the input document.

    Every document is read before anything is written, so an unreadable one fails the call (with
    ``sap_rag.UnreadableInputError`` naming it) and leaves the index untouched, unless
    ``skip_errors=True``, which logs and skips it.

    Args:
        index: a ``SAPIndex`` (share one object between indexer and retriever: an index can be open
            only once at a time), or the path of an existing one.
        skip_errors: skip unreadable documents instead of failing.

    Note:
        ``IngestionPipeline`` caches a transformation's output by the text and metadata of its
        input. Image documents with neither (bare image bytes) look alike to that cache: give them
        distinguishing metadata, or build the pipeline with ``disable_cache=True``.
    """

    index: Any = Field(exclude=True, description="The SAPIndex that receives the pages.")
    skip_errors: bool = Field(default=False, description="Log and skip unreadable documents instead of raising.")

    def __init__(self, index: Any, **kwargs: Any) -> None:
        super().__init__(index=open_index(index), **kwargs)

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

    def as_retriever(self, **kwargs: Any) -> Any:
        """A :class:`SAPRetriever` over the same index (``similarity_top_k``, ``filters``...)."""
        from .retriever import SAPRetriever

        return SAPRetriever(index=self.index, **kwargs)

    # --- reading -------------------------------------------------------------------------

    def _load(self, node: BaseNode) -> Document:
        """Read the pages ``node`` points at (see the class docstring for the order)."""
        metadata = dict(node.metadata or {})
        image_data = image_path = None
        resource = getattr(node, "image_resource", None)
        if resource is not None:
            image_data, image_path = resource.data, resource.path
            if image_data is None and image_path is None and resource.url is not None:
                raise UnreadableInputError(
                    f"document {node.node_id}: image URLs are not fetched ({resource.url}); "
                    "download the image and pass its path or bytes"
                )
        elif isinstance(node, ImageNode):
            image_data = node.image.encode() if node.image else None
            image_path = node.image_path
        file_path = metadata.get(FILE_PATH_KEY) or None
        return load_source(
            image_data=image_data,
            image_path=image_path,
            file_path=file_path,
            metadata=metadata,
            label=f"document {node.node_id}" + (f" ({file_path})" if file_path else ""),
        )

    def _load_all(self, nodes: Sequence[BaseNode], show_progress: bool) -> list[tuple[BaseNode, Document]]:
        loaded: list[tuple[BaseNode, Document]] = []
        seen_files: dict[str, str] = {}
        for node in get_tqdm_iterable(nodes, show_progress, "Reading pages"):
            file_path = (node.metadata or {}).get(FILE_PATH_KEY)
            has_image = getattr(node, "image_resource", None) is not None or (
                isinstance(node, ImageNode) and bool(node.image or node.image_path)
            )
            if file_path and not has_image:
                key = _path_key(file_path)
                if key in seen_files:
                    logger.debug("%s: %s already read for %s", node.node_id, file_path, seen_files[key])
                    continue
                seen_files[key] = node.node_id
            try:
                loaded.append((node, self._load(node)))
            except UnreadableInputError as exc:
                if not self.skip_errors:
                    raise
                logger.warning("skipping %s", exc)
        return loaded

    # --- NodeParser ----------------------------------------------------------------------

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        """Index every document's pages; return one ``ImageNode`` per page, in document order."""
        loaded = self._load_all(nodes, show_progress)
        out: list[BaseNode] = []
        for source, document in get_tqdm_iterable(loaded, show_progress, "Indexing pages"):
            info = add_to_index(self.index, document)
            for page_number, image_path in enumerate(info.image_paths, start=1):
                page = ImageNode(
                    id_=node_id(info.doc_id, page_number),
                    text="",
                    image_path=os.fspath(image_path) if image_path is not None else None,
                    metadata={**info.metadata, "doc_id": info.doc_id, "page_number": page_number},
                    excluded_embed_metadata_keys=list(source.excluded_embed_metadata_keys),
                    excluded_llm_metadata_keys=list(source.excluded_llm_metadata_keys),
                )
                page.relationships[NodeRelationship.SOURCE] = source.as_related_node_info()
                out.append(page)
        logger.info("indexed %d pages from %d documents", len(out), len(loaded))
        return out

    async def _aparse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        """As :meth:`_parse_nodes`, in a worker thread so the event loop keeps running."""
        return await asyncio.to_thread(self._parse_nodes, nodes, show_progress, **kwargs)
