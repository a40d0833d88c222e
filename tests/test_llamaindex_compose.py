"""Retrieved pages composed with LlamaIndex's own pieces: postprocessors (PrevNext, Similarity,
ColPaliRerank), RetrieverTool, image queries; nodes keep what the indexer set; scores; lifecycle."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from _li_fixtures import write_pdf
from conftest import make_page
from llama_index.core import SimpleDirectoryReader
from llama_index.core.postprocessor import PrevNextNodePostprocessor, SimilarityPostprocessor
from llama_index.core.schema import ImageNode, NodeRelationship, QueryBundle
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.tools import RetrieverTool
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
from llama_index.retrievers.sap_rag import SAPPageReader, SAPRetriever, VisualDocumentIndexer
from PIL import Image

from sap_rag import InvalidInputError, UnreadableInputError
from sap_rag.index import IndexClosedError, SAPIndex
from sap_rag.ingest import load_image

TEXTS = ["Revenue 2023 was 12 million", "Costs fell by 3 percent", "Outlook for 2024 is stable"]
QUERY = "What was the revenue in 2023?"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_encoder):
    """A 3-page PDF and two images read by SAPPageReader through SimpleDirectoryReader and indexed;
    read-only for the tests. Yields (index, documents, nodes the indexer returned)."""
    root = tmp_path_factory.mktemp("li-compose")
    folder = root / "docs"
    folder.mkdir()
    write_pdf(folder / "report.pdf", TEXTS)
    make_page(1).save(folder / "chart.png")
    make_page(2).save(folder / "table.png")
    reader = SAPPageReader()
    documents = SimpleDirectoryReader(
        str(folder), file_extractor={".pdf": reader, ".png": reader}, filename_as_id=True
    ).load_data()
    index = SAPIndex.create(root / "index", encoder=tiny_encoder, keep_ratio=0.1)
    nodes = VisualDocumentIndexer(index=index).get_nodes_from_documents(documents)
    yield index, documents, nodes
    index.close()


def _report_page(nodes, number: int) -> ImageNode:
    return next(n for n in nodes if n.metadata["file_name"] == "report.pdf" and n.metadata["page_number"] == number)


def test_retrieved_nodes_keep_text_relationships_and_excluded_keys(indexed):
    index, documents, nodes = indexed
    page2 = _report_page(nodes, 2)
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="doc_id", value=page2.metadata["doc_id"]),
            MetadataFilter(key="page_number", value=2),
        ]
    )
    (hit,) = SAPRetriever(index, similarity_top_k=5, filters=filters).retrieve(QUERY)
    node = hit.node

    assert isinstance(node, ImageNode) and node.node_id == page2.node_id
    assert node.text.startswith("Costs fell by 3 percent")
    source = next(d for d in documents if d.metadata["file_name"] == "report.pdf" and d.metadata["page_number"] == 2)
    assert node.ref_doc_id == source.doc_id
    assert node.relationships[NodeRelationship.PREVIOUS].node_id == _report_page(nodes, 1).node_id
    assert node.relationships[NodeRelationship.NEXT].node_id == _report_page(nodes, 3).node_id
    assert NodeRelationship.PREVIOUS not in _report_page(nodes, 1).relationships
    # SimpleDirectoryReader's exclusions survive the index; bookkeeping keys are hidden from the LLM
    assert {"file_size", "last_modified_date"} <= set(node.excluded_llm_metadata_keys)
    assert {"file_path", "maxsim"} <= set(node.excluded_llm_metadata_keys)
    assert "file_size" not in node.get_content(metadata_mode="llm")
    assert "Costs fell" in node.get_content(metadata_mode="llm")
    # the page image is what postprocessors open; the document's file is `source`
    assert node.metadata["file_path"] == node.image_path and Image.open(node.image_path).size == (320, 400)
    assert node.metadata["source"].endswith("report.pdf")
    assert not any(key.startswith("llama_index_") for key in node.metadata)


def test_indexer_and_retriever_give_the_same_nodes(indexed):
    index, _, nodes = indexed
    retrieved = {h.node.node_id: h.node for h in SAPRetriever(index, similarity_top_k=10).retrieve(QUERY)}
    assert set(retrieved) == {n.node_id for n in nodes}
    for node in nodes:
        other = retrieved[node.node_id]
        assert other.text == node.text and other.image_path == node.image_path
        assert {k: v for k, v in other.metadata.items() if k not in ("maxsim", "relevance", "num_query_tokens")} == (
            node.metadata
        )
        assert other.ref_doc_id == node.ref_doc_id
        for rel in (NodeRelationship.PREVIOUS, NodeRelationship.NEXT):
            assert (rel in other.relationships) == (rel in node.relationships)


def test_prev_next_postprocessor_returns_neighbouring_pages(indexed):
    index, _, nodes = indexed
    docstore = SimpleDocumentStore()
    docstore.add_documents(nodes)  # the indexer's output, as a pipeline with a docstore keeps it
    page2 = _report_page(nodes, 2)
    filters = MetadataFilters(
        filters=[
            MetadataFilter(key="doc_id", value=page2.metadata["doc_id"]),
            MetadataFilter(key="page_number", value=2),
        ]
    )
    hits = SAPRetriever(index, filters=filters).retrieve(QUERY)
    expanded = PrevNextNodePostprocessor(docstore=docstore, num_nodes=1, mode="both").postprocess_nodes(hits)
    assert sorted(n.node.metadata["page_number"] for n in expanded) == [1, 2, 3]
    assert {n.node.metadata["doc_id"] for n in expanded} == {page2.metadata["doc_id"]}


def test_retriever_tool_gives_the_agent_page_text(indexed):
    index, _, _ = indexed
    tool = RetrieverTool.from_defaults(
        retriever=SAPRetriever(index, similarity_top_k=5), name="pages", description="Search the report pages."
    )
    output = tool.call(QUERY)
    assert sum(text in output.content for text in TEXTS) >= 2  # the PDF's words, not only metadata
    assert "page 1 of chart.png" in output.content or "page 1 of table.png" in output.content


def test_query_by_image(indexed, tmp_path):
    index, _, _ = indexed
    query = tmp_path / "query.png"
    make_page(2).save(query)
    retriever = SAPRetriever(index, similarity_top_k=3)
    hits = retriever.retrieve(QueryBundle(query_str="", image_path=str(query)))
    expected = index.search(load_image(query), k=3)
    assert [h.node.node_id for h in hits] == [e.page_id for e in expected]
    assert [h.node.metadata["maxsim"] for h in hits] == pytest.approx([e.score for e in expected])
    # the query image is encoded as a page: many more query tokens than a text query
    text_tokens = retriever.retrieve(QUERY)[0].node.metadata["num_query_tokens"]
    assert hits[0].node.metadata["num_query_tokens"] > text_tokens
    with pytest.raises(UnreadableInputError, match=r"missing\.png"):
        retriever.retrieve(QueryBundle(query_str="", image_path=str(tmp_path / "missing.png")))


def test_scores_are_normalised_relevance_monotone_in_maxsim(indexed):
    index, _, _ = indexed
    hits = SAPRetriever(index, similarity_top_k=10).retrieve(QUERY)
    scores = [h.score for h in hits]
    raw = [h.node.metadata["maxsim"] for h in hits]
    tokens = hits[0].node.metadata["num_query_tokens"]
    assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1
    assert scores == sorted(scores, reverse=True) and raw == sorted(raw, reverse=True)
    assert scores == pytest.approx([min(1.0, max(0.0, (r / tokens + 1) / 2)) for r in raw], abs=1e-6)
    assert [h.node.metadata["relevance"] for h in hits] == scores

    maxsim = SAPRetriever(index, similarity_top_k=10, score="maxsim").retrieve(QUERY)
    assert [h.score for h in maxsim] == pytest.approx(raw)

    cutoff = (scores[1] + scores[2]) / 2
    kept = SimilarityPostprocessor(similarity_cutoff=cutoff).postprocess_nodes(hits)
    assert [n.node.node_id for n in kept] == [h.node.node_id for h in hits[:2]]
    with pytest.raises(ValueError):
        SAPRetriever(index, score="cosine")


def test_search_options_reach_the_core(indexed):
    index, _, _ = indexed
    for options in ({"two_stage": False}, {"two_stage": True, "prefetch": 2, "coarse": 4}):
        hits = SAPRetriever(index, similarity_top_k=3, **options).retrieve(QUERY)
        expected = index.search(QUERY, k=3, **options)
        assert [h.node.node_id for h in hits] == [e.page_id for e in expected]
    with pytest.raises(InvalidInputError, match="prefetch"):
        SAPRetriever(index, two_stage=True, prefetch=0).retrieve(QUERY)
    with pytest.raises(InvalidInputError, match="unexpected keyword argument 'search_kwargs'"):
        SAPRetriever(index, search_kwargs={"k": 1})  # an unknown keyword is an error, never ignored
    with pytest.raises(InvalidInputError, match="open options"):
        SAPRetriever(index, read_only=True)  # open options apply to a path only


def test_close_and_context_manager(tmp_path, tiny_encoder, pages):
    path = tmp_path / "index"
    with SAPIndex.create(path, encoder=tiny_encoder, keep_ratio=0.1) as index:
        index.add_images(pages[:1], doc_id="a")
    with SAPRetriever(str(path)) as retriever:  # opened from a path: the retriever owns it
        assert len(retriever.retrieve(QUERY)) == 1
    with pytest.raises(IndexClosedError):
        retriever.retrieve(QUERY)
    with VisualDocumentIndexer(index=str(path)) as indexer:
        assert len(indexer.index) == 1
    with SAPIndex.open(path) as index:  # the lock was released
        with SAPRetriever(index) as retriever:
            retriever.retrieve(QUERY)
        assert len(index.search(QUERY, k=1)) == 1  # an index object given to it stays open

    # a notebook re-running its cell: the dropped retriever's index is released when collected
    retriever = SAPRetriever(str(path))
    retriever = None
    gc.collect()
    retriever = SAPRetriever(str(path))
    retriever.close()
    # searchers share the index with read-only opens (SAPIndex.open options pass through)
    with SAPRetriever(str(path), read_only=True) as first, SAPRetriever(str(path), read_only=True) as second:
        assert first.retrieve(QUERY)[0].node.node_id == second.retrieve(QUERY)[0].node.node_id


def test_colpali_rerank_runs_on_retrieved_nodes(indexed, tiny_encoders, monkeypatch):
    rerank = pytest.importorskip("llama_index.postprocessor.colpali_rerank.base")
    import torch

    colpali = tiny_encoders("colpali")  # the tiny random ColPali stands in for vidore/colpali-v1.2

    class Loader:
        def __init__(self, obj):
            self.obj = obj

        def from_pretrained(self, *args, **kwargs):
            return self.obj

    monkeypatch.setattr(rerank, "ColPali", Loader(colpali.model))
    monkeypatch.setattr(rerank, "ColPaliProcessor", Loader(colpali.processor))
    reranker = rerank.ColPaliRerank(top_n=3, model="tiny-colpali", device="cpu", keep_retrieval_score=True)

    index, _, _ = indexed
    hits = SAPRetriever(index, similarity_top_k=5).retrieve(QUERY)
    retrieval = {h.node.node_id: h.score for h in hits}
    reranked = reranker.postprocess_nodes(hits, query_str=QUERY)

    # it opened the page images (not the PDF) and scored them with the model
    images = [Image.open(h.node.metadata["file_path"]) for h in hits]
    with torch.no_grad():
        pages = colpali.model(**colpali.processor.process_images(images))
        query = colpali.model(**colpali.processor.process_queries([QUERY]))
    expected = colpali.processor.score_multi_vector(query, pages)[0].tolist()
    by_id = dict(zip((h.node.node_id for h in hits), expected))
    assert len(reranked) == 3
    assert [n.score for n in reranked] == sorted(by_id.values(), reverse=True)[:3]
    assert all(n.score == pytest.approx(by_id[n.node.node_id]) for n in reranked)
    assert all(n.node.metadata["retrieval_score"] == retrieval[n.node.node_id] for n in reranked)
    assert all(Path(n.node.metadata["file_path"]).suffix == ".png" for n in reranked)
