"""Ingestion never stops search, searches see whole documents only, and queries are batched across requests."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from _serve_fixtures import LiveServer, copy_index, sample_index, tiff_bytes, wait_job

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def live(toy_encoder, tmp_path_factory):
    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig, create_app

    path = copy_index(sample_index(toy_encoder, tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("conc") / "i")
    index = SAPIndex.open(path, encoder=toy_encoder)
    server = LiveServer(create_app(index, config=ServeConfig(max_wait_ms=20, ingest_batch_size=1), mcp=False))
    yield server
    server.stop()
    index.close()


def test_searches_answer_during_ingestion_and_see_whole_documents(live):
    pages_per_doc = 3
    files = [("files", (f"scan{i}.tiff", tiff_bytes([10 * i + j for j in range(3)]), "image/tiff")) for i in range(4)]
    seen_counts: list[int] = []
    errors: list[str] = []
    partial: list[dict] = []
    done = threading.Event()

    def searcher() -> None:
        with live.client() as http:
            while not done.is_set():
                response = http.post("/search", json={"query": "revenue report", "k": 1000, "snippet": 0})
                if response.status_code != 200:
                    errors.append(response.text)
                    continue
                per_doc = Counter(h["doc_id"] for h in response.json()["hits"])
                if any(n != pages_per_doc for n in per_doc.values()):
                    partial.append(dict(per_doc))
                seen_counts.append(len(per_doc))

    with live.client() as http:
        job_id = http.post("/documents", files=files).json()["job_id"]
        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            job = wait_job(http, job_id)
        finally:
            done.set()
            for thread in threads:
                thread.join(60)
    assert job["state"] == "done" and [r["pages"] for r in job["results"]] == [3, 3, 3, 3]
    assert not errors and not partial
    # Searches answered while the documents went in one by one: they saw the index grow.
    assert any(3 < n < 7 for n in seen_counts), Counter(seen_counts)
    assert min(seen_counts) >= 3 and max(seen_counts) <= 7


def test_concurrent_queries_are_batched_and_answered_as_alone(live):
    questions = ["revenue of Acme", "water use of Borealis", "customers of Cobalt Health", "research spending"]
    with live.client() as http:
        alone = {q: http.post("/search", json={"query": q, "k": 3}).json()["hits"] for q in questions}
    from sap_rag.serve.batching import BatchStats

    live.service.batcher.stats = stats = BatchStats()  # count this test's batches only
    results: dict[int, list] = {}
    barrier = threading.Barrier(16)

    def ask(i: int) -> None:
        with live.client() as http:
            barrier.wait()
            results[i] = http.post("/search", json={"query": questions[i % 4], "k": 3}).json()["hits"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 16
    for i, hits in results.items():
        expected = alone[questions[i % 4]]
        assert [h["page_id"] for h in hits] == [h["page_id"] for h in expected]
        assert [h["score"] for h in hits] == pytest.approx([h["score"] for h in expected], rel=1e-4, abs=1e-4)
    assert stats.requests == 16 and stats.largest > 1, stats  # some requests shared a forward pass


def test_micro_batcher_groups_and_isolates_errors():
    from sap_rag.serve.batching import MicroBatcher

    seen: list[list[int]] = []

    def handler(items: list[int]) -> list:
        seen.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    batcher = MicroBatcher(handler, max_batch=4, max_wait_s=0.2, name="test-batcher")
    futures = [batcher.submit(i) for i in (1, -2, 3, 4, 5)]
    assert [f.result(5) for f in futures if f is not futures[1]] == [10, 30, 40, 50]
    with pytest.raises(ValueError, match="bad -2"):
        futures[1].result(5)
    assert max(len(b) for b in seen) == 4  # never more than max_batch
    batcher.close()

    alone = MicroBatcher(handler, max_batch=1, max_wait_s=0.2, name="test-batcher-1")
    started = time.monotonic()
    assert [f.result(5) for f in [alone.submit(i) for i in (7, 8, 9)]] == [70, 80, 90]
    assert time.monotonic() - started < 0.5  # max_batch=1 never waits for company
    assert alone.stats.largest == 1
    alone.close()

    def broken(items: list[int]) -> list:
        raise RuntimeError("the handler failed")

    failing = MicroBatcher(broken, max_batch=8, max_wait_s=0.01, name="test-batcher-2")
    with pytest.raises(RuntimeError, match="handler failed"):
        failing.submit(1).result(5)
    assert failing.submit(2).exception(5) is not None  # the worker survived
    failing.close()
