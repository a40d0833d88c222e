"""Subspace residual selection (SPARE-style): greedy column-subset selection with Gram-Schmidt residuals."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..types import PageEncoding, PrunedPage
from .base import Pruner, select_rows

__all__ = ["SpareResidualPruner", "greedy_residual_order"]


def greedy_residual_order(
    embeddings: torch.Tensor, k: int, *, rel_tol: float = 1e-9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy column-subset selection: the first ``k`` picks and their residual energies.

    Start with residuals ``r_j = ||e_j||^2``; repeatedly pick the largest residual (the first
    one on ties), orthogonalise every residual vector against the picked one (Gram-Schmidt)
    and update ``r_j = ||residual_j||^2``. Magnitudes matter, not only angles: a long vector
    is preferred over a short one in the same direction.

    Once the picks span every remaining vector (all residuals ``<= rel_tol * max_j ||e_j||^2``,
    which happens when ``k`` exceeds the rank, e.g. ``k > dim``), the selection restarts on the
    remaining tokens with their full vectors: a second, disjoint greedy basis, and so on.

    Args:
        embeddings: ``(N, dim)``.
        k: number of picks, ``1 <= k <= N``.

    Returns:
        ``(order, energy)``: ``(k,)`` int64 token indices in pick order and ``(k,)`` float32
        residual energy of each token when it was picked.

    >>> e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 0.5]])
    >>> order, energy = greedy_residual_order(e, 2)
    >>> order.tolist()  # [0.9, 0.1] is longer, but after [1, 0] only 0.1 of it is new; [0, 0.5] keeps 0.5
    [0, 2]
    >>> [round(x, 4) for x in energy.tolist()]
    [1.0, 0.25]
    """
    original = embeddings.detach().to(torch.float64).cpu().numpy()
    n = original.shape[0]
    residual = original.copy()
    energy = np.einsum("ij,ij->i", residual, residual)
    tol = rel_tol * float(energy.max()) if n else 0.0
    available = np.ones(n, dtype=bool)
    order: list[int] = []
    picked_energy: list[float] = []
    for _ in range(min(k, n)):
        masked = np.where(available, energy, -1.0)
        j = int(np.argmax(masked))  # first index on ties
        if masked[j] <= tol:
            # The picks span the rest: start a fresh greedy pass on the remaining tokens.
            residual[available] = original[available]
            energy = np.einsum("ij,ij->i", residual, residual)
            masked = np.where(available, energy, -1.0)
            j = int(np.argmax(masked))
        order.append(j)
        picked_energy.append(float(energy[j]))
        available[j] = False
        norm = float(np.sqrt(energy[j]))
        if norm > 0.0:
            direction = residual[j] / norm
            residual -= np.outer(residual @ direction, direction)
        residual[j] = 0.0
        energy = np.einsum("ij,ij->i", residual, residual)
    return torch.tensor(order, dtype=torch.int64), torch.tensor(picked_energy, dtype=torch.float32)


class SpareResidualPruner(Pruner):
    """Keep the ``k`` tokens of :func:`greedy_residual_order`: the ones that add the most new subspace.

    ``scores`` of the kept tokens are their residual energies when picked. Deterministic.
    """

    name: ClassVar[str] = "spare"

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        order, energy = greedy_residual_order(page.embeddings, k)
        scores = torch.zeros(page.num_tokens, dtype=torch.float32)
        scores[order] = energy
        return select_rows(page, order, scores, k, self.name)
