"""Turning tensors into what the engine stores and searches with.

Vectors are rounded to the storage precision *before* they reach a backend: float16 storage
means the engine scores float16 anchors against a float16-rounded query, and rounding on our
side makes every backend (Qdrant Edge, a Qdrant server, qdrant-client's float32 local mode)
score exactly the same numbers.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ..pipeline.arrays import as_matrix  # re-exported: it lived here
from .options import StorageType

__all__ = [
    "FLOAT16_MAX",
    "POOLING_KIND",
    "SUMMARY_KIND",
    "as_matrix",
    "page_pooled",
    "page_summary",
    "pool_anchors",
    "query_summary",
    "to_storage",
]

SUMMARY_KIND = "normalized_mean"
"""How a page's prefetch vector is made: the mean of its anchors, scaled to unit length."""

POOLING_KIND = "spherical_kmeans"
"""How a page's pooled vectors are made (recorded in the manifest): see :func:`pool_anchors`."""

POOLING_ITERATIONS = 10
"""Lloyd iterations of the pooling k-means (it usually settles in fewer)."""


FLOAT16_MAX = float(np.finfo(np.float16).max)
"""65504: float16 (and int8, whose rescoring copy is float16) storage holds no larger magnitude."""


def to_storage(array: np.ndarray, storage: StorageType, what: str = "the vectors") -> np.ndarray:
    """Round a float32 array to the precision the engine stores (float16 for float16 and int8).

    Raises:
        InvalidInputError: a value is NaN or infinite, or (float16 and int8 storage) beyond
            float16's range, where it would round to infinity: a page so stored is never found, a
            query so rounded finds nothing.

    >>> to_storage(np.array([1/3], np.float32), StorageType.FLOAT16).item()
    0.333251953125
    """
    if storage is StorageType.FLOAT32:
        out = array.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            raise InvalidInputError(f"{what} contain NaN or infinite values")
        return out
    with np.errstate(over="ignore"):
        half = array.astype(np.float16)
    if not np.isfinite(half).all():
        if not np.isfinite(array).all():
            raise InvalidInputError(f"{what} contain NaN or infinite values")
        largest = float(np.abs(array).max())
        raise InvalidInputError(
            f"{what} hold values up to {largest:.6g} in magnitude, beyond the range of the index's "
            f"{storage.value} storage (float16, at most {FLOAT16_MAX:g}): rounded to infinity they score nothing, so "
            "such a page is never found and such a query finds nothing; normalise the vectors (embeddings are "
            "usually unit length), or create the index with storage='float32'"
        )
    return half.astype(np.float32)


def page_summary(anchors: np.ndarray, storage: StorageType) -> np.ndarray:
    """``(dim,)`` prefetch vector of a page: its ``(k, dim)`` anchors' mean, scaled to unit length."""
    mean = anchors.astype(np.float64).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm > 0:
        mean /= norm
    return to_storage(mean.astype(np.float32), storage)


def query_summary(query: np.ndarray) -> np.ndarray:
    """``(dim,)`` prefetch query: the mean of the ``(n_q, dim)`` query vectors.

    Its dot product with a page's summary is proportional to the mean query-anchor similarity.
    """
    return query.astype(np.float64).mean(axis=0).astype(np.float32)


def pool_anchors(anchors: np.ndarray, count: int, iterations: int = POOLING_ITERATIONS) -> np.ndarray:
    """``(min(count, k), dim)`` unit vectors summarising a page's ``(k, dim)`` anchors.

    Spherical k-means: the anchors are scaled to unit length; the first centre is the anchor
    closest to their mean, each next one the anchor least similar to the centres so far
    (farthest-point start, deterministic); then each anchor joins the centre it has the highest
    dot product with and each centre becomes its members' normalised mean. A page with at most
    ``count`` anchors is returned as is (pooling would only lose information).

    Why: MaxSim of a query over these few vectors ranks pages almost as MaxSim over all anchors
    does, at a fraction of the cost, so it can narrow thousands of candidates to the few hundred
    the exact stage reranks.

    >>> a = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> np.round(pool_anchors(a, 2).astype(float), 3).tolist()  # (1, 0) + (0.994, 0.110), normalised
    [[0.998, 0.055], [0.055, 0.998]]
    >>> pool_anchors(a, 8).shape
    (4, 2)
    """
    x = np.asarray(anchors, dtype=np.float64)
    if count < 1:
        raise InvalidInputError(f"count must be at least 1, got {count}")
    if x.shape[0] <= count:
        return x.astype(np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    chosen = [int(np.argmax(unit @ unit.mean(axis=0)))]
    nearest = unit @ unit[chosen[0]]  # similarity of each anchor to its closest centre so far
    for _ in range(count - 1):
        chosen.append(int(np.argmin(nearest)))
        nearest = np.maximum(nearest, unit @ unit[chosen[-1]])
    centres = unit[chosen]
    for _ in range(iterations):
        labels = np.argmax(unit @ centres.T, axis=1)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, unit)
        lengths = np.linalg.norm(sums, axis=1, keepdims=True)
        # A centre that lost all its members (or whose members cancel out) stays where it was.
        updated = np.where(lengths > 1e-12, sums / np.maximum(lengths, 1e-12), centres)
        if np.array_equal(updated, centres):
            break
        centres = updated
    return centres.astype(np.float32)


def page_pooled(anchors: np.ndarray, count: int, storage: StorageType) -> np.ndarray:
    """``(min(count, k), dim)`` pooled vectors of a page (:func:`pool_anchors`) at storage precision."""
    return to_storage(pool_anchors(anchors, count), storage)
