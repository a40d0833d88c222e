"""LlamaIndex documents and nodes -> the pages to write (read and checked; nothing is written here).

Shared by :class:`VisualDocumentIndexer` and :class:`SAPPageStore`. A document is read from:

- page documents from :class:`SAPPageReader` (image + ``file_hash``/``page_number`` metadata):
  the pages of one file are regrouped into one index document (the file's content hash);
- any other image (``ImageDocument(image=...)`` / ``image_path``, ``ImageNode``): one page,
  whose id is the image's content hash;
- else its ``file_path`` metadata (a PDF or image): every page of the file, read once per call.

Chunks of one document (a node parser such as ``SentenceSplitter`` ran before, as
``VectorStoreIndex.from_documents`` does) are one page again: the nodes sharing a source document
and an image become one node whose text is the chunks rejoined (their overlaps removed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_index.core.schema import BaseNode, ImageNode
from llama_index.core.utils import get_tqdm_iterable

from sap_rag.errors import InvalidInputError, UnreadableInputError

from ._core import PageBatch, decode_base64, docs_by_ref, file_batch, image_batch, write_batch
from .nodes import EXCLUDED_EMBED_KEY, EXCLUDED_LLM_KEY
from .reader import PAGE_KEYS

logger = logging.getLogger(__name__)

__all__ = ["FILE_PATH_KEY", "Loaded", "load_batches", "merge_chunks", "rejoin", "write_all"]

FILE_PATH_KEY = "file_path"
"""Metadata key read as the path of a PDF or image (as ``SimpleDirectoryReader`` sets it)."""

MIN_OVERLAP = 8
"""Shortest overlap between consecutive chunks taken as the splitter's (shorter ones are chance)."""


@dataclass
class Loaded:
    """One document to write: the input nodes it came from and the pages read from them."""

    sources: list[BaseNode]
    batch: PageBatch
    inputs: list[list[str]]
    """Per source node, the ids of the input nodes (chunks) it stands for."""


def _path_key(path: str | os.PathLike) -> str:
    try:
        return os.fspath(Path(path).resolve())
    except OSError:
        return os.fspath(path)


def label(node: BaseNode) -> str:
    file_path = (node.metadata or {}).get(FILE_PATH_KEY)
    return f"document {node.node_id}" + (f" ({file_path})" if file_path else "")


def image_of(node: BaseNode) -> bytes | str | None:
    """The image a node carries: its bytes (decoded from base64) or its file path; None if none."""
    resource = getattr(node, "image_resource", None)
    if resource is not None:
        if resource.data is not None:
            return decode_base64(resource.data, label(node))
        if resource.path is not None:
            return os.fspath(resource.path)
        if resource.url is not None:
            raise UnreadableInputError(
                f"{label(node)}: image URLs are not fetched ({resource.url}); download the image and pass its "
                "path or bytes"
            )
        return None
    if isinstance(node, ImageNode):
        if node.image:
            return decode_base64(node.image, label(node))
        return node.image_path or None
    return None


def _image_key(node: BaseNode) -> str | None:
    """What tells two chunks' images apart without decoding them."""
    resource = getattr(node, "image_resource", None)
    if resource is not None:
        data = resource.data.decode("ascii", "replace") if isinstance(resource.data, bytes) else resource.data
        return data or (os.fspath(resource.path) if resource.path else None) or resource.url
    if isinstance(node, ImageNode):
        return node.image or node.image_path or node.image_url
    return None


def text_of(node: BaseNode) -> str:
    return getattr(node, "text", "") or ""


def excluded(node: BaseNode) -> dict[str, Any]:
    return {
        EXCLUDED_LLM_KEY: list(node.excluded_llm_metadata_keys),
        EXCLUDED_EMBED_KEY: list(node.excluded_embed_metadata_keys),
    }


def _overlap(tail: str, head: str) -> int:
    """Length of the longest suffix of ``tail`` that is a prefix of ``head`` (KMP prefix function)."""
    probe = head + "\0" + tail[-len(head) :]
    pi = [0] * len(probe)
    for i in range(1, len(probe)):
        j = pi[i - 1]
        while j and probe[i] != probe[j]:
            j = pi[j - 1]
        if probe[i] == probe[j]:
            j += 1
        pi[i] = j
    return pi[-1]


def rejoin(chunks: Sequence[str]) -> str:
    """The text split into ``chunks`` (in order), each overlap with the previous chunk kept once.

    >>> rejoin(["The revenue was 12 million", "12 million in 2023"])
    'The revenue was 12 million in 2023'
    """
    text = ""
    for chunk in chunks:
        if not chunk:
            continue
        if not text:
            text = chunk
            continue
        if chunk in text[-2 * len(chunk) :]:
            continue  # a chunk inside the previous one (a splitter's tiny tail)
        k = _overlap(text, chunk)
        text = text + chunk[k:] if k >= min(MIN_OVERLAP, len(chunk)) else f"{text} {chunk}"
    return text


def merge_chunks(nodes: Sequence[BaseNode]) -> list[tuple[BaseNode, list[str]]]:
    """The input nodes with the chunks of each page document made one node again, in input order.

    Nodes with the same source document (``ref_doc_id``) and the same image (or, without one, the
    same ``file_path``) are chunks of one page: they become one node with the source document's id
    and metadata and the chunks' text rejoined. Returns ``(node, ids of the input nodes it stands for)``.
    """
    groups: dict[tuple[str, str | None], list[BaseNode]] = {}
    order: list[tuple[str, str | None] | BaseNode] = []
    for node in nodes:
        ref = node.ref_doc_id if node.source_node is not None else None
        if ref is None:
            order.append(node)
            continue
        key = (ref, _image_key(node) or (node.metadata or {}).get(FILE_PATH_KEY))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(node)
    out: list[tuple[BaseNode, list[str]]] = []
    for item in order:
        if isinstance(item, BaseNode):
            out.append((item, [item.node_id]))
            continue
        chunks = groups[item]
        if len(chunks) > 1:
            logger.debug("document %s: %d chunks are one page", item[0], len(chunks))
        ordered = sorted(chunks, key=lambda n: n.start_char_idx if n.start_char_idx is not None else 0)
        first = chunks[0]
        merged = first.model_copy(
            update={"id_": item[0], "text": rejoin([text_of(n) for n in ordered]), "relationships": {}}
        )
        out.append((merged, [n.node_id for n in chunks]))
    return out


def _page_group(nodes: list[BaseNode]) -> PageBatch:
    """Pages of one file from :class:`SAPPageReader`, in page order, as one document."""
    first = nodes[0].metadata
    where = f"{first[FILE_PATH_KEY]} (pages from SAPPageReader)"
    by_number = {int(n.metadata["page_number"]): n for n in nodes}
    total = int(first["total_pages"])
    if sorted(by_number) != list(range(1, total + 1)) or len(nodes) != total:
        raise InvalidInputError(
            f"{where}: got pages {sorted(int(n.metadata['page_number']) for n in nodes)} of {total}; "
            "a file is indexed as a whole: pass every page document SAPPageReader made for it"
        )
    ordered = [by_number[i] for i in range(1, total + 1)]
    metadata = {k: v for k, v in first.items() if k not in PAGE_KEYS}
    source = _path_key(first[FILE_PATH_KEY])
    metadata.update(filename=Path(source).name, **excluded(nodes[0]))
    images = [image_of(n) for n in ordered]
    return image_batch(
        [i for i in images if i is not None],
        [text_of(n) for n in ordered],
        metadata,
        [n.node_id for n in ordered],
        where,
        doc_id=str(first["file_hash"]),
        source=source,
    )


def _load(node: BaseNode, seen_files: dict[str, str]) -> PageBatch | None:
    """Read one document (see the module docstring); None for a file already read in this call."""
    metadata = dict(node.metadata or {})
    image = image_of(node)
    if image is not None:
        return image_batch([image], [text_of(node)], {**metadata, **excluded(node)}, [node.node_id], label(node))
    file_path = metadata.get(FILE_PATH_KEY) or None
    if file_path is None:
        raise UnreadableInputError(
            f"{label(node)} points at no page: give it a 'file_path' in its metadata (a PDF or an image), "
            "or make it an ImageDocument with image bytes or an image_path"
        )
    key = _path_key(file_path)
    if key in seen_files:
        logger.debug("%s: %s already read for %s", node.node_id, file_path, seen_files[key])
        return None
    seen_files[key] = node.node_id
    return file_batch(file_path, {**metadata, **excluded(node)}, node.node_id, label(node))


def load_batches(nodes: Sequence[BaseNode], *, skip_errors: bool = False, show_progress: bool = False) -> list[Loaded]:
    """Every document read and checked (nothing written), in input order.

    Raises:
        sap_rag.UnreadableInputError: a document cannot be read (unless ``skip_errors``: logged, skipped).
        sap_rag.InvalidInputError: bad metadata, or only some pages of a file from ``SAPPageReader``.
    """
    slots: list[Loaded | str] = []
    groups: dict[str, list[tuple[BaseNode, list[str]]]] = {}
    seen_files: dict[str, str] = {}
    for node, inputs in get_tqdm_iterable(merge_chunks(nodes), show_progress, "Reading pages"):
        try:
            if all(k in (node.metadata or {}) for k in PAGE_KEYS) and image_of(node) is not None:
                key = str(node.metadata["file_hash"])
                if key not in groups:
                    groups[key] = []
                    slots.append(key)
                groups[key].append((node, inputs))
                continue
            batch = _load(node, seen_files)
        except UnreadableInputError as exc:
            if not skip_errors:
                raise
            logger.warning("skipping %s", exc)
            continue
        if batch is not None:
            slots.append(Loaded([node], batch, [inputs]))
    loaded: list[Loaded] = []
    for slot in slots:
        if not isinstance(slot, str):
            loaded.append(slot)
            continue
        members = groups[slot]
        try:
            batch = _page_group([node for node, _ in members])
        except UnreadableInputError as exc:
            if not skip_errors:
                raise
            logger.warning("skipping %s", exc)
            continue
        by_number = sorted(members, key=lambda m: int(m[0].metadata["page_number"]))
        loaded.append(Loaded([n for n, _ in by_number], batch, [i for _, i in by_number]))
    return loaded


def write_all(index: Any, loaded: Sequence[Loaded], show_progress: bool = False) -> list[Any]:
    """Write each loaded document (see :func:`~._core.write_batch`: what it replaces goes, an unchanged
    one is not re-encoded); returns their ``DocumentInfo``, in order."""
    previous = docs_by_ref(index, [ref for item in loaded for ref in item.batch.ref_doc_ids])
    infos = []
    for item in get_tqdm_iterable(loaded, show_progress, "Indexing pages"):
        before = {doc for ref in item.batch.ref_doc_ids for doc in previous.get(ref, [])}
        infos.append(write_batch(index, item.batch, before))
    return infos
