"""Re-indexing through every LlamaIndex path keeps exactly the current pages; pipelines with a
docstore upsert and delete; no input is dropped silently."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from _li_fixtures import png_b64, write_pdf
from conftest import make_page
from llama_index.core import SimpleDirectoryReader
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.schema import Document, ImageDocument
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.retrievers.sap_rag import SAPPageReader, VisualDocumentIndexer

from sap_rag import InvalidInputError
from sap_rag.index import SAPIndex
from sap_rag.ingest import content_id

V1 = ["Revenue 2023 was 12 million", "Costs fell by 3 percent"]
V2 = ["Revenue 2023 was 14 million", "Costs fell by 5 percent", "Outlook: stable"]
V3 = ["Revenue 2024 was 15 million"]


@pytest.fixture
def index(tmp_path, tiny_encoder):
    idx = SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)
    yield idx
    idx.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder


def _pages(index) -> list[str]:
    """Every page's text in the index, by document then page."""
    out = []
    for doc_id in index.documents():
        out.extend(hit.text for hit in index.get_pages(index.document(doc_id).page_ids))
    return out


def _file_path_docs(folder: Path) -> list[Document]:
    return [Document(text="", metadata={"file_path": str(folder / "report.pdf")})]


def _reader_docs(folder: Path) -> list[Document]:
    reader = SAPPageReader()
    return SimpleDirectoryReader(str(folder), file_extractor={".pdf": reader}, filename_as_id=True).load_data()


PATHS = {
    "file_path-documents": (_file_path_docs, lambda indexer: indexer.get_nodes_from_documents),
    "reader-documents": (_reader_docs, lambda indexer: indexer.get_nodes_from_documents),
    "pipeline": (_reader_docs, lambda indexer: IngestionPipeline(transformations=[indexer]).run),
    "pipeline-docstore-upserts": (
        _reader_docs,
        lambda indexer: (
            IngestionPipeline(
                transformations=[indexer],
                docstore=SimpleDocumentStore(),
                vector_store=indexer.vector_store,
                docstore_strategy=DocstoreStrategy.UPSERTS,
            ).run
        ),
    ),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_changed_file_replaces_its_pages(index, folder, path):
    make_docs, make_run = PATHS[path]
    run = make_run(VisualDocumentIndexer(index=index))  # one pipeline (cache, docstore) for every run
    pdf = folder / "report.pdf"
    for version in (V1, V2, V2, V3):
        write_pdf(pdf, version)
        nodes = run(documents=make_docs(folder))
        # exactly the file's current pages: nothing accumulates, nothing is stale
        assert index.documents() == [content_id(pdf.read_bytes())]
        assert [t.splitlines()[0] for t in _pages(index)] == version
        if nodes:  # a docstore skips an unchanged file's documents
            assert [n.text.splitlines()[0] for n in nodes] == version


def test_pipeline_with_docstore_upserts_and_deletes(index, folder):
    indexer = VisualDocumentIndexer(index=index)
    docstore = SimpleDocumentStore()
    pipeline = IngestionPipeline(
        transformations=[indexer],
        docstore=docstore,
        vector_store=indexer.vector_store,
        docstore_strategy=DocstoreStrategy.UPSERTS_AND_DELETE,
    )
    write_pdf(folder / "report.pdf", V1)
    make_page(4).save(folder / "scan.png")
    reader = SAPPageReader()

    def load():
        return SimpleDirectoryReader(
            str(folder), file_extractor={".pdf": reader, ".png": reader}, filename_as_id=True
        ).load_data()

    assert len(pipeline.run(documents=load())) == 3
    assert len(index) == 3 and len(docstore.docs) == 3

    assert pipeline.run(documents=load()) == []  # unchanged: the docstore skips everything
    assert len(index) == 3

    scan_id = content_id((folder / "scan.png").read_bytes())
    write_pdf(folder / "report.pdf", V2)  # changed: upserted
    assert len(pipeline.run(documents=load())) == 3
    report_id = content_id((folder / "report.pdf").read_bytes())
    assert index.documents() == sorted([report_id, scan_id]) and len(index) == 4
    assert len(docstore.docs) == 4

    (folder / "scan.png").unlink()  # removed: its pages and its docstore entry go
    pipeline.run(documents=load())
    assert index.documents() == [report_id]
    assert [t.splitlines()[0] for t in _pages(index)] == V2 and len(docstore.docs) == 3


def test_delete_by_ref_doc_id(index, folder):
    indexer = VisualDocumentIndexer(index=index)
    docs = [
        ImageDocument(id_="logo", image=png_b64(1)),
        Document(id_="report", text="", metadata={"file_path": str(write_pdf(folder / "r.pdf", V1))}),
    ]
    nodes = indexer.get_nodes_from_documents(docs)
    assert {n.ref_doc_id for n in nodes} == {"logo", "report"}
    assert indexer.delete_ref_doc("report") == 2
    assert len(index) == 1 and indexer.delete_ref_doc("report") == 0
    indexer.vector_store.delete("logo")  # as IngestionPipeline and VectorStoreIndex call it
    assert len(index) == 0


def test_a_document_id_indexed_again_replaces_what_it_indexed(index):
    indexer = VisualDocumentIndexer(index=index)
    indexer.get_nodes_from_documents([ImageDocument(id_="logo", image=png_b64(1))])
    (node,) = indexer.get_nodes_from_documents([ImageDocument(id_="logo", image=png_b64(2))])
    assert index.documents() == [node.metadata["doc_id"]]


def test_two_bare_image_documents_are_both_indexed(index):
    pipeline = IngestionPipeline(transformations=[VisualDocumentIndexer(index=index)])
    first = pipeline.run(documents=[ImageDocument(image=png_b64(1))])
    second = pipeline.run(documents=[ImageDocument(image=png_b64(2))])  # same text and metadata: ""
    assert first[0].node_id != second[0].node_id
    assert len(index) == 2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UPSERTS without a vector store falls back to duplicates_only
        both = IngestionPipeline(
            transformations=[VisualDocumentIndexer(index=index)], docstore=SimpleDocumentStore()
        ).run(documents=[ImageDocument(image=png_b64(3)), ImageDocument(image=png_b64(4))])
    assert len({n.node_id for n in both}) == 2 and len(index) == 4


def test_an_incomplete_set_of_reader_pages_is_refused(index, folder):
    docs = SAPPageReader().load_data(write_pdf(folder / "r.pdf", V2))
    with pytest.raises(InvalidInputError, match=r"pages \[1, 3\] of 3"):
        VisualDocumentIndexer(index=index).get_nodes_from_documents([docs[0], docs[2]])
    assert len(index) == 0
