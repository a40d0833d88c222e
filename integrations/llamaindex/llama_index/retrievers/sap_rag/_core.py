"""The calls into ``sap_rag`` this package makes, in one place.

Everything that decides anything (reading files, page text, pruning, storing, searching) is
``sap_rag``'s; these helpers pick the entry point and carry LlamaIndex's ids along.
"""

from __future__ import annotations

import base64
import difflib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sap_rag.errors import InvalidInputError, UnreadableInputError
from sap_rag.index.filters import validate_metadata
from sap_rag.ingest import DEFAULT_DPI, content_id, load_document, load_image
from sap_rag.ingest.text import is_pdf, pdf_page_texts

from .nodes import REF_DOC_IDS_KEY

logger = logging.getLogger(__name__)

__all__ = [
    "OPEN_OPTIONS",
    "PageBatch",
    "check_keywords",
    "decode_base64",
    "delete_ref_docs",
    "docs_by_ref",
    "document_page_ids",
    "file_batch",
    "image_batch",
    "index_path",
    "open_index",
    "page_ids_by_doc",
    "page_image",
    "page_nodes",
    "read_file_pages",
    "write_batch",
]

FILE_KEYS = ("file_path",)
"""Input metadata not stored: the file is ``source``; a node's ``file_path`` is its page image."""


OPEN_OPTIONS = ("encoder", "pruner", "client", "qdrant_api_key", "read_only")
"""Keywords passed to ``SAPIndex.open`` when an adapter is given a path."""

ALIASES = {
    "top_k": "similarity_top_k",
    "k": "similarity_top_k",
    "n": "similarity_top_k",
    "filter": "filters",
    "metadata_filters": "filters",
}
"""Keywords other libraries use for what the LlamaIndex adapters call otherwise."""


def check_keywords(
    owner: str, given: Iterable[str], accepted: Iterable[str], elsewhere: dict[str, str] | None = None
) -> None:
    """Refuse keywords ``owner`` does not take, naming the likely intended one.

    ``elsewhere``: keywords that belong to another object, with where to give them.

    Raises:
        InvalidInputError: a keyword is unknown (``top_k`` -> "did you mean 'similarity_top_k'?").
    """
    names = sorted(set(accepted))
    unknown = [key for key in given if key not in names]
    if not unknown:
        return
    key = unknown[0]
    target = ALIASES.get(key, key)
    if elsewhere and target in elsewhere:
        hint = f" ({target} {elsewhere[target]})."
    else:
        guess = target if target in names else None
        if guess is None:
            close = [n for n in names if len(key) > 2 and (n.endswith(key) or key in n)]
            close = close or difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            guess = close[0] if close else None
        hint = f"; did you mean {guess!r}?" if guess else "."
    raise InvalidInputError(
        f"{owner} got an unexpected keyword argument {key!r}{hint} It takes: {', '.join(names) or 'none'}"
    )


def open_index(index: Any, *, owner: str = "the adapter", **open_kwargs: Any) -> tuple[Any, bool]:
    """``(index, owned)``: ``SAPIndex.open(index, **open_kwargs)`` for a path (owned: the adapter
    closes it), else the index object itself, used through its methods (a ``SAPIndex``, a
    ``SAPClient`` from ``sap_rag.connect``, anything with a ``search`` method; its owner closes it).

    Raises:
        InvalidInputError: an unknown open option, open options with an index object, or an
            ``index`` that is neither a path nor has a ``search`` method.
        sap_rag.index.IndexNotFoundError, IndexLockedError...: ``SAPIndex.open``'s errors.
    """
    from sap_rag.index import as_index

    check_keywords(owner, open_kwargs, OPEN_OPTIONS)
    owned = isinstance(index, (str, os.PathLike))
    if open_kwargs and not owned:
        raise InvalidInputError(
            f"{owner} got an index object and open options {sorted(open_kwargs)}: they apply only to an index "
            "given as a path; drop them, or pass the path"
        )
    return as_index(index, hint="", **open_kwargs), owned


def index_path(index: Any) -> str:
    """The index's location for messages (its path, else its repr)."""
    path = getattr(index, "path", None)
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(index)


def document_page_ids(index: Any, doc_id: str) -> list[str] | None:
    """A document's page ids in order, for ``PREVIOUS``/``NEXT`` links; None when the index
    cannot say (no ``document`` method, as on some remote clients) or the document is gone."""
    document = getattr(index, "document", None)
    if not callable(document):
        return None
    try:
        return list(document(doc_id).page_ids)
    except InvalidInputError:  # DocumentNotFoundError: deleted since the search
        return None


def page_ids_by_doc(index: Any, hits: Iterable[Any]) -> dict[str, list[str] | None]:
    """:func:`document_page_ids` for each document of ``hits`` (one lookup per document)."""
    out: dict[str, list[str] | None] = {}
    for hit in hits:
        if hit.doc_id not in out:
            out[hit.doc_id] = document_page_ids(index, hit.doc_id)
    return out


def page_nodes(index: Any, hits: Sequence[Any]) -> list[Any]:
    """Hits as ``ImageNode``s, linked to their neighbouring pages, with the image bytes of remote pages."""
    from .nodes import page_node

    page_ids = page_ids_by_doc(index, hits)
    return [page_node(hit, page_ids[hit.doc_id], page_image(index, hit)) for hit in hits]


def page_image(index: Any, hit: Any) -> bytes | None:
    """The page image bytes of a hit without a local image file, from ``index.page_image(page_id)``
    (a ``SAPClient`` fetches them from its server); None when the index cannot give them."""
    if hit.image_path is not None:
        return None
    fetch = getattr(index, "page_image", None)
    if not callable(fetch):
        return None
    data = fetch(hit.page_id)
    return data if isinstance(data, (bytes, bytearray)) else None


@dataclass
class PageBatch:
    """One index document to write: its pages, their texts, metadata and LlamaIndex document ids."""

    doc_id: str
    pages: list[Any]
    texts: list[str | None] | None
    metadata: dict[str, Any]
    label: str
    source: str | None = None
    ref_doc_ids: list[str] = field(default_factory=list)

    def stored_metadata(self) -> dict[str, Any]:
        return {**self.metadata, REF_DOC_IDS_KEY: list(self.ref_doc_ids)}


def _checked(metadata: dict[str, Any], label: str) -> dict[str, Any]:
    try:
        return validate_metadata({k: v for k, v in metadata.items() if k not in FILE_KEYS})
    except InvalidInputError as exc:
        raise InvalidInputError(f"{label}: {exc}") from exc


def read_file_pages(
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    *,
    dpi: int | None = None,
    password: str | None = None,
) -> tuple[Any, list[str]]:
    """A file's ``sap_rag`` Document (pages decoded, content-hash id, ``source`` = absolute path)
    and its page texts (the PDF text layer; ``""`` for images and pages without one)."""
    document = load_document(Path(path), metadata=metadata, dpi=dpi or DEFAULT_DPI, password=password)
    texts = pdf_page_texts(path, password=password) if is_pdf(path) else [""] * document.num_pages
    return document, texts


def file_batch(path: str | os.PathLike, metadata: dict[str, Any], ref_doc_id: str, label: str) -> PageBatch:
    """Every page of a PDF or image file, as one document (the same id ``add_documents`` gives it)."""
    checked = _checked(metadata, label)
    document, texts = read_file_pages(path, checked)
    return PageBatch(
        doc_id=document.doc_id,
        pages=document.pages,
        texts=list(texts),
        metadata=document.metadata,
        label=label,
        source=document.source,
        ref_doc_ids=[ref_doc_id] * document.num_pages,
    )


def decode_base64(data: bytes | str, label: str) -> bytes:
    """LlamaIndex keeps image bytes base64-encoded."""
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:
        raise UnreadableInputError(f"{label}: the image data is not valid base64 ({exc})") from exc


def _read(path: str | os.PathLike, label: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UnreadableInputError(f"{label}: cannot read the image file {os.fspath(path)} ({exc.strerror})") from exc


def image_batch(
    images: Sequence[bytes | str | os.PathLike],
    texts: Sequence[str | None],
    metadata: dict[str, Any],
    ref_doc_ids: Sequence[str],
    label: str,
    *,
    doc_id: str | None = None,
    source: str | None = None,
) -> PageBatch:
    """Pages given as image bytes or image files (decoded here, so errors surface before writes).

    ``doc_id`` defaults to the content hash of the images, so two different images are two
    documents and the same image is one.
    """
    checked = _checked(metadata, label)
    raw = [item if isinstance(item, bytes) else _read(item, label) for item in images]
    pages = [load_image(data, name=label) for data in raw]
    if doc_id is None:
        doc_id = content_id(b"".join(content_id(data).encode() for data in raw)) if len(raw) > 1 else content_id(raw[0])
    return PageBatch(
        doc_id=doc_id,
        pages=pages,
        texts=[t or None for t in texts],
        metadata=checked if source is None else {**checked, "source": source},
        label=label,
        source=source,
        ref_doc_ids=list(ref_doc_ids),
    )


def _unchanged(index: Any, batch: PageBatch) -> bool:
    """The index holds this document already, with the same metadata (LlamaIndex ids aside)."""
    if batch.doc_id not in index:
        return False
    stored = {k: v for k, v in index.document(batch.doc_id).metadata.items() if k != REF_DOC_IDS_KEY}
    return stored == validate_metadata(batch.metadata)


def docs_by_ref(index: Any, ref_doc_ids: Iterable[str]) -> dict[str, list[str]]:
    """LlamaIndex document id -> index documents holding pages of it (one pass over the registry)."""
    wanted = set(ref_doc_ids)
    found: dict[str, list[str]] = {ref: [] for ref in wanted}
    if not wanted:
        return found
    for doc_id in index.documents():
        refs = index.document(doc_id).metadata.get(REF_DOC_IDS_KEY)
        for ref in set(refs) & wanted if isinstance(refs, list) else ():
            found[ref].append(doc_id)
    return found


def write_batch(index: Any, batch: PageBatch, previous: Iterable[str] = ()) -> Any:
    """Store one document and drop what it replaces; returns its ``DocumentInfo``.

    Replaced: the older versions of its file (same ``source``) and ``previous`` (the index
    documents of its LlamaIndex documents from before). The new version is committed first, so a
    failure leaves the old pages searchable. An unchanged document is not re-encoded.
    """
    if _unchanged(index, batch):
        logger.debug("%s unchanged (%s)", batch.label, batch.doc_id)
        info = index.document(batch.doc_id)
    else:
        logger.debug("indexing %s (%d pages) as %s", batch.label, len(batch.pages), batch.doc_id)
        info = index.add_images(batch.pages, doc_id=batch.doc_id, metadata=batch.stored_metadata(), texts=batch.texts)
    stale = set(previous) | (set(index.documents(source=batch.source)) if batch.source else set())
    for old in sorted(stale - {batch.doc_id}):
        logger.info("%s replaces %s", batch.label, old)
        index.delete(old, missing_ok=True)
    return info


def delete_ref_docs(index: Any, ref_doc_ids: Iterable[str]) -> int:
    """Delete the pages of these LlamaIndex documents (each whole index document holding one of
    them: a file is indexed as a whole); returns the number of pages removed."""
    removed = 0
    targets = {doc for docs in docs_by_ref(index, ref_doc_ids).values() for doc in docs}
    for doc_id in sorted(targets):
        removed += index.delete(doc_id, missing_ok=True)
    return removed
