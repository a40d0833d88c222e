"""The Qdrant server backend (tested through qdrant-client's local mode) agrees with Qdrant Edge."""

from __future__ import annotations

import numpy as np
import pytest
from _index_utils import assert_matches_brute_force, brute_force, hit_keys, random_corpus, unit_rows

from sap_rag.errors import InvalidInputError
from sap_rag.index import SAPIndex
from sap_rag.index.errors import IndexExistsError

qdrant_client = pytest.importorskip("qdrant_client")

DIM = 48


def _apply(index: SAPIndex, corpus) -> None:
    """The same sequence of adds, a replace and deletes on any backend."""
    for doc_id, pages in corpus.items():
        index.add_pages(pages, doc_id, metadata={"parity": int(doc_id.split("-")[1]) % 2})
    index.add_pages(corpus["doc-2"][:1], "doc-2", metadata={"parity": 0})  # replace: one page left
    index.delete("doc-5")
    index.delete("doc-8")


def _queries(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [unit_rows(rng, int(rng.integers(1, 14)), DIM) for _ in range(6)]


FILTERS = [None, {"doc_id": ["doc-1", "doc-2", "doc-5"]}, {"parity": 1}, {"page_number": 1}]


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_edge_and_qdrant_local_agree(tmp_path, storage):
    corpus = random_corpus(seed=11, dim=DIM, docs=14)
    edge = SAPIndex.create(tmp_path / "edge", dim=DIM, storage=storage)
    server = SAPIndex.create(
        tmp_path / "server", dim=DIM, storage=storage, client=qdrant_client.QdrantClient(":memory:")
    )
    try:
        for index in (edge, server):
            _apply(index, corpus)
        assert edge.stats().pages == server.stats().pages == len(edge)
        assert edge.documents() == server.documents()
        assert server.backend.count() == edge.backend.count() == len(edge)
        for flt in FILTERS:
            for query in _queries(12):
                a = edge.search(query, k=7, filter=flt)
                b = server.search(query, k=7, filter=flt)
                assert hit_keys(a) == hit_keys(b)
                assert all(abs(x.score - y.score) < 1e-4 for x, y in zip(a, b))
                assert [x.metadata for x in a] == [y.metadata for y in b]
        # both equal the brute force over what should be left
        left = {d: (p[:1] if d == "doc-2" else p) for d, p in corpus.items() if d not in ("doc-5", "doc-8")}
        for query in _queries(13):
            reference = brute_force(query, left, storage)
            assert_matches_brute_force(edge.search(query, k=5), reference, 5)
            assert_matches_brute_force(server.search(query, k=5), reference, 5)
            # two stages: a prefetch covering the index gives the same answer on both
            a = edge.search(query, k=5, two_stage=True, prefetch=len(edge))
            b = server.search(query, k=5, two_stage=True, prefetch=len(server))
            assert hit_keys(a) == hit_keys(b) == [(d, p) for d, p, _ in reference[:5]]
            # shallow stages (pooled probe + mean probe, pooled rerank, exact): the same plan on both
            for flt in (None, {"parity": 1}):
                a = edge.search(query, k=4, two_stage=True, prefetch=6, coarse=10, filter=flt)
                b = server.search(query, k=4, two_stage=True, prefetch=6, coarse=10, filter=flt)
                assert hit_keys(a) == hit_keys(b)
                assert all(abs(x.score - y.score) < 1e-4 for x, y in zip(a, b))
        batch_a = edge.search_batch(_queries(14), k=3)
        batch_b = server.search_batch(_queries(14), k=3)
        assert [hit_keys(h) for h in batch_a] == [hit_keys(h) for h in batch_b]
    finally:
        edge.close()
        server.close()


def test_qdrant_local_path_index_reopens(tmp_path):
    """An index on a (local-mode) Qdrant reopens with the caller's client, and its collection name is kept."""
    corpus = random_corpus(seed=21, dim=DIM, docs=4)
    query = _queries(22)[0]
    client = qdrant_client.QdrantClient(path=str(tmp_path / "q"))
    with SAPIndex.create(tmp_path / "idx", dim=DIM, client=client) as index:
        for doc_id, pages in corpus.items():
            index.add_pages(pages, doc_id)
        before = index.search(query, k=4)
        backend = dict(index.manifest.backend)
    assert backend["kind"] == "qdrant" and backend["path"].endswith("q") and "api_key" not in backend
    client.close()  # one client per local-mode folder at a time
    # A manifest-named local-mode folder is never opened on its own (qdrant-client unpickles its
    # files): the caller hands in its client for the recorded path.
    with SAPIndex.open(tmp_path / "idx", client=qdrant_client.QdrantClient(path=backend["path"])) as index:
        after = index.search(query, k=4)
        assert hit_keys(after) == hit_keys(before)
        assert [h.score for h in after] == pytest.approx([h.score for h in before], abs=1e-6)
        index.delete("doc-0")
        assert "doc-0" not in index.documents()
        assert all(h.doc_id != "doc-0" for h in index.search(query, k=10))


def test_existing_collection_is_not_clobbered(tmp_path):
    client = qdrant_client.QdrantClient(":memory:")
    with SAPIndex.create(tmp_path / "a", dim=DIM, client=client, collection="pages"):
        pass
    with pytest.raises(IndexExistsError, match="already exists"):
        SAPIndex.create(tmp_path / "b", dim=DIM, client=client, collection="pages")
    assert not (tmp_path / "b").exists()  # the failed create left nothing behind


def test_in_memory_qdrant_needs_its_client_to_reopen(tmp_path):
    client = qdrant_client.QdrantClient(":memory:")
    corpus = random_corpus(seed=31, dim=DIM, docs=2)
    with SAPIndex.create(tmp_path / "idx", dim=DIM, client=client) as index:
        for doc_id, pages in corpus.items():
            index.add_pages(pages, doc_id)
    with pytest.raises(InvalidInputError, match="client="):
        SAPIndex.open(tmp_path / "idx")
    with SAPIndex.open(tmp_path / "idx", client=client) as index:  # the same client still holds the data
        assert index.documents() == sorted(corpus) and index.check().ok
