"""Persistence across processes, deletes, locking, all-or-nothing adds and crash recovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _index_child import big_document
from _index_utils import brute_force, hit_keys, random_corpus, tree_listing, unit_rows

from sap_rag.errors import UnreadableInputError
from sap_rag.index import IndexLockedError, SAPIndex, parse_filter
from sap_rag.index.errors import BackendError

DIM = 32
CHILD = Path(__file__).with_name("_index_child.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _child(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _wait_for(proc: subprocess.Popen, marker: str) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith(marker):
            return lines
    raise AssertionError(f"child ended before {marker!r}: {lines} {proc.stderr.read()}")


def _fill(path: Path, corpus) -> SAPIndex:
    index = SAPIndex.create(path, dim=DIM)
    for doc_id, pages in corpus.items():
        index.add_pages(pages, doc_id, metadata={"n": len(pages)})
    return index


def test_reopen_in_fresh_process_gives_identical_results(tmp_path):
    corpus = random_corpus(seed=1, dim=DIM, docs=12)
    rng = np.random.default_rng(2)
    queries = np.stack([unit_rows(rng, 6, DIM) for _ in range(5)])
    with _fill(tmp_path / "idx", corpus) as index:
        expected = [
            [[h.doc_id, h.page_number, h.score, h.point_id] for h in hits]
            for hits in index.search_batch(list(queries), k=8)
        ]
    np.save(tmp_path / "q.npy", queries)
    result = subprocess.run(
        [sys.executable, str(CHILD), "search", str(tmp_path / "idx"), str(tmp_path / "q.npy"), "8"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == expected


def test_delete_removes_every_page_also_after_reopen(tmp_path):
    corpus = random_corpus(seed=3, dim=DIM, docs=6, pages=(3, 6))
    rng = np.random.default_rng(4)
    # queries built from the doomed document's own anchors, so it would rank first if present
    doomed = corpus["doc-2"]
    queries = [doomed[i].embeddings.numpy()[:3] for i in range(len(doomed))]
    with _fill(tmp_path / "idx", corpus) as index:
        assert index.search(queries[0], k=1)[0].doc_id == "doc-2"
        assert index.delete("doc-2") == len(doomed)
        assert "doc-2" not in index
        assert index.backend.count(parse_filter({"doc_id": "doc-2"})) == 0
        for query in queries:
            assert all(h.doc_id != "doc-2" for h in index.search(query, k=50))
    with SAPIndex.open(tmp_path / "idx") as index:
        assert "doc-2" not in index.documents()
        for query in queries:
            assert all(h.doc_id != "doc-2" for h in index.search(query, k=50))
        assert index.check().ok
        left = {d: p for d, p in corpus.items() if d != "doc-2"}
        query = unit_rows(rng, 5, DIM)
        assert hit_keys(index.search(query, k=40)) == [(d, p) for d, p, _ in brute_force(query, left, "float16")[:40]]
        index.delete("doc-4")
    with SAPIndex.open(tmp_path / "idx") as index:
        assert index.documents() == sorted(set(corpus) - {"doc-2", "doc-4"})
        assert len(index) == sum(len(p) for d, p in corpus.items() if d not in ("doc-2", "doc-4"))


def test_readding_a_document_replaces_its_pages(tmp_path):
    corpus = random_corpus(seed=5, dim=DIM, docs=3, pages=(4, 6))
    new_pages = random_corpus(seed=6, dim=DIM, docs=1, pages=(2, 3))["doc-0"]
    with _fill(tmp_path / "idx", corpus) as index:
        info = index.add_pages(new_pages, "doc-1", metadata={"v": 2})
        assert info.num_pages == len(new_pages)
        assert index.document("doc-1").metadata == {"v": 2}
        hits = index.search(
            np.concatenate([p.embeddings.numpy() for p in new_pages]), k=100, filter={"doc_id": "doc-1"}
        )
        assert sorted(h.page_number for h in hits) == list(range(1, len(new_pages) + 1))
        assert index.check().ok
        assert len(index) == sum(len(p) for d, p in corpus.items() if d != "doc-1") + len(new_pages)


def test_second_writer_fails_clearly(tmp_path):
    with SAPIndex.create(tmp_path / "idx", dim=DIM):
        with pytest.raises(IndexLockedError, match=f"pid={os.getpid()}"):
            SAPIndex.open(tmp_path / "idx")
        proc = subprocess.run(
            [sys.executable, str(CHILD), "hold", str(tmp_path / "idx")],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
        assert proc.returncode != 0
        assert "IndexLockedError" in proc.stderr and f"pid={os.getpid()}" in proc.stderr
    # another process holds it: this one fails, naming that process
    holder = _child("hold", str(tmp_path / "idx"))
    try:
        _wait_for(holder, "READY")
        with pytest.raises(IndexLockedError, match=f"pid={holder.pid}"):
            SAPIndex.open(tmp_path / "idx")
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    SAPIndex.open(tmp_path / "idx").close()  # released on exit


def _snapshot(index: SAPIndex, queries) -> dict:
    return {
        "docs": index.documents(),
        "stats": (index.stats().pages, index.stats().documents, index.stats().vectors),
        "count": index.backend.count(),
        "hits": [
            [(h.doc_id, h.page_number, round(h.score, 6)) for h in hits] for hits in index.search_batch(queries, k=10)
        ],
        "files": tree_listing(index.path),
    }


def test_unreadable_third_page_leaves_index_exactly_as_it_was(tmp_path, tiny_encoder, pages):
    with SAPIndex.create(tmp_path / "idx", encoder=tiny_encoder) as index:
        index.add_images(pages[:2], doc_id="first", metadata={"source": "a.pdf"})
        before = _snapshot(index, ["revenue in 2023", "a chart"])
        broken = [pages[2], pages[3], b"this is not an image", pages[0]]
        with pytest.raises(UnreadableInputError, match="page 3"):
            index.add_images(broken, doc_id="second")
        with pytest.raises(UnreadableInputError):
            index.add_images(broken, doc_id="first")  # a failed replace keeps the old version
        assert _snapshot(index, ["revenue in 2023", "a chart"]) == before
        assert index.check().ok


def test_engine_failure_mid_add_rolls_back(tmp_path, monkeypatch):
    corpus = random_corpus(seed=8, dim=DIM, docs=3)
    big = big_document(DIM, pages=200, vectors=4, seed=9)
    rng = np.random.default_rng(10)
    queries = [unit_rows(rng, 4, DIM) for _ in range(3)]
    with _fill(tmp_path / "idx", corpus) as index:
        before = _snapshot(index, queries)
        calls = {"n": 0}
        upsert = index.backend.upsert

        def failing(points):
            calls["n"] += 1
            if calls["n"] == 2:
                raise BackendError("disk full (simulated)")
            upsert(points)

        monkeypatch.setattr(index.backend, "upsert", failing)
        with pytest.raises(BackendError, match="simulated"):
            index.add_pages(big, "big")
        with pytest.raises(BackendError, match="simulated"):
            calls["n"] = 0
            index.add_pages(big, "doc-1")  # failed replace
        monkeypatch.setattr(index.backend, "upsert", upsert)
        assert _snapshot(index, queries) == before
        assert index.check().ok and index._registry.journal() == []


@pytest.mark.parametrize("phase", ["upsert:3", "commit", "cleanup", "free"])
def test_sigkill_mid_add_leaves_whole_documents(tmp_path, phase, caplog):
    """A writer killed with SIGKILL at any point: the index opens, holds only whole documents,
    and the same add succeeds afterwards."""
    corpus = random_corpus(seed=12, dim=DIM, docs=4)
    pages, vectors = (1500, 8)
    replacing = phase == "cleanup"
    with _fill(tmp_path / "idx", corpus) as index:
        if replacing:  # the killed add replaces an existing version of the document
            index.add_pages(big_document(DIM, pages=10, vectors=vectors, seed=1), "big")
        committed_before = index.documents()
    proc = _child(
        "add", str(tmp_path / "idx"), str(DIM), str(pages), str(vectors), "big", "none" if phase == "free" else phase
    )
    try:
        if phase == "free":  # no blocking: killed wherever it is after its third write
            _wait_for(proc, "WROTE 3")
        else:
            _wait_for(proc, "READY")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    with caplog.at_level("WARNING", logger="sap_rag.index"), SAPIndex.open(tmp_path / "idx") as index:
        assert "recovered the index" in caplog.text  # the journal had the unfinished write
        report = index.check()
        assert report.ok, report
        docs = index.documents()
        assert set(committed_before) <= set(docs) <= set(committed_before) | {"big"}
        big_pages = index.document("big").num_pages if "big" in index else 0
        if phase == "cleanup":
            assert big_pages == pages  # committed before the kill: the new version won
        elif phase != "free":
            assert big_pages == (10 if replacing else 0)
        assert big_pages in (0, 10, pages)
        assert index.backend.count() == len(index) == sum(len(p) for p in corpus.values()) + big_pages
        assert index._registry.journal() == []
        # the same add again succeeds and is complete
        info = index.add_pages(big_document(DIM, pages, vectors, seed=7), "big")
        assert info.num_pages == pages
        assert index.check().ok
        query = big_document(DIM, pages, vectors, seed=7)[5].embeddings.numpy()
        top = index.search(query, k=1)[0]
        assert (top.doc_id, top.page_number) == ("big", 6)


def test_failed_cleanup_is_finished_before_the_next_search(tmp_path, monkeypatch):
    """If deleting a removed document's points fails, the delete still stands and is completed later."""
    corpus = random_corpus(seed=13, dim=DIM, docs=3, pages=(2, 4))
    query = corpus["doc-1"][0].embeddings.numpy()
    with _fill(tmp_path / "idx", corpus) as index:
        delete = index.backend.delete
        monkeypatch.setattr(index.backend, "delete", lambda ids: (_ for _ in ()).throw(BackendError("busy")))
        assert index.delete("doc-1") == len(corpus["doc-1"])
        assert "doc-1" not in index and index._registry.journal() != []
        monkeypatch.setattr(index.backend, "delete", delete)
        assert all(h.doc_id != "doc-1" for h in index.search(query, k=20))
        assert index._registry.journal() == [] and index.check().ok
