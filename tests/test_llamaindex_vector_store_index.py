"""LlamaIndex's own VectorStoreIndex over a SAPPageStore, in the form the vector-store tutorials
use: from_documents with a StorageContext, as_retriever (text and image QueryBundles, sync and
async), get_nodes with filters, insert and delete_ref_doc; with the trained toy model, so the
answering page of the sample PDFs must come first."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from _li_fixtures import png_b64, png_bytes
from llama_index.core import Settings, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.retrievers import VectorIndexRetriever
from llama_index.core.schema import ImageDocument, ImageNode, MetadataMode, QueryBundle
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llama_index.readers.sap_rag import SAPPageReader
from llama_index.retrievers.sap_rag import SAPPageStore, SAPStoreEmbedding
from PIL import Image

from sap_rag import InvalidInputError
from sap_rag.index import SAPIndex

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
QUESTIONS = {  # the demo's questions and their answering pages (see tests/test_toy_model.py)
    "What was the revenue of Acme Industries in 2022?": ("acme_industries_2023.pdf", 1),
    "What was the water use of Borealis Energy in 2021?": ("borealis_energy_2023.pdf", 2),
    "How did the profit of Borealis Energy change between 2019 and 2023?": ("borealis_energy_2023.pdf", 3),
    "How many customers did Cobalt Health have in 2023?": ("cobalt_health_2023.pdf", 1),
}
SHARES = {"acme_industries_2023.pdf": 0.25, "borealis_energy_2023.pdf": 0.5, "cobalt_health_2023.pdf": 0.75}


def _where(node) -> tuple[str, int]:
    return node.metadata["filename"], node.metadata["page_number"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, toy_encoder):
    """The sample PDFs read by SAPPageReader (a float in each file's metadata) and indexed by
    VectorStoreIndex.from_documents into a store given the index's path. Read-only for the tests."""
    path = tmp_path_factory.mktemp("li-vsi") / "index"
    SAPIndex.create(path, encoder=toy_encoder).close()
    reader = SAPPageReader()
    documents = [
        doc
        for pdf in sorted(DATA.glob("*.pdf"))
        for doc in reader.load_data(pdf, extra_info={"share": SHARES[pdf.name]})
    ]
    store = SAPPageStore(path, encoder=toy_encoder)
    index = VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=store.embed_model,
    )
    yield store, index, documents, path
    store.close()


def test_from_documents_encodes_the_pages_and_the_answering_page_comes_first(built):
    store, index, _, _ = built
    assert len(store.index) == 9 and len(store.index.documents()) == 3  # one index document per file
    retriever = index.as_retriever(similarity_top_k=3)
    for question, page in QUESTIONS.items():
        hits = retriever.retrieve(question)
        assert _where(hits[0].node) == page, question
        assert all(0.0 <= h.score <= 1.0 for h in hits) and hits[0].score >= hits[1].score
    node = hits[0].node
    assert isinstance(node, ImageNode) and Path(node.image_path).is_file()
    assert "customers" in node.text.lower()  # the PDF text layer
    assert node.ref_doc_id == f"{DATA / 'cobalt_health_2023.pdf'}#page=1"  # the reader document's id
    assert node.metadata["share"] == 0.75


def test_a_query_engine_answers_from_the_store(built):
    from llama_index.core.llms.mock import MockLLM

    _, index, _, _ = built
    response = index.as_query_engine(llm=MockLLM(), similarity_top_k=2).query(next(iter(QUESTIONS)))
    assert _where(response.source_nodes[0].node) == QUESTIONS[next(iter(QUESTIONS))]


def test_image_query_bundle_through_the_index_retriever(built, tmp_path):
    store, index, _, _ = built
    target = next(h for h in store.get_nodes() if _where(h) == ("borealis_energy_2023.pdf", 2))
    query = tmp_path / "query.png"
    Image.open(target.image_path).save(query)
    retriever = index.as_retriever(similarity_top_k=2)
    bundle = QueryBundle(query_str="", image_path=str(query))
    hits = retriever.retrieve(bundle)
    assert hits[0].node.node_id == target.node_id
    assert hits[0].node.metadata["num_query_tokens"] > 20  # the image's visual tokens were the query
    assert asyncio.run(retriever.aretrieve(bundle))[0].node.node_id == target.node_id
    # the image is used once: a text query after it searches by its text
    text_hits = retriever.retrieve("What was the revenue of Acme Industries in 2022?")
    assert _where(text_hits[0].node) == ("acme_industries_2023.pdf", 1)


def test_get_nodes_by_filter_and_float_equality(built):
    store, index, _, _ = built
    second = store.get_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="page_number", value=2)]))
    assert sorted(_where(n) for n in second) == [(name, 2) for name in sorted(SHARES)]
    half = MetadataFilters(filters=[MetadataFilter(key="share", value=0.5)])
    assert {_where(n) for n in store.get_nodes(filters=half)} == {("borealis_energy_2023.pdf", i) for i in (1, 2, 3)}
    ids = [n.node_id for n in second]
    borealis = next(n.node_id for n in second if n.metadata["filename"] == "borealis_energy_2023.pdf")
    assert [n.node_id for n in store.get_nodes(node_ids=ids, filters=half)] == [borealis]
    assert [n.node_id for n in store.get_nodes(node_ids=ids[::-1])] == ids[::-1]
    assert len(store.get_nodes()) == 9
    # through the index's retriever, as Qdrant's LlamaIndex store accepts it
    hits = index.as_retriever(similarity_top_k=9, filters=half).retrieve("profit")
    assert {h.node.metadata["filename"] for h in hits} == {"borealis_energy_2023.pdf"} and len(hits) == 3
    above = MetadataFilters(filters=[MetadataFilter(key="share", value=0.5, operator=FilterOperator.GT)])
    assert {n.metadata["filename"] for n in store.get_nodes(filters=above)} == {"cobalt_health_2023.pdf"}


def test_retriever_doc_ids_and_page_node_ids_restrict_the_search(built):
    store, index, documents, _ = built
    acme_page = documents[0].id_  # a file's pages go together: its documents name all of them
    hits = index.as_retriever(similarity_top_k=9, doc_ids=[acme_page]).retrieve("profit")
    assert {_where(h.node) for h in hits} == {("acme_industries_2023.pdf", i) for i in (1, 2, 3)}
    two = [n.node_id for n in store.get_nodes()][:2]
    retriever = VectorIndexRetriever(index, similarity_top_k=9, node_ids=two)
    assert {h.node.node_id for h in retriever.retrieve("profit")} == set(two)
    # the ids index.as_retriever() passes are those of the nodes it was given (chunks): no restriction
    assert len(index.as_retriever(similarity_top_k=9).retrieve("profit")) == 9


def test_nodes_keep_paths_and_ids_out_of_prompts(built):
    _, index, documents, path = built
    node = index.as_retriever(similarity_top_k=1).retrieve("revenue of Acme Industries")[0].node
    for content in (
        node.get_content(metadata_mode=MetadataMode.LLM),
        node.get_content(metadata_mode=MetadataMode.EMBED),
    ):
        assert str(path) not in content and str(DATA) not in content and node.metadata["doc_id"] not in content
        assert "acme_industries_2023.pdf" in content and "page_number: 1" in content  # what a citation needs
        assert "revenue" in content.lower()
    # ...and stay in the metadata for code
    assert Path(node.metadata["source"]) == DATA / "acme_industries_2023.pdf"
    assert (
        node.metadata["file_path"] == node.image_path and node.metadata["doc_id"] == documents[0].metadata["file_hash"]
    )
    page = documents[0]  # the reader's own documents too
    assert str(DATA) not in page.get_content(metadata_mode=MetadataMode.LLM)
    assert page.metadata["file_path"] == str(DATA / "acme_industries_2023.pdf")


def test_image_documents_with_bytes_or_path_insert_and_delete(tmp_path, toy_encoder):
    """The tutorial form with Settings.embed_model configured (as a tutorial's reader has it) and no
    embed_model argument; images given as bytes, as a path, and as an ImageNode. The long text is
    split into chunks by from_documents (SentenceSplitter): one page is stored, with the whole text."""
    image_file = tmp_path / "chart.png"
    image_file.write_bytes(png_bytes(7))
    long_text = "revenue table " + " ".join(f"row{i}" for i in range(1500))
    documents = [
        ImageDocument(image=png_b64(5), text=long_text, id_="bytes-doc", metadata={"kind": "table"}),
        ImageDocument(image_path=str(image_file), id_="path-doc", metadata={"kind": "chart"}),
    ]
    with SAPIndex.create(tmp_path / "index", encoder=toy_encoder) as sap:
        store = SAPPageStore(sap)
        old = Settings._embed_model
        Settings.embed_model = MockEmbedding(embed_dim=4)
        try:
            index = VectorStoreIndex.from_documents(
                documents, storage_context=StorageContext.from_defaults(vector_store=store)
            )
            index.insert_nodes([ImageNode(image=png_b64(9), text="a third page", id_="node-3")])
        finally:
            Settings._embed_model = old
        assert len(sap) == 3
        pages = {n.ref_doc_id: n for n in store.get_nodes()}
        assert set(pages) == {"bytes-doc", "path-doc", "node-3"}
        assert pages["bytes-doc"].text == long_text and pages["bytes-doc"].metadata["kind"] == "table"
        assert len(index.docstore.docs) > 3  # the text was split: more nodes than pages
        # the image queries find each page (it was encoded from the image it was given)
        query = tmp_path / "q.png"
        query.write_bytes(png_bytes(7))
        hit = index.as_retriever(similarity_top_k=1).retrieve(QueryBundle(query_str="", image_path=str(query)))[0]
        assert hit.node.ref_doc_id == "path-doc"

        index.delete_ref_doc("bytes-doc")
        assert {n.ref_doc_id for n in store.get_nodes()} == {"path-doc", "node-3"} and len(sap) == 2
        store.delete_nodes(filters=MetadataFilters(filters=[MetadataFilter(key="kind", value="chart")]))
        assert {n.ref_doc_id for n in store.get_nodes()} == {"node-3"} and len(sap) == 1
        # adding a page again replaces it: never a second copy
        for _ in range(2):
            VectorStoreIndex.from_documents(
                documents[1:],
                storage_context=StorageContext.from_defaults(vector_store=store),
                embed_model=SAPStoreEmbedding(),
            )
            assert len(sap) == 2 and {n.ref_doc_id for n in store.get_nodes()} == {"path-doc", "node-3"}
        # an IngestionPipeline adds the nodes that have an embedding: the store's (constant) one does
        pipeline = IngestionPipeline(transformations=[SentenceSplitter(), store.embed_model], vector_store=store)
        pipeline.run(documents=[ImageDocument(image=png_b64(11), text="pipeline page", id_="pipe")])
        assert len(sap) == 3 and "pipe" in {n.ref_doc_id for n in store.get_nodes()}


def test_store_errors_are_clear(built, tmp_path):
    from llama_index.core.vector_stores.types import VectorStoreQuery

    store = built[0]
    with pytest.raises(InvalidInputError, match="empty query"):
        store.query(VectorStoreQuery(query_str=" "))
    with pytest.raises(InvalidInputError, match="single query embedding"):
        store.query(VectorStoreQuery(query_embedding=[0.1, 0.2]))
    with pytest.raises(InvalidInputError, match=r"similarity_top_k is given per query: index.as_retriever"):
        SAPPageStore(tmp_path / "nowhere", top_k=3)
    with pytest.raises(InvalidInputError, match="did you mean 'encoder'"):
        SAPPageStore(tmp_path / "nowhere", encodr="models/x")
