"""SAPRetriever for LlamaIndex: nodes, filters, call conventions, and a multimodal query engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import ImageBlock
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters
from llama_index.retrievers.sap_rag import SAPRetriever
from pydantic import Field

from sap_rag import InvalidInputError
from sap_rag.index import IndexNotFoundError, SAPIndex

QUERY = "What was the revenue in 2023?"


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_encoder, pages):
    """Read-only for the tests: four one-page documents, two teams, two years."""
    idx = SAPIndex.create(tmp_path_factory.mktemp("li-retriever") / "index", encoder=tiny_encoder, keep_ratio=0.1)
    for i, page in enumerate(pages):
        idx.add_images([page], doc_id=f"doc{i}", metadata={"team": "ab"[i % 2], "year": 2023 + i // 2})
    yield idx
    idx.close()


def _filters(*items: MetadataFilter | MetadataFilters, condition: str = "and") -> MetadataFilters:
    return MetadataFilters(filters=list(items), condition=FilterCondition(condition))


def test_retrieve_returns_image_nodes_with_scores(index):
    hits = SAPRetriever(index, similarity_top_k=3).retrieve(QUERY)
    assert len(hits) == 3
    assert all(isinstance(h, NodeWithScore) and isinstance(h.node, ImageNode) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    node = hits[0].node
    assert Path(node.image_path).is_file()
    assert node.metadata["doc_id"].startswith("doc") and node.metadata["page_number"] == 1
    assert node.metadata["team"] in {"a", "b"}
    assert node.node_id == f"{node.metadata['doc_id']}:p1"


def test_similarity_top_k_and_filters(index):
    team_b = SAPRetriever(index, similarity_top_k=4, filters=_filters(MetadataFilter(key="team", value="b")))
    assert {h.node.metadata["doc_id"] for h in team_b.retrieve(QUERY)} == {"doc1", "doc3"}

    some = _filters(MetadataFilter(key="doc_id", value=["doc0", "doc3"], operator=FilterOperator.IN))
    found = SAPRetriever(index, similarity_top_k=4, filters=some).retrieve(QUERY)
    assert {h.node.metadata["doc_id"] for h in found} == {"doc0", "doc3"}

    both = _filters(MetadataFilter(key="team", value="a"), MetadataFilter(key="year", value=2024))
    assert [h.node.metadata["doc_id"] for h in SAPRetriever(index, filters=both).retrieve(QUERY)] == ["doc2"]


def test_contradictory_filters_return_nothing(index):
    never = _filters(MetadataFilter(key="team", value="a"), MetadataFilter(key="team", value="b"))
    assert SAPRetriever(index, filters=never).retrieve(QUERY) == []


def test_core_errors_reach_the_user(index, tmp_path):
    with pytest.raises(IndexNotFoundError, match="no-such-index"):
        SAPRetriever(tmp_path / "no-such-index")
    with pytest.raises(InvalidInputError, match="empty"):
        SAPRetriever(index).retrieve(" ")
    with pytest.raises(InvalidInputError, match="SAPIndex"):
        SAPRetriever(object())


def test_async_retrieve_and_keyword_query_bundle(index):
    retriever = SAPRetriever(index, similarity_top_k=2)
    sync_ids = [h.node.node_id for h in retriever.retrieve(QUERY)]
    assert [h.node.node_id for h in asyncio.run(retriever.aretrieve(QUERY))] == sync_ids
    # LlamaIndex calls _aretrieve(query_bundle=...) by keyword
    direct = asyncio.run(retriever._aretrieve(query_bundle=QueryBundle(QUERY)))
    assert [h.node.node_id for h in direct] == sync_ids


class RecordingChatLLM(MockLLM):
    """A chat-capable mock LLM that keeps the messages of every call."""

    calls: list[list[Any]] = Field(default_factory=list, exclude=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(is_chat_model=True, **kwargs)

    def chat(self, messages, **kwargs):
        self.calls.append(list(messages))
        return super().chat(messages, **kwargs)

    async def achat(self, messages, **kwargs):
        self.calls.append(list(messages))
        return await super().achat(messages, **kwargs)


def _images_sent(llm: RecordingChatLLM) -> list[bytes]:
    return [
        block.resolve_image().read()
        for messages in llm.calls
        for message in messages
        for block in message.blocks
        if isinstance(block, ImageBlock)
    ]


@pytest.mark.parametrize("use_async", [False, True], ids=["query", "aquery"])
def test_query_engine_sends_page_images_to_the_llm(index, use_async):
    retriever = SAPRetriever(index, similarity_top_k=2)
    llm = RecordingChatLLM()
    engine = RetrieverQueryEngine.from_args(retriever, llm=llm, multimodal=True)
    response = asyncio.run(engine.aquery(QUERY)) if use_async else engine.query(QUERY)

    assert len(response.source_nodes) == 2
    expected = [Path(n.node.image_path).read_bytes() for n in response.source_nodes]
    sent = _images_sent(llm)
    assert llm.calls and all(image in sent for image in expected)
