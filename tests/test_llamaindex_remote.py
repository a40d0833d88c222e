"""The LlamaIndex adapters take any object with the index's read API in place of a SAPIndex (as
``sap_rag.connect(url)`` returns): hits without a local image file get the page image bytes from
``index.page_image(page_id)``, and a multimodal LLM receives them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import VectorStoreIndex
from llama_index.core.base.llms.types import ImageBlock
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, NodeRelationship
from llama_index.retrievers.sap_rag import SAPPageStore, SAPRetriever
from pydantic import Field

from sap_rag.index import SAPIndex

QUERY = "What was the revenue in 2023?"


class RemoteIndex:
    """A stand-in for ``sap_rag.serve.client.SAPClient``: the read API, no ``document`` method,
    hits without ``image_path``, page images fetched by page id."""

    def __init__(self, index: SAPIndex) -> None:
        self._index = index
        self.fetched: list[str] = []

    def _remote(self, hits: list[Any]) -> list[Any]:
        return [dataclasses.replace(h, image_path=None) if h is not None else None for h in hits]

    def search(self, query: Any, k: int = 10, **options: Any) -> list[Any]:
        return self._remote(self._index.search(query, k, **options))

    def search_batch(self, queries: list[Any], k: int = 10, **options: Any) -> list[list[Any]]:
        return [self._remote(hits) for hits in self._index.search_batch(queries, k, **options)]

    def get_pages(self, page_ids: list[str]) -> list[Any]:
        return self._remote(self._index.get_pages(page_ids))

    def documents(self, **options: Any) -> list[str]:
        return self._index.documents(**options)

    def stats(self) -> Any:
        return self._index.stats()

    def page_image(self, page_id: str, max_side: int | None = None, format: str = "png") -> bytes:
        self.fetched.append(page_id)
        (hit,) = self._index.get_pages([page_id])
        return Path(hit.image_path).read_bytes()


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_encoder, pages):
    idx = SAPIndex.create(tmp_path_factory.mktemp("li-remote") / "index", encoder=tiny_encoder, keep_ratio=0.1)
    idx.add_images(pages[:3], doc_id="report", metadata={"team": "a"})
    yield idx
    idx.close()


def _local_bytes(index: SAPIndex, page_id: str) -> bytes:
    return Path(index.get_pages([page_id])[0].image_path).read_bytes()


class RecordingChatLLM(MockLLM):
    calls: list[list[Any]] = Field(default_factory=list, exclude=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(is_chat_model=True, **kwargs)

    def chat(self, messages, **kwargs):
        self.calls.append(list(messages))
        return super().chat(messages, **kwargs)


def test_retriever_over_a_remote_index_carries_the_page_images(index):
    remote = RemoteIndex(index)
    hits = SAPRetriever(remote, similarity_top_k=2).retrieve(QUERY)
    assert [h.node.node_id for h in hits] == [h.page_id for h in index.search(QUERY, k=2)]
    for hit in hits:
        node = hit.node
        assert isinstance(node, ImageNode) and node.image_path is None and "file_path" not in node.metadata
        assert node.resolve_image().read() == _local_bytes(index, node.node_id)
        assert node.image_mimetype == "image/png"
        assert NodeRelationship.PREVIOUS not in node.relationships  # the client cannot say which pages are next
    assert remote.fetched == [h.node.node_id for h in hits]


def test_a_multimodal_query_engine_receives_the_remote_images(index):
    remote = RemoteIndex(index)
    llm = RecordingChatLLM()
    engine = RetrieverQueryEngine.from_args(SAPRetriever(remote, similarity_top_k=2), llm=llm, multimodal=True)
    response = engine.query(QUERY)
    sent = [
        b.resolve_image().read()
        for m in llm.calls
        for msg in [m]
        for x in msg
        for b in x.blocks
        if isinstance(b, ImageBlock)
    ]
    assert {_local_bytes(index, n.node.node_id) for n in response.source_nodes} <= set(sent)


def test_store_over_a_remote_index(index):
    remote = RemoteIndex(index)
    store = SAPPageStore(remote)
    hits = (
        VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model)
        .as_retriever(similarity_top_k=3)
        .retrieve(QUERY)
    )
    assert len(hits) == 3 and all(h.node.resolve_image().read() == _local_bytes(index, h.node.node_id) for h in hits)
    (node,) = store.get_nodes(node_ids=["report:p2"])
    assert node.resolve_image().read() == _local_bytes(index, "report:p2")
