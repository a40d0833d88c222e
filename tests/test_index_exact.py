"""Search equals a float64 brute-force MaxSim over the stored anchors, for every exact storage type."""

from __future__ import annotations

import numpy as np
import pytest
from _index_utils import assert_matches_brute_force, brute_force, hit_keys, random_corpus, unit_rows

from sap_rag.index import SAPIndex, StorageType

DIM = 64


@pytest.fixture(scope="module")
def corpus():
    return random_corpus(seed=0, dim=DIM, docs=30)


def _build(path, corpus, **options) -> SAPIndex:
    index = SAPIndex.create(path, dim=DIM, **options)
    for doc_id, pages in corpus.items():
        index.add_pages(pages, doc_id, metadata={"group": int(doc_id.split("-")[1]) % 3, "tag": doc_id[-1]})
    return index


@pytest.mark.parametrize("storage", [s.value for s in StorageType if s.exact])
def test_search_equals_brute_force(tmp_path, corpus, storage):
    rng = np.random.default_rng(1)
    with _build(tmp_path / "idx", corpus, storage=storage) as index:
        for _ in range(8):
            query = unit_rows(rng, int(rng.integers(1, 16)), DIM)
            for k in (1, 5, 12):
                assert_matches_brute_force(index.search(query, k=k), brute_force(query, corpus, storage), k)
        index.optimize()  # segments merged: still exact
        query = unit_rows(rng, 9, DIM)
        assert_matches_brute_force(index.search(query, k=10), brute_force(query, corpus, storage), 10)


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_filters_restrict_results(tmp_path, corpus, storage):
    rng = np.random.default_rng(2)
    query = unit_rows(rng, 7, DIM)
    cases = [
        ({"doc_id": "doc-3"}, lambda d, p: d == "doc-3"),
        ({"doc_id": ["doc-1", "doc-4", "doc-9"]}, lambda d, p: d in ("doc-1", "doc-4", "doc-9")),
        ({"group": 2}, lambda d, p: int(d.split("-")[1]) % 3 == 2),
        ({"tag": ["1", "2"], "page_number": 1}, lambda d, p: d[-1] in "12" and p == 1),
        ({"page_number": [2, 3]}, lambda d, p: p in (2, 3)),
        ({"doc_id": "no-such-doc"}, lambda d, p: False),
    ]
    with _build(tmp_path / "idx", corpus, storage=storage) as index:
        for flt, keep in cases:
            hits = index.search(query, k=6, filter=flt)
            reference = brute_force(query, corpus, storage, keep=keep)
            assert_matches_brute_force(hits, reference, 6)
            assert all(keep(h.doc_id, h.page_number) for h in hits)


def test_float16_is_exact_over_rounded_vectors_and_close_to_float32(tmp_path, corpus):
    """float16 scores are exact MaxSim of the float16-rounded query and anchors."""
    rng = np.random.default_rng(3)
    query = unit_rows(rng, 12, DIM)
    with _build(tmp_path / "idx", corpus, storage="float16") as index:
        hits = index.search(query, k=5)
    assert_matches_brute_force(hits, brute_force(query, corpus, "float16"), 5, tol=1e-5)
    full = {(d, p): s for d, p, s in brute_force(query, corpus, "float32")}
    assert all(abs(h.score - full[(h.doc_id, h.page_number)]) < 5e-3 for h in hits)


def test_two_stage_rerank_is_exact(tmp_path, corpus):
    """Prefetch over every page gives the exact result; a shallow prefetch still scores exactly."""
    rng = np.random.default_rng(4)
    with _build(tmp_path / "idx", corpus, storage="float32", two_stage=True) as index:
        assert index.stats().two_stage
        pages = len(index)
        for _ in range(4):
            query = unit_rows(rng, 8, DIM)
            reference = brute_force(query, corpus, "float32")
            assert_matches_brute_force(index.search(query, k=10, prefetch=pages), reference, 10)
            shallow = index.search(query, k=5, prefetch=20)
            exact = {(d, p): s for d, p, s in reference}
            assert len(shallow) == 5
            assert all(abs(h.score - exact[(h.doc_id, h.page_number)]) < 1e-4 for h in shallow)
            assert [h.score for h in shallow] == sorted((h.score for h in shallow), reverse=True)
            # the filter applies to the prefetch too
            filtered = index.search(query, k=3, prefetch=pages, filter={"doc_id": "doc-7"})
            assert_matches_brute_force(
                filtered, brute_force(query, corpus, "float32", keep=lambda d, p: d == "doc-7"), 3
            )
        assert hit_keys(index.search(query, k=4, two_stage=False)) == [(d, p) for d, p, _ in reference[:4]]
        index.manifest.two_stage["exact_prefetch_max_pages"] = 0  # the HNSW path of the first stage
        assert_matches_brute_force(index.search(query, k=10, prefetch=pages), reference, 10)


def test_two_stage_auto_follows_threshold(tmp_path, corpus):
    with _build(tmp_path / "a", corpus, two_stage="auto", two_stage_threshold=10_000) as index:
        assert not index.stats().two_stage
    with _build(tmp_path / "b", corpus, two_stage="auto", two_stage_threshold=5) as index:
        assert index.stats().two_stage
    with _build(tmp_path / "c", corpus, two_stage=False, two_stage_threshold=5) as index:
        assert not index.stats().two_stage


def test_int8_rescored_scores_are_exact_float16(tmp_path):
    """int8 is approximate by design; with rescoring the scores it returns are exact float16 MaxSim."""
    corpus = random_corpus(seed=5, dim=DIM, docs=120, pages=(1, 8))
    rng = np.random.default_rng(6)
    with _build(tmp_path / "idx", corpus, storage="int8", indexing_threshold_kb=10) as index:
        index.optimize()  # builds the int8 copy (the segment is above the 10 KB threshold)
        assert any(index.path.joinpath("shard").rglob("quantized.data"))
        recalls = []
        for _ in range(10):
            query = unit_rows(rng, int(rng.integers(2, 12)), DIM)
            reference = brute_force(query, corpus, "int8")
            exact = {(d, p): s for d, p, s in reference}
            hits = index.search(query, k=10)
            assert all(abs(h.score - exact[(h.doc_id, h.page_number)]) < 1e-4 for h in hits)
            recalls.append(len(set(hit_keys(hits)) & {(d, p) for d, p, _ in reference[:10]}) / 10)
        assert np.mean(recalls) >= 0.9
    assert not StorageType.INT8.exact
