"""Late-interaction scoring (MaxSim) and Score Retention."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DimensionMismatchError, InvalidInputError

__all__ = ["maxsim", "maxsim_matrix", "score_retention"]


def _check_pair(query: torch.Tensor, doc: torch.Tensor) -> None:
    if query.ndim != 2 or doc.ndim != 2:
        raise InvalidInputError(
            f"MaxSim takes 2-D (tokens, dim) tensors, got query {tuple(query.shape)} and page {tuple(doc.shape)}"
        )
    if query.shape[1] != doc.shape[1]:
        raise DimensionMismatchError(
            f"query vectors have dim {query.shape[1]} but page vectors have dim {doc.shape[1]}; "
            "encode queries and pages with the same model"
        )
    if query.shape[0] == 0 or doc.shape[0] == 0:
        raise InvalidInputError("MaxSim needs at least one query vector and one page vector")


def maxsim(query: torch.Tensor, doc: torch.Tensor) -> float:
    """MaxSim(Q, D) = sum over query vectors of the max dot product over the page's vectors.

    Args:
        query: ``(n_q, dim)``.
        doc: ``(n_d, dim)``.

    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> d = torch.tensor([[0.5, 0.5], [1.0, -1.0], [0.0, 2.0]])
    >>> maxsim(q, d)  # max(0.5, 1, 0) + max(0.5, -1, 2)
    3.0
    """
    _check_pair(query, doc)
    sims = query.to(torch.float32) @ doc.to(torch.float32).T
    return float(sims.max(dim=1).values.sum())


def maxsim_matrix(
    queries: Sequence[torch.Tensor], docs: Sequence[torch.Tensor], *, batch_size: int = 256
) -> torch.Tensor:
    """``(n_queries, n_docs)`` MaxSim scores, with pages padded per batch.

    Padding rows are filled with ``-inf`` before the max so they can never win.

    >>> q = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])]
    >>> d = [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0], [1.0, 1.0]])]
    >>> maxsim_matrix(q, d)
    tensor([[2., 1.],
            [2., 4.]])
    """
    if not queries or not docs:
        raise InvalidInputError("maxsim_matrix needs at least one query and one page")
    dims = {int(t.shape[-1]) for t in list(queries) + list(docs)}
    if len(dims) != 1:
        raise DimensionMismatchError(
            f"queries and pages must share one embedding dim, found {sorted(dims)}; encode them with the same model"
        )
    for t in list(queries) + list(docs):
        if t.ndim != 2 or t.shape[0] == 0:
            raise InvalidInputError(
                f"each query and page must be a non-empty (tokens, dim) tensor, got {tuple(t.shape)}"
            )
    out = torch.empty(len(queries), len(docs), dtype=torch.float32)
    for qi, query in enumerate(queries):
        q = query.to(torch.float32)
        for start in range(0, len(docs), batch_size):
            chunk = docs[start : start + batch_size]
            width = max(int(d.shape[0]) for d in chunk)
            padded = torch.zeros(len(chunk), width, q.shape[1])
            valid = torch.zeros(len(chunk), width, dtype=torch.bool)
            for j, d in enumerate(chunk):
                padded[j, : d.shape[0]] = d.to(torch.float32)
                valid[j, : d.shape[0]] = True
            sims = torch.einsum("qd,bnd->bqn", q, padded)
            sims = sims.masked_fill(~valid[:, None, :], float("-inf"))
            out[qi, start : start + len(chunk)] = sims.max(dim=2).values.sum(dim=1)
    return out


def score_retention(query: torch.Tensor, full: torch.Tensor, kept: torch.Tensor) -> float:
    """SR = MaxSim(q, kept) / MaxSim(q, full): the share of the page's score that pruning keeps.

    1.0 means nothing was lost; with L2-normalised vectors and a positive full score it lies in
    (-inf, 1].

    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> full = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> score_retention(q, full, full[:1])  # (1 + 0) / (1 + 1)
    0.5
    """
    denominator = maxsim(query, full)
    if denominator == 0.0:
        raise InvalidInputError("the query scores 0 against the full page, so Score Retention is undefined")
    return maxsim(query, kept) / denominator
