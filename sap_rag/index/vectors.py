"""Turning tensors into what the engine stores and searches with.

Vectors are rounded to the storage precision *before* they reach a backend: float16 storage
means the engine scores float16 anchors against a float16-rounded query, and rounding on our
side makes every backend (Qdrant Edge, a Qdrant server, qdrant-client's float32 local mode)
score exactly the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DimensionMismatchError, InvalidInputError
from .options import StorageType

__all__ = ["SUMMARY_KIND", "as_matrix", "page_summary", "query_summary", "to_storage"]

SUMMARY_KIND = "normalized_mean"
"""How a page's prefetch vector is made: the mean of its anchors, scaled to unit length."""


def as_matrix(value: Any, dim: int, what: str) -> np.ndarray:
    """``value`` (torch tensor, numpy array or nested list) as a ``(n, dim)`` float32 array.

    >>> as_matrix([[1, 0], [0, 1]], 2, "query").dtype
    dtype('float32')
    """
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().to("cpu", torch.float32).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a (tokens, dim) tensor or array, got {type(value).__name__}") from exc
    if array.ndim != 2:
        raise InvalidInputError(
            f"{what} must be 2-D (tokens, dim), got shape {tuple(array.shape)}"
            + ("; wrap a single vector as v[None, :]" if array.ndim == 1 else "")
        )
    if array.shape[1] != dim:
        raise DimensionMismatchError(
            f"{what} has vectors of dim {array.shape[1]}, but the index stores dim {dim}; "
            "encode it with the index's encoder"
        )
    if array.shape[0] == 0:
        raise InvalidInputError(f"{what} has no vectors")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{what} contains NaN or infinite values")
    return np.ascontiguousarray(array)


def to_storage(array: np.ndarray, storage: StorageType) -> np.ndarray:
    """Round a float32 array to the precision the engine stores (float16 for float16 and int8).

    >>> to_storage(np.array([1/3], np.float32), StorageType.FLOAT16).item()
    0.333251953125
    """
    if storage is StorageType.FLOAT32:
        return array.astype(np.float32, copy=False)
    return array.astype(np.float16).astype(np.float32)


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
