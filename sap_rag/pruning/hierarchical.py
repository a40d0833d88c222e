"""colpali-engine's ``HierarchicalTokenPooler`` behind the Pruner interface, held to the budget."""

from __future__ import annotations

import logging
from typing import ClassVar

import torch

from ..types import PageEncoding, PrunedPage
from ._merge import all_tokens
from .base import Pruner

logger = logging.getLogger(__name__)

__all__ = ["HierarchicalPoolingPruner", "pool_factor_for_budget"]


def pool_factor_for_budget(num_tokens: int, k: int) -> int:
    """The smallest integer pool factor ``f`` with ``max(num_tokens // f, 1) <= k``.

    colpali-engine's pooler makes at most ``max(N // pool_factor, 1)`` clusters and takes an
    integer factor. The nominal ``pool_factor = 1 / keep_ratio`` rounds badly when the ratio is
    not ``1/integer`` (0.3 -> 3 gives N // 3 > 0.3 N), so the factor is derived from the budget:
    ``f = N // (k + 1) + 1``. For ``keep_ratio = 1 / integer`` it equals ``1 / keep_ratio``.

    >>> pool_factor_for_budget(768, 76), pool_factor_for_budget(768, 230), pool_factor_for_budget(54, 54)
    (10, 4, 1)
    """
    return num_tokens // (k + 1) + 1


class HierarchicalPoolingPruner(Pruner):
    """colpali-engine's hierarchical token pooling with ``pool_factor ~ 1 / keep_ratio``.

    colpali-engine clusters the rows of ``1 - E E^T`` (Ward linkage), cuts the tree at
    ``max(N // pool_factor, 1)`` clusters, and stores each cluster's mean, L2-normalised. That
    pooler sometimes returns fewer clusters (tied merge heights) and takes an integer factor, so
    this wrapper picks :func:`pool_factor_for_budget` to guarantee ``<= k`` vectors. Positions are
    the mean of each cluster's members; ``indices`` is None. At ``k = N`` the page is unchanged.
    Vectors come out in colpali-engine's cluster order (not page order).
    """

    name: ClassVar[str] = "hierarchical"

    def __init__(self, keep_ratio: float = 0.1) -> None:
        super().__init__(keep_ratio)
        self._pooler = None

    def _get_pooler(self):
        if self._pooler is None:
            from .._compat import ensure_torchvision_importable

            ensure_torchvision_importable()
            from colpali_engine.compression.token_pooling import HierarchicalTokenPooler

            self._pooler = HierarchicalTokenPooler()
        return self._pooler

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        n = page.num_tokens
        if k >= n or n == 1:
            return all_tokens(page, self.name)
        factor = pool_factor_for_budget(n, k)
        output = self._get_pooler().pool_embeddings([page.embeddings.float()], pool_factor=factor, return_dict=True)
        pooled = output.pooled_embeddings[0].to(torch.float32)
        # colpali-engine stacks the non-empty clusters in cluster-id order; follow it for positions.
        members = [idx for _, (idx,) in sorted(output.cluster_id_to_indices[0].items()) if idx.numel() > 0]
        if len(members) != pooled.shape[0]:  # pragma: no cover - guards against upstream changes
            raise AssertionError(f"colpali-engine returned {pooled.shape[0]} vectors for {len(members)} clusters")
        positions = torch.stack([page.positions[idx].float().mean(dim=0) for idx in members])
        logger.debug("hierarchical: N=%d budget=%d pool_factor=%d -> %d vectors", n, k, factor, len(members))
        return PrunedPage(
            embeddings=pooled,
            positions=positions,
            indices=None,
            scores=None,
            num_tokens=n,
            method=self.name,
        )
