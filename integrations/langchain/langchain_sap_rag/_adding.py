"""LangChain ``Document``\\ s -> pages written to a ``SAPIndex`` (what ``SAPVectorStore.add_documents`` does).

Two cases, by whether the caller gives ids (``ids=...`` or ``Document.id``; LangChain's indexing API
always does):

- **Without ids** (or with the page id the Document's page gets this way, as ``SAPPageLoader``
  sets), Documents naming the same file index that file as one document, exactly as
  ``SAPIndex.add_documents`` does for a path: its id is a hash of the file's content, so adding it
  again is a no-op and a changed file replaces its old pages. A Document's own ``page_content`` (an
  OCR text, a caption) is the text of the page it names; the file's other pages keep their PDF
  text layer (or a label). Each Document gets back the id of the page it names
  (``<doc_id>:p<n>``; a one-page file's only page when it names none), which is the id it comes
  back with, or the document id when it names every page of a longer file.
- **With ids**, each Document is one document under that id holding the page it names (or every
  page of its file): adding the id again replaces it (an upsert), and ``delete([id])`` removes it.
  The page text is the Document's ``page_content`` where it has one. The page is stored under
  the number it has in its file (``page_numbers``): page 3 of a PDF is ``<id>:p3``, cited,
  filtered and labelled as page 3 by every reader of the index. The document is marked
  (:data:`~.documents.LANGCHAIN_ID_KEY`) so that its pages come back with the id.

Writing a Document with an id or a text of its own goes through ``add_images``, which a remote
``SAPClient`` does not have: over one, such a call is refused with a clear error before anything
is written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from sap_rag.errors import InvalidInputError, UnreadableInputError

from ._core import index_paths
from .documents import LANGCHAIN_ID_KEY, PAGE_METADATA_KEYS, PageRef, page_ref

logger = logging.getLogger(__name__)

__all__ = ["add_documents"]

# Keys a retrieved Document carries that describe the hit, not the document, and the key this
# package keeps for itself: never stored from a Document's metadata.
_DROPPED_KEYS = (*PAGE_METADATA_KEYS, "image_base64", "mime_type", LANGCHAIN_ID_KEY, "langchain_page")

# Keys about one page: not kept as a whole file's metadata (a file's pages differ in them).
_PAGE_KEYS = ("page", "page_label")


def _common_metadata(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The key/value pairs all of ``items`` agree on (per-file keys survive, per-page ones drop out)."""
    first = dict(items[0])
    return {
        key: value
        for key, value in first.items()
        if key not in _PAGE_KEYS and all(key in m and m[key] == value for m in items[1:])
    }


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
        self._layers: dict[Path, list[str | None]] = {}

    def load(self, path: Path) -> Any:
        from sap_rag.ingest.documents import load_document

        key = path.resolve()
        if key not in self._cache:
            self._cache[key] = load_document(path)
        return self._cache[key]

    def text_layer(self, path: Path) -> list[str | None]:
        """Per page, the PDF text layer (None where there is none, and for an image file)."""
        from sap_rag.ingest.text import is_pdf, pdf_page_texts

        key = path.resolve()
        if key not in self._layers:
            loaded = self.load(path)
            self._layers[key] = [t or None for t in pdf_page_texts(path)] if is_pdf(path) else [None] * loaded.num_pages
        return self._layers[key]


def _pages_of(ref: PageRef, loaded: Any) -> list[Any]:
    if ref.page is None:
        return list(loaded.pages)
    if ref.page > loaded.num_pages:
        raise UnreadableInputError(
            f"{ref.path}: metadata['page'] is {ref.page - 1} (0-based) but the file has {loaded.num_pages} page(s)"
        )
    return [loaded.pages[ref.page - 1]]


def _given_text(ref: PageRef, num_pages: int) -> str | None:
    """The Document's own text for the one page it names (or its file's only page), if it has one."""
    if ref.text.strip() and (ref.page is not None or num_pages == 1):
        return ref.text
    return None


def _id_texts(ref: PageRef, files: _Files, num_pages: int) -> list[str | None]:
    """Page texts of a Document added with an id: its own text, else the PDF text layer (None: the
    index labels the page by its number, "page 3 of report.pdf")."""
    given = _given_text(ref, num_pages)
    if given is not None:
        return [given]
    layer = files.text_layer(ref.path)
    if ref.page is None:
        return list(layer)
    return [layer[ref.page - 1]]


def _check_add_images(index: Any) -> None:
    """A clear error for an index without ``add_images`` (a remote ``SAPClient``), before any write."""
    if not callable(getattr(index, "add_images", None)):
        raise InvalidInputError(
            f"{type(index).__name__} cannot store a Document's own id or page text (it has no add_images, "
            "as a remote SAPClient has not): add the files without ids or texts, or use a local SAPIndex"
        )


def _add_file_with_texts(
    index: Any, path: Path, loaded: Any, metadata: dict[str, Any], given: dict[int, str], files: _Files
) -> str:
    """Index a file by content hash as ``SAPIndex.add_documents`` does, with ``given`` texts (page
    number -> text) over its text layer. Unchanged (same id, same texts): nothing is written."""
    from sap_rag.index.documents import AddReport, drop_older_versions
    from sap_rag.pipeline.texts import page_texts

    doc_id = loaded.doc_id
    layer = files.text_layer(path)
    texts = [given.get(n) or layer[n - 1] for n in range(1, loaded.num_pages + 1)]
    stored = {"source": loaded.source, "filename": path.name, **metadata}
    if doc_id in index:
        from sap_rag import page_id

        wanted = page_texts(texts, loaded.num_pages, path.name)
        current = index.get_pages([page_id(doc_id, n) for n in range(1, loaded.num_pages + 1)])
        if [p.text if p is not None else None for p in current] == wanted:
            return doc_id
    index.add_images(loaded.pages, doc_id=doc_id, metadata=stored, texts=texts)
    drop_older_versions(index, loaded.source, doc_id, AddReport())
    return doc_id


def add_documents(index: Any, documents: Sequence[Document], ids: Sequence[str | None] | None) -> list[str]:
    """Index what ``documents`` name (see the module docstring); return one id per Document.

    Every file is read and every Document checked before anything is written.
    """
    from sap_rag import page_id
    from sap_rag.index import validate_metadata

    if isinstance(documents, Document) or not isinstance(documents, Sequence):
        raise InvalidInputError(f"documents must be a list of Documents, got {type(documents).__name__}")
    given = _resolve_ids(documents, ids)
    refs = [page_ref(d, f"document {i}") for i, d in enumerate(documents)]
    files = _Files()
    # Pass 1: read every file and check the metadata, so a bad Document is found before any write.
    for i, ref in enumerate(refs):
        loaded = files.load(ref.path)
        _pages_of(ref, loaded)
        try:
            validate_metadata(_stored_metadata(ref.metadata))
        except InvalidInputError as exc:
            raise InvalidInputError(f"document {i} ({ref.path}): {exc}") from exc
        # The id the page gets when its file is indexed by path (SAPPageLoader's) is no id of its own.
        own = loaded.doc_id if ref.page is None else page_id(loaded.doc_id, ref.page)
        if given[i] == own:
            given[i] = None

    out: list[str | None] = [None] * len(documents)
    # Without ids: one document per file, as SAPIndex.add_documents indexes a path.
    by_file: dict[Path, list[int]] = {}
    for i, (ref, doc_id) in enumerate(zip(refs, given)):
        if doc_id is None:
            by_file.setdefault(ref.path.resolve(), []).append(i)
    given_texts = {
        path: _file_texts([refs[i] for i in members], files.load(refs[members[0]].path), files)
        for path, members in by_file.items()
    }
    if any(doc_id is not None for doc_id in given) or any(given_texts.values()):
        _check_add_images(index)
    plain: dict[str, dict[str, Any]] = {}
    file_ids: dict[Path, str] = {}
    for path, members in by_file.items():
        loaded = files.load(refs[members[0]].path)
        metadata = _common_metadata([_stored_metadata(refs[i].metadata) for i in members])
        texts = given_texts[path]
        if texts:
            file_ids[path] = _add_file_with_texts(index, refs[members[0]].path, loaded, metadata, texts, files)
        else:
            plain[os.fspath(path)] = metadata
    if plain:
        for path, doc_id in zip(plain, index_paths(index, list(plain), per_file_metadata=plain)):
            file_ids[Path(path)] = doc_id
    for path, members in by_file.items():
        one_page = files.load(refs[members[0]].path).num_pages == 1
        for i in members:
            doc_id = file_ids[path]
            # A Document naming a one-page file names that page: it comes back with the page's id.
            number = refs[i].page or (1 if one_page else None)
            out[i] = doc_id if number is None else page_id(doc_id, number)
    # With ids: each Document is its own document under its id (re-adding the id replaces it).
    for i, (ref, doc_id) in enumerate(zip(refs, given)):
        if doc_id is None:
            continue
        loaded = files.load(ref.path)
        pages = _pages_of(ref, loaded)
        metadata = {
            **_stored_metadata(ref.metadata),
            "source": loaded.source,
            "filename": ref.path.name,
            LANGCHAIN_ID_KEY: True,
        }
        index.add_images(
            pages,
            doc_id=doc_id,
            metadata=metadata,
            texts=_id_texts(ref, files, loaded.num_pages),
            page_numbers=None if ref.page is None else [ref.page],
        )
        out[i] = doc_id
    return [i for i in out if i is not None]


def _file_texts(refs: Sequence[PageRef], loaded: Any, files: _Files) -> dict[int, str]:
    """Page number -> the text the Documents give it, where that is not what the file says anyway
    (its text layer, or the label ``SAPPageLoader`` puts on a page without one). Several Documents
    naming one page (a text splitter's chunks) give it their texts joined, in order."""
    from sap_rag.ingest.text import clean_text
    from sap_rag.pipeline.texts import page_label

    layer = files.text_layer(refs[0].path)
    by_page: dict[int, list[str]] = {}
    for ref in refs:
        text = _given_text(ref, loaded.num_pages)
        if text is None:
            continue
        number = ref.page or 1
        default = {clean_text(layer[number - 1] or ""), page_label(number, ref.path.name)}
        if clean_text(text) in default:
            continue
        chunks = by_page.setdefault(number, [])
        if text not in chunks:
            chunks.append(text)
    return {number: "\n\n".join(chunks) for number, chunks in by_page.items()}
