"""The few calls into ``sap_rag`` this package makes, in one place.

Everything that decides anything (reading files, pruning, storing, searching, page ids, page text,
relevance) is ``sap_rag``'s; these helpers only pick the right entry point and check the keyword
arguments a LangChain caller passes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sap_rag.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = [
    "SEARCH_OPTIONS",
    "check_options",
    "index_paths",
    "open_index",
    "open_or_create_index",
    "search_pages",
]

SEARCH_OPTIONS = ("filter", "two_stage", "prefetch", "coarse")
"""Keyword arguments passed through to ``SAPIndex.search`` (besides ``k``): the filter and the
staged-search options (see ``SAPIndex.search``)."""


def check_options(options: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse keyword arguments ``where`` does not know (a misspelt option is never silently ignored)."""
    allowed = tuple(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidInputError(f"{where} got unknown arguments {unknown}; it takes {', '.join(allowed)}")


def open_index(index: Any, **open_kwargs: Any) -> Any:
    """``index`` itself when it is a ``SAPIndex`` object; ``SAPIndex.open(index, **open_kwargs)`` when it is a path."""
    from sap_rag.index import as_index

    if open_kwargs and not isinstance(index, (str, os.PathLike)):
        raise InvalidInputError(
            f"{sorted(open_kwargs)} apply when opening an index by path; the index given is already open"
        )
    return as_index(index, hint=" or SAPRetriever.from_paths(...)", **open_kwargs)


def open_or_create_index(path: str | os.PathLike, *, encoder: Any, **create_kwargs: Any) -> Any:
    """Open the index at ``path``, or create it there with ``encoder`` when there is none."""
    from sap_rag.index import IndexNotFoundError, SAPIndex

    if isinstance(encoder, str):
        from sap_rag import load_encoder

        encoder = load_encoder(encoder)
    try:
        return SAPIndex.open(path)
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
    report = index.add_documents(
        [os.fspath(p) for p in paths],
        metadata=dict(metadata or {}),
        file_metadata=per_file_metadata,
        skip_errors=skip_errors,
    )
    for error in report.skipped:
        logger.warning("skipped %s: %s", error.source, error.message)
    return list(report.doc_ids)


def search_pages(index: Any, query: Any, k: int, options: Mapping[str, Any]) -> list[Any]:
    """``SAPIndex.search(query, k, **options)`` with ``options`` among :data:`SEARCH_OPTIONS`.

    ``query`` is a string, a ``PIL.Image.Image`` (searched by its visual tokens) or ``(n_tokens,
    dim)`` embeddings; a path-like is opened as an image.
    """
    check_options(options, SEARCH_OPTIONS, "the search")
    if isinstance(query, os.PathLike):
        from sap_rag.ingest.images import load_image

        query = load_image(os.fspath(query), name=os.fspath(query))
    return index.search(query, k=k, **options)


def get_pages(index: Any, ids: Sequence[str]) -> list[Any]:
    """The stored pages named by ``ids`` (page ids or document ids), in order, without duplicates.

    A document id stands for all its pages. Unknown ids are skipped (LangChain's ``get_by_ids``
    contract).
    """
    from sap_rag import parse_page_id

    wanted: list[str] = []
    for item in ids:
        if not isinstance(item, str) or not item:
            raise InvalidInputError(f"ids must be non-empty strings (page or document ids), got {item!r}")
        if item in index:
            wanted.extend(index.document(item).page_ids)
        else:
            try:
                parse_page_id(item)
            except InvalidInputError:
                continue
            wanted.append(item)
    unique = list(dict.fromkeys(wanted))
    return [page for page in index.get_pages(unique) if page is not None]


def delete_ids(index: Any, ids: Sequence[str]) -> int:
    """Delete documents (by document id) and pages (by page id); unknown ids are skipped.

    Returns how many pages went.
    """
    from sap_rag import parse_page_id

    removed = 0
    pages: list[str] = []
    for item in ids:
        if not isinstance(item, str) or not item:
            raise InvalidInputError(f"ids must be non-empty strings (page or document ids), got {item!r}")
        if item in index:
            removed += index.delete(item)
            continue
        try:
            parse_page_id(item)
        except InvalidInputError:
            continue
        pages.append(item)
    if pages:
        removed += index.delete_pages(pages, missing_ok=True)
    return removed
