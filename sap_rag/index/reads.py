"""The read side of ``SAPIndex``: search (text, image or vector queries), page records, documents, stats."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError
from .anchor_copy import AnchorCopy, ensure_copy, search_copy
from .backends.base import QuerySpec, ScoredPoint
from .checks import check_queries, check_sequence, positive_int
from .errors import DocumentNotFoundError
from .filters import parse_filter
from .options import (
    DEFAULT_COARSE,
    DEFAULT_EXACT_PREFETCH_MAX_PAGES,
    DEFAULT_SCAN,
    SCAN_AUTO_MIN_BATCH,
    ScanMode,
    TwoStageMode,
    parse_scan,
    parse_two_stage,
)
from .registry import DocumentRecord, page_point_id
from .results import DocumentInfo, IndexCheck, IndexStats, SearchHit, parse_page_id
from .state import IndexState, id_list
from .vectors import query_summary, to_storage

logger = logging.getLogger(__name__)

__all__ = ["IndexReads"]

_QUERY_BATCH = 64
_SCAN_BATCH = 64
"""Queries sharing one pass over the anchor copy (their tokens are one matmul operand)."""


class IndexReads(IndexState):
    """Searching and reading an index (also opened read-only)."""

    def search(
        self,
        query: str | Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
        scan: str | None = None,
    ) -> list[SearchHit]:
        """The ``k`` pages with the highest MaxSim against ``query``, best first.

        Args:
            query: a query string (encoded with the index's encoder), a ``PIL.Image.Image``
                (encoded as a page: its visual tokens' embeddings are the query vectors, so it
                finds pages that look like it), or precomputed query embeddings ``(n_tokens, dim)``
                (torch tensor or numpy array).
            k: how many pages to return.
            filter: ``{"doc_id": "a"}``, ``{"doc_id": ["a", "b"]}`` (any of), ``{"page_number": 3}``,
                or any metadata key (``{"source": "report.pdf"}``); all keys must match.
            two_stage: override the index's setting: True, False or ``"auto"``.
            prefetch: override how many candidates the exact MaxSim stage reranks.
            coarse: override how many candidates the first stage keeps (at least ``prefetch``).
            scan: where an exact, unfiltered search scans: ``"auto"``, ``"engine"`` or ``"copy"``
                (see :class:`~sap_rag.index.options.ScanMode`); same results either way.
        """
        if isinstance(query, (list, tuple)) and query and isinstance(query[0], str):
            raise InvalidInputError("search takes one query; use search_batch for a list of queries")
        return self.search_batch(
            [query], k, filter=filter, two_stage=two_stage, prefetch=prefetch, coarse=coarse, scan=scan
        )[0]

    def search_batch(
        self,
        queries: Sequence[str | Any],
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
        show_progress: bool = False,
        scan: str | None = None,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for many queries (strings, images and/or ``(n_tokens, dim)`` embeddings) at once.

        Exact searches over the anchor copy (``scan``) share one pass over the anchors among the batch."""
        self._check_open()
        items = check_queries(check_sequence(queries, "queries"))
        k = positive_int(k, "k")
        conditions = parse_filter(filter)
        mode = parse_scan(self.manifest.two_stage.get("scan", DEFAULT_SCAN) if scan is None else scan)
        depth = self._prefetch_depth(two_stage, prefetch, k)
        first = self._coarse_depth(coarse, depth)
        vectors = [to_storage(v, self.storage) for v in self._pipeline.query_vectors(items, show_progress)]
        limit = self.manifest.two_stage.get("exact_prefetch_max_pages", DEFAULT_EXACT_PREFETCH_MAX_PAGES)
        exact_prefetch = len(self) <= int(limit)
        specs = [QuerySpec(v, query_summary(v), k, conditions, depth, exact_prefetch, coarse=first) for v in vectors]
        out: list[list[SearchHit]] = []
        with self._open():
            if not self.read_only:
                self._store.ensure_recovered()
            copy = self._scan_copy(mode, len(vectors)) if depth is None and not conditions else None
            if copy is not None:
                for start in range(0, len(vectors), _SCAN_BATCH):
                    part = vectors[start : start + _SCAN_BATCH]
                    for v, hits in zip(part, search_copy(copy, self.backend, part, k), strict=True):
                        out.append([self._hit(p, int(v.shape[0])) for p in hits])
                return out
            for start in range(0, len(specs), _QUERY_BATCH):
                for hits in self.backend.query(specs[start : start + _QUERY_BATCH]):
                    tokens = int(specs[len(out)].vectors.shape[0])
                    out.append([self._hit(p, tokens) for p in hits])
        return out

    def get_pages(self, page_ids: Sequence[str]) -> list[SearchHit | None]:
        """The pages with these ids (see :func:`sap_rag.page_id`), in order; None for an id the
        index does not hold. Records have ``score`` 0, ``relevance`` 0 and ``num_query_tokens`` 0.

        Raises:
            InvalidInputError: an id is not a page id.
        """
        self._check_open()
        wanted = [parse_page_id(p) for p in id_list(page_ids)]
        with self._open():
            records: dict[str, DocumentRecord | None] = {}
            points: list[int | None] = []
            for doc_id, number in wanted:
                if doc_id not in records:
                    records[doc_id] = self._registry.get(doc_id)
                record = records[doc_id]
                ok = record is not None and number in record.page_numbers
                points.append(page_point_id(record.gen, number) if ok and record is not None else None)
            payloads = self.backend.retrieve([p for p in points if p is not None])
        out: list[SearchHit | None] = []
        for point in points:
            payload = payloads.get(point) if point is not None else None
            out.append(None if payload is None else self._hit(ScoredPoint(point, 0.0, payload), 0))  # type: ignore[arg-type]
        return out

    def document(self, doc_id: str) -> DocumentInfo:
        """What the index holds of one document."""
        with self._open():
            record = self._registry.get(doc_id)
            if record is None:
                raise DocumentNotFoundError(f"no document {doc_id!r} in the index at {self.path}")
            return self._info(record)

    def documents(self, *, source: str | None = None) -> list[str]:
        """Ids of every document, sorted; with ``source``, only those whose metadata ``source``
        equals it (an indexed lookup: how ``add_documents`` finds a changed file's old version)."""
        with self._open():
            return self._registry.doc_ids(source)

    def stats(self) -> IndexStats:
        """Counts, sizes and settings; see :class:`IndexStats`."""
        with self._open():
            documents, pages, vectors = self._registry.totals()
            disk = self.backend.bytes_on_disk()
            return IndexStats(
                pages=pages,
                documents=documents,
                vectors=vectors,
                vectors_per_page=vectors / pages if pages else 0.0,
                bytes_on_disk=disk,
                bytes_per_page=(disk / pages if pages else None) if disk is not None else None,
                image_bytes=self._store.images.bytes_on_disk(),
                keep_ratio=self.manifest.keep_ratio,
                window=self.manifest.window,
                storage=self.storage.value,
                backend=self.backend.kind,
                two_stage=self._prefetch_depth(None, None, 1) is not None,
            )

    def check(self, *, repair: bool = False) -> IndexCheck:
        """Compare every point in the engine with the registry (a full scan).

        Reports points of uncommitted or replaced generations (``stray_points``) and committed
        documents with missing pages. With ``repair=True`` stray points are deleted.
        """
        with self._open(write=repair):
            return self._store.check(repair=repair)

    def _scan_copy(self, mode: ScanMode, queries: int) -> AnchorCopy | None:
        """The fresh anchor copy to scan under ``mode`` (rebuilt here where stale and writable), or
        None: scan through the engine."""
        if mode is ScanMode.ENGINE:
            return None
        if mode is ScanMode.AUTO and (self.backend.kind != "edge" or queries < SCAN_AUTO_MIN_BATCH):
            return None
        copy = self._anchor_copy
        if copy is None or not copy.fresh(self._registry):
            copy = ensure_copy(
                self.path, self._registry, self.backend, self.manifest.dim, self.storage, read_only=self.read_only
            )
            self._anchor_copy = copy
        return copy

    def _prefetch_depth(self, two_stage: bool | str | None, prefetch: int | None, k: int) -> int | None:
        settings = self.manifest.two_stage
        mode = parse_two_stage(settings["mode"] if two_stage is None else two_stage)
        if mode is TwoStageMode.NEVER or (mode is TwoStageMode.AUTO and len(self) < int(settings["threshold"])):
            return None
        depth = int(settings["prefetch"]) if prefetch is None else positive_int(prefetch, "prefetch")
        return max(depth, k)

    def _coarse_depth(self, coarse: int | None, depth: int | None) -> int | None:
        """First-stage candidates (None: no pooled stage, as without pooled vectors or stages)."""
        if coarse is not None:
            coarse = positive_int(coarse, "coarse")
        if depth is None or self.manifest.pooled_vectors == 0:
            return None
        value = int(self.manifest.two_stage.get("coarse", DEFAULT_COARSE)) if coarse is None else coarse
        return max(value, depth)
