"""Arrays in: any tensor, array or nested list of vectors as a checked ``(n, dim)`` float32 matrix."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import DimensionMismatchError, InvalidInputError

__all__ = ["as_matrix"]


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
