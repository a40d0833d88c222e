"""Storing one exported document exactly as it was: same page numbers (gaps included, so page ids
survive), same ``added_at``, same vectors and payloads; and checking a document already stored by
an interrupted run of the same import.

The write follows :class:`~sap_rag.index.store.PageStore`'s all-or-nothing protocol (journal the
generation, store images and points, flush, commit in one registry transaction) with three
differences ``PageStore.write`` does not offer: the points take the exported page numbers, the
record keeps the exported ``added_at``, and one engine flush serves several documents. A document
whose pages have gaps is committed with its full span and its missing pages are then dropped from
the record (``Registry.remove_pages``; they have no points): if the process dies between the two,
the import marker is still there and the resumed import finds the page list wrong and writes the
document again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..index.backends.base import PagePoint
from ..index.registry import DocumentRecord, page_point_id

if TYPE_CHECKING:
    from ..index.index import SAPIndex
    from .reader import ExportDocument

logger = logging.getLogger(__name__)

__all__ = ["DocumentWriter", "matches"]

_UPSERT_BATCH = 64


def _payload(doc: ExportDocument, i: int, gen: int, image: str | None) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "page_number": doc.numbers[i],
        "gen": gen,
        "image": image,
        "metadata": doc.metadata,
        **doc.pages[i].extra,
    }


class DocumentWriter:
    """Stores exported documents, each all or nothing, flushing the engine once for several.

    :meth:`write` journals a document and writes its images and points; :meth:`commit` (called
    by :meth:`write` every :data:`BATCH_PAGES` pages or :data:`BATCH_DOCUMENTS` documents, and
    once at the end) flushes the engine and then commits each pending document in its own
    registry transaction. A document is committed only once its points are durable, as with
    ``PageStore.write``; one flush for many small documents instead of one each is what makes an
    import of many documents fast. A failure undoes the pending documents; a kill leaves them
    journaled, and the next writer open deletes their points.
    """

    BATCH_PAGES = 512
    BATCH_DOCUMENTS = 64

    def __init__(self, index: SAPIndex) -> None:
        self.index = index
        self.store = index._store
        self.pending: list[tuple[DocumentRecord, list[int], list[str]]] = []
        self.pending_pages = 0

    def write(self, doc: ExportDocument) -> None:
        """Journal ``doc`` and write its images and points (a version already there, which
        :func:`matches` found different, is removed first); committed by :meth:`commit`."""
        store = self.store
        store.ensure_recovered()
        if store.registry.get(doc.doc_id) is not None:
            store.remove(doc.doc_id)
        span = doc.numbers[-1]
        gen = store.registry.begin(doc.doc_id, span)
        created: list[str] = []
        names: list[str | None] = [None] * len(doc.pages)
        try:
            if store.store_images:
                for i, page in enumerate(doc.pages):
                    if page.source is not None:
                        names[i], new = store.images.put(page.source, None)
                        if new:
                            created.append(names[i])
            ids = [page_point_id(gen, n) for n in doc.numbers]
            for start in range(0, len(doc.pages), _UPSERT_BATCH):
                store.backend.upsert(
                    [
                        PagePoint(ids[i], p.anchors, p.summary, _payload(doc, i, gen, names[i]), p.pooled)
                        for i, p in enumerate(doc.pages[start : start + _UPSERT_BATCH], start)
                    ]
                )
        except BaseException:
            _rollback(self.index, gen, span, created)
            raise
        by_number: list[str | None] = [None] * span
        for number, name in zip(doc.numbers, names):
            by_number[number - 1] = name
        record = DocumentRecord(
            doc_id=doc.doc_id,
            gen=gen,
            num_pages=span,
            num_vectors=doc.num_vectors,
            images=by_number,
            metadata=doc.metadata,
            added_at=doc.added_at or 0.0,  # 0: the registry stamps the commit time
        )
        self.pending.append((record, doc.numbers, created))
        self.pending_pages += len(doc.pages)
        if self.pending_pages >= self.BATCH_PAGES or len(self.pending) >= self.BATCH_DOCUMENTS:
            self.commit()

    def commit(self) -> None:
        """Flush the engine, then commit every pending document (each in one transaction)."""
        store = self.store
        try:
            if self.pending:
                store.backend.flush()
            while self.pending:
                record, numbers, _ = self.pending[0]
                old = store.registry.commit(record)
                self.pending.pop(0)
                if old is not None:  # not reached: removed in write(), and the import holds the index alone
                    logger.warning("%r was replaced while it was imported", record.doc_id)
                gaps = sorted(set(range(1, record.num_pages + 1)) - set(numbers))
                if gaps:
                    store.registry.remove_pages(record.doc_id, gaps, 0)
                    store.registry.forget_points([page_point_id(record.gen, n) for n in gaps])  # never written
                store.pages += len(numbers)
        except BaseException:
            self.abandon()
            raise
        self.pending_pages = 0

    def abandon(self) -> None:
        """Undo the pending (uncommitted) documents."""
        for record, _, created in self.pending:
            _rollback(self.index, record.gen, record.num_pages, created)
        self.pending.clear()
        self.pending_pages = 0


def _rollback(index: SAPIndex, gen: int, span: int, created: list[str]) -> None:
    store = index._store
    try:
        store.backend.delete([page_point_id(gen, n) for n in range(1, span + 1)])
        store.backend.flush()
        store.images.remove(created)
        store.registry.forget([gen])
    except Exception:
        logger.exception("could not undo a failed import write at once; the next open undoes it")
        store.needs_recovery = True


def matches(index: SAPIndex, doc: ExportDocument) -> bool:
    """Whether the index already holds ``doc`` exactly: page numbers, metadata, ``added_at``,
    images, and every page's vectors and payload, bit for bit."""
    record = index._store.registry.get(doc.doc_id)
    if record is None:
        return False
    if (
        record.page_numbers != doc.numbers
        or record.metadata != doc.metadata
        or record.num_vectors != doc.num_vectors
        or (doc.added_at is not None and record.added_at != doc.added_at)
    ):
        return False
    ids = [page_point_id(record.gen, n) for n in doc.numbers]
    points = index.backend.retrieve_points(ids)
    if [p.id for p in points] != ids:
        return False
    for i, (point, page) in enumerate(zip(points, doc.pages)):
        payload = {k: v for k, v in point.payload.items() if k != "gen"}
        image = doc.images[i] if index._store.store_images else None
        expected = {k: v for k, v in _payload(doc, i, record.gen, image).items() if k != "gen"}
        same_pooled = (point.pooled is None) == (page.pooled is None) and (
            page.pooled is None or np.array_equal(point.pooled, page.pooled)
        )
        if (
            payload != expected
            or not np.array_equal(point.anchors, page.anchors)
            or not np.array_equal(point.summary, page.summary)
            or not same_pooled
        ):
            return False
    return True
