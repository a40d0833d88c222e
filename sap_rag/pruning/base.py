"""The pruner interface: a small ABC whose public method validates and whose subclasses implement ``_impl``."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage

__all__ = ["Pruner", "budget", "validate_keep_ratio"]


def validate_keep_ratio(keep_ratio: float) -> float:
    """Return ``keep_ratio`` as a float if it lies in (0, 1], else raise ``InvalidInputError``."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)):
        raise InvalidInputError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
    ratio = float(keep_ratio)
    if not math.isfinite(ratio) or not 0.0 < ratio <= 1.0:
        raise InvalidInputError(
            f"keep_ratio must be in (0, 1] (0.1 keeps 10% of a page's visual tokens), got {keep_ratio!r}"
        )
    return ratio


def budget(keep_ratio: float, num_tokens: int) -> int:
    """Number of vectors kept of ``num_tokens``: ``max(1, int(keep_ratio * num_tokens))``.

    >>> budget(0.1, 1024), budget(0.1, 768), budget(0.1, 5), budget(1.0, 7)
    (102, 76, 1, 7)
    """
    return max(1, int(keep_ratio * num_tokens))


def select_rows(page: PageEncoding, order: torch.Tensor, scores: torch.Tensor, k: int, method: str) -> PrunedPage:
    """Keep the first ``k`` token indices of ``order`` as a ``PrunedPage``, re-sorted into page order."""
    kept = torch.sort(order[:k]).values
    return PrunedPage(
        embeddings=page.embeddings[kept],
        positions=page.positions[kept],
        indices=kept,
        scores=scores[kept],
        num_tokens=page.num_tokens,
        method=method,
    )


def top_k_rows(page: PageEncoding, scores: torch.Tensor, k: int, method: str) -> PrunedPage:
    """Keep the ``k`` tokens with the highest ``scores`` (ties go to the earlier token)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return select_rows(page, order, scores, k, method)


class Pruner(ABC):
    """Reduces a page's visual tokens to a budget of ``max(1, int(keep_ratio * N))`` vectors.

    Subclasses set ``name`` and implement ``_impl(page, k)``; ``prune`` checks the input and the
    result, so every method is held to the same contract.
    """

    name: ClassVar[str] = "pruner"

    def __init__(self, keep_ratio: float = 0.1) -> None:
        self.keep_ratio = validate_keep_ratio(keep_ratio)

    def prune(self, page: PageEncoding) -> PrunedPage:
        """Prune one page. Returns at most ``budget(keep_ratio, N)`` vectors of the page's dim."""
        if not isinstance(page, PageEncoding):
            raise InvalidInputError(
                f"{type(self).__name__}.prune expects a PageEncoding (from encoder.encode_pages), "
                f"got {type(page).__name__}"
            )
        n = page.num_tokens
        if n == 0 or page.embeddings.ndim != 2:
            raise InvalidInputError(
                f"the page has no visual tokens to prune (embeddings shape {tuple(page.embeddings.shape)})"
            )
        k = budget(self.keep_ratio, n)
        result = self._impl(page, k)
        if result.num_kept > k or result.embeddings.shape[1] != page.dim:
            raise AssertionError(
                f"{type(self).__name__} returned {tuple(result.embeddings.shape)} for a budget of {k} x {page.dim}"
            )
        return result

    def prune_many(self, pages: Sequence[PageEncoding]) -> list[PrunedPage]:
        """Prune each page of ``pages``."""
        return [self.prune(page) for page in pages]

    def config(self) -> dict[str, Any]:
        """JSON-able description of this pruner (stored in index manifests)."""
        return {"name": self.name, "keep_ratio": self.keep_ratio}

    @abstractmethod
    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        """Return at most ``k`` vectors for ``page`` (already validated, ``1 <= k <= N``)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.config().items() if key != "name")
        return f"{type(self).__name__}({args})"
