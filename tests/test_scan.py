"""The batched exact MaxSim scan kernel against a float64 brute force on random data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sap_rag.errors import DimensionMismatchError, InvalidInputError
from sap_rag.search.scan import maxsim_pages, scan_maxsim


def _data(seed: int, pages: int, dim: int, dtype=np.float16):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 30, pages)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    anchors = rng.standard_normal((int(offsets[-1]), dim)).astype(dtype)
    queries = [rng.standard_normal((int(rng.integers(1, 9)), dim)).astype(dtype).astype(np.float32) for _ in range(7)]
    return anchors, offsets, queries


def _reference(query: np.ndarray, anchors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """float64 MaxSim of one query against every page: a plain loop."""
    a = anchors.astype(np.float64)
    q = query.astype(np.float64)
    return np.array([(a[lo:hi] @ q.T).max(axis=0).sum() for lo, hi in itertools.pairwise(offsets)])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("chunk", [1, 97, 1 << 20])
def test_scan_matches_float64_brute_force(dtype, chunk):
    anchors, offsets, queries = _data(0, 400, 24, dtype)
    result = scan_maxsim(queries, anchors, offsets, 10, chunk_vectors=chunk)
    assert result.pages.shape == (len(queries), 10)
    for q, query in enumerate(queries):
        ref = _reference(query, anchors, offsets)
        top = np.argsort(-ref, kind="stable")[:10]
        np.testing.assert_array_equal(result.pages[q], top)
        np.testing.assert_allclose(result.scores[q], ref[top], rtol=1e-5, atol=1e-4)


def test_batch_equals_one_at_a_time():
    anchors, offsets, queries = _data(1, 300, 16)
    batch = scan_maxsim(queries, anchors, offsets, 5, chunk_vectors=200)
    for q, query in enumerate(queries):
        one = scan_maxsim([query], anchors, offsets, 5, chunk_vectors=200)
        np.testing.assert_array_equal(batch.pages[q], one.pages[0])
        np.testing.assert_allclose(batch.scores[q], one.scores[0], rtol=1e-6)


def test_subset_only_scores_those_pages():
    anchors, offsets, queries = _data(2, 300, 16)
    subset = np.random.default_rng(3).choice(300, 25, replace=False)
    result = scan_maxsim(queries, anchors, offsets, 8, pages=subset, chunk_vectors=50)
    for q, query in enumerate(queries):
        ref = _reference(query, anchors, offsets)
        top = subset[np.argsort(-ref[subset], kind="stable")[:8]]
        np.testing.assert_array_equal(result.pages[q], top)


def test_k_beyond_pages_and_rerank_order():
    anchors, offsets, queries = _data(4, 6, 8)
    result = scan_maxsim(queries[:1], anchors, offsets, 50)
    assert result.pages.shape == (1, 6)
    picks = np.array([5, 0, 5, 2])
    scores = maxsim_pages(queries, anchors, offsets, picks)
    for q, query in enumerate(queries):
        np.testing.assert_allclose(scores[q], _reference(query, anchors, offsets)[picks], rtol=1e-5, atol=1e-4)


def test_bfloat16_is_close_to_exact():
    anchors, offsets, queries = _data(5, 200, 32)
    exact = scan_maxsim(queries, anchors, offsets, 10)
    rough = scan_maxsim(queries, anchors, offsets, 10, precision="bfloat16")
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact.pages, rough.pages, strict=True)])
    assert overlap >= 0.8


def test_bad_input_is_refused():
    anchors, offsets, queries = _data(6, 10, 8)
    with pytest.raises(DimensionMismatchError):
        scan_maxsim([np.zeros((2, 9), np.float32)], anchors, offsets, 3)
    with pytest.raises(InvalidInputError):
        scan_maxsim([], anchors, offsets, 3)
    with pytest.raises(InvalidInputError):
        scan_maxsim(queries, anchors, offsets[:-1], 3)
    bad = offsets.copy()
    bad[2] = bad[1]
    with pytest.raises(InvalidInputError):
        scan_maxsim(queries, anchors, bad, 3)
    with pytest.raises(InvalidInputError):
        scan_maxsim(queries, anchors, offsets, 3, pages=np.array([10]))
    with pytest.raises(InvalidInputError):
        scan_maxsim(queries, anchors, offsets, 0)
