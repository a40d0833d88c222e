"""Metrics: NDCG@k (as ``sklearn.metrics.ndcg_score``), recall@k, and Score Retention as the SAP authors compute it.

The ranking metrics take ``y_true`` (relevance, ``(n_queries, n_docs)``, non-negative; graded or
binary) and ``y_score`` (retrieval scores of the same shape; higher ranks first). The Score
Retention functions take the full and the pruned MaxSim of the same (query, page) pairs.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError

__all__ = [
    "NEAR_CHANCE_SHARE",
    "benchmark_score_retention",
    "chance_ndcg_at_k",
    "ndcg_at_k",
    "ndcg_per_query",
    "near_chance",
    "pair_score_retention",
    "per_pair_mean_score_retention",
    "recall_at_k",
    "recall_per_query",
]


def _check(y_true, y_score, k: int) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(y_true, dtype=np.float64)
    score = np.asarray(y_score, dtype=np.float64)
    if true.ndim != 2 or true.shape != score.shape:
        raise InvalidInputError(
            f"y_true and y_score must be 2-D arrays (n_queries, n_docs) of one shape, "
            f"got {true.shape} and {score.shape}"
        )
    if true.shape[1] < 1 or true.shape[0] < 1:
        raise InvalidInputError("need at least one query and one document")
    if np.any(true < 0) or not np.all(np.isfinite(true)):
        raise InvalidInputError("relevance (y_true) must be finite and non-negative")
    if np.any(np.isnan(score)):
        raise InvalidInputError("y_score contains NaN")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidInputError(f"k must be a positive integer, got {k!r}")
    return true, score


def _discounts(n: int, k: int) -> np.ndarray:
    """``(n,)`` ``1 / log2(rank + 1)`` for ranks 1..n, zero beyond rank ``k``."""
    discount = 1.0 / np.log2(np.arange(n) + 2.0)
    discount[k:] = 0.0
    return discount


def _tie_averaged_dcg(relevance: np.ndarray, scores: np.ndarray, discount_cumsum: np.ndarray) -> float:
    """DCG where tied scores share the average gain of their group (sklearn's ``ignore_ties=False``)."""
    _, inverse, counts = np.unique(-scores, return_inverse=True, return_counts=True)
    group_gain = np.zeros(len(counts))
    np.add.at(group_gain, inverse, relevance)
    group_gain /= counts
    ends = np.cumsum(counts) - 1
    group_discount = np.diff(np.concatenate([[0.0], discount_cumsum[ends]]))
    return float((group_gain * group_discount).sum())


def ndcg_per_query(y_true, y_score, k: int = 5) -> np.ndarray:
    """``(n_queries,)`` NDCG@k of each query, with linear gains and ``1/log2(rank+1)`` discounts.

    Tied scores get the average gain of the tie (so the result does not depend on how ties
    would be broken); a query with no relevant document scores 0. Identical to
    ``sklearn.metrics.ndcg_score(y_true, y_score, k=k)`` query by query.

    >>> ndcg_per_query([[1, 0, 0], [0, 0, 1]], [[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]], k=3).round(4).tolist()
    [1.0, 0.5]
    """
    true, score = _check(y_true, y_score, k)
    discount = _discounts(true.shape[1], k)
    cumsum = np.cumsum(discount)
    ideal = -np.sort(-true, axis=1) @ discount
    result = np.zeros(true.shape[0])
    for i in range(true.shape[0]):
        if ideal[i] > 0:
            result[i] = _tie_averaged_dcg(true[i], score[i], cumsum) / ideal[i]
    return result


def ndcg_at_k(y_true, y_score, k: int = 5) -> float:
    """Mean NDCG@k over queries (see :func:`ndcg_per_query`)."""
    return float(ndcg_per_query(y_true, y_score, k).mean())


def chance_ndcg_at_k(y_true, k: int = 5) -> float:
    """Expected mean NDCG@k of a uniformly random ranking of every query's documents.

    At each rank a random ranking places each document with probability ``1/D``, so the expected
    gain there is the row's mean relevance; the expectation is therefore exactly the NDCG of a
    ranking where every document ties (the tie-averaged DCG of :func:`ndcg_per_query`).

    >>> round(chance_ndcg_at_k([[1, 0, 0, 0]], k=2), 4)  # (1/4) (1 + 1/log2 3) / 1
    0.4077
    """
    true = np.asarray(y_true, dtype=np.float64)
    return ndcg_at_k(true, np.zeros_like(true), k)


#: How far above chance, as a share of the way from chance to a perfect 1, an unpruned model must
#: score for a retention table to mean something (below: ``near_chance``).
NEAR_CHANCE_SHARE = 0.25


def near_chance(ndcg: float, chance: float, share: float = NEAR_CHANCE_SHARE) -> bool:
    """Whether ``ndcg`` is within ``share`` of the way from ``chance`` to 1 (retention then means nothing).

    >>> near_chance(0.236, 0.06), near_chance(0.893, 0.05)
    (True, False)
    """
    return bool(ndcg < chance + share * (1.0 - chance))


def recall_per_query(y_true, y_score, k: int = 5) -> np.ndarray:
    """``(n_queries,)`` share of each query's relevant documents found in its top ``k``.

    Ranking is by descending score, ties broken by document order (the earlier document
    first); any positive relevance counts as relevant. A query with no relevant document
    scores 0.

    >>> recall_per_query([[1, 0, 1, 0]], [[0.1, 0.9, 0.8, 0.2]], k=2).tolist()
    [0.5]
    """
    true, score = _check(y_true, y_score, k)
    relevant = true > 0
    order = np.argsort(-score, axis=1, kind="stable")[:, :k]
    found = np.take_along_axis(relevant, order, axis=1).sum(axis=1)
    total = relevant.sum(axis=1)
    return np.divide(found, total, out=np.zeros(true.shape[0]), where=total > 0)


def recall_at_k(y_true, y_score, k: int = 5) -> float:
    """Mean recall@k over queries (see :func:`recall_per_query`)."""
    return float(recall_per_query(y_true, y_score, k).mean())


def _pairs(full, pruned) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(full, dtype=np.float64).reshape(-1)
    p = np.asarray(pruned, dtype=np.float64).reshape(-1)
    if f.shape != p.shape:
        raise InvalidInputError(f"full and pruned scores must pair up one to one, got {f.shape} and {p.shape}")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(p))):
        raise InvalidInputError("MaxSim scores must be finite")
    return f, p


def pair_score_retention(full, pruned) -> np.ndarray:
    """``(P,)`` SR of each (query, page) pair: ``pruned / full``, and 0 where ``full`` is not positive.

    The authors' per-layer curves score a pair whose full MaxSim is not positive as 0 (it stays
    in the average), rather than dropping it or dividing by a negative number.

    >>> pair_score_retention([2.0, 0.0, -1.0], [1.0, 0.5, -2.0]).tolist()
    [0.5, 0.0, 0.0]
    """
    f, p = _pairs(full, pruned)
    return np.divide(p, f, out=np.zeros_like(f), where=f > 0)


def per_pair_mean_score_retention(full, pruned) -> float:
    """Mean over pairs of :func:`pair_score_retention` (the per-layer curve's value); NaN for no pairs."""
    values = pair_score_retention(full, pruned)
    return float(values.mean()) if values.size else float("nan")


def benchmark_score_retention(full, pruned) -> float:
    """A benchmark's SR as the authors report it: ``mean(pruned MaxSim) / mean(full MaxSim)`` over all pairs.

    Pairs with a large full score weigh more than in the per-pair mean. As in the authors'
    code, a zero mean full score gives 0; no pairs give NaN.

    >>> benchmark_score_retention([2.0, 0.0, 4.0], [1.0, 0.5, 3.0])  # 4.5 / 6
    0.75
    """
    f, p = _pairs(full, pruned)
    if f.size == 0:
        return float("nan")
    mean_full = float(f.mean())
    return float(p.mean()) / mean_full if mean_full != 0.0 else 0.0
