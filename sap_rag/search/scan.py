"""Exact batched MaxSim scans over a flat anchor matrix (all pages, or a subset), top-k per query.

The pages' anchors lie end to end in one ``(n_vectors, dim)`` matrix (float16 or float32, e.g. a
memory-mapped :class:`~sap_rag.index.anchor_copy.AnchorCopy`), page ``p`` owning rows
``offsets[p]:offsets[p + 1]``. A batch of queries shares one pass over that matrix: their tokens
are stacked into one ``(n_tokens, dim)`` matrix, so each chunk of anchors is read once and
multiplied against every query (one matmul on all of torch's threads), which is what makes
``search_batch`` of many queries cheaper per query than one query at a time.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..errors import DimensionMismatchError, InvalidInputError

__all__ = ["ScanPrecision", "ScanResult", "maxsim_pages", "scan_maxsim"]

_CHUNK_VECTORS = 16384
"""Anchors multiplied at a time: the ``(chunk, n_tokens)`` similarity block stays in cache-sized
pieces (16384 x 640 float32 = 40 MB at 32 queries of 20 tokens) instead of ``n_vectors x n_tokens``."""


class ScanPrecision(str, Enum):
    """Arithmetic of the scan's matmul.

    - ``float32`` (default): the anchors (float16 or float32 as stored) and the queries in float32,
      accumulated in float32: the same numbers as the engine's exact MaxSim, so the same ranking
      (ties aside).
    - ``bfloat16``: both rounded to bfloat16 (8 bits of mantissa) for a faster matmul; scores
      differ from exact in the third digit, so close pages can swap. Meant for candidate
      generation, not as the exact answer.
    """

    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


@dataclass(frozen=True)
class ScanResult:
    """Top-k of a scan.

    Attributes:
        pages: ``(n_queries, k')`` int64 page indices (into ``offsets``), best first, ``k' = min(k, n_pages)``.
        scores: ``(n_queries, k')`` float64 MaxSim scores of those pages (as accumulated in float32).
    """

    pages: np.ndarray
    scores: np.ndarray


def _check(queries: Sequence[np.ndarray], dim: int) -> list[np.ndarray]:
    if not queries:
        raise InvalidInputError("a scan needs at least one query")
    out = []
    for i, q in enumerate(queries):
        q = np.asarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[0] == 0:
            raise InvalidInputError(f"query {i} must be a non-empty (n_tokens, dim) matrix, got shape {q.shape}")
        if q.shape[1] != dim:
            raise DimensionMismatchError(f"query {i} has dim {q.shape[1]} but the anchors have dim {dim}")
        out.append(q)
    return out


def _check_offsets(offsets: np.ndarray, n_vectors: int) -> np.ndarray:
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n_vectors:
        raise InvalidInputError("offsets must run from 0 to the number of anchor rows")
    if offsets.size > 1 and np.any(np.diff(offsets) <= 0):
        raise InvalidInputError("every page needs at least one anchor (offsets must increase strictly)")
    return offsets


def _merge(best_s: np.ndarray, best_p: np.ndarray, s: np.ndarray, p: np.ndarray, k: int) -> tuple:
    """Keep the ``k`` best of two ``(n_queries, *)`` candidate sets (unsorted)."""
    all_s = np.concatenate([best_s, s], axis=1)
    all_p = np.concatenate([best_p, np.broadcast_to(p, s.shape)], axis=1)
    if all_s.shape[1] <= k:
        return all_s, all_p
    keep = np.argpartition(-all_s, k - 1, axis=1)[:, :k]
    return np.take_along_axis(all_s, keep, axis=1), np.take_along_axis(all_p, keep, axis=1)


def _page_scores(sims, lengths, token_starts: np.ndarray) -> np.ndarray:
    """``(n_pages, n_queries)`` MaxSim from a ``(rows, n_tokens)`` float32 similarity block whose
    rows are pages of ``lengths`` rows each, in order."""
    import torch

    seg = torch.from_numpy(np.repeat(np.arange(lengths.size, dtype=np.int64), lengths))
    per_token = torch.full((lengths.size, sims.shape[1]), -torch.inf)
    with warnings.catch_warnings():  # index_reduce is "beta"; it is the fastest segment max here (4x reduceat)
        warnings.simplefilter("ignore", UserWarning)
        per_token.index_reduce_(0, seg, sims, "amax")  # max over each page's rows
    return np.add.reduceat(per_token.numpy(), token_starts, axis=1)  # sum over each query's tokens


def scan_maxsim(
    queries: Sequence[np.ndarray],
    anchors: np.ndarray,
    offsets: np.ndarray,
    k: int,
    *,
    pages: np.ndarray | None = None,
    precision: ScanPrecision | str = ScanPrecision.FLOAT32,
    chunk_vectors: int = _CHUNK_VECTORS,
) -> ScanResult:
    """Exact MaxSim of every query against every page (or ``pages``), the ``k`` best per query.

    Args:
        queries: per query an ``(n_q, dim)`` matrix (already rounded to the storage precision).
        anchors: ``(n_vectors, dim)`` float16 or float32 (a memory map is read chunk by chunk).
        offsets: ``(n_pages + 1,)`` int64; page ``p`` is rows ``offsets[p]:offsets[p + 1]``.
        k: how many pages per query.
        pages: optional int64 page indices to score (a filter's subset); None: all pages.
        precision: see :class:`ScanPrecision`.
        chunk_vectors: anchors per matmul (whole pages are kept together).

    Returns:
        A :class:`ScanResult`, best first; ties are ordered by page index.
    """
    import torch

    anchors_dim = int(anchors.shape[1])
    qs = _check(queries, anchors_dim)
    offsets = _check_offsets(offsets, int(anchors.shape[0]))
    precision = ScanPrecision(precision)
    if k < 1:
        raise InvalidInputError(f"k must be at least 1, got {k}")
    n_pages = offsets.size - 1
    subset = np.arange(n_pages, dtype=np.int64) if pages is None else np.unique(np.asarray(pages, dtype=np.int64))
    if subset.size and (subset[0] < 0 or subset[-1] >= n_pages):
        raise InvalidInputError(f"page indices must lie in 0..{n_pages - 1}")
    n_q = len(qs)
    tokens = np.concatenate(qs, axis=0)
    token_starts = np.cumsum([0] + [q.shape[0] for q in qs[:-1]]).astype(np.int64)
    fp32 = precision is ScanPrecision.FLOAT32
    dtype = torch.float32 if fp32 else torch.bfloat16
    q_t = torch.from_numpy(tokens).to(dtype).T.contiguous()  # (dim, n_tokens)
    best_s = np.empty((n_q, 0))
    best_p = np.empty((n_q, 0), dtype=np.int64)
    lengths = offsets[subset + 1] - offsets[subset]
    i = 0
    while i < subset.size:
        # a run of pages totalling about chunk_vectors rows (at least one page)
        j = int(np.searchsorted(np.cumsum(lengths[i:]), chunk_vectors, side="right")) + i
        j = max(j, i + 1)
        chunk = subset[i:j]
        if chunk[-1] - chunk[0] == chunk.size - 1:  # contiguous pages: one slice of the matrix
            lo, hi = int(offsets[chunk[0]]), int(offsets[chunk[-1] + 1])
            rows = np.asarray(anchors[lo:hi])
        else:
            idx = np.concatenate([np.arange(offsets[p], offsets[p + 1]) for p in chunk])
            rows = np.asarray(anchors[idx])
        with warnings.catch_warnings():  # a read-only memory map: the matmul only reads it
            warnings.simplefilter("ignore", UserWarning)
            # numpy's float16 -> float32 conversion is about 2x torch's here
            block = torch.from_numpy(rows.astype(np.float32, copy=False)) if fp32 else torch.from_numpy(rows).to(dtype)
        sims = (block @ q_t).to(torch.float32)  # (rows, n_tokens)
        scores = _page_scores(sims, lengths[i:j], token_starts).T.astype(np.float64)
        best_s, best_p = _merge(best_s, best_p, scores, chunk[None, :], k)
        i = j
    # best first; ties by page index (lexsort: last key is primary)
    order = np.lexsort((best_p, -best_s), axis=1) if best_s.size else np.empty((n_q, 0), dtype=np.int64)
    return ScanResult(np.take_along_axis(best_p, order, axis=1), np.take_along_axis(best_s, order, axis=1))


def maxsim_pages(
    queries: Sequence[np.ndarray], anchors: np.ndarray, offsets: np.ndarray, pages: np.ndarray
) -> np.ndarray:
    """``(n_queries, len(pages))`` exact float32-accumulated MaxSim of each query against the given
    pages (a rerank of candidates), in the order of ``pages`` (duplicates allowed)."""
    pages = np.asarray(pages, dtype=np.int64)
    result = scan_maxsim(queries, anchors, offsets, max(1, pages.size), pages=pages)
    out = np.full((len(queries), pages.size), -np.inf)
    for q in range(len(queries)):
        where = dict(zip(result.pages[q].tolist(), result.scores[q].tolist(), strict=True))
        out[q] = [where[int(p)] for p in pages]
    return out
