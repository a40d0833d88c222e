"""The few calls into ``sap_rag`` this package makes, in one place.

Everything that decides anything (reading files, pruning, storing, searching) is ``sap_rag``'s;
these helpers only pick the right entry point.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["index_paths", "open_index", "open_or_create_index"]


def open_index(index: Any, **open_kwargs: Any) -> Any:
    """``index`` itself when it is a ``SAPIndex`` object; ``SAPIndex.open(index)`` when it is a path."""
    from sap_rag.index import as_index

    return as_index(index, hint=" or SAPRetriever.from_paths(...)", **open_kwargs)


def open_or_create_index(path: str | os.PathLike, *, encoder: Any, **create_kwargs: Any) -> Any:
    """Open the index at ``path``, or create it there with ``encoder`` when there is none."""
    from sap_rag.index import IndexNotFoundError, SAPIndex

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
