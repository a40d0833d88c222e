"""NDCG@k against sklearn.metrics.ndcg_score; recall@k on hand-made cases; Score Retention against a slow reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from sap_rag.errors import InvalidInputError
from sap_rag.eval.metrics import (
    benchmark_score_retention,
    ndcg_at_k,
    ndcg_per_query,
    pair_score_retention,
    per_pair_mean_score_retention,
    recall_at_k,
    recall_per_query,
)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("graded", [True, False])
def test_ndcg_equals_sklearn_on_random_cases(seed, graded):
    rng = np.random.default_rng(seed)
    n_queries, n_docs = int(rng.integers(1, 8)), int(rng.integers(2, 40))
    y_true = rng.integers(0, 4 if graded else 2, size=(n_queries, n_docs)).astype(float)
    y_true[0, rng.integers(n_docs)] = 1.0  # at least one relevant document somewhere
    continuous = rng.normal(size=(n_queries, n_docs))
    tied = rng.integers(0, 4, size=(n_queries, n_docs)).astype(float)  # many ties
    for y_score in (continuous, tied):
        for k in (1, 3, 5, 10, n_docs + 5):
            assert ndcg_at_k(y_true, y_score, k) == pytest.approx(ndcg_score(y_true, y_score, k=k), abs=1e-12)
            per_query = ndcg_per_query(y_true, y_score, k)
            for i in range(n_queries):
                assert per_query[i] == pytest.approx(ndcg_score(y_true[i : i + 1], y_score[i : i + 1], k=k), abs=1e-12)


def test_ndcg_by_hand():
    # One relevant document at rank 2: DCG = 1 / log2(3); ideal 1.
    assert ndcg_at_k([[0, 1, 0]], [[0.9, 0.8, 0.1]], k=5) == pytest.approx(1 / np.log2(3))
    # Outside the cut-off it counts nothing; a query without relevant documents scores 0.
    assert ndcg_at_k([[0, 0, 1]], [[0.9, 0.8, 0.1]], k=2) == 0.0
    assert ndcg_per_query([[0, 0, 0]], [[0.3, 0.2, 0.1]], k=2).tolist() == [0.0]
    # A tie between the relevant document and another at the top: average gain 0.5 over ranks 1-2.
    assert ndcg_at_k([[1, 0]], [[0.5, 0.5]], k=1) == pytest.approx(0.5)


def test_recall_by_hand():
    y_true = [[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 1, 1, 1, 0]]
    y_score = [[0.1, 0.9, 0.8, 0.2, 0.0], [0.5, 0.4, 0.3, 0.2, 0.1], [0.9, 0.8, 0.1, 0.7, 0.6]]
    # Rankings: q0 -> 1, 2, 3, 0, 4; q1 -> 0, 1, 2, 3, 4; q2 -> 0, 1, 3, 4, 2.
    assert recall_per_query(y_true, y_score, 1).tolist() == [0.0, 0.0, 0.0]
    assert recall_per_query(y_true, y_score, 2).tolist() == [0.5, 0.0, pytest.approx(1 / 3)]
    assert recall_per_query(y_true, y_score, 3).tolist() == [0.5, 0.0, pytest.approx(2 / 3)]
    assert recall_per_query(y_true, y_score, 5).tolist() == [1.0, 1.0, 1.0]
    assert recall_at_k(y_true, y_score, 4) == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    # Graded relevance counts as relevant; ties go to the earlier document.
    assert recall_per_query([[0, 3]], [[0.5, 0.5]], 1).tolist() == [0.0]
    assert recall_per_query([[3, 0]], [[0.5, 0.5]], 1).tolist() == [1.0]


def test_metric_input_errors():
    with pytest.raises(InvalidInputError, match="one shape"):
        ndcg_at_k([[1, 0]], [[0.1, 0.2, 0.3]])
    with pytest.raises(InvalidInputError, match="non-negative"):
        ndcg_at_k([[-1, 0]], [[0.1, 0.2]])
    with pytest.raises(InvalidInputError, match="positive integer"):
        recall_at_k([[1, 0]], [[0.1, 0.2]], k=0)
    with pytest.raises(InvalidInputError, match="NaN"):
        recall_at_k([[1, 0]], [[np.nan, 0.2]], k=1)


# --- Score Retention as the SAP authors compute it ------------------------------------------------


def _slow_pair_sr(full, pruned):
    out = []
    for f, p in zip(full, pruned):
        if f > 0:
            out.append(p / f)
        else:
            out.append(0.0)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_score_retention_matches_a_slow_reference(seed):
    rng = np.random.default_rng(seed)
    full = rng.normal(1.0, 1.0, size=40)  # some pairs are not positive
    full[:3] = [0.0, -0.5, 2.0]
    pruned = full * rng.uniform(0.3, 1.0, size=40) - rng.uniform(0, 0.2, size=40)
    per_pair = _slow_pair_sr(full.tolist(), pruned.tolist())
    assert pair_score_retention(full, pruned).tolist() == pytest.approx(per_pair, rel=1e-12, abs=1e-12)
    assert per_pair_mean_score_retention(full, pruned) == pytest.approx(sum(per_pair) / len(per_pair), rel=1e-12)
    total_full, total_pruned = 0.0, 0.0
    for f, p in zip(full.tolist(), pruned.tolist()):
        total_full += f
        total_pruned += p
    expected = (total_pruned / len(full)) / (total_full / len(full))
    assert benchmark_score_retention(full, pruned) == pytest.approx(expected, rel=1e-12)


def test_benchmark_and_per_pair_means_differ_by_hand():
    # Pair scores (full, pruned): (10, 9) and (1, 0.1): benchmark 9.1 / 11; per-pair mean (0.9 + 0.1) / 2.
    assert benchmark_score_retention([10.0, 1.0], [9.0, 0.1]) == pytest.approx(9.1 / 11)
    assert per_pair_mean_score_retention([10.0, 1.0], [9.0, 0.1]) == pytest.approx(0.5)
    assert benchmark_score_retention([0.0, 0.0], [1.0, 1.0]) == 0.0  # the authors' zero-mean rule
    assert math.isnan(benchmark_score_retention([], [])) and math.isnan(per_pair_mean_score_retention([], []))
    with pytest.raises(InvalidInputError, match="one to one"):
        benchmark_score_retention([1.0, 2.0], [1.0])
    with pytest.raises(InvalidInputError, match="finite"):
        pair_score_retention([1.0], [float("nan")])
