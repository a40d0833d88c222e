"""``SAPClient`` / ``sap_rag.connect`` against a real server: the same hits as the index in-process, the same
errors, uploads and deletes; and the LangChain and LlamaIndex adapters working through it."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys

import pytest
from _serve_fixtures import QUESTIONS, LiveServer, copy_index, free_port, png_bytes, sample_index
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@pytest.fixture(scope="module")
def live(toy_encoder, tmp_path_factory):
    from sap_rag import SAPIndex
    from sap_rag.serve import ServeConfig, create_app

    path = copy_index(sample_index(toy_encoder, tmp_path_factory.getbasetemp()), tmp_path_factory.mktemp("cli") / "i")
    index = SAPIndex.open(path, encoder=toy_encoder)
    server = LiveServer(create_app(index, config=ServeConfig(max_k=50), mcp=False))
    yield server
    server.stop()
    index.close()


@pytest.fixture(scope="module")
def client(live):
    import sap_rag

    with sap_rag.connect(live.url) as remote:
        yield remote


def local(hit):
    """An in-process hit as the client returns it: no server-side image path."""
    return dataclasses.replace(hit, image_path=None)


def test_hits_equal_in_process_hits(live, client):
    index = live.service.index
    for question in QUESTIONS:
        assert client.search(question, k=4) == [local(h) for h in index.search(question, k=4)]
    doc = index.documents()[1]
    filtered = client.search("revenue", k=5, filter={"doc_id": doc})
    assert filtered == [local(h) for h in index.search("revenue", k=5, filter={"doc_id": doc})]
    assert client.search("revenue", k=3, two_stage=True, prefetch=3) == [
        local(h) for h in index.search("revenue", k=3, two_stage=True, prefetch=3)
    ]
    questions = list(QUESTIONS)
    remote = client.search_batch(questions, k=3)
    expected = index.search_batch(questions, k=3)
    for got, want in zip(remote, expected):
        assert [h.page_id for h in got] == [h.page_id for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-4)


def test_image_query_equals_in_process(live, client):
    index = live.service.index
    pid = index.document(index.documents()[2]).page_ids[1]
    picture = Image.open(io.BytesIO(client.page_image(pid, max_side=256, format="png"))).convert("RGB")
    assert max(picture.size) == 256
    assert client.search(picture, k=3) == [local(h) for h in index.search(picture, k=3)]  # full texts too


def test_a_read_only_index_serves_searches_and_refuses_changes(toy_encoder, tmp_path):
    from sap_rag import IndexReadOnlyError, SAPIndex, connect
    from sap_rag.serve import create_app

    path = copy_index(sample_index(toy_encoder, tmp_path.parent), tmp_path / "i")
    with SAPIndex.open(path, encoder=toy_encoder, read_only=True) as index:
        server = LiveServer(create_app(index, mcp=False))
        try:
            with connect(server.url) as remote:
                assert len(remote.search("revenue", k=2)) == 2
                (tmp_path / "a.png").write_bytes(png_bytes(5))
                with pytest.raises(IndexReadOnlyError):
                    remote.add_documents(tmp_path / "a.png")
                with pytest.raises(IndexReadOnlyError):
                    remote.delete(index.documents()[0])
                assert len(remote) == 9
        finally:
            server.stop()


def test_read_api(live, client):
    index = live.service.index
    assert len(client) == len(index) == 9
    assert client.documents() == index.documents()
    doc = index.documents()[0]
    assert doc in client and "nope" not in client and 5 not in client
    remote = client.document(doc)
    assert (remote.num_pages, remote.page_ids, remote.metadata) == (
        3,
        index.document(doc).page_ids,
        index.document(doc).metadata,
    )
    ids = [*index.document(doc).page_ids[:2], f"{doc}:p9"]
    assert client.get_pages(ids) == [h and local(h) for h in index.get_pages(ids)]
    stats = client.stats()
    assert (stats.pages, stats.documents, stats.vectors) == (9, 3, index.stats().vectors)
    jpeg = client.page_image(ids[0])
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    assert client.overlay_png(ids[0], max_side=200)[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_the_library_classes(client):
    from sap_rag import DocumentNotFoundError, InvalidInputError, SapRagError
    from sap_rag.serve.errors import LimitExceededError, NotFoundError

    with pytest.raises(InvalidInputError, match="empty"):
        client.search("  ")
    with pytest.raises(LimitExceededError, match="2,000"):
        client.search("x" * 2001)
    with pytest.raises(LimitExceededError):
        client.search("revenue", k=51)
    with pytest.raises(InvalidInputError, match="unknown operator"):
        client.search("revenue", filter={"$nope": 1})
    with pytest.raises(DocumentNotFoundError):
        client.document("nope")
    with pytest.raises(InvalidInputError, match="not a page id"):
        client.get_pages(["nope"])
    with pytest.raises(NotFoundError):
        client.page_image("nope:p1")
    assert client.delete("nope", missing_ok=True) == 0
    with pytest.raises(DocumentNotFoundError):
        client.delete("nope")
    import sap_rag

    with pytest.raises(SapRagError, match="cannot reach"), sap_rag.connect(f"http://127.0.0.1:{free_port()}") as gone:
        gone.search("revenue")
    with pytest.raises(InvalidInputError, match="http"):
        sap_rag.connect("127.0.0.1:8000")


def test_upload_and_delete(client, tmp_path):
    from sap_rag import UnreadableInputError

    (tmp_path / "one.png").write_bytes(png_bytes(201))
    (tmp_path / "two.png").write_bytes(png_bytes(202))
    report = client.add_documents(tmp_path, metadata={"batch": "client"})
    assert report.state == "done" and len(report.doc_ids) == 2 and report.pages == 2 and not report.errors
    assert all(d in client for d in report.doc_ids)
    assert client.document(report.doc_ids[0]).metadata["batch"] == "client"
    assert client.delete_pages([f"{report.doc_ids[0]}:p1", "nope:p1"], missing_ok=True) == 1
    assert client.delete(report.doc_ids[1]) == 1
    assert len(client) == 9
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 broken")
    with pytest.raises(UnreadableInputError, match=r"^bad\.pdf: "):
        client.add_documents(tmp_path / "bad.pdf")
    report = client.add_documents([tmp_path / "bad.pdf", tmp_path / "one.png"], skip_errors=True)
    assert [r["status"] for r in report.results] == ["failed", "added"]
    client.delete(report.doc_ids[0])
    queued = client.add_documents(tmp_path / "one.png", wait=False)
    assert queued.state in ("queued", "running", "done")
    client.delete(client.wait_job(queued.job_id, timeout=60).doc_ids[0])
    assert len(client) == 9


def test_import_sap_rag_loads_no_server_packages():
    code = (
        "import sys, sap_rag; sap_rag.connect('http://127.0.0.1:1');"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn', 'mcp')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_langchain_adapters_through_the_client(live, client):
    pytest.importorskip("langchain_sap_rag")
    from langchain_sap_rag import SAPRetriever, SAPVectorStore

    question = next(iter(QUESTIONS))
    expected = client.search(question, k=3)
    documents = SAPRetriever(index=client, k=3).invoke(question)
    assert [d.metadata["page_id"] for d in documents] == [h.page_id for h in expected]
    assert documents[0].page_content == expected[0].text
    store = SAPVectorStore(client)
    scored = store.similarity_search_with_score(question, k=2)
    assert [d.metadata["page_id"] for d, _ in scored] == [h.page_id for h in expected[:2]]
    assert [s for _, s in scored] == pytest.approx([h.score for h in expected[:2]])
    got = store.get_by_ids([expected[0].page_id])
    assert [d.metadata["page_id"] for d in got] == [expected[0].page_id]
    via_retriever = store.as_retriever(search_kwargs={"k": 1}).invoke(question)
    assert via_retriever[0].metadata["page_id"] == expected[0].page_id


def test_langchain_store_uploads_files_through_the_client(client, tmp_path):
    pytest.importorskip("langchain_sap_rag")
    from langchain_core.documents import Document
    from langchain_sap_rag import SAPVectorStore

    (tmp_path / "lc.png").write_bytes(png_bytes(211))
    before = len(client)
    ids = SAPVectorStore(client).add_documents(
        [Document(page_content="", metadata={"source": str(tmp_path / "lc.png")})]
    )
    try:
        assert len(ids) == 1 and len(client) == before + 1
        assert client.get_pages([ids[0]])[0].metadata["source"].endswith("lc.png")
    finally:
        client.delete_pages(ids, missing_ok=True)
    assert len(client) == before


def test_llamaindex_retriever_through_the_client(live, client):
    pytest.importorskip("llama_index.retrievers.sap_rag")
    from llama_index.retrievers.sap_rag import SAPRetriever

    question = next(iter(QUESTIONS))
    expected = client.search(question, k=3)
    nodes = SAPRetriever(client, similarity_top_k=3).retrieve(question)
    assert [n.node.metadata["page_id"] for n in nodes] == [h.page_id for h in expected]
    assert [n.score for n in nodes] == pytest.approx([h.relevance for h in expected])
