"""The write side of ``SAPIndex``: add documents, images and pages; delete documents and pages."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..pipeline import PreparedPage, page_texts
from .checks import check_doc_id, check_sequence, positive_int
from .errors import DocumentNotFoundError
from .filters import validate_metadata
from .results import DocumentInfo, page_id, parse_page_id
from .state import IndexState, id_list, label_name
from .store import stage

if TYPE_CHECKING:
    from ..types import PageEncoding, PrunedPage
    from .documents import AddReport

logger = logging.getLogger(__name__)

__all__ = ["IndexWrites", "check_page_numbers"]


def check_page_numbers(numbers: Sequence[int] | None, count: int) -> list[int] | None:
    """``page_numbers`` as given to ``add_images``/``add_pages``: None, or ``count`` increasing ints >= 1.

    >>> check_page_numbers([2, 5], 2), check_page_numbers(None, 3)
    ([2, 5], None)
    """
    if numbers is None:
        return None
    if isinstance(numbers, (str, bytes)) or not isinstance(numbers, Sequence):
        raise InvalidInputError(f"page_numbers must be a list of page numbers, got {type(numbers).__name__}")
    values = list(numbers)
    if len(values) != count:
        raise InvalidInputError(f"got {count} pages but {len(values)} page_numbers; give one number per page")
    for i, n in enumerate(values):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"page_numbers[{i}] must be a page number >= 1 (1 is the first page), got {n!r}")
        if i and n <= values[i - 1]:
            raise InvalidInputError(
                f"page_numbers must increase (the pages in file order, each once), got {values[i - 1]} then {n}"
            )
    return values


class IndexWrites(IndexState):
    """Changing an index (refused when it was opened read-only)."""

    def add_images(
        self,
        images: Sequence[Any],
        doc_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        texts: Sequence[str | None] | None = None,
        page_numbers: Sequence[int] | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> DocumentInfo:
        """Encode, prune and store the pages of one document, all or nothing.

        Every image is loaded and encoded before anything is written, so an unreadable page
        leaves the index untouched. Re-adding a ``doc_id`` replaces its pages.

        Args:
            images: the document's pages in order: PIL images, image paths, or image bytes.
            doc_id: the document's id (any non-empty string).
            metadata: JSON data kept with every page and usable in search filters.
            texts: per page, its text (e.g. from OCR or a text layer), returned as ``hit.text``;
                None or empty entries (or no list) get a label such as ``"page 3 of report.pdf"``.
            page_numbers: per page, its 1-based number in the file (increasing, gaps allowed:
                ``[2]`` stores page 2 of a file alone, cited and filtered as page 2); default ``1..n``.
            batch_size: pages per encoder forward pass (a positive integer; default: the encoder's).
            show_progress: show progress bars.

        Raises:
            UnreadableInputError: a page is not a readable image (nothing is written).
        """
        self._check_open(write=True)
        doc_id = check_doc_id(doc_id)
        metadata = validate_metadata(metadata)
        sources = check_sequence(images, "images")
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size")
        numbers = check_page_numbers(page_numbers, len(sources))
        names = page_texts(texts, len(sources), label_name(doc_id, metadata), numbers)
        prepared = self._pipeline.prepare_images(
            sources, doc_id, names, batch_size=batch_size, show_progress=show_progress
        )
        return self._write(doc_id, prepared, metadata, show_progress, numbers)

    def add_documents(self, paths: Any, **options: Any) -> AddReport:
        """Index PDFs and images from files and folders; see :func:`sap_rag.index.documents.add_documents`.

        Each file is one document with a content-hash id: re-adding a file is a no-op, a changed
        file replaces its old pages, and every file is read before anything is written.
        """
        from .documents import add_documents

        self._check_open(write=True)
        return add_documents(self, paths, **options)

    def add_pages(
        self,
        pages: Sequence[PageEncoding | PrunedPage],
        doc_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        images: Sequence[Any] | None = None,
        texts: Sequence[str | None] | None = None,
        page_numbers: Sequence[int] | None = None,
        show_progress: bool = False,
    ) -> DocumentInfo:
        """Store precomputed pages of one document, all or nothing (no model needed).

        Args:
            pages: per page, a :class:`~sap_rag.PageEncoding` (pruned here with the index's
                pruner) or a :class:`~sap_rag.PrunedPage` (stored as is; it must come from the
                index's pruner). Anchors are ``(k, dim)``.
            doc_id: the document's id; re-adding it replaces its pages.
            metadata: JSON data kept with every page and usable in search filters.
            images: optional page images (one per page) to keep in the index.
            texts: optional page texts (one per page; see :meth:`add_images`).
            page_numbers: the pages' 1-based numbers in the file (see :meth:`add_images`).
            show_progress: show a progress bar.
        """
        self._check_open(write=True)
        doc_id = check_doc_id(doc_id)
        metadata = validate_metadata(metadata)
        items = check_sequence(pages, "pages")
        numbers = check_page_numbers(page_numbers, len(items))
        names = page_texts(texts, len(items), label_name(doc_id, metadata), numbers)
        sources = check_sequence(images, "images") if images is not None else None
        prepared = self._pipeline.prepare_pages(items, doc_id, names, sources)
        return self._write(doc_id, prepared, metadata, show_progress, numbers)

    def delete(self, doc_id: str, *, missing_ok: bool = False) -> int:
        """Remove every page of a document; return how many pages went.

        Raises:
            DocumentNotFoundError: no such document (unless ``missing_ok``).
        """
        self._check_open(write=True)
        doc_id = check_doc_id(doc_id)
        with self._open(write=True):
            old = self._store.remove(doc_id)
        if old is None:
            if missing_ok:
                return 0
            raise DocumentNotFoundError(f"no document {doc_id!r} in the index at {self.path}")
        logger.info("deleted %r (%d pages)", doc_id, old.num_pages)
        return old.num_pages

    def optimize(self) -> None:
        """Let the engine merge segments and build the mean-vector graph; call after bulk adds."""
        with self._open(write=True):
            started = time.perf_counter()
            self.backend.optimize()
            self.backend.flush()
            logger.info("optimized %s in %.1f s", self.path, time.perf_counter() - started)

    def delete_pages(self, page_ids: Sequence[str], *, missing_ok: bool = False) -> int:
        """Remove pages by id; return how many went. A document that loses all its pages goes
        too (as with :meth:`delete`); the others keep their page ids. Each document's pages go
        all or nothing.

        Raises:
            DocumentNotFoundError: an id names no page in the index (unless ``missing_ok``);
                nothing is deleted then.
            InvalidInputError: an id is not a page id.
        """
        self._check_open(write=True)
        by_doc: dict[str, set[int]] = {}
        for doc_id, number in (parse_page_id(p) for p in id_list(page_ids)):
            by_doc.setdefault(doc_id, set()).add(number)
        removed = 0
        with self._open(write=True):
            plan = []
            for doc_id, numbers in by_doc.items():
                record = self._registry.get(doc_id)
                present = set(record.page_numbers) if record is not None else set()
                missing = sorted(numbers - present)
                if missing and not missing_ok:
                    raise DocumentNotFoundError(
                        f"the index at {self.path} has no page {page_id(doc_id, missing[0])!r}"
                        + (f" (document {doc_id!r} holds pages {sorted(present)})" if present else "")
                        + "; nothing was deleted (pass missing_ok=True to skip missing pages)"
                    )
                if record is not None and numbers & present:
                    plan.append((record, sorted(numbers & present)))
            for record, numbers in plan:
                self._store.remove_pages(record, numbers)
                removed += len(numbers)
                logger.info("deleted %d pages of %r", len(numbers), record.doc_id)
        return removed

    def _write(
        self,
        doc_id: str,
        pages: list[PreparedPage],
        metadata: dict[str, Any],
        show_progress: bool,
        numbers: list[int] | None = None,
    ) -> DocumentInfo:
        """Round the pages to the storage precision and store them as one document.

        The seam for bulk ingestion (``add_documents``): everything before this point validates
        and computes; from here on the write is all or nothing.
        """
        pooled = self.manifest.pooled_vectors
        staged = [
            stage(page, f"page {numbers[i] if numbers else i + 1} of {doc_id!r}", self.dim, self.storage, pooled)
            for i, page in enumerate(pages)
        ]
        with self._open(write=True):
            record = self._store.write(doc_id, staged, metadata, numbers=numbers, show_progress=show_progress)
        logger.info("added %r: %d pages, %d vectors", doc_id, record.num_pages, record.num_vectors)
        return self._info(record)
