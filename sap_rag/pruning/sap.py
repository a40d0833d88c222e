"""Structural Anchor Pruning: keep the visual tokens with the highest mean in-degree over a layer window."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any, ClassVar

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage
from .base import Pruner, top_k_rows

__all__ = ["HeadReduce", "SAPPruner"]


class HeadReduce(str, Enum):
    """How a layer's per-head in-degrees become one score per token."""

    MEAN = "mean"  # the method as published
    MAX = "max"  # a variant for the comparison harness


class SAPPruner(Pruner):
    """Keep ``max(1, int(keep_ratio * N))`` tokens ranked by SAP score.

    SAP score ``s[j] = mean_{l in W} c_l[j]`` with ``c_l[j] = mean_h sum_{i in V} A[l,h][i,j]``
    (see ``sap_rag.encoders.attention``). Query-agnostic: done once per page at index time.

    Args:
        keep_ratio: fraction of visual tokens to keep, in (0, 1].
        window: layers to average; None uses the window the page was encoded with.
        heads: ``"mean"`` (default, the method) or ``"max"`` over heads.
    """

    name: ClassVar[str] = "sap"

    def __init__(
        self,
        keep_ratio: float = 0.1,
        *,
        window: Sequence[int] | None = None,
        heads: HeadReduce | str = HeadReduce.MEAN,
    ) -> None:
        super().__init__(keep_ratio)
        self.window = tuple(int(layer) for layer in window) if window is not None else None
        if self.window is not None and not self.window:
            raise InvalidInputError("window must name at least one layer, or be None for the page's own window")
        try:
            self.heads = HeadReduce(heads)
        except ValueError:
            raise InvalidInputError(f"heads must be 'mean' or 'max', got {heads!r}") from None

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        scores = page.window_scores(self.window, reduce=self.heads.value)
        return top_k_rows(page, scores, k, self.name)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.update(window=list(self.window) if self.window is not None else None, heads=self.heads.value)
        return cfg
