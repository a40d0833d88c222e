"""The storage interface the index talks to: one small class per vector engine.

A backend stores *page points*: an id, the page's anchors as one multivector (compared with
MaxSim over dot products), a few pooled vectors and a single summary vector for the prefetch
stages, and a JSON payload. It knows nothing about documents, generations or images: ``SAPIndex``
orchestrates those.

Staged search (:func:`prefetch_plan`) is decided here once, so every backend runs the same stages:

- with pooled vectors: the ``coarse`` best pages by ``max_j (mean query) . pooled_j`` together
  with the ``coarse // 2`` best by ``(mean query) . summary`` (two exact scans; past the scan
  limit, the ``coarse`` best from the summary vectors' HNSW graph instead); of those, the
  ``prefetch`` best by MaxSim of the whole query over the pooled vectors; of those, the ``limit``
  best by exact MaxSim over the anchors. The two first-stage probes miss different pages: the
  pooled one finds pages with one region close to the query, the mean one pages whose content
  as a whole is;
- without (indexes made with ``pooled_vectors=0``, or by format version 1): the ``prefetch`` best
  summary vectors, then exact MaxSim.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError
from ..filters import FieldMatch
from ..options import StorageType

__all__ = [
    "ANCHORS",
    "POOLED",
    "SUMMARY",
    "Backend",
    "PagePoint",
    "QuerySpec",
    "ScoredPoint",
    "Stage",
    "prefetch_plan",
]

ANCHORS = "anchors"
"""Name of the multivector field: a page's kept anchors, MaxSim, exact scan (HNSW m=0)."""

SUMMARY = "mean"
"""Name of the single-vector field: the page's mean anchor, HNSW-indexed, for two-stage prefetch."""

POOLED = "pooled"
"""Name of the small multivector field: a few pooled anchors per page (MaxSim, exact scan), for the
prefetch stages."""


@dataclass
class PagePoint:
    """One page as stored.

    Attributes:
        id: unsigned integer point id.
        anchors: ``(k, dim)`` float32 anchors (already rounded to the storage precision).
        summary: ``(dim,)`` float32 prefetch vector.
        payload: JSON payload (doc_id, page_number, gen, image, metadata, ...).
        pooled: ``(p, dim)`` float32 pooled anchors, or None where the collection has no such field.
    """

    id: int
    anchors: np.ndarray
    summary: np.ndarray
    payload: dict[str, Any]
    pooled: np.ndarray | None = None


@dataclass
class QuerySpec:
    """One search request.

    Attributes:
        vectors: ``(n_q, dim)`` float32 query multivector.
        summary: ``(dim,)`` float32 prefetch vector (used when ``prefetch`` is set).
        limit: top-k.
        filter: conditions that must all hold (in every stage).
        prefetch: None for one exact stage; else the number of candidates the prefetch stages
            hand to the exact MaxSim rerank.
        coarse: candidates of the first stage's pooled probe (its mean-vector probe keeps half
            as many), which the pooled stage narrows to ``prefetch`` (used where the collection
            has pooled vectors).
        prefetch_exact: the first stage scans every page (pooled vectors against the mean query,
            or summary vectors where there are no pooled vectors) instead of walking the summary
            vectors' HNSW graph.
    """

    vectors: np.ndarray
    summary: np.ndarray
    limit: int
    filter: tuple[FieldMatch, ...] = ()
    prefetch: int | None = None
    prefetch_exact: bool = False
    coarse: int | None = None


@dataclass(frozen=True)
class Stage:
    """One prefetch stage: the ``limit`` best pages by ``query`` on the field ``using``.

    Attributes:
        using: ``SUMMARY`` (``query`` is ``(dim,)``) or ``POOLED`` (``query`` is ``(n, dim)``, MaxSim).
        query: the query vector(s).
        limit: how many pages the stage keeps.
        exact: score every page (or every candidate of the stage before); False: walk the HNSW
            graph with a beam of ``hnsw_ef``.
    """

    using: str
    query: np.ndarray
    limit: int
    exact: bool = True

    @property
    def hnsw_ef(self) -> int:
        """Beam width for a graph search: twice the stage's depth (at least 64)."""
        return max(2 * self.limit, 64)


def prefetch_plan(spec: QuerySpec, pooled: bool) -> list[list[Stage]]:
    """The prefetch levels of ``spec``, first level first (empty: one exact stage).

    Each level is a list of stages whose candidates are pooled (a union); each level ranks only
    the candidates of the level before. ``pooled``: whether the collection has the ``POOLED``
    field. The final, exact stage (MaxSim over ``ANCHORS``, ``spec.limit`` pages) is not part of
    the plan.

    >>> spec = QuerySpec(np.ones((3, 2)), np.ones(2), limit=5, prefetch=50, coarse=500, prefetch_exact=True)
    >>> [[(s.using, s.query.shape, s.limit, s.exact) for s in level] for level in prefetch_plan(spec, pooled=True)]
    [[('pooled', (1, 2), 500, True), ('mean', (2,), 250, True)], [('pooled', (3, 2), 50, True)]]
    >>> [[(s.using, s.query.shape, s.limit, s.exact) for s in level] for level in prefetch_plan(spec, pooled=False)]
    [[('mean', (2,), 50, True)]]
    """
    if not spec.prefetch:
        return []
    depth = int(spec.prefetch)
    if not pooled or not spec.coarse:
        return [[Stage(SUMMARY, spec.summary, depth, exact=spec.prefetch_exact)]]
    coarse = max(int(spec.coarse), depth)
    if spec.prefetch_exact:
        first = [Stage(POOLED, spec.summary[None, :], coarse), Stage(SUMMARY, spec.summary, max(coarse // 2, 1))]
    else:  # past the scan limit: the graph of the summary vectors
        first = [Stage(SUMMARY, spec.summary, coarse, exact=False)]
    return [first, [Stage(POOLED, spec.vectors, depth)]]


def record_point(point_id: int, vectors: dict[str, Any], payload: dict[str, Any] | None) -> PagePoint:
    """A :class:`PagePoint` from an engine record's id, named vectors (nested lists) and payload."""
    pooled = vectors.get(POOLED)
    return PagePoint(
        int(point_id),
        np.asarray(vectors[ANCHORS], dtype=np.float32).reshape(-1, len(vectors[SUMMARY])),
        np.asarray(vectors[SUMMARY], dtype=np.float32),
        dict(payload or {}),
        None if pooled is None else np.asarray(pooled, dtype=np.float32).reshape(-1, len(vectors[SUMMARY])),
    )


@dataclass(frozen=True)
class ScoredPoint:
    """A hit from the engine."""

    id: int
    score: float
    payload: dict[str, Any]


class Backend(ABC):
    """A vector engine holding one collection of page points."""

    kind: str = "backend"

    def __init__(self, *, dim: int, storage: StorageType, oversampling: float = 4.0, pooled: bool = True) -> None:
        self.dim = int(dim)
        self.storage = StorageType(storage)
        self.oversampling = float(oversampling)
        self.pooled = bool(pooled)  # whether the collection has the POOLED field

    def named_vectors(self, point: PagePoint) -> dict[str, np.ndarray]:
        """The vectors of ``point`` by field name, as this collection stores them."""
        vectors = {ANCHORS: point.anchors, SUMMARY: point.summary}
        if self.pooled:
            if point.pooled is None:
                raise BackendError("this index stores pooled vectors, but a page came without them")
            vectors[POOLED] = point.pooled
        return vectors

    @abstractmethod
    def upsert(self, points: Sequence[PagePoint]) -> None:
        """Insert or overwrite points (not necessarily durable before :meth:`flush`)."""

    @abstractmethod
    def delete(self, ids: Sequence[int]) -> None:
        """Delete points by id (missing ids are ignored)."""

    @abstractmethod
    def query(self, requests: Sequence[QuerySpec]) -> list[list[ScoredPoint]]:
        """Run several searches; one list of hits per request, best first, with payloads."""

    @abstractmethod
    def retrieve(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The payloads of the points ``ids`` that exist, by id."""

    @abstractmethod
    def anchor_counts(self, ids: Sequence[int]) -> dict[int, int]:
        """How many anchor vectors each of the points ``ids`` that exist holds, by id."""

    @abstractmethod
    def count(self, filter: tuple[FieldMatch, ...] = ()) -> int:
        """Exact number of points matching ``filter``."""

    @abstractmethod
    def iter_payloads(self, keys: Sequence[str], batch: int = 1024) -> Iterator[tuple[int, dict[str, Any]]]:
        """Every point's id and the payload fields ``keys`` (for verification and repair)."""

    @abstractmethod
    def flush(self) -> None:
        """Make every write so far durable."""

    def optimize(self) -> None:
        """Merge segments and build the summary vector's HNSW graph (a no-op where the engine does it)."""
        return None

    def bytes_on_disk(self) -> int | None:
        """Allocated bytes of the engine's files, or None if they are not local."""
        return None

    def retrieve_points(self, ids: Sequence[int]) -> list[PagePoint]:
        """The points ``ids`` with their vectors and whole payload, in the order given (missing ids
        are left out): what an export reads back."""
        raise BackendError(f"the {self.kind} backend cannot read stored vectors back")

    @abstractmethod
    def close(self) -> None:
        """Release the engine (flushes first)."""

    def close_read_only(self) -> None:
        """Release the engine of a read-only open (nothing to flush)."""
        self.close()

    def describe(self) -> dict[str, Any]:
        """JSON-able location of the collection, for the manifest (never credentials)."""
        return {"kind": self.kind}
