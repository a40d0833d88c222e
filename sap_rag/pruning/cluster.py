"""Cluster-merge baseline: agglomerative clustering (cosine distance, average linkage) into ``k`` mean vectors."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..types import PageEncoding, PrunedPage
from ._merge import all_tokens, merge_by_labels
from .base import Pruner

__all__ = ["ClusterMergePruner", "agglomerative_labels", "cut_linkage"]


def cut_linkage(linkage_matrix: np.ndarray, num_points: int, num_clusters: int) -> np.ndarray:
    """Labels of the ``num_clusters`` clusters left after the first ``num_points - num_clusters`` merges.

    ``linkage_matrix`` is scipy's ``(num_points - 1, 4)`` merge list (row ``i`` merges clusters
    ``Z[i, 0]`` and ``Z[i, 1]`` into cluster ``num_points + i``). Unlike ``fcluster(...,
    criterion="maxclust")``, which can return fewer clusters when merge heights tie, this always
    returns exactly ``num_clusters`` labels in ``0..num_clusters-1`` (by first member).

    >>> Z = np.array([[0, 1, 0.1, 2], [2, 3, 0.2, 2], [4, 5, 0.9, 4]])
    >>> cut_linkage(Z, 4, 2).tolist(), cut_linkage(Z, 4, 3).tolist(), cut_linkage(Z, 4, 1).tolist()
    ([0, 0, 1, 1], [0, 0, 1, 2], [0, 0, 0, 0])
    """
    parent = np.arange(2 * num_points - 1)
    for i in range(num_points - num_clusters):
        a, b = int(linkage_matrix[i, 0]), int(linkage_matrix[i, 1])
        parent[a] = parent[b] = num_points + i
    roots = np.empty(num_points, dtype=np.int64)
    for leaf in range(num_points):
        node = leaf
        while parent[node] != node:
            node = parent[node]
        roots[leaf] = node
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]


def agglomerative_labels(embeddings: torch.Tensor, num_clusters: int) -> np.ndarray:
    """``(N,)`` labels of average-linkage agglomerative clustering under cosine distance.

    Args:
        embeddings: ``(N, dim)``; need not be normalised (cosine distance ignores length; a
            zero vector is at distance 1 from everything).
        num_clusters: ``1 <= num_clusters <= N``.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    x = embeddings.detach().to(torch.float64).cpu().numpy()
    n = x.shape[0]
    if num_clusters >= n:
        return np.arange(n)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    distances = np.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    np.fill_diagonal(distances, 0.0)
    z = linkage(squareform(distances, checks=False), method="average")
    return cut_linkage(z, n, num_clusters)


class ClusterMergePruner(Pruner):
    """Merge the page's vectors into ``k`` clusters and store one mean vector per cluster.

    Clustering: agglomerative, cosine distance ``1 - cos(e_i, e_j)``, average linkage, the tree
    cut into exactly ``k`` clusters. Each cluster is stored as the plain mean of its members'
    embeddings (its position: the mean of their positions), so ``indices`` is None.

    The mean is **not** re-normalised by default: that is the definition being compared ("one
    mean vector per cluster"), and a spread-out cluster's shorter mean honestly reflects that it
    matches any one query token less well. ``normalize=True`` gives the re-normalised variant
    (what colpali-engine's hierarchical pooler does). At ``k = N`` the page is returned unchanged.

    Args:
        keep_ratio: fraction of visual tokens to keep, in (0, 1].
        normalize: L2-normalise each mean vector.
    """

    name: ClassVar[str] = "cluster"

    def __init__(self, keep_ratio: float = 0.1, *, normalize: bool = False) -> None:
        super().__init__(keep_ratio)
        self.normalize = bool(normalize)

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        if k >= page.num_tokens:
            return all_tokens(page, self.name)
        labels = agglomerative_labels(page.embeddings, k)
        return merge_by_labels(page, labels, self.name, normalize=self.normalize)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.update(normalize=self.normalize)
        return cfg
