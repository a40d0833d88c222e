"""The few calls into ``sap_rag`` this package makes, in one place.

Everything that decides anything (reading files, pruning, storing, searching, page ids, page text,
relevance) is ``sap_rag``'s; these helpers only pick the right entry point and check the keyword
arguments a LangChain caller passes.

The index may be a ``SAPIndex`` or any object with its read API (``search``, ``get_pages``,
``documents``...; e.g. a client of a sap-rag server): nothing here checks its type, only what it
can do.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sap_rag.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = [
    "SEARCH_OPTIONS",
    "IndexHandle",
    "check_options",
    "delete_ids",
    "get_pages",
    "index_paths",
    "open_or_create_index",
    "search_pages",
]

SEARCH_OPTIONS = ("filter", "two_stage", "prefetch", "coarse")
"""Keyword arguments passed through to ``SAPIndex.search`` (besides ``k``): the filter and the
staged-search options (see ``SAPIndex.search``)."""

_PROBE_PAGES = 64  # page ids asked per get_pages call when an index object cannot list a document's pages


def check_options(options: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse keyword arguments ``where`` does not know (a misspelt option is never silently ignored)."""
    allowed = tuple(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidInputError(f"{where} got unknown arguments {unknown}; it takes {', '.join(allowed)}")


def _loaded_encoder(index: Any) -> Any:
    """The encoder ``index`` already holds (None if it has not loaded one): reused when reopening,
    so a model is never loaded twice."""
    pipeline = getattr(index, "_pipeline", None)
    return getattr(pipeline, "_encoder", None)


class IndexHandle:
    """The index a store or retriever works on: the object the caller gave, or one opened from a path.

    Given a path, the index is opened read-only (shared with other read-only opens: other
    retrievers, processes, web workers), unless ``read_only=False``. With ``read_only=None`` (the
    default) :meth:`writable` reopens it for writing the first time something is written; with
    ``read_only=True`` it never is (writes raise ``IndexReadOnlyError``).

    Args:
        index: a ``SAPIndex`` (or any object with its ``search`` method) or the path of one.
        read_only: see above; only for a path.
        owner: the class name, for error messages.
        open_kwargs: passed to ``SAPIndex.open`` (``encoder``, ``pruner``, ``client``...); only for a path.
    """

    def __init__(self, index: Any, *, read_only: bool | None = None, owner: str, **open_kwargs: Any) -> None:
        from sap_rag.index import as_index

        self.owner = owner
        self._lock = threading.Lock()  # one upgrade at a time (aadd_documents runs in threads)
        if isinstance(index, (str, os.PathLike)):
            if read_only is not None and not isinstance(read_only, bool):
                raise InvalidInputError(f"read_only must be True, False or None, got {read_only!r}")
            self.path: str | os.PathLike | None = index
            self.mode = read_only
            self._open_kwargs = dict(open_kwargs)
            self.index = self._open(read_only=read_only is not False)
            return
        given = sorted({*open_kwargs, *(["read_only"] if read_only is not None else [])})
        if given:
            raise InvalidInputError(
                f"{given} apply when opening an index by path; the index given to {owner} is already open"
            )
        self.path = None
        self.mode = None
        self._open_kwargs = {}
        self.index = as_index(index, hint=" or SAPRetriever.from_paths(...)")

    def _open(self, *, read_only: bool) -> Any:
        from sap_rag.index import IndexReadOnlyError, SAPIndex

        assert self.path is not None
        try:
            return SAPIndex.open(self.path, **self._open_kwargs, read_only=read_only)
        except IndexReadOnlyError:
            if self.mode is not None:
                raise
        # A write was interrupted: a read-only open cannot finish or undo it, so open for writing
        # once (which does), then share the index again.
        logger.info("%s: finishing an interrupted write in %s before opening it read-only", self.owner, self.path)
        SAPIndex.open(self.path, **self._open_kwargs).close()
        return SAPIndex.open(self.path, **self._open_kwargs, read_only=True)

    @property
    def opened_here(self) -> bool:
        """Whether the index was opened from a path by this handle (so it may be reopened)."""
        return self.path is not None

    def writable(self) -> Any:
        """The index, reopened for writing first where it was opened read-only from a path (``read_only=None``).

        Raises:
            IndexLockedError: others have the index open (read-only opens, or a writer); the store
                keeps searching through a read-only open where it can.
        """
        with self._lock:
            return self._writable()

    def _writable(self) -> Any:
        from sap_rag.index import IndexLockedError, SAPIndex

        index = self.index
        if self.path is None or self.mode is True or not getattr(index, "read_only", False):
            return index  # the caller's own object, or already writable: its writes decide
        kwargs = dict(self._open_kwargs)
        if kwargs.get("encoder") is None and _loaded_encoder(index) is not None:
            kwargs["encoder"] = _loaded_encoder(index)
        index.close()
        try:
            self.index = SAPIndex.open(self.path, **kwargs)
        except IndexLockedError as exc:
            self.index = SAPIndex.open(self.path, **kwargs, read_only=True)  # keep searching
            raise IndexLockedError(
                f"{self.owner} opened {os.fspath(self.path)} read-only and cannot open it for writing now, "
                f"because it is open elsewhere: {exc}. Close the other retrievers, stores and processes that "
                "use it (they may go on reading once the write is done), then write again"
            ) from exc
        logger.info("%s reopened %s for writing", self.owner, os.fspath(self.path))
        return self.index

    def reopen_read_only(self) -> None:
        """Go back to a shared read-only open (after writing), where this handle opened the index."""
        from sap_rag.index import SAPIndex

        if self.path is None or self.mode is False or getattr(self.index, "read_only", True):
            return
        kwargs = dict(self._open_kwargs)
        if kwargs.get("encoder") is None and _loaded_encoder(self.index) is not None:
            kwargs["encoder"] = _loaded_encoder(self.index)
        self.index.close()
        self.index = SAPIndex.open(self.path, **kwargs, read_only=True)

    def close(self) -> None:
        self.index.close()


def open_or_create_index(path: str | os.PathLike, *, encoder: Any, **create_kwargs: Any) -> Any:
    """Open the index at ``path`` for writing, or create it there with ``encoder`` when there is none."""
    from sap_rag.index import IndexNotFoundError, SAPIndex

    if isinstance(encoder, str):
        from sap_rag import load_encoder

        encoder = load_encoder(encoder)
    try:
        return SAPIndex.open(path, encoder=encoder) if encoder is not None else SAPIndex.open(path)
    except IndexNotFoundError as exc:
        if encoder is None:
            raise IndexNotFoundError(f"{exc}; pass encoder=... (a model spec or PageEncoder) to create one") from exc
    logger.info("creating a SAPIndex at %s", path)
    return SAPIndex.create(path, encoder=encoder, **create_kwargs)


def index_paths(
    index: Any,
    paths: Iterable[str | os.PathLike],
    *,
    metadata: Mapping[str, Any] | None = None,
    per_file_metadata: Mapping[str, Mapping[str, Any]] | None = None,
    skip_errors: bool = False,
) -> list[str]:
    """Add the PDFs and images at ``paths`` (files or folders) to ``index``; return their doc ids.

    A thin call of ``SAPIndex.add_documents``: ids are content hashes (adding a file again is a
    no-op, a changed file replaces its old pages); every file is read and its metadata checked
    before anything is written, unless ``skip_errors`` (then unreadable files are logged and
    skipped). ``per_file_metadata`` maps a path to extra metadata for that file (over ``metadata``).
    """
    files = [os.fspath(p) for p in paths]
    if _accepts(index.add_documents, "file_metadata"):
        report = index.add_documents(
            files, metadata=dict(metadata or {}), file_metadata=per_file_metadata, skip_errors=skip_errors
        )
        for error in report.skipped:
            logger.warning("skipped %s: %s", error.source, error.message)
        return list(report.doc_ids)
    # A remote index (sap_rag.connect) takes one metadata per upload: one upload per file.
    doc_ids: list[str] = []
    for path in files:
        extra = dict((per_file_metadata or {}).get(path) or {})
        uploaded = index.add_documents([path], metadata={**(metadata or {}), **extra}, skip_errors=skip_errors)
        for error in getattr(uploaded, "errors", []):
            logger.warning("skipped %s: %s", error.get("file"), error.get("error"))
        doc_ids.extend(uploaded.doc_ids)
    return doc_ids


def _accepts(method: Any, keyword: str) -> bool:
    """Whether ``method`` takes ``keyword`` (by name or through ``**kwargs``)."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return keyword in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def search_pages(index: Any, query: Any, k: int, options: Mapping[str, Any]) -> list[Any]:
    """``index.search(query, k, **options)`` with ``options`` among :data:`SEARCH_OPTIONS`.

    ``query`` is a string, a ``PIL.Image.Image`` (searched by its visual tokens) or ``(n_tokens,
    dim)`` embeddings; a path-like is opened as an image.
    """
    check_options(options, SEARCH_OPTIONS, "the search")
    if isinstance(query, os.PathLike):
        from sap_rag.ingest.images import load_image

        query = load_image(os.fspath(query), name=os.fspath(query))
    return index.search(query, k=k, **options)


def holds_document(index: Any, doc_id: str) -> bool:
    """Whether ``index`` holds a document ``doc_id`` (``in`` where it supports it, else its ``documents()``)."""
    if hasattr(type(index), "__contains__"):
        return doc_id in index
    return doc_id in set(index.documents())


def document_page_ids(index: Any, doc_id: str) -> list[str]:
    """The page ids of document ``doc_id`` (by ``index.document``, or by asking for its pages in blocks)."""
    if callable(getattr(index, "document", None)):
        return list(index.document(doc_id).page_ids)
    from sap_rag import page_id

    found: list[str] = []
    start = 1
    while True:
        block = [page_id(doc_id, n) for n in range(start, start + _PROBE_PAGES)]
        pages = index.get_pages(block)
        present = [p for p, page in zip(block, pages) if page is not None]
        if not present:
            return found
        found.extend(present)
        start += _PROBE_PAGES


def _is_page_id(item: str) -> bool:
    from sap_rag import parse_page_id

    try:
        parse_page_id(item)
    except InvalidInputError:
        return False
    return True


def _check_ids(ids: Sequence[Any]) -> None:
    for item in ids:
        if not isinstance(item, str) or not item:
            raise InvalidInputError(f"ids must be non-empty strings (Document, page or document ids), got {item!r}")


def get_pages(index: Any, ids: Sequence[str]) -> list[Any]:
    """The stored pages named by ``ids`` (document ids, standing for all their pages, or page ids),
    in order, without duplicates. Unknown ids are skipped (LangChain's ``get_by_ids`` contract).
    """
    _check_ids(ids)
    wanted: list[str] = []
    for item in ids:
        if holds_document(index, item):
            wanted.extend(document_page_ids(index, item))
        elif _is_page_id(item):
            wanted.append(item)
    unique = list(dict.fromkeys(wanted))
    return [page for page in index.get_pages(unique) if page is not None] if unique else []


def delete_ids(index: Any, ids: Sequence[str]) -> int:
    """Delete documents (by document id) and pages (by page id); unknown ids are skipped.

    Returns how many pages went.
    """
    _check_ids(ids)
    removed = 0
    pages: list[str] = []
    for item in ids:
        if holds_document(index, item):
            removed += index.delete(item)
        elif _is_page_id(item):
            pages.append(item)
    if pages:
        removed += index.delete_pages(pages, missing_ok=True)
    return removed
