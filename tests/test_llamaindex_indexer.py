"""VisualDocumentIndexer: a LlamaIndex NodeParser that indexes pages into a SAPIndex."""

from __future__ import annotations

import asyncio
import base64
import io
import pickle
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from conftest import make_page
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.schema import Document, ImageDocument, ImageNode, NodeRelationship, TextNode
from llama_index.retrievers.sap_rag import SAPRetriever, VisualDocumentIndexer

from sap_rag import InvalidInputError, UnreadableInputError
from sap_rag.index import SAPIndex


@pytest.fixture
def index(tmp_path, tiny_encoder):
    idx = SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)
    yield idx
    idx.close()


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Two PNG pages and a two-page PDF."""
    folder = tmp_path / "docs"
    folder.mkdir()
    out = {}
    for i in range(2):
        out[f"page{i}"] = folder / f"page{i}.png"
        make_page(i).save(out[f"page{i}"])
    out["pdf"] = folder / "report.pdf"
    make_page(5).save(out["pdf"], save_all=True, append_images=[make_page(6)])
    return out


def _png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_page(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def test_file_path_documents_give_one_image_node_per_page(index, files):
    docs = [
        Document(text="", metadata={"file_path": str(files["pdf"]), "team": "finance"}),
        Document(text="", metadata={"file_path": str(files["page0"])}),
    ]
    nodes = VisualDocumentIndexer(index=index).get_nodes_from_documents(docs)

    assert [type(n) for n in nodes] == [ImageNode] * 3
    assert [n.metadata["page_number"] for n in nodes] == [1, 2, 1]
    pdf_pages = nodes[:2]
    assert pdf_pages[0].metadata["team"] == "finance"
    assert pdf_pages[0].metadata["source"] == str(files["pdf"])
    assert pdf_pages[0].metadata["doc_id"] == pdf_pages[1].metadata["doc_id"] != nodes[2].metadata["doc_id"]
    assert all(Path(n.image_path).is_file() for n in nodes)
    # the source relationship points at the input document; pages of one document are chained
    assert pdf_pages[0].ref_doc_id == docs[0].doc_id and nodes[2].ref_doc_id == docs[1].doc_id
    assert pdf_pages[0].relationships[NodeRelationship.NEXT].node_id == pdf_pages[1].node_id
    # and the anchors are in the index
    assert len(index) == 3
    assert sorted(index.documents()) == sorted({n.metadata["doc_id"] for n in nodes})


def test_image_documents_from_bytes_and_path(index, files):
    raw = _png_bytes(7)
    docs = [
        ImageDocument(image=base64.b64encode(raw).decode(), metadata={"kind": "bytes"}),
        ImageDocument(image_path=str(files["page1"]), metadata={"kind": "path"}),
    ]
    nodes = VisualDocumentIndexer(index=index).get_nodes_from_documents(docs)
    assert [n.metadata["kind"] for n in nodes] == ["bytes", "path"]
    assert Path(nodes[0].image_path).read_bytes() == raw  # the page image kept in the index
    assert len(index) == 2


def test_same_file_named_twice_is_indexed_once(index, files):
    # A reader that splits a PDF into one document per page names the file in each of them.
    docs = [Document(text=f"page {i}", metadata={"file_path": str(files["pdf"])}) for i in range(2)]
    nodes = VisualDocumentIndexer(index=index).get_nodes_from_documents(docs)
    assert len(nodes) == 2 and len(index) == 2
    assert {n.ref_doc_id for n in nodes} == {docs[0].doc_id}


def test_reindexing_the_same_file_replaces_it(index, files):
    indexer = VisualDocumentIndexer(index=index)
    doc = Document(text="", metadata={"file_path": str(files["pdf"])})
    first = indexer.get_nodes_from_documents([doc])
    second = indexer.get_nodes_from_documents([doc])
    assert [n.node_id for n in first] == [n.node_id for n in second]
    assert len(index) == 2


def test_unreadable_document_fails_clearly_and_writes_nothing(index, files, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    docs = [
        Document(text="", metadata={"file_path": str(files["page0"])}),
        Document(text="", metadata={"file_path": str(bad)}),
    ]
    with pytest.raises(UnreadableInputError, match=r"broken\.png"):
        VisualDocumentIndexer(index=index).get_nodes_from_documents(docs)
    assert len(index) == 0

    nodes = VisualDocumentIndexer(index=index, skip_errors=True).get_nodes_from_documents(docs)
    assert len(nodes) == 1 and len(index) == 1


def test_document_pointing_at_nothing_is_a_clear_error(index, tmp_path):
    with pytest.raises(UnreadableInputError, match="file_path"):
        VisualDocumentIndexer(index=index).get_nodes_from_documents([TextNode(text="just text")])
    gone = ImageNode(image_path=str(tmp_path / "gone.png"))
    with pytest.raises(UnreadableInputError, match=r"gone\.png"):
        VisualDocumentIndexer(index=index).get_nodes_from_documents([gone])
    assert len(index) == 0


def test_async_and_progress(index, files, capsys):
    docs = [Document(text="", metadata={"file_path": str(files["page0"])})]
    nodes = asyncio.run(VisualDocumentIndexer(index=index).aget_nodes_from_documents(docs, show_progress=True))
    assert len(nodes) == 1 and len(index) == 1
    assert "Indexing pages" in capsys.readouterr().err


def test_ingestion_pipeline_sync_and_async(index, files):
    indexer = VisualDocumentIndexer(index=index)
    docs = [Document(text="", metadata={"file_path": str(p)}) for p in (files["page0"], files["pdf"])]
    nodes = IngestionPipeline(transformations=[indexer]).run(documents=docs)
    assert len(nodes) == 3 and all(isinstance(n, ImageNode) for n in nodes)

    more = [Document(text="", metadata={"file_path": str(files["page1"])})]
    anodes = asyncio.run(IngestionPipeline(transformations=[indexer]).arun(documents=more))
    assert len(anodes) == 1
    assert len(index) == 4


def test_indexer_and_retriever_share_node_ids(index, files):
    indexer = VisualDocumentIndexer(index=index)
    nodes = indexer.get_nodes_from_documents([Document(text="", metadata={"file_path": str(files["pdf"])})])
    retriever = indexer.as_retriever(similarity_top_k=2)
    assert isinstance(retriever, SAPRetriever)
    hits = retriever.retrieve("what does the chart show?")
    assert {h.node.node_id for h in hits} == {n.node_id for n in nodes}
    assert {h.node.image_path for h in hits} == {n.image_path for n in nodes}


def test_index_given_as_a_path(index, files, tmp_path):
    path = index.path
    index.close()
    indexer = VisualDocumentIndexer(index=str(path))
    try:
        nodes = indexer.get_nodes_from_documents([Document(text="", metadata={"file_path": str(files["page0"])})])
        assert len(nodes) == 1
    finally:
        indexer.index.close()


def test_indexer_refuses_to_go_to_another_process(index):
    # IngestionPipeline(num_workers>1) pickles transformations; the open index cannot follow.
    with pytest.raises(InvalidInputError, match="num_workers=1"):
        pickle.dumps(VisualDocumentIndexer(index=index))


def test_metadata_the_index_cannot_store_fails_before_any_write(index, files):
    docs = [
        Document(text="", metadata={"file_path": str(files["page0"])}),
        Document(text="", metadata={"file_path": str(files["page1"]), "a.b": 1}),
    ]
    with pytest.raises(InvalidInputError, match=r"page1\.png.*'a\.b'"):
        VisualDocumentIndexer(index=index).get_nodes_from_documents(docs)
    assert len(index) == 0
