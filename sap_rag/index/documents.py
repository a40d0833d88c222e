"""Adding files and folders to an index: the entry point the CLI and the framework adapters share."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, SapRagError, UnreadableInputError
from ..ingest.documents import DEFAULT_INCLUDE, IngestError, content_id, discover, load_document
from ..ingest.pdf import DEFAULT_DPI
from ..ingest.text import is_pdf, pdf_page_texts
from ..progress import progress
from .checks import positive_int
from .filters import validate_metadata
from .results import DocumentInfo

if TYPE_CHECKING:
    from .index import SAPIndex

logger = logging.getLogger(__name__)

__all__ = ["AddReport", "add_documents", "drop_older_versions", "finish_report"]


@dataclass
class AddReport:
    """What :meth:`SAPIndex.add_documents` did.

    Attributes:
        doc_ids: the id of every readable file, in input order (added or unchanged).
        added: documents written (new, or a changed file's new version).
        unchanged: ids of documents already in the index with the same content (not rewritten).
        replaced: ids of older versions removed because their file changed.
        skipped: files that could not be read (only with ``skip_errors=True``).
        seconds: wall time.
    """

    doc_ids: list[str] = field(default_factory=list)
    added: list[DocumentInfo] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[IngestError] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def pages(self) -> int:
        """Pages written."""
        return sum(info.num_pages for info in self.added)

    @property
    def vectors(self) -> int:
        """Anchor vectors written."""
        return sum(info.num_vectors for info in self.added)


def add_documents(
    index: SAPIndex,
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    include: Sequence[str] = DEFAULT_INCLUDE,
    skip_errors: bool = False,
    metadata: Mapping[str, Any] | None = None,
    file_metadata: Mapping[str | os.PathLike, Mapping[str, Any]] | None = None,
    dpi: int = DEFAULT_DPI,
    password: str | None = None,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> AddReport:
    """Index PDFs and images from files and folders (recursively, filtered by ``include``).

    Each file is one document whose id is a hash of its content: adding the same file again is a
    no-op, and a file whose content changed replaces the pages it had before (matched by its
    ``source`` path). Every file is read and rendered before anything is written; with
    ``skip_errors=False`` (the default) one unreadable file stops the run before the index is
    touched, with ``skip_errors=True`` the readable ones are indexed and the others reported.
    Each document is written all or nothing.

    Args:
        index: an open, writable index with an encoder.
        paths: files and/or folders.
        include: filename patterns for files found in folders.
        skip_errors: index what can be read and report the rest, instead of stopping.
        metadata: extra metadata for every document (``source`` and ``filename`` are set).
        file_metadata: per-file metadata keyed by path (as given or absolute), over ``metadata``.
        dpi: PDF rendering resolution (a positive integer).
        password: for encrypted PDFs.
        batch_size: pages per encoder forward pass (a positive integer; None: the encoder's).
        show_progress: a progress bar over pages (with pages/s and ETA).

    Every page gets its text: a PDF's text layer, else a label such as ``"page 3 of report.pdf"``.

    Raises:
        InvalidInputError: a bad option (checked before any file is read).
        UnreadableInputError: a file cannot be read (unless ``skip_errors``), or it changed while
            it was being indexed (it is then not written).
    """
    started = time.perf_counter()
    dpi = positive_int(dpi, "dpi")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = discover(paths, include)
    report = AddReport()
    per_file = {os.path.abspath(os.fspath(key)): dict(value) for key, value in (file_metadata or {}).items()}
    # Pass 1: read every file and check its metadata, so a bad one is found before any write.
    readable: list[tuple[Path, str, int, dict[str, Any]]] = []
    for path in files:
        extra = {**(metadata or {}), **per_file.get(os.path.abspath(path), {})}
        try:
            validate_metadata(extra)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{path}: {exc}") from exc
        try:
            document = load_document(path, dpi=dpi, password=password)
        except UnreadableInputError as exc:
            if not skip_errors:
                raise
            logger.warning("skipping %s", exc)
            report.skipped.append(IngestError(source=os.fspath(path), message=str(exc)))
            continue
        readable.append((path, document.doc_id, document.num_pages, extra))
        report.doc_ids.append(document.doc_id)
        del document  # pages are re-rendered in pass 2, one document at a time, to bound memory
    total = sum(n for _, doc_id, n, _ in readable if doc_id not in index)
    with progress(total=total, desc="indexing", unit="page", enabled=show_progress) as bar:
        for path, doc_id, num_pages, extra in readable:
            source = os.fspath(path.resolve())
            if doc_id in index:
                report.unchanged.append(doc_id)
            else:
                document = load_document(path, doc_id=doc_id, metadata=extra, dpi=dpi, password=password)
                texts = pdf_page_texts(path, password=password) if is_pdf(path) else None
                changed = content_id(path.read_bytes()) != doc_id
                if changed or document.num_pages != num_pages or (texts is not None and len(texts) != num_pages):
                    raise UnreadableInputError(
                        f"{path}: the file changed while it was being indexed; nothing of it was written, run again"
                    )
                info = index.add_images(
                    document.pages, doc_id=doc_id, metadata=document.metadata, texts=texts, batch_size=batch_size
                )
                if info.num_pages != num_pages:  # never commit a document with fewer pages than its file has
                    index.delete(doc_id, missing_ok=True)
                    raise SapRagError(f"internal error: {path} has {num_pages} pages but {info.num_pages} were stored")
                report.added.append(info)
                bar.update(document.num_pages)
            # The file's older versions go once its current version is committed.
            drop_older_versions(index, source, doc_id, report)
    return finish_report(index, report, started)


def drop_older_versions(index: SAPIndex, source: str, doc_id: str, report: AddReport) -> None:
    """Delete the documents of file ``source`` other than ``doc_id`` (its older versions), noting them."""
    for old_id in index.documents(source=source):
        if old_id != doc_id:
            index.delete(old_id)
            report.replaced.append(old_id)


def finish_report(index: SAPIndex, report: AddReport, started: float, how: str = "") -> AddReport:
    """Optimize after adds, time the run and log its summary (``how``: e.g. " on Ray")."""
    if report.added:
        index.optimize()
    report.seconds = time.perf_counter() - started
    logger.info(
        "added %d documents (%d pages)%s, %d unchanged, %d replaced, %d skipped in %.1f s",
        len(report.added),
        report.pages,
        how,
        len(report.unchanged),
        len(report.replaced),
        len(report.skipped),
        report.seconds,
    )
    return report
