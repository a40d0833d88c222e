"""The storage interface the index talks to: one small class per vector engine.

A backend stores *page points*: an id, the page's anchors as one multivector (compared with
MaxSim over dot products), a single summary vector for the first search stage, and a JSON payload.
It knows nothing about documents, generations or images: ``SAPIndex`` orchestrates those.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..filters import FieldMatch
from ..options import StorageType

__all__ = ["ANCHORS", "SUMMARY", "Backend", "PagePoint", "QuerySpec", "ScoredPoint"]

ANCHORS = "anchors"
"""Name of the multivector field: a page's kept anchors, MaxSim, exact scan (HNSW m=0)."""

SUMMARY = "mean"
"""Name of the single-vector field: the page's mean anchor, HNSW-indexed, for two-stage prefetch."""


@dataclass
class PagePoint:
    """One page as stored.

    Attributes:
        id: unsigned integer point id.
        anchors: ``(k, dim)`` float32 anchors (already rounded to the storage precision).
        summary: ``(dim,)`` float32 prefetch vector.
        payload: JSON payload (doc_id, page_number, gen, image, metadata, ...).
    """

    id: int
    anchors: np.ndarray
    summary: np.ndarray
    payload: dict[str, Any]


@dataclass
class QuerySpec:
    """One search request.

    Attributes:
        vectors: ``(n_q, dim)`` float32 query multivector.
        summary: ``(dim,)`` float32 prefetch vector (used when ``prefetch`` is set).
        limit: top-k.
        filter: conditions that must all hold.
        prefetch: None for one exact stage; else the number of candidates the first stage on
            ``SUMMARY`` hands to the exact MaxSim rerank.
        prefetch_exact: rank the summary vectors with an exact scan instead of the HNSW graph
            (cheap up to a few hundred thousand pages, and it finds more of the best candidates).
    """

    vectors: np.ndarray
    summary: np.ndarray
    limit: int
    filter: tuple[FieldMatch, ...] = ()
    prefetch: int | None = None
    prefetch_exact: bool = False


@dataclass(frozen=True)
class ScoredPoint:
    """A hit from the engine."""

    id: int
    score: float
    payload: dict[str, Any]


class Backend(ABC):
    """A vector engine holding one collection of page points."""

    kind: str = "backend"

    def __init__(self, *, dim: int, storage: StorageType, oversampling: float = 4.0) -> None:
        self.dim = int(dim)
        self.storage = StorageType(storage)
        self.oversampling = float(oversampling)

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

    @abstractmethod
    def close(self) -> None:
        """Release the engine (flushes first)."""

    def describe(self) -> dict[str, Any]:
        """JSON-able location of the collection, for the manifest (never credentials)."""
        return {"kind": self.kind}
