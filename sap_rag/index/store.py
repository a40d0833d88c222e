"""``PageStore``: all-or-nothing document writes over a backend that has no transactions.

It owns the backend (vectors), the registry (committed documents and the journal of unfinished
writes, see :mod:`sap_rag.index.registry`) and the image store, and applies the protocol:

1. journal the new generation (``registry.begin``);
2. store the page images, write the points, flush the engine;
3. commit the generation in one SQLite transaction (the version it replaces becomes ``stale``);
4. delete the stale points and now-unused images, clear the journal entry.

A failure undoes steps 1-3 at once; a crash leaves journal entries that :meth:`recover` (run on
every open) turns into deletes. Deleting some pages of a document (:meth:`remove_pages`) commits
the smaller page list and journals those pages' point ids in one transaction, then deletes the
points. Not thread-safe: ``SAPIndex`` serialises the calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..pipeline import PreparedPage, as_matrix
from ..progress import progress
from .backends.base import Backend, PagePoint
from .images import ImageStore
from .options import StorageType
from .registry import DocumentRecord, Registry, page_point_id, point_ids
from .results import IndexCheck
from .vectors import page_pooled, page_summary, to_storage

logger = logging.getLogger(__name__)

__all__ = ["PageStore", "StagedPage", "stage"]

UPSERT_BATCH = 64
"""Pages per engine write."""


class StagedPage:
    """One page ready to store: ``anchors`` ``(k, dim)``, ``summary`` ``(dim,)`` and ``pooled``
    ``(p, dim)`` (or None) at storage precision, payload fields of its own (``num_tokens``,
    ``positions``...), optionally the image ``source`` as given with its decoded ``image``, and
    its ``text`` (never empty: the caller puts a label where a page has no text)."""

    __slots__ = ("anchors", "extra", "image", "pooled", "source", "summary", "text")

    def __init__(
        self,
        anchors: np.ndarray,
        summary: np.ndarray,
        extra: dict[str, Any],
        source: Any = None,
        image: Any = None,
        pooled: np.ndarray | None = None,
        text: str = "",
    ) -> None:
        self.anchors = anchors
        self.text = text
        self.summary = summary
        self.pooled = pooled
        self.extra = extra
        self.source = source
        self.image = image


def stage(page: PreparedPage, what: str, dim: int, storage: StorageType, pooled: int) -> StagedPage:
    """A pipeline page with its anchors, summary and ``pooled`` pooled vectors at storage precision."""
    anchors = to_storage(as_matrix(page.pruned.embeddings, dim, what), storage)
    positions = page.pruned.positions
    flat = positions.detach().to("cpu").reshape(-1).tolist() if positions is not None else []
    extra = {
        "num_tokens": int(page.pruned.num_tokens),
        # (row, col) grid cell of each anchor, flattened: drives overlays and debugging.
        "positions": [round(float(x), 2) for x in flat],
    }
    return StagedPage(
        anchors,
        page_summary(anchors, storage),
        extra,
        source=page.source,
        image=page.image,
        pooled=page_pooled(anchors, pooled, storage) if pooled else None,
        text=page.text,
    )


class PageStore:
    """Documents of pages in a backend, with a registry and page images (see the module docstring)."""

    def __init__(
        self, backend: Backend, registry: Registry, images: ImageStore, *, store_images: bool, read_only: bool = False
    ) -> None:
        self.backend = backend
        self.registry = registry
        self.images = images
        self.store_images = store_images
        self.read_only = read_only
        self.needs_recovery = False
        self.pages = registry.totals()[1]

    # --- writes -----------------------------------------------------------------------------

    def write(
        self,
        doc_id: str,
        pages: Sequence[StagedPage],
        metadata: dict[str, Any],
        *,
        numbers: Sequence[int] | None = None,
        show_progress: bool = False,
    ) -> DocumentRecord:
        """Store (or replace) one document, all or nothing; return its committed record.

        ``numbers``: the pages' 1-based page numbers (increasing; gaps allowed, e.g. ``[2]`` for the
        second page of a file alone); None: ``1..len(pages)``.
        """
        if not pages:
            # Never commit a document without pages: it would count as indexed and hide the file.
            raise InvalidInputError(f"document {doc_id!r} has no pages to store")
        numbers = list(range(1, len(pages) + 1)) if numbers is None else list(numbers)
        span = numbers[-1]
        self.ensure_recovered()
        gen = self.registry.begin(doc_id, span)
        created: list[str] = []
        try:
            names: list[str | None] = [None] * len(pages)
            if self.store_images:
                for i, page in enumerate(pages):
                    if page.source is not None:
                        names[i], new = self.images.put(page.source, page.image)
                        if new:
                            created.append(names[i])
            ids = [page_point_id(gen, n) for n in numbers]
            with progress(total=len(pages), desc=f"indexing {doc_id}", unit="page", enabled=show_progress) as bar:
                for start in range(0, len(pages), UPSERT_BATCH):
                    stop = min(start + UPSERT_BATCH, len(pages))
                    self.backend.upsert(
                        [
                            PagePoint(
                                ids[i],
                                pages[i].anchors,
                                pages[i].summary,
                                {
                                    "doc_id": doc_id,
                                    "page_number": numbers[i],
                                    "gen": gen,
                                    "image": names[i],
                                    "metadata": metadata,
                                    "text": pages[i].text,
                                    **pages[i].extra,
                                },
                                pages[i].pooled,
                            )
                            for i in range(start, stop)
                        ]
                    )
                    bar.update(stop - start)
            self.backend.flush()
            by_number: list[str | None] = [None] * span
            for number, name in zip(numbers, names):
                by_number[number - 1] = name
            record = DocumentRecord(
                doc_id=doc_id,
                gen=gen,
                num_pages=len(pages),
                num_vectors=sum(int(p.anchors.shape[0]) for p in pages),
                images=by_number,
                metadata=metadata,
                added_at=time.time(),
                pages=None if span == len(pages) else numbers,
            )
            old = self.registry.commit(record)
        except BaseException:
            self._rollback(gen, span, created)
            raise
        self.pages += record.num_pages - (old.num_pages if old else 0)
        if old is not None:
            self._drop(old)
        return record

    def remove(self, doc_id: str) -> DocumentRecord | None:
        """Remove a document (committed at once; its points go right after). None if absent."""
        self.ensure_recovered()
        old = self.registry.remove(doc_id)
        if old is not None:
            self.pages -= old.num_pages
            self._drop(old)
        return old

    def remove_pages(self, record: DocumentRecord, page_numbers: list[int]) -> DocumentRecord | None:
        """Remove some pages of a committed document (all of them: the document). Returns the new
        record, or None when the document went."""
        self.ensure_recovered()
        gone = sorted(set(page_numbers))
        if len(gone) == record.num_pages:
            self.remove(record.doc_id)
            return None
        ids = [page_point_id(record.gen, n) for n in gone]
        vectors = sum(n for n in self.backend.anchor_counts(ids).values())
        new = self.registry.remove_pages(record.doc_id, gone, vectors)
        self.pages -= len(gone)
        try:
            self.backend.delete(ids)
            self.backend.flush()
            self.images.remove(self.registry.unreferenced([record.image_of(n) for n in gone]))
            self.registry.forget_points(ids)
        except Exception:
            logger.exception("could not delete the pages' points yet; they are journaled and go before the next write")
            self.needs_recovery = True
        return new

    def _rollback(self, gen: int, num_pages: int, created_images: list[str]) -> None:
        try:
            self.backend.delete(point_ids(gen, num_pages))
            self.backend.flush()
            self.images.remove(created_images)
            self.registry.forget([gen])
        except Exception:
            logger.exception("could not undo a failed write at once; it will be undone before the next operation")
            self.needs_recovery = True

    def _drop(self, old: DocumentRecord) -> None:
        """Delete the points and now-unused images of a generation already out of the registry.

        A failure is not raised: the registry already says what the index holds, and the journal
        entry makes the next operation (or the next open) finish the job.
        """
        try:
            self.backend.delete(point_ids(old.gen, old.span))
            self.backend.flush()
            self.images.remove(self.registry.unreferenced(old.images))
            self.registry.forget([old.gen])
        except Exception:
            logger.exception(
                "could not remove the old pages of %r yet; they are journaled and will be removed before the "
                "next operation",
                old.doc_id,
            )
            self.needs_recovery = True

    # --- recovery and verification ------------------------------------------------------------

    def ensure_recovered(self) -> None:
        if self.needs_recovery and not self.read_only:
            self.recover()

    def recover(self) -> None:
        """Delete the points of every journaled generation (interrupted writes, unfinished deletes)."""
        entries = self.registry.journal()
        loose = self.registry.journal_points()
        if not entries and not loose and not self.needs_recovery:
            return
        for entry in entries:
            self.backend.delete(point_ids(entry.gen, entry.num_pages))
        self.backend.delete(loose)
        self.backend.flush()
        self.registry.forget([entry.gen for entry in entries])
        self.registry.forget_points(loose)
        self.images.collect_garbage(self.registry.referenced_images())
        self.needs_recovery = False
        if entries:
            logger.warning(
                "recovered the index at %s from an interrupted write: removed the points of %d unfinished or "
                "superseded document versions (%s)",
                self.images.root.parent,
                len(entries),
                ", ".join(sorted({repr(e.doc_id) for e in entries})),
            )

    def check(self, *, repair: bool = False) -> IndexCheck:
        """Compare every point in the engine with the registry (a full scan)."""
        self.ensure_recovered()
        committed = {r.doc_id: r for r in self.registry.documents()}
        seen: dict[str, set[int]] = {}
        stray: list[int] = []
        numbers = {doc_id: set(record.page_numbers) for doc_id, record in committed.items()}
        for pid, payload in self.backend.iter_payloads(["doc_id", "gen", "page_number"]):
            record = committed.get(payload.get("doc_id"))
            if record is None or payload.get("gen") != record.gen:
                stray.append(pid)
                continue
            number = int(payload.get("page_number", 0))
            if number not in numbers[record.doc_id]:  # a deleted page whose point stayed
                stray.append(pid)
                continue
            seen.setdefault(record.doc_id, set()).add(number)
        incomplete = {
            doc_id: record.num_pages - len(seen.get(doc_id, ()))
            for doc_id, record in committed.items()
            if len(seen.get(doc_id, ())) != record.num_pages
        }
        if repair and stray:
            self.backend.delete(stray)
            self.backend.flush()
        return IndexCheck(
            ok=not stray and not incomplete,
            documents=len(committed),
            points=sum(len(pages) for pages in seen.values()) + len(stray),
            stray_points=len(stray),
            incomplete_documents=incomplete,
            repaired=bool(repair and stray),
        )

    def close(self) -> None:
        try:
            if self.read_only:
                self.backend.close_read_only()
            else:
                self.backend.close()
        finally:
            self.registry.close()
