"""Anchor pooling: SAP's anchors as centres, every pruned token merged into its nearest anchor."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any, ClassVar

import torch

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage
from ._merge import all_tokens, merge_by_labels
from .base import Pruner
from .sap import Debias, HeadReduce, SAPPruner

__all__ = ["AnchorAssign", "AnchorPoolPruner", "assign_to_anchors"]


class AnchorAssign(str, Enum):
    """How a pruned token finds its anchor."""

    COSINE = "cosine"  # the anchor whose embedding is most similar (what MaxSim will compare)
    GRID = "grid"  # the anchor nearest on the page's patch grid (a region around each anchor)


def assign_to_anchors(page: PageEncoding, anchors: torch.Tensor, how: AnchorAssign) -> torch.Tensor:
    """``(N,)`` int64: for each token, the position in ``anchors`` of the anchor it merges into.

    Args:
        page: the page (``embeddings`` ``(N, dim)`` L2-normalised, ``positions`` ``(N, 2)``).
        anchors: ``(k,)`` ascending token indices of the anchors; each anchor is its own centre.
        how: cosine similarity of embeddings (highest wins) or Euclidean distance on the grid
            (smallest wins); ties go to the earlier anchor.
    """
    if how is AnchorAssign.COSINE:
        e = page.embeddings.float()
        e = torch.nn.functional.normalize(e, dim=-1)
        affinity = e @ e[anchors].T  # (N, k), higher is nearer
    else:
        p = page.positions.float()
        affinity = -torch.cdist(p, p[anchors])  # (N, k), higher is nearer
    labels = affinity.argmax(dim=1)  # argmax returns the first maximum: ties to the earlier anchor
    labels[anchors] = torch.arange(len(anchors))
    return labels


class AnchorPoolPruner(Pruner):
    """Keep SAP's ``k`` anchors as centres and merge every other token into its nearest anchor.

    The index holds the same ``k`` vectors per page as SAP, but each is the L2-normalised mean of
    its anchor and the tokens assigned to it, so what SAP drops is folded in instead of lost.
    Positions are the members' mean; ``indices`` is None; vectors come in page order of their
    first member.

    Args:
        keep_ratio: fraction of visual tokens to keep, in (0, 1].
        assign: ``"cosine"`` (default: the anchor with the most similar embedding, what a query's
            MaxSim compares) or ``"grid"`` (the nearest anchor on the patch grid).
        window, heads, debias, causal: the anchors' SAP score, as :class:`SAPPruner` takes them.
    """

    name: ClassVar[str] = "sap_anchor_pool"

    def __init__(
        self,
        keep_ratio: float = 0.1,
        *,
        assign: AnchorAssign | str = AnchorAssign.COSINE,
        window: Sequence[int] | None = None,
        heads: HeadReduce | str = HeadReduce.MEAN,
        debias: Debias | str = Debias.NONE,
        causal: bool | None = None,
    ) -> None:
        super().__init__(keep_ratio)
        try:
            self.assign = AnchorAssign(assign)
        except ValueError:
            raise InvalidInputError(f"assign must be 'cosine' or 'grid', got {assign!r}") from None
        self._sap = SAPPruner(keep_ratio, window=window, heads=heads, debias=debias, causal=causal)

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        if k >= page.num_tokens:
            return all_tokens(page, self.name)
        anchors = self._sap.prune(page).indices
        labels = assign_to_anchors(page, anchors, self.assign)
        return merge_by_labels(page, labels.numpy(), self.name, normalize=True)

    def config(self) -> dict[str, Any]:
        cfg = self._sap.config()
        cfg.update(name=self.name, keep_ratio=self.keep_ratio, assign=self.assign.value)
        return cfg
