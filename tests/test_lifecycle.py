"""Lifecycle: the lock goes with the object or process; many read-only searchers or one writer; a safe lock."""

from __future__ import annotations

import gc
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _index_utils import assert_matches_brute_force, brute_force, random_corpus, random_page, tree_listing, unit_rows

from sap_rag.index import IndexExistsError, IndexFormatError, IndexLockedError, IndexReadOnlyError, SAPIndex

DIM = 16
CHILD = Path(__file__).with_name("_lifecycle_child.py")


def _build(path: Path, corpus) -> None:
    with SAPIndex.create(path, dim=DIM) as index:
        for doc_id, pages in corpus.items():
            index.add_pages(pages, doc_id, texts=[f"{doc_id} page {n}" for n in range(1, len(pages) + 1)])


def _child(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHILD.parent.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_garbage_collection_releases_the_lock(tmp_path):
    path = tmp_path / "idx"
    index = SAPIndex.create(path, dim=DIM)
    index.add_pages([random_page(np.random.default_rng(0), DIM)], "doc")
    with pytest.raises(IndexLockedError):
        SAPIndex.open(path)
    del index
    gc.collect()
    again = SAPIndex.open(path)  # no close() was called
    assert again.documents() == ["doc"]
    # an object in a reference cycle goes at the next collection
    again.cycle = again  # type: ignore[attr-defined]
    del again
    gc.collect()
    with SAPIndex.open(path) as third:
        assert len(third) == 1
        third.close()
        third.close()  # idempotent, also after the finalizer ran


def test_process_exit_without_close_releases_the_lock_and_keeps_the_write(tmp_path):
    path = tmp_path / "idx"
    SAPIndex.create(path, dim=DIM).close()
    child = _child("add-and-exit", str(path), str(DIM))
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    with SAPIndex.open(path) as index:
        assert index.documents() == ["from-child"] and index.check().ok


def test_two_processes_search_one_index_at_once(tmp_path):
    path = tmp_path / "idx"
    corpus = random_corpus(seed=21, dim=DIM, docs=12)
    _build(path, corpus)
    listing = tree_listing(path)
    rng = np.random.default_rng(22)
    queries = np.stack([unit_rows(rng, 5, DIM) for _ in range(6)])
    np.save(tmp_path / "queries.npy", queries)
    children = [_child("reader", str(path), str(tmp_path / "queries.npy"), "5") for _ in range(2)]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "READY", child.stderr.read()
        # both hold the index read-only now; so can this process, and a writer is refused
        with SAPIndex.open(path, read_only=True) as mine:
            assert mine.read_only
            expected = mine.search_batch(list(queries), k=5)
        with pytest.raises(IndexLockedError, match=r"open read-only .* by one or more processes"):
            SAPIndex.open(path)
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [json.loads(child.stdout.readline()) for child in children]
    finally:
        for child in children:
            child.stdin.close()
            child.wait(timeout=120)
    assert all(child.returncode == 0 for child in children), [c.stderr.read() for c in children]
    for rows in results:
        assert [[hit[0] for hit in row] for row in rows] == [[h.page_id for h in row] for row in expected]
        assert all(hit[2].startswith(hit[0].split(":p")[0]) for row in rows for hit in row)
        for row, query in zip(rows, queries):
            reference = brute_force(query, corpus, "float16")
            got = [(h[0].rsplit(":p", 1)[0], int(h[0].rsplit(":p", 1)[1]), h[1]) for h in row]
            assert [(d, p) for d, p, _ in got] == [(d, p) for d, p, _ in reference[:5]]
            assert all(abs(a[2] - b[2]) < 1e-4 for a, b in zip(got, reference))
    assert tree_listing(path) == listing  # the readers changed nothing the index commits
    with SAPIndex.open(path) as writer:  # all readers gone: a writer may open
        assert writer.check().ok


def test_a_writer_and_readers_exclude_each_other_with_clear_errors(tmp_path):
    path = tmp_path / "idx"
    _build(path, random_corpus(seed=3, dim=DIM, docs=3))
    with SAPIndex.open(path):
        with pytest.raises(IndexLockedError, match=r"open for writing by process pid=\d+.*cannot be opened read-only"):
            SAPIndex.open(path, read_only=True)
    first = SAPIndex.open(path, read_only=True)
    second = SAPIndex.open(path, read_only=True)  # readers share, also within one process
    query = unit_rows(np.random.default_rng(1), 3, DIM)
    assert [h.page_id for h in first.search(query)] == [h.page_id for h in second.search(query)]
    with pytest.raises(IndexLockedError, match="read-only"):
        SAPIndex.open(path)
    first.close()
    with pytest.raises(IndexLockedError):
        SAPIndex.open(path)
    del second
    gc.collect()
    SAPIndex.open(path).close()


def test_a_read_only_index_refuses_every_write_and_changes_nothing(tmp_path):
    path = tmp_path / "idx"
    corpus = random_corpus(seed=4, dim=DIM, docs=4)
    _build(path, corpus)
    before = tree_listing(path)
    rng = np.random.default_rng(5)
    with SAPIndex.open(path, read_only=True) as index:
        writes = [
            lambda: index.add_pages([random_page(rng, DIM)], "new"),
            lambda: index.add_images([b"png"], "new"),
            lambda: index.add_documents([tmp_path]),
            lambda: index.delete("doc-0"),
            lambda: index.delete_pages(["doc-0:p1"]),
            lambda: index.optimize(),
            lambda: index.check(repair=True),
        ]
        for write in writes:
            with pytest.raises(IndexReadOnlyError, match="opened read-only"):
                write()
        assert index.check().ok and index.documents() == sorted(corpus)
        assert index.get_pages(["doc-0:p1"])[0].text == "doc-0 page 1"
        query = unit_rows(rng, 4, DIM)
        assert_matches_brute_force(index.search(query, k=6), brute_force(query, corpus, "float16"), 6)
    assert tree_listing(path) == before


def test_a_read_only_open_refuses_an_interrupted_write_until_a_writer_cleans_it(tmp_path):
    path = tmp_path / "idx"
    _build(path, random_corpus(seed=6, dim=DIM, docs=2))
    db = sqlite3.connect(path / "registry.sqlite")
    db.execute("INSERT INTO journal(gen, doc_id, num_pages, state) VALUES (99, 'half', 3, 'writing')")
    db.commit()
    db.close()
    with pytest.raises(IndexReadOnlyError, match=r"interrupted.*open it once for writing"):
        SAPIndex.open(path, read_only=True)
    SAPIndex.open(path).close()  # recovers
    with SAPIndex.open(path, read_only=True) as index:
        assert index.documents() == ["doc-0", "doc-1"]


def test_an_old_registry_opens_read_only_without_being_changed(tmp_path):
    path = tmp_path / "idx"
    _build(path, random_corpus(seed=7, dim=DIM, docs=2))
    db = sqlite3.connect(path / "registry.sqlite")
    db.execute("ALTER TABLE documents DROP COLUMN pages")
    db.execute("DROP TABLE journal_points")
    db.commit()
    db.close()
    before = (path / "registry.sqlite").read_bytes()
    with SAPIndex.open(path, read_only=True) as index:
        assert index.document("doc-1").page_ids[0] == "doc-1:p1"
    assert (path / "registry.sqlite").read_bytes() == before


@pytest.mark.parametrize("read_only", [False, True])
def test_a_lock_file_link_never_touches_its_target(tmp_path, read_only):
    path = tmp_path / "idx"
    _build(path, random_corpus(seed=8, dim=DIM, docs=1))
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    lock = path / ".lock"
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(IndexFormatError, match="symbolic link"):
        SAPIndex.open(path, read_only=read_only)
    assert victim.read_text() == "precious data\n"
    lock.unlink()
    os.link(victim, lock)  # a hard link would be truncated just the same
    with pytest.raises(IndexFormatError, match="hard link"):
        SAPIndex.open(path, read_only=read_only)
    assert victim.read_text() == "precious data\n"
    lock.unlink()
    os.mkfifo(lock)  # would block a plain open
    with pytest.raises(IndexFormatError, match="not a regular file"):
        SAPIndex.open(path, read_only=read_only)
    lock.unlink()
    with SAPIndex.open(path, read_only=read_only) as index:  # a plain lock file again
        assert len(index) > 0


def test_create_refuses_a_lock_file_link_too(tmp_path):
    path = tmp_path / "new"
    path.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    (path / ".lock").symlink_to(victim)
    with pytest.raises(IndexExistsError):  # not an empty directory: refused before any lock is taken
        SAPIndex.create(path, dim=DIM)
    assert victim.read_text() == "keep\n"


def test_qdrant_local_mode_readers_get_a_clear_refusal(tmp_path):
    """A local-mode folder is opened only through the caller's client (qdrant-client allows one per
    folder, and unpickles what it finds there): a read-only open by path alone is refused clearly."""
    qdrant_client = pytest.importorskip("qdrant_client")
    from sap_rag.errors import InvalidInputError

    path = tmp_path / "idx"
    client = qdrant_client.QdrantClient(path=str(tmp_path / "q"))
    SAPIndex.create(path, dim=DIM, client=client).close()
    with pytest.raises(InvalidInputError, match=r"client=QdrantClient\(path=\.\.\.\)"):
        SAPIndex.open(path, read_only=True)
    with SAPIndex.open(path, read_only=True, client=client) as first:
        assert len(first) == 0 and first.read_only
