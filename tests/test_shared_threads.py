"""One index, many threads: searches beside an add see whole documents; a close ends every call cleanly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from sap_rag.index import IndexClosedError, SAPIndex
from sap_rag.index.index import pruned_page

DIM = 16


def _pages(rng: np.random.Generator, n: int):
    return [pruned_page(torch.from_numpy(rng.standard_normal((3, DIM)).astype(np.float32))) for _ in range(n)]


def test_searches_beside_an_add_see_a_document_whole_or_not_at_all(tmp_path):
    rng = np.random.default_rng(0)
    index = SAPIndex.create(tmp_path / "idx", dim=DIM, two_stage=False)
    index.add_pages(_pages(rng, 4), "base")
    pages_per_doc, docs = 5, 12
    batches = [_pages(rng, pages_per_doc) for _ in range(docs)]
    query = rng.standard_normal((2, DIM)).astype(np.float32)
    problems: list[str] = []
    done = threading.Event()

    def search() -> None:
        while not done.is_set():
            hits = index.search(query, k=1000)
            counts: dict[str, int] = {}
            for hit in hits:
                counts[hit.doc_id] = counts.get(hit.doc_id, 0) + 1
            for doc_id, count in counts.items():
                if doc_id != "base" and count != pages_per_doc:
                    problems.append(f"{doc_id}: {count} of {pages_per_doc} pages")

    def add() -> None:
        try:
            for i, pages in enumerate(batches):
                index.add_pages(pages, f"doc-{i}")
        finally:
            done.set()

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=add)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not problems, problems[:5]
    assert len(index) == 4 + pages_per_doc * docs
    assert len(index.search(query, k=1000)) == len(index)
    index.close()


CALLS = {
    "stats": lambda ix: ix.stats(),
    "document": lambda ix: ix.document("d0"),
    "documents": lambda ix: ix.documents(),
    "check": lambda ix: ix.check(),
    "in": lambda ix: "d0" in ix,
    "len": lambda ix: len(ix),
    "search": lambda ix: ix.search(np.ones((2, DIM), dtype=np.float32), k=2),
    "get_pages": lambda ix: ix.get_pages(["d0:p1"]),
    "add": lambda ix: ix.add_pages(_pages(np.random.default_rng(9), 1), "new"),
    "delete": lambda ix: ix.delete("nope", missing_ok=True),
    "delete_pages": lambda ix: ix.delete_pages(["nope:p1"], missing_ok=True),
    "optimize": lambda ix: ix.optimize(),
}


def _hammer(index, name, call, start, calls, errors) -> None:
    start.wait()
    while True:
        try:
            call(index)
            calls[name] += 1
        except IndexClosedError:
            return
        except BaseException as exc:  # anything else is the failure
            errors.append(exc)
            return


def test_calls_racing_or_after_close_raise_index_closed_error(tmp_path):
    rng = np.random.default_rng(1)
    with SAPIndex.create(tmp_path / "idx", dim=DIM) as index:
        for i in range(3):
            index.add_pages(_pages(rng, 2), f"d{i}")
    for trial in range(3):
        index = SAPIndex.open(tmp_path / "idx")
        errors: list[BaseException] = []
        calls = {name: 0 for name in CALLS}
        start = threading.Barrier(len(CALLS) + 1)

        threads = [
            threading.Thread(target=_hammer, args=(index, name, call, start, calls, errors), daemon=True)
            for name, call in CALLS.items()
        ]
        for thread in threads:
            thread.start()
        start.wait()
        time.sleep(0.2 + 0.1 * trial)
        index.close()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert not errors, [repr(e) for e in errors]
        assert sum(calls.values()) > 0
        for call in CALLS.values():  # after close: every call, `in` and len() too
            with pytest.raises(IndexClosedError):
                call(index)
        assert "closed" in repr(index)
