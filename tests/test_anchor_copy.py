"""The derived anchor copy: exact results, rebuilt when stale or missing, never used when wrong,
untrusted on disk, and SIGKILL during a rebuild loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _index_utils import brute_force, random_corpus, random_page

from sap_rag import SAPIndex
from sap_rag.errors import InvalidInputError
from sap_rag.index import anchor_copy
from sap_rag.index.anchor_copy import COPY_NAME, DERIVED_DIR, ensure_copy, open_copy, search_copy

DIM = 16


def _copy(index: SAPIndex):
    return ensure_copy(index.path, index._store.registry, index.backend, DIM, index.storage, read_only=index.read_only)


def _open(index: SAPIndex):
    return open_copy(index.path, index._store.registry, DIM, index.storage)


def _search(index: SAPIndex, copy, query: np.ndarray, k: int, point_ids=None) -> list[tuple[str, int, float]]:
    hits = search_copy(copy, index.backend, [query], k, point_ids=point_ids)[0]
    return [(h.payload["doc_id"], int(h.payload["page_number"]), h.score) for h in hits]


def _same(got, expected, k: int) -> None:
    assert [(d, p) for d, p, _ in got] == [(d, p) for d, p, _ in expected[:k]]
    for (_, _, a), (_, _, b) in zip(got, expected, strict=False):
        assert abs(a - b) < 1e-3


def _queries(seed: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # rounded to float16 as the index rounds queries to its storage before any scan
    return [rng.standard_normal((int(rng.integers(2, 7)), DIM)).astype(np.float16).astype(np.float32) for _ in range(n)]


@pytest.fixture
def built(tmp_path: Path):
    corpus = random_corpus(11, DIM, 14)
    index = SAPIndex.create(tmp_path / "ix", dim=DIM, two_stage=False)
    for doc_id, pages in corpus.items():
        index.add_pages(pages, doc_id=doc_id)
    yield index, corpus
    index.close()


def test_copy_scan_equals_float64_brute_force_and_engine(built):
    index, corpus = built
    copy = _copy(index)
    assert copy is not None and (index.path / DERIVED_DIR / COPY_NAME).is_file()
    assert copy.ids.size == len(index)
    for query in _queries(0):
        ref = brute_force(query, corpus, "float16")
        _same(_search(index, copy, query, 7), ref, 7)
        engine = [(h.doc_id, h.page_number, h.score) for h in index.search(query, 7)]
        _same(_search(index, copy, query, 7), engine, 7)


def test_filtered_subset_is_respected(built):
    index, corpus = built
    copy = _copy(index)
    wanted = {"doc-1", "doc-4", "doc-9"}
    ids = [i for i in copy.ids.tolist() if index.backend.retrieve([i])[i]["doc_id"] in wanted]
    for query in _queries(1):
        got = _search(index, copy, query, 5, point_ids=np.array(ids))
        ref = brute_force(query, corpus, "float16", keep=lambda d, p: d in wanted)
        _same(got, ref, 5)


def test_stale_copy_is_never_used_and_rebuilt(built):
    index, corpus = built
    old = _copy(index)
    assert old is not None
    rng = np.random.default_rng(5)
    # add: a new document whose page holds the query's own vectors, so it must come first
    query = _queries(2, 1)[0]
    extra = [random_page(rng, DIM, k=8)]
    extra[0].embeddings[: len(query)] = torch.from_numpy(query)
    index.add_pages(extra, doc_id="new")
    assert _open(index) is None and not old.fresh(index._store.registry)
    corpus = dict(corpus, new=extra)
    got = _search(index, _copy(index), query, 6)
    assert got[0][:2] == ("new", 1)
    _same(got, brute_force(query, corpus, "float16"), 6)
    # delete a document, then pages of another: each leaves the copy stale, and the rebuilt one is exact
    index.delete("doc-3")
    corpus.pop("doc-3")
    assert _open(index) is None
    _same(_search(index, _copy(index), query, 6), brute_force(query, corpus, "float16"), 6)
    doc = next(d for d, pages in corpus.items() if len(pages) >= 2)
    index.delete_pages([_page_id(doc, 1)])
    assert _open(index) is None
    copy = _copy(index)
    got = _search(index, copy, query, 40)
    assert (doc, 1) not in [(d, p) for d, p, _ in got]
    keep = lambda d, p: not (d == doc and p == 1)  # noqa: E731
    _same(got, brute_force(query, corpus, "float16", keep=keep), 40)


def _page_id(doc: str, number: int) -> str:
    from sap_rag import page_id

    return page_id(doc, number)


def test_deleted_or_damaged_copy_is_rebuilt_or_ignored(built):
    index, corpus = built
    path = index.path / DERIVED_DIR / COPY_NAME
    query = _queries(3, 1)[0]
    ref = brute_force(query, corpus, "float16")
    _copy(index)
    path.unlink()
    assert _open(index) is None
    _same(_search(index, _copy(index), query, 5), ref, 5)
    good = path.read_bytes()
    for damage in (good[:-3], good[:40], b"garbage" * 10, good[:-64] + b"\x01" * 64):
        path.write_bytes(damage)
        copy = _open(index)
        if copy is not None:  # only the anchors' bytes changed: sizes and header still hold
            assert damage[: len(good) - 64] == good[:-64]
            continue
        _same(_search(index, _copy(index), query, 5), ref, 5)
    # a header whose sizes were changed to match a truncated body is refused too
    path.write_bytes(good)
    bogus = good.replace(b'"pages": ', b'"pages": 1', 1)
    path.write_bytes(bogus)
    assert _open(index) is None


def test_links_are_not_followed(built, tmp_path: Path):
    index, _ = built
    outside = tmp_path / "outside"
    outside.mkdir()
    _copy(index)
    path = index.path / DERIVED_DIR / COPY_NAME
    (outside / COPY_NAME).write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside / COPY_NAME)
    assert _open(index) is None  # a link is not opened, even to a valid copy
    derived = index.path / DERIVED_DIR
    for entry in derived.iterdir():
        entry.unlink()
    derived.rmdir()
    derived.symlink_to(outside, target_is_directory=True)
    assert _copy(index) is None  # derived/ is a link: nothing read or written through it
    assert sorted(p.name for p in outside.iterdir()) == [COPY_NAME]


def test_read_only_open_uses_a_fresh_copy_and_never_writes(built):
    index, _ = built
    _copy(index)
    index.add_pages(random_corpus(7, DIM, 1)["doc-0"], doc_id="late")
    path = index.path
    index.close()
    before = (path / DERIVED_DIR / COPY_NAME).read_bytes()
    reader = SAPIndex.open(path, read_only=True)
    try:
        assert _copy(reader) is None  # stale and read-only: not used, not rebuilt
        assert (path / DERIVED_DIR / COPY_NAME).read_bytes() == before
    finally:
        reader.close()
    writer = SAPIndex.open(path)
    assert _copy(writer) is not None
    writer.close()
    reader = SAPIndex.open(path, read_only=True)
    try:
        assert _copy(reader) is not None
    finally:
        reader.close()


_CHILD = """
import sys, time
from pathlib import Path
from sap_rag import SAPIndex
from sap_rag.errors import InvalidInputError
from sap_rag.index import anchor_copy
anchor_copy._READ_BATCH = 2
index = SAPIndex.open(sys.argv[1])
index.delete("doc-2")
real = index.backend.retrieve_points
calls = []
def slow(ids):
    calls.append(1)
    if len(calls) == 3:
        Path(sys.argv[2]).write_text("mid-rebuild")
        time.sleep(120)
    return real(ids)
index.backend.retrieve_points = slow
anchor_copy.ensure_copy(index.path, index._store.registry, index.backend, 16, index.storage, read_only=False)
"""


def test_sigkill_during_rebuild_loses_nothing(built, tmp_path: Path):
    index, corpus = built
    _copy(index)
    path = index.path
    old = (path / DERIVED_DIR / COPY_NAME).read_bytes()
    index.close()
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the child ended before the rebuild"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    derived = path / DERIVED_DIR
    assert (derived / COPY_NAME).read_bytes() == old  # the old copy stays whole
    assert [p.name for p in derived.iterdir() if p.name.endswith(".tmp")]  # its half-written temp file
    corpus.pop("doc-2")
    reopened = SAPIndex.open(path)
    try:
        assert _open(reopened) is None  # the old copy is stale: the delete committed
        copy = _copy(reopened)
        assert copy is not None
        assert not [p.name for p in derived.iterdir() if p.name.endswith(".tmp")]
        for query in _queries(4):
            _same(_search(reopened, copy, query, 8), brute_force(query, corpus, "float16"), 8)
    finally:
        reopened.close()
    assert anchor_copy._READ_BATCH > 2


def test_search_batch_scan_copy_is_exact_and_follows_writes(built):
    index, corpus = built
    queries = _queries(8, 9)
    for query, hits in zip(queries, index.search_batch(queries, 6, two_stage=False, scan="copy"), strict=True):
        _same([(h.doc_id, h.page_number, h.score) for h in hits], brute_force(query, corpus, "float16"), 6)
        assert hits[0].num_query_tokens == len(query)
    assert index._anchor_copy is not None and (index.path / DERIVED_DIR / COPY_NAME).is_file()
    index.delete("doc-5")
    corpus.pop("doc-5")
    # auto with a batch: the (rebuilt) copy; one query: the engine; a filter: the engine; all exact
    for mode, batch in (("auto", queries), ("copy", queries[:1]), ("auto", queries[:1]), ("engine", queries)):
        for query, hits in zip(batch, index.search_batch(batch, 6, two_stage=False, scan=mode), strict=True):
            _same([(h.doc_id, h.page_number, h.score) for h in hits], brute_force(query, corpus, "float16"), 6)
    hits = index.search_batch(queries, 4, two_stage=False, scan="copy", filter={"doc_id": ["doc-1", "doc-6"]})
    for query, got in zip(queries, hits, strict=True):
        keep = lambda d, p: d in ("doc-1", "doc-6")  # noqa: E731
        _same([(h.doc_id, h.page_number, h.score) for h in got], brute_force(query, corpus, "float16", keep=keep), 4)
    with pytest.raises(InvalidInputError, match="scan must be one of"):
        index.search(queries[0], 3, scan="gpu")
