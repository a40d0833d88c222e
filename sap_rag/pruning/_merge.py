"""Helpers shared by the pruners that merge tokens into new vectors (cluster-merge, hierarchical pooling)."""

from __future__ import annotations

import numpy as np
import torch

from ..types import PageEncoding, PrunedPage

__all__ = ["all_tokens", "merge_by_labels"]


def all_tokens(page: PageEncoding, method: str) -> PrunedPage:
    """The page unchanged (every token its own cluster): what a merging method keeps at ``k = N``."""
    n = page.num_tokens
    return PrunedPage(
        embeddings=page.embeddings,
        positions=page.positions,
        indices=torch.arange(n),
        scores=None,
        num_tokens=n,
        method=method,
    )


def merge_by_labels(page: PageEncoding, labels: np.ndarray, method: str, *, normalize: bool) -> PrunedPage:
    """One vector per cluster: the mean of its members' embeddings (and of their positions).

    Args:
        page: the page whose tokens are merged.
        labels: ``(N,)`` integer cluster label of each token (any values; empty labels are fine).
        normalize: L2-normalise each mean vector (a mean of unit vectors is shorter than 1).

    Returns:
        A ``PrunedPage`` with ``indices=None``; clusters are ordered by their first member in page
        order, so the output is deterministic for a given partition.
    """
    labels = np.asarray(labels).reshape(-1)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    # Renumber clusters by the position of their first member.
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    ids = torch.from_numpy(rank[inverse])
    m = len(first)
    counts = torch.bincount(ids, minlength=m).to(torch.float32).unsqueeze(1)
    embeddings = torch.zeros(m, page.dim, dtype=torch.float32).index_add_(0, ids, page.embeddings.float()) / counts
    positions = torch.zeros(m, page.positions.shape[1], dtype=torch.float32)
    positions = positions.index_add_(0, ids, page.positions.float()) / counts
    if normalize:
        embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
    return PrunedPage(
        embeddings=embeddings,
        positions=positions,
        indices=None,
        scores=None,
        num_tokens=page.num_tokens,
        method=method,
    )
