"""Pages as records: page ids, page text, normalised scores, get_pages and delete_pages, on both backends."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from _index_utils import assert_matches_brute_force, brute_force, random_corpus, random_page, unit_rows

import sap_rag
from sap_rag.errors import InvalidInputError
from sap_rag.index import DocumentNotFoundError, SAPIndex, SearchHit

qdrant_client = pytest.importorskip("qdrant_client")

DIM = 16


_CLIENTS: dict = {}  # tmp_path -> the test's local-mode client (one per folder at a time)


def _client(tmp_path):
    """A fresh local-mode client on ``tmp_path / "q"``, closing the one before (it holds the folder's lock)."""
    old = _CLIENTS.pop(tmp_path, None)
    if old is not None:
        old.close()
    _CLIENTS[tmp_path] = qdrant_client.QdrantClient(path=str(tmp_path / "q"))
    return _CLIENTS[tmp_path]


def _create(tmp_path, backend: str, name: str = "idx") -> SAPIndex:
    if backend == "edge":
        return SAPIndex.create(tmp_path / name, dim=DIM)
    return SAPIndex.create(tmp_path / name, dim=DIM, client=_client(tmp_path))


def _reopen(tmp_path, backend: str, name: str = "idx") -> SAPIndex:
    # A manifest-named local-mode folder is never opened on its own (qdrant-client unpickles its
    # files): the caller hands in its client.
    if backend == "edge":
        return SAPIndex.open(tmp_path / name)
    return SAPIndex.open(tmp_path / name, client=_client(tmp_path))


def test_page_ids_round_trip_and_refuse_what_is_not_one():
    assert sap_rag.page_id("report", 3) == "report:p3"
    for doc_id, number in [("report", 3), ("a:p1", 12), ("x y/z.pdf", 1), ("é:p", 999)]:
        assert sap_rag.parse_page_id(sap_rag.page_id(doc_id, number)) == (doc_id, number)
    for bad in ["report", "report:p", "report:p0", "report:p-1", "report:p03", ":p3", "report:px", "r:p١"]:
        with pytest.raises(InvalidInputError, match="page id"):
            sap_rag.parse_page_id(bad)
    with pytest.raises(InvalidInputError):
        sap_rag.parse_page_id(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        sap_rag.page_id("doc", 0)


def test_a_hit_built_by_hand_still_has_an_id_and_a_text():
    hit = SearchHit("doc", 2, 1.5, None, {"filename": "r.pdf"})
    assert (hit.page_id, hit.text, hit.relevance, hit.num_query_tokens) == ("doc:p2", "page 2 of r.pdf", 0.0, 0)
    assert SearchHit("doc", 2, 1.5, None).text == "page 2 of doc"


@pytest.mark.parametrize("backend", ["edge", "qdrant"])
def test_hits_carry_page_id_text_and_a_relevance_monotone_in_score(tmp_path, backend):
    rng = np.random.default_rng(0)
    index = _create(tmp_path, backend)
    with index:
        info = index.add_pages(
            [random_page(rng, DIM) for _ in range(3)],
            "doc",
            metadata={"filename": "report.pdf"},
            texts=["Revenue\r\ngrew  12%\x00", None, "   "],
        )
        assert info.page_ids == ["doc:p1", "doc:p2", "doc:p3"]
        assert info.page_numbers == [1, 2, 3]
        index.add_pages([random_page(rng, DIM) for _ in range(4)], "other")
        texts = {h.page_id: h.text for h in index.search(unit_rows(rng, 3, DIM), k=10)}
        assert texts == {
            "doc:p1": "Revenue\ngrew 12%",
            "doc:p2": "page 2 of report.pdf",
            "doc:p3": "page 3 of report.pdf",
            **{f"other:p{n}": f"page {n} of other" for n in range(1, 5)},
        }
        for n_tokens in (1, 5, 13):
            hits = index.search(unit_rows(rng, n_tokens, DIM), k=7)
            assert all(h.num_query_tokens == n_tokens for h in hits)
            for hit in hits:
                assert 0.0 <= hit.relevance <= 1.0
                assert hit.relevance == pytest.approx((hit.score / n_tokens + 1) / 2)
            # best first by score, and so by relevance
            assert [h.relevance for h in hits] == sorted((h.relevance for h in hits), reverse=True)
        # a query equal to a page's anchors scores 1 per token: relevance 1
        page = random_page(rng, DIM, k=4)
        index.add_pages([page], "exact")
        best = index.search(page.embeddings, k=1)[0]
        assert best.page_id == "exact:p1" and best.relevance == pytest.approx(1.0, abs=1e-3)
        lone = random_page(rng, DIM, k=1)  # a query opposite to a one-anchor page scores -1 per token
        index.add_pages([lone], "opposite")
        assert index.search(-lone.embeddings, k=1, filter={"doc_id": "opposite"})[0].relevance == pytest.approx(
            0.0, abs=1e-3
        )
    with pytest.raises(InvalidInputError, match="3 pages but 2 texts"):
        with _reopen(tmp_path, backend) as again:
            again.add_pages([random_page(rng, DIM) for _ in range(3)], "x", texts=["a", "b"])


@pytest.mark.parametrize("backend", ["edge", "qdrant"])
def test_get_pages_returns_records_in_order_and_none_for_unknown_ids(tmp_path, backend):
    rng = np.random.default_rng(1)
    with _create(tmp_path, backend) as index:
        index.add_pages([random_page(rng, DIM) for _ in range(2)], "a", metadata={"team": "x"}, texts=["one", "two"])
        index.add_pages([random_page(rng, DIM)], "b")
        got = index.get_pages(["b:p1", "a:p2", "a:p3", "zzz:p1", "a:p1"])
        assert [g.page_id if g else None for g in got] == ["b:p1", "a:p2", None, None, "a:p1"]
        assert got[1].text == "two" and got[1].metadata == {"team": "x"} and got[1].score == 0.0
        assert got[1].relevance == 0.0 and got[1].num_query_tokens == 0
        assert got[0].text == "page 1 of b"
        # same record as a search returns, but for the score
        hit = next(h for h in index.search(unit_rows(rng, 2, DIM), k=3) if h.page_id == "a:p2")
        assert (hit.doc_id, hit.page_number, hit.text, hit.metadata, hit.point_id) == (
            got[1].doc_id,
            got[1].page_number,
            got[1].text,
            got[1].metadata,
            got[1].point_id,
        )
        assert index.get_pages("a:p1")[0].page_id == "a:p1"  # one id alone
        with pytest.raises(InvalidInputError, match="page id"):
            index.get_pages(["a"])


@pytest.mark.parametrize("backend", ["edge", "qdrant"])
def test_delete_pages_keeps_the_other_pages_ids_and_exact_search(tmp_path, backend):
    corpus = random_corpus(seed=5, dim=DIM, docs=6, pages=(3, 6))
    with _create(tmp_path, backend) as index:
        for doc_id, pages in corpus.items():
            index.add_pages(pages, doc_id, texts=[f"{doc_id} text {n}" for n in range(1, len(pages) + 1)])
        total_vectors = index.stats().vectors
        gone = ["doc-1:p2", "doc-3:p1", "doc-3:p3"]
        removed_vectors = corpus["doc-1"][1].embeddings.shape[0] + sum(
            corpus["doc-3"][i].embeddings.shape[0] for i in (0, 2)
        )
        assert index.delete_pages(gone) == 3
        assert len(index) == sum(len(p) for p in corpus.values()) - 3
        assert index.stats().vectors == total_vectors - removed_vectors
        info = index.document("doc-3")
        assert info.page_numbers == [n for n in range(1, len(corpus["doc-3"]) + 1) if n not in (1, 3)]
        assert info.page_ids == [f"doc-3:p{n}" for n in info.page_numbers]
        assert index.get_pages(gone) == [None, None, None]
        kept = index.get_pages(["doc-3:p2", "doc-1:p3"])
        assert [k.text for k in kept] == ["doc-3 text 2", "doc-1 text 3"]
        assert index.check().ok

        def keep(doc, number):
            return f"{doc}:p{number}" not in gone

        rng = np.random.default_rng(9)
        for _ in range(5):
            query = unit_rows(rng, int(rng.integers(1, 9)), DIM)
            assert_matches_brute_force(index.search(query, k=8), brute_force(query, corpus, "float16", keep), 8)
        # nothing changes when one id is missing, unless asked to skip it
        with pytest.raises(DocumentNotFoundError, match="doc-1:p2"):
            index.delete_pages(["doc-2:p1", "doc-1:p2"])
        assert index.get_pages(["doc-2:p1"])[0] is not None
        assert index.delete_pages(["doc-2:p1", "doc-1:p2", "nope:p1"], missing_ok=True) == 1
        # the last pages of a document take the document with them
        numbers = index.document("doc-4").page_numbers
        assert index.delete_pages([f"doc-4:p{n}" for n in numbers]) == len(numbers)
        assert "doc-4" not in index
        # re-adding a document gives it all its pages again
        index.add_pages(corpus["doc-3"], "doc-3")
        assert index.document("doc-3").page_numbers == list(range(1, len(corpus["doc-3"]) + 1))
        left = len(index)
    with _reopen(tmp_path, backend) as index:
        assert len(index) == left and index.check().ok
        assert index.document("doc-1").page_numbers == [1, *range(3, len(corpus["doc-1"]) + 1)]
        index.delete("doc-1")  # a document with a gap goes whole
        assert index.check().ok and index.backend.count() == len(index)


def test_a_failed_point_delete_is_finished_on_the_next_open(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    index = SAPIndex.create(tmp_path / "idx", dim=DIM)
    index.add_pages([random_page(rng, DIM) for _ in range(3)], "doc")
    original = index.backend.delete

    def failing(ids):
        raise RuntimeError("disk went away")

    monkeypatch.setattr(index.backend, "delete", failing)
    assert index.delete_pages(["doc:p2"]) == 1  # committed in the registry; the points wait
    assert index.get_pages(["doc:p2"]) == [None]
    monkeypatch.setattr(index.backend, "delete", original)
    index.close()
    with SAPIndex.open(tmp_path / "idx") as again:
        assert again.backend.count() == 2 and again.check().ok
        assert again.document("doc").page_ids == ["doc:p1", "doc:p3"]


def test_an_index_from_before_page_texts_opens_and_returns_labels(tmp_path, monkeypatch):
    """Old indexes: no ``text`` in the payload and a registry without the ``pages`` column."""
    rng = np.random.default_rng(3)
    path = tmp_path / "old"
    index = SAPIndex.create(path, dim=DIM)
    upsert = index.backend.upsert

    def old_upsert(points):
        for point in points:
            point.payload.pop("text")
        upsert(points)

    monkeypatch.setattr(index.backend, "upsert", old_upsert)
    index.add_pages([random_page(rng, DIM) for _ in range(2)], "old-doc", metadata={"filename": "old.pdf"})
    index.close()
    db = sqlite3.connect(path / "registry.sqlite")
    db.execute("ALTER TABLE documents DROP COLUMN pages")
    db.execute("DROP TABLE journal_points")
    db.commit()
    db.close()
    with SAPIndex.open(path) as again:
        hits = again.search(unit_rows(rng, 2, DIM), k=2)
        assert sorted(h.text for h in hits) == ["page 1 of old.pdf", "page 2 of old.pdf"]
        assert again.get_pages(["old-doc:p2"])[0].text == "page 2 of old.pdf"
        assert again.delete_pages(["old-doc:p1"]) == 1
        assert again.document("old-doc").page_ids == ["old-doc:p2"]
    # Once a document has lost pages, the registry says so: an older sap-rag would misread it.
    db = sqlite3.connect(path / "registry.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)
    db.close()


def test_text_checks(tmp_path):
    rng = np.random.default_rng(4)
    with SAPIndex.create(tmp_path / "idx", dim=DIM) as index:
        with pytest.raises(InvalidInputError, match="texts\\[1\\] must be a str"):
            index.add_pages([random_page(rng, DIM)] * 2, "d", texts=["a", 3])
        with pytest.raises(InvalidInputError, match="texts must be a list"):
            index.add_pages([random_page(rng, DIM)], "d", texts="abc")
        index.add_pages([random_page(rng, DIM)], "d", texts=["lone \ud800 surrogate"])
        assert index.get_pages(["d:p1"])[0].text == "lone surrogate"
        assert len(index) == 1
