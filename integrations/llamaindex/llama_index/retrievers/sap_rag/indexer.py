"""VisualDocumentIndexer: a LlamaIndex ``NodeParser`` that indexes pages into a ``SAPIndex``."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, ImageNode, NodeRelationship
from llama_index.core.utils import get_tqdm_iterable
from pydantic import Field, PrivateAttr

from sap_rag.errors import InvalidInputError, UnreadableInputError

from ._core import (
    PageBatch,
    decode_base64,
    delete_ref_docs,
    docs_by_ref,
    file_batch,
    image_batch,
    open_index,
    write_batch,
)
from .nodes import EXCLUDED_EMBED_KEY, EXCLUDED_LLM_KEY, page_node
from .reader import PAGE_KEYS

logger = logging.getLogger(__name__)

__all__ = ["VisualDocumentIndexer"]

FILE_PATH_KEY = "file_path"
"""Metadata key read as the path of a PDF or image (as ``SimpleDirectoryReader`` sets it)."""


def _path_key(path: str | os.PathLike) -> str:
    try:
        return os.fspath(Path(path).resolve())
    except OSError:
        return os.fspath(path)


def _label(node: BaseNode) -> str:
    file_path = (node.metadata or {}).get(FILE_PATH_KEY)
    return f"document {node.node_id}" + (f" ({file_path})" if file_path else "")


def _image_of(node: BaseNode) -> bytes | str | None:
    """The image a node carries: its bytes (decoded from base64) or its file path; None if none."""
    resource = getattr(node, "image_resource", None)
    if resource is not None:
        if resource.data is not None:
            return decode_base64(resource.data, _label(node))
        if resource.path is not None:
            return os.fspath(resource.path)
        if resource.url is not None:
            raise UnreadableInputError(
                f"{_label(node)}: image URLs are not fetched ({resource.url}); download the image and pass its "
                "path or bytes"
            )
        return None
    if isinstance(node, ImageNode):
        if node.image:
            return decode_base64(node.image, _label(node))
        return node.image_path or None
    return None


def _text_of(node: BaseNode) -> str:
    return getattr(node, "text", "") or ""


def _excluded(node: BaseNode) -> dict[str, Any]:
    return {
        EXCLUDED_LLM_KEY: list(node.excluded_llm_metadata_keys),
        EXCLUDED_EMBED_KEY: list(node.excluded_embed_metadata_keys),
    }


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
        opened, owned = open_index(index)
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

    # --- reading -------------------------------------------------------------------------

    def _page_group(self, nodes: list[BaseNode]) -> PageBatch:
        """Pages of one file from :class:`SAPPageReader`, in page order, as one document."""
        first = nodes[0].metadata
        label = f"{first[FILE_PATH_KEY]} (pages from SAPPageReader)"
        by_number = {int(n.metadata["page_number"]): n for n in nodes}
        total = int(first["total_pages"])
        if sorted(by_number) != list(range(1, total + 1)) or len(nodes) != total:
            raise InvalidInputError(
                f"{label}: got pages {sorted(int(n.metadata['page_number']) for n in nodes)} of {total}; "
                "a file is indexed as a whole: pass every page document SAPPageReader made for it"
            )
        ordered = [by_number[i] for i in range(1, total + 1)]
        metadata = {k: v for k, v in first.items() if k not in PAGE_KEYS}
        source = _path_key(first[FILE_PATH_KEY])
        metadata.update(filename=Path(source).name, **_excluded(nodes[0]))
        images = [_image_of(n) for n in ordered]
        return image_batch(
            [i for i in images if i is not None],
            [_text_of(n) for n in ordered],
            metadata,
            [n.node_id for n in ordered],
            label,
            doc_id=str(first["file_hash"]),
            source=source,
        )

    def _load(self, node: BaseNode, seen_files: dict[str, str]) -> PageBatch | None:
        """Read one document (see the class docstring); None for a file already read in this call."""
        metadata = dict(node.metadata or {})
        image = _image_of(node)
        if image is not None:
            return image_batch([image], [_text_of(node)], {**metadata, **_excluded(node)}, [node.node_id], _label(node))
        file_path = metadata.get(FILE_PATH_KEY) or None
        if file_path is None:
            raise UnreadableInputError(
                f"{_label(node)} points at no page: give it a 'file_path' in its metadata (a PDF or an image), "
                "or make it an ImageDocument with image bytes or an image_path"
            )
        key = _path_key(file_path)
        if key in seen_files:
            logger.debug("%s: %s already read for %s", node.node_id, file_path, seen_files[key])
            return None
        seen_files[key] = node.node_id
        return file_batch(file_path, {**metadata, **_excluded(node)}, node.node_id, _label(node))

    def _load_all(self, nodes: Sequence[BaseNode], show_progress: bool) -> list[tuple[list[BaseNode], PageBatch]]:
        """Every document read and checked (nothing written): ``(source nodes, batch)`` in input order."""
        slots: list[tuple[list[BaseNode], PageBatch] | str] = []
        groups: dict[str, list[BaseNode]] = {}
        seen_files: dict[str, str] = {}
        for node in get_tqdm_iterable(nodes, show_progress, "Reading pages"):
            try:
                is_page = all(k in (node.metadata or {}) for k in PAGE_KEYS) and _image_of(node) is not None
                if is_page:
                    key = str(node.metadata["file_hash"])
                    if key not in groups:
                        groups[key] = []
                        slots.append(key)
                    groups[key].append(node)
                    continue
                batch = self._load(node, seen_files)
            except UnreadableInputError as exc:
                if not self.skip_errors:
                    raise
                logger.warning("skipping %s", exc)
                continue
            if batch is not None:
                slots.append(([node], batch))
        loaded = []
        for slot in slots:
            if isinstance(slot, str):
                try:
                    loaded.append((groups[slot], self._page_group(groups[slot])))
                except UnreadableInputError as exc:
                    if not self.skip_errors:
                        raise
                    logger.warning("skipping %s", exc)
            else:
                loaded.append(slot)
        return loaded

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
        loaded = self._load_all(nodes, show_progress)
        previous = docs_by_ref(self.index, [ref for _, batch in loaded for ref in batch.ref_doc_ids])
        out: list[BaseNode] = []
        for sources, batch in get_tqdm_iterable(loaded, show_progress, "Indexing pages"):
            before = {doc for ref in batch.ref_doc_ids for doc in previous.get(ref, [])}
            info = write_batch(self.index, batch, before)
            out.extend(self._nodes(info, sources))
        logger.info("indexed %d pages from %d documents", len(out), len(loaded))
        return out

    async def _aparse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        """As :meth:`_parse_nodes`, in a worker thread so the event loop keeps running."""
        return await asyncio.to_thread(self._parse_nodes, nodes, show_progress, **kwargs)
