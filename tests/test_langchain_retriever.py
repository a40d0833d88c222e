"""SAPRetriever for LangChain: fields, per-call arguments, async and batch, indexing, errors."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

pytest.importorskip("langchain_core")

from conftest import make_page
from langchain_core.documents import Document
from langchain_sap_rag import SAPRetriever, page_image_blocks, page_images_message

from sap_rag import InvalidInputError, UnreadableInputError
from sap_rag.index import IndexNotFoundError, SAPIndex

QUERY = "What was the revenue in 2023?"


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_encoder, pages):
    """Read-only for the tests: four one-page documents, two teams."""
    idx = SAPIndex.create(tmp_path_factory.mktemp("lc-retriever") / "index", encoder=tiny_encoder, keep_ratio=0.1)
    for i, page in enumerate(pages):
        idx.add_images([page], doc_id=f"doc{i}", metadata={"team": "ab"[i % 2], "source": f"file{i}.png"})
    yield idx
    idx.close()


@pytest.fixture
def empty_index(tmp_path, tiny_encoder):
    idx = SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)
    yield idx
    idx.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    make_page(0).save(docs / "a.png")
    make_page(1).save(docs / "report.pdf", save_all=True, append_images=[make_page(2)])
    return docs


def test_invoke_returns_page_documents(index):
    docs = SAPRetriever(index=index, k=3).invoke(QUERY)
    assert len(docs) == 3 and all(isinstance(d, Document) for d in docs)
    meta = docs[0].metadata
    assert {"doc_id", "page_number", "score", "image_path", "team", "source"} <= set(meta)
    assert Path(meta["image_path"]).is_file() and meta["page_number"] == 1
    assert docs[0].page_content == f"page 1 of {meta['doc_id']}"  # no text layer, no filename: a label
    assert docs[0].id == meta["page_id"] == f"{meta['doc_id']}:p1" and 0 <= meta["relevance"] <= 1
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs), reverse=True)
    assert "image_base64" not in meta


def test_per_call_arguments_override_fields(index):
    retriever = SAPRetriever(index=index, k=3, filter={"team": "a"})
    assert {d.metadata["doc_id"] for d in retriever.invoke(QUERY)} == {"doc0", "doc2"}
    assert len(retriever.invoke(QUERY, k=1)) == 1
    assert {d.metadata["doc_id"] for d in retriever.invoke(QUERY, filter={"doc_id": ["doc1", "doc3"]})} == {
        "doc1",
        "doc3",
    }
    with_image = retriever.invoke(QUERY, k=1, include_image=True)[0].metadata
    assert base64.b64decode(with_image["image_base64"]) == Path(with_image["image_path"]).read_bytes()
    assert with_image["mime_type"] == "image/png"


def test_search_kwargs_set_the_search_fields(index):
    retriever = SAPRetriever(index=index, search_kwargs={"k": 1, "filter": {"team": "b"}, "two_stage": True})
    assert (retriever.k, retriever.filter, retriever.two_stage) == (1, {"team": "b"}, True)
    (doc,) = retriever.invoke(QUERY)
    assert doc.metadata["team"] == "b"


def test_async_and_batch_match_invoke(index):
    retriever = SAPRetriever(index=index, k=2)
    expected = [d.id for d in retriever.invoke(QUERY)]
    assert [d.id for d in asyncio.run(retriever.ainvoke(QUERY))] == expected
    assert len(asyncio.run(retriever.ainvoke(QUERY, k=1))) == 1
    batched = retriever.batch([QUERY, "energy by sector", QUERY])
    assert [d.id for d in batched[0]] == expected == [d.id for d in batched[2]]
    abatched = asyncio.run(retriever.abatch([QUERY, "energy by sector"]))
    assert [d.id for d in abatched[0]] == expected


def test_errors_are_clear(index, tmp_path):
    with pytest.raises(IndexNotFoundError, match="missing-index"):
        SAPRetriever(index=tmp_path / "missing-index")
    with pytest.raises(InvalidInputError, match="floats"):
        SAPRetriever(index=index).invoke(QUERY, filter={"score": 0.5})
    with pytest.raises(InvalidInputError, match="any-of"):
        SAPRetriever(index=index, filter={"team": ["a", 1]})
    with pytest.raises(InvalidInputError, match="unknown arguments"):
        SAPRetriever(index=index).invoke(QUERY, top_k=3)
    with pytest.raises(InvalidInputError, match="top_k"):
        SAPRetriever(index=index, top_k=3)  # never silently ignored
    with pytest.raises(InvalidInputError, match="fetch_k"):
        SAPRetriever(index=index, search_kwargs={"fetch_k": 3})
    with pytest.raises(InvalidInputError, match="both"):
        SAPRetriever(index=index, k=2, search_kwargs={"k": 3})
    with pytest.raises(InvalidInputError, match="SAPIndex"):
        SAPRetriever(index=42)


def test_add_paths_and_filter_on_metadata(empty_index, folder):
    retriever = SAPRetriever(index=empty_index, k=5)
    ids = retriever.add_paths(folder, metadata={"project": "x"})
    assert len(ids) == 2 and len(empty_index) == 3
    docs = retriever.invoke(QUERY, filter={"filename": "report.pdf"})
    assert sorted(d.metadata["page_number"] for d in docs) == [1, 2]
    assert all(d.metadata["project"] == "x" for d in docs)
    assert retriever.add_paths(folder / "a.png") == [ids[0]]  # same content, same id: replaced
    assert len(empty_index) == 3


def test_add_paths_unreadable_file(empty_index, folder):
    (folder / "broken.png").write_bytes(b"not an image")
    retriever = SAPRetriever(index=empty_index)
    with pytest.raises(UnreadableInputError, match=r"broken\.png"):
        retriever.add_paths(folder)
    assert len(empty_index) == 0
    assert len(retriever.add_paths(folder, skip_errors=True)) == 2


def test_add_documents_from_a_loader(empty_index, folder):
    # A PDF loader gives one Document per page, each naming the file in metadata["source"] and the
    # 0-based page in metadata["page"].
    pdf = str(folder / "report.pdf")
    loaded = [
        Document(page_content=f"text {i}", metadata={"source": pdf, "page": i, "author": "ann"}) for i in range(2)
    ]
    loaded.append(Document(page_content="", metadata={"file_path": str(folder / "a.png")}))
    retriever = SAPRetriever(index=empty_index, k=5)
    ids = retriever.add_documents(loaded)
    doc_id = ids[0].rsplit(":p", 1)[0]
    assert ids[:2] == [f"{doc_id}:p1", f"{doc_id}:p2"]  # a page id per page
    assert ids[2].endswith(":p1") and not ids[2].startswith(doc_id)  # an image's only page
    assert len(empty_index) == 3
    pages = retriever.invoke(QUERY, filter={"doc_id": doc_id})
    assert sorted(d.id for d in pages) == ids[:2]
    assert sorted(d.page_content for d in pages) == ["text 0", "text 1"]  # the loader's texts are the page texts
    assert pages[0].metadata["author"] == "ann" and "page" not in pages[0].metadata  # per-page keys dropped
    with pytest.raises(InvalidInputError, match="source"):
        retriever.add_documents([Document(page_content="no file")])
    with pytest.raises(InvalidInputError, match=r"a\.png.*JSON"):
        retriever.add_documents([Document(page_content="", metadata={"source": str(folder / "a.png"), "x": object()})])


def test_from_paths_creates_then_reopens(tmp_path, folder, tiny_encoder):
    path = tmp_path / "idx"
    retriever = SAPRetriever.from_paths(folder, path, encoder=tiny_encoder, keep_ratio=0.1, k=2)
    try:
        assert len(retriever.invoke(QUERY)) == 2 and len(retriever.index) == 3
    finally:
        retriever.close()
    with SAPRetriever.from_paths(folder / "a.png", path, k=1) as again:  # existing index: no encoder needed
        assert len(again.index) == 3 and len(again.invoke(QUERY)) == 1
    with pytest.raises(IndexNotFoundError, match="encoder"):
        SAPRetriever.from_paths(folder, tmp_path / "other")


def test_page_images_message(index):
    docs = SAPRetriever(index=index, k=2).invoke(QUERY)
    message = page_images_message(docs, QUERY)
    images = [b for b in message.content if b["type"] == "image"]
    assert [base64.b64decode(b["base64"]) for b in images] == [
        Path(d.metadata["image_path"]).read_bytes() for d in docs
    ]
    assert all(b["mime_type"] == "image/png" for b in images)
    assert message.content[-1] == {"type": "text", "text": QUERY}
    assert page_image_blocks(docs, labels=False) == images
    with pytest.raises(InvalidInputError, match="no page image"):
        page_image_blocks([Document(page_content="text only")])
