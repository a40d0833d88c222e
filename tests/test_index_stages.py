"""Staged search: pooled vectors, the prefetch cascade against a float64 reference, format 1 indexes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _index_utils import assert_matches_brute_force, brute_force, hit_keys, random_corpus, stored, unit_rows

from sap_rag.errors import InvalidInputError
from sap_rag.index import SAPIndex
from sap_rag.index.manifest import MANIFEST_NAME
from sap_rag.index.vectors import pool_anchors

DIM = 32


def reference_pool(anchors: np.ndarray, count: int, iterations: int = 10) -> np.ndarray:
    """Spherical k-means with a farthest-point start, one anchor at a time (the slow reference)."""
    x = [np.asarray(row, dtype=np.float64) for row in anchors]
    if len(x) <= count:
        return np.array(x)
    unit = [v / np.linalg.norm(v) for v in x]
    mean = sum(unit) / len(unit)
    chosen = [max(range(len(unit)), key=lambda i: (float(unit[i] @ mean), -i))]
    while len(chosen) < count:
        closeness = [max(float(unit[i] @ unit[c]) for c in chosen) for i in range(len(unit))]
        chosen.append(min(range(len(unit)), key=lambda i: (closeness[i], i)))
    centres = [unit[c] for c in chosen]
    for _ in range(iterations):
        members: list[list[int]] = [[] for _ in centres]
        for i, v in enumerate(unit):
            best = max(range(len(centres)), key=lambda j: (float(v @ centres[j]), -j))
            members[best].append(i)
        updated = []
        for j, group in enumerate(members):
            total = sum((unit[i] for i in group), np.zeros_like(unit[0]))
            length = np.linalg.norm(total)
            updated.append(total / length if length > 1e-12 else centres[j])
        if all(np.array_equal(a, b) for a, b in zip(updated, centres)):
            break
        centres = updated
    return np.array(centres)


@pytest.mark.parametrize("seed", range(6))
def test_pool_anchors_matches_reference(seed):
    rng = np.random.default_rng(seed)
    for k, count in [(1, 8), (8, 8), (9, 8), (40, 4), (103, 8), (25, 1)]:
        # clustered anchors, like a page's: a few directions plus noise, not unit length
        centres = rng.standard_normal((5, DIM))
        anchors = centres[rng.integers(0, 5, k)] + 0.3 * rng.standard_normal((k, DIM))
        anchors *= rng.uniform(0.5, 2.0, (k, 1))
        got = pool_anchors(anchors.astype(np.float32), count)
        want = reference_pool(anchors.astype(np.float32), count)
        assert got.shape == (min(k, count), DIM) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-6)
        if k > count:
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)


def test_pool_anchors_converges_to_cluster_means():
    """Run to convergence, every centre is the normalised mean of the anchors closest to it."""
    rng = np.random.default_rng(7)
    anchors = unit_rows(rng, 60, DIM).astype(np.float64)
    centres = pool_anchors(anchors, 6, iterations=200).astype(np.float64)
    labels = np.argmax(anchors @ centres.T, axis=1)
    for j, centre in enumerate(centres):
        members = anchors[labels == j]
        assert len(members) > 0
        mean = members.sum(axis=0)
        np.testing.assert_allclose(centre, mean / np.linalg.norm(mean), atol=1e-5)


def test_pool_anchors_rejects_zero_count():
    with pytest.raises(InvalidInputError, match="count"):
        pool_anchors(np.ones((3, 4), np.float32), 0)


# --- the cascade against a float64 reference ---------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    return random_corpus(seed=31, dim=DIM, docs=50, pages=(1, 7))


def _build(path, corpus, **options) -> SAPIndex:
    index = SAPIndex.create(path, dim=DIM, storage="float32", two_stage=True, **options)
    for doc_id, pages in corpus.items():
        index.add_pages(pages, doc_id, metadata={"odd": int(doc_id.split("-")[1]) % 2})
    return index


def reference_cascade(query, corpus, pooled, *, coarse, prefetch, k, keep=lambda d, p: True, first="pooled"):
    """The staged search, page by page in float64: first stage (``"pooled"``: top ``coarse`` by
    pooled vectors against the mean query plus top ``coarse // 2`` by mean vector; ``"mean"``: top
    ``coarse`` by mean vector), then pooled MaxSim top ``prefetch``, then exact MaxSim top ``k``."""
    q = stored(query, "float32")
    q_mean = q.mean(axis=0)
    pages = []
    for doc_id, doc in corpus.items():
        for number, page in enumerate(doc, start=1):
            if keep(doc_id, number):
                anchors = stored(page.embeddings, "float32")
                pages.append((doc_id, number, anchors, pooled[(doc_id, number)]))

    def top(items, score, n):
        return sorted(items, key=lambda item: -score(item))[:n]

    def mean_score(p):  # against the mean of the anchors, scaled to unit length
        return float(p[2].mean(0) @ q_mean / np.linalg.norm(p[2].mean(0)))

    if first == "pooled":  # pooled probe, and the mean probe at half the depth
        by_pooled = top(pages, lambda p: float(np.max(p[3] @ q_mean)), coarse)
        by_mean = top(pages, mean_score, max(coarse // 2, 1))
        stage = list({(p[0], p[1]): p for p in by_pooled + by_mean}.values())
    else:
        stage = top(pages, mean_score, coarse)
    stage = top(stage, lambda p: sum(float(np.max(p[3] @ row)) for row in q), prefetch)
    best = top(stage, lambda p: sum(float(np.max(p[2] @ row)) for row in q), k)
    return [(d, n, sum(float(np.max(a @ row)) for row in q)) for d, n, a, _ in best]


def _pooled(corpus, count):
    return {
        (doc_id, number): pool_anchors(page.embeddings.numpy(), count).astype(np.float64)
        for doc_id, doc in corpus.items()
        for number, page in enumerate(doc, start=1)
    }


def test_staged_search_equals_reference_cascade(tmp_path, corpus):
    pooled = _pooled(corpus, 4)
    rng = np.random.default_rng(32)
    with _build(tmp_path / "idx", corpus, pooled_vectors=4) as index:
        assert index.manifest.pooled_vectors == 4
        for _ in range(5):
            query = unit_rows(rng, int(rng.integers(2, 12)), DIM)
            for coarse, prefetch in [(40, 12), (90, 30), (15, 15)]:
                hits = index.search(query, k=6, coarse=coarse, prefetch=prefetch)
                want = reference_cascade(query, corpus, pooled, coarse=coarse, prefetch=prefetch, k=6)
                assert_matches_brute_force(hits, want, 6)
            # filters apply in every stage
            hits = index.search(query, k=4, coarse=20, prefetch=8, filter={"odd": 1})
            want = reference_cascade(
                query, corpus, pooled, coarse=20, prefetch=8, k=4, keep=lambda d, p: int(d.split("-")[1]) % 2
            )
            assert_matches_brute_force(hits, want, 4)
            # deep enough stages give the exact answer
            assert_matches_brute_force(
                index.search(query, k=6, coarse=len(index), prefetch=len(index)),
                brute_force(query, corpus, "float32"),
                6,
            )
        # past the scan limit the first stage is the mean vectors (graph, exact at this size)
        index.manifest.two_stage["exact_prefetch_max_pages"] = 0
        hits = index.search(query, k=6, coarse=40, prefetch=12)
        want = reference_cascade(query, corpus, pooled, coarse=40, prefetch=12, k=6, first="mean")
        assert_matches_brute_force(hits, want, 6)


def test_staged_search_options_are_checked(tmp_path, corpus):
    with pytest.raises(InvalidInputError, match="pooled_vectors"):
        SAPIndex.create(tmp_path / "a", dim=DIM, pooled_vectors=-1)
    with pytest.raises(InvalidInputError, match="coarse"):
        SAPIndex.create(tmp_path / "b", dim=DIM, coarse=0)
    with SAPIndex.create(tmp_path / "c", dim=DIM, two_stage=True) as index:
        index.add_pages(corpus["doc-0"], "doc-0")
        with pytest.raises(InvalidInputError, match="coarse"):
            index.search(unit_rows(np.random.default_rng(0), 3, DIM), coarse=0)
        settings = index.manifest.two_stage
        assert (settings["prefetch"], settings["coarse"], settings["pooled_vectors"]) == (150, 1500, 8)


def test_index_without_pooled_vectors_prefetches_with_means(tmp_path, corpus):
    rng = np.random.default_rng(33)
    query = unit_rows(rng, 6, DIM)
    with _build(tmp_path / "idx", corpus, pooled_vectors=0) as index:
        assert index.manifest.two_stage["prefetch"] == 1000  # the mean-vector default
        hits = index.search(query, k=5, prefetch=30)
    want = reference_cascade(query, corpus, _pooled(corpus, 1), coarse=30, prefetch=30, k=5, first="mean")
    assert_matches_brute_force(hits, want, 5)


def test_format_1_index_opens_searches_and_accepts_adds(tmp_path, corpus):
    """An index written before pooled vectors existed (format version 1) keeps working."""
    path = tmp_path / "old"
    first = dict(list(corpus.items())[:30])
    with _build(path, first, pooled_vectors=0):
        pass
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["format_version"] = 1
    manifest["two_stage"] = {
        key: manifest["two_stage"][key] for key in ("mode", "threshold", "prefetch", "exact_prefetch_max_pages")
    }
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    rng = np.random.default_rng(34)
    with SAPIndex.open(path) as index:
        assert index.manifest.pooled_vectors == 0
        index.add_pages(corpus["doc-40"], "doc-40")
        first["doc-40"] = corpus["doc-40"]
        for _ in range(3):
            query = unit_rows(rng, 5, DIM)
            reference = brute_force(query, first, "float32")
            assert_matches_brute_force(index.search(query, k=5, prefetch=len(index)), reference, 5)
            assert hit_keys(index.search(query, k=5, two_stage=False)) == [(d, p) for d, p, _ in reference[:5]]
