"""LangChain ``Document``\\ s -> pages written to a ``SAPIndex`` (what ``SAPVectorStore.add_documents`` does).

Two cases, by whether the caller gives ids (``ids=...`` or ``Document.id``; LangChain's indexing API
always does):

- **Without ids**, Documents naming the same file (a PDF loader's pages) index that file as one
  document, exactly as ``SAPIndex.add_documents`` does for a path: its id is a hash of the file's
  content, so adding it again is a no-op and a changed file replaces its old pages. Each Document
  gets back the id of the page it names (``<doc_id>:p<n>``), or the document id when it names no page.
- **With ids**, each Document is one document under that id holding the page it names (or every
  page of its file): adding the id again replaces it (an upsert), and ``delete([id])`` removes it.
  The page text is the Document's ``page_content`` where it has one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from sap_rag.errors import InvalidInputError, UnreadableInputError

from ._core import index_paths
from .documents import PAGE_METADATA_KEYS, PageRef, page_ref

__all__ = ["add_documents"]

# Keys a retrieved Document carries that describe the hit, not the document: never stored.
_DROPPED_KEYS = (*PAGE_METADATA_KEYS, "image_base64", "mime_type")


def _common_metadata(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The key/value pairs all of ``items`` agree on (per-file keys survive, per-page ones drop out)."""
    first = dict(items[0])
    return {key: value for key, value in first.items() if all(key in m and m[key] == value for m in items[1:])}


def _stored_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metadata.items() if key not in _DROPPED_KEYS and key != "source"}


def _resolve_ids(documents: Sequence[Document], ids: Sequence[str | None] | None) -> list[str | None]:
    if ids is None:
        return [d.id if isinstance(d, Document) and d.id else None for d in documents]
    ids = list(ids)
    if len(ids) != len(documents):
        raise InvalidInputError(f"got {len(documents)} documents but {len(ids)} ids; give one id per document")
    for item in ids:
        if item is not None and (not isinstance(item, str) or not item):
            raise InvalidInputError(f"ids must be non-empty strings, got {item!r}")
    duplicates = sorted({i for i in ids if i is not None and ids.count(i) > 1})
    if duplicates:
        raise InvalidInputError(f"ids {duplicates} are given more than once; each document needs its own id")
    return list(ids)


class _Files:
    """Each file read once per call (a loader's 50 pages of one PDF render it once)."""

    def __init__(self) -> None:
        self._cache: dict[Path, Any] = {}

    def load(self, path: Path) -> Any:
        from sap_rag.ingest.documents import load_document

        key = path.resolve()
        if key not in self._cache:
            self._cache[key] = load_document(path)
        return self._cache[key]


def _pages_of(ref: PageRef, loaded: Any) -> list[Any]:
    if ref.page is None:
        return list(loaded.pages)
    if ref.page > loaded.num_pages:
        raise UnreadableInputError(
            f"{ref.path}: metadata['page'] is {ref.page - 1} (0-based) but the file has {loaded.num_pages} page(s)"
        )
    return [loaded.pages[ref.page - 1]]


def _texts(ref: PageRef, num_pages: int) -> list[str | None]:
    """The page text: the Document's ``page_content`` for the one page it names (or its file's only
    page), else the PDF text layer (None where there is none: the index labels the page)."""
    if ref.text.strip() and (ref.page is not None or num_pages == 1):
        return [ref.text]
    from sap_rag.ingest.text import is_pdf, pdf_page_texts

    if not is_pdf(ref.path):
        return [None] * num_pages
    layer = [t or None for t in pdf_page_texts(ref.path)]
    return layer if ref.page is None else [layer[ref.page - 1]]


def add_documents(index: Any, documents: Sequence[Document], ids: Sequence[str | None] | None) -> list[str]:
    """Index what ``documents`` name (see the module docstring); return one id per Document.

    Every file is read and every Document checked before anything is written.
    """
    if isinstance(documents, Document) or not isinstance(documents, Sequence):
        raise InvalidInputError(f"documents must be a list of Documents, got {type(documents).__name__}")
    given = _resolve_ids(documents, ids)
    refs = [page_ref(d, f"document {i}") for i, d in enumerate(documents)]
    files = _Files()
    # Pass 1: read every file and check the metadata, so a bad Document is found before any write.
    from sap_rag.index import validate_metadata

    for i, ref in enumerate(refs):
        loaded = files.load(ref.path)
        _pages_of(ref, loaded)
        try:
            validate_metadata(_stored_metadata(ref.metadata))
        except InvalidInputError as exc:
            raise InvalidInputError(f"document {i} ({ref.path}): {exc}") from exc

    out: list[str | None] = [None] * len(documents)
    # Without ids: one document per file, as SAPIndex.add_documents indexes a path.
    by_file: dict[Path, list[int]] = {}
    for i, (ref, doc_id) in enumerate(zip(refs, given)):
        if doc_id is None:
            by_file.setdefault(ref.path.resolve(), []).append(i)
    if by_file:
        per_file = {
            os.fspath(path): _common_metadata([_stored_metadata(refs[i].metadata) for i in members])
            for path, members in by_file.items()
        }
        doc_ids = index_paths(index, list(per_file), per_file_metadata=per_file)
        from sap_rag import page_id

        for doc_id, members in zip(doc_ids, by_file.values()):
            for i in members:
                out[i] = doc_id if refs[i].page is None else page_id(doc_id, refs[i].page)
    # With ids: each Document is its own document under its id (re-adding the id replaces it).
    for i, (ref, doc_id) in enumerate(zip(refs, given)):
        if doc_id is None:
            continue
        loaded = files.load(ref.path)
        pages = _pages_of(ref, loaded)
        metadata = {**_stored_metadata(ref.metadata), "source": loaded.source, "filename": ref.path.name}
        texts = _texts(ref, len(pages))
        index.add_images(pages, doc_id=doc_id, metadata=metadata, texts=texts)
        out[i] = doc_id
    return [i for i in out if i is not None]
