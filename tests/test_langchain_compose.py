"""sap-rag composed with LangChain's own pieces: the indexing API, ensembles, multi-vector and compression
retrievers, and retriever tools for agents."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_classic")

from _lc_fixtures import QUERY, write_image, write_pdf
from langchain_classic.retrievers import ContextualCompressionRetriever, EnsembleRetriever, MultiVectorRetriever
from langchain_classic.retrievers.document_compressors import LLMChainFilter
from langchain_core.documents import Document
from langchain_core.indexing import InMemoryRecordManager, index
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.stores import InMemoryStore
from langchain_core.tools import create_retriever_tool
from langchain_sap_rag import (
    DEFAULT_MAX_SIDE,
    SAPPageLoader,
    SAPRetriever,
    SAPVectorStore,
    create_page_retriever_tool,
)
from PIL import Image
from pydantic import Field

from sap_rag import SAPIndex


@pytest.fixture
def store(tmp_path, tiny_encoder):
    with SAPVectorStore(SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)) as vs:
        yield vs


@pytest.fixture
def folder(tmp_path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_pdf(docs / "report.pdf", ["Revenue 2023 was 42", "Energy by sector", "Hospital survey"])
    write_pdf(docs / "outlook.pdf", ["Outlook 2024", "Risks"])
    write_image(docs / "chart.png", 7)
    return docs


def _texts(store: SAPVectorStore) -> list[str]:
    return sorted(d.page_content for d in store.similarity_search(QUERY, k=100))


# --- LangChain's indexing API ------------------------------------------------------------------


def test_index_api_incremental_adds_skips_and_cleans_up(store, folder):
    manager = InMemoryRecordManager(namespace="sap")
    manager.create_schema()
    first = index(
        SAPPageLoader(folder), manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert first == {"num_added": 6, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    assert len(store.index) == 6 and len(_texts(store)) == 6
    again = index(
        SAPPageLoader(folder), manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert again == {"num_added": 0, "num_updated": 0, "num_skipped": 6, "num_deleted": 0}
    # An edited PDF: its new pages in, its old pages out; the other files untouched.
    write_pdf(folder / "report.pdf", ["Revenue 2023 was 43", "Energy by sector"])
    edited = index(
        SAPPageLoader(folder), manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    # Its pages carry the file's new content hash: both are indexed again (the images may have changed too).
    assert edited == {"num_added": 2, "num_updated": 0, "num_skipped": 3, "num_deleted": 3}
    assert _texts(store) == sorted(
        ["Revenue 2023 was 43", "Energy by sector", "Outlook 2024", "Risks", "page 1 of chart.png"]
    )
    # An edited image looks the same to a text loader; the content hash in the metadata tells.
    write_image(folder / "chart.png", 8)
    image = index(
        SAPPageLoader(folder), manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert image["num_added"] == 1 and image["num_deleted"] == 1 and len(store.index) == 5


def test_index_api_full_cleanup_removes_what_the_loader_no_longer_gives(store, folder):
    manager = InMemoryRecordManager(namespace="sap")
    manager.create_schema()
    index(SAPPageLoader(folder), manager, store, cleanup="full", key_encoder="sha256")
    assert len(store.index) == 6
    result = index(SAPPageLoader(folder / "outlook.pdf"), manager, store, cleanup="full", key_encoder="sha256")
    assert result == {"num_added": 0, "num_updated": 0, "num_skipped": 2, "num_deleted": 4}
    assert _texts(store) == ["Outlook 2024", "Risks"]


def test_index_api_async(store, folder):
    from langchain_core.indexing import aindex

    manager = InMemoryRecordManager(namespace="sap")
    manager.create_schema()
    docs = SAPPageLoader(folder / "outlook.pdf").load()
    result = asyncio.run(
        aindex(docs, manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256")
    )
    assert result["num_added"] == 2 and _texts(store) == ["Outlook 2024", "Risks"]
    found = store.similarity_search(QUERY, k=2)
    keys = set(manager.list_keys())
    assert {d.id for d in found} == keys  # the record manager's keys
    assert sorted((d.metadata["page_number"], d.page_content) for d in found) == [(1, "Outlook 2024"), (2, "Risks")]


# --- composite retrievers ------------------------------------------------------------------


def test_ensemble_keeps_distinct_pages(store, folder):
    doc_ids = store.add_paths(folder)
    first = SAPRetriever(index=store.index, k=2)
    other = next(i for i in doc_ids if i not in {d.metadata["doc_id"] for d in first.invoke(QUERY)})
    second = store.as_retriever(search_kwargs={"k": 3, "filter": {"doc_id": [other]}})
    expected = {d.id for d in first.invoke(QUERY)} | {d.id for d in second.invoke(QUERY)}
    assert len(expected) >= 3
    for id_key in (None, "page_id"):
        ensemble = EnsembleRetriever(retrievers=[first, second], weights=[0.5, 0.5], id_key=id_key)
        found = ensemble.invoke(QUERY)
        assert len(found) == len({d.id for d in found})  # no page twice
        assert {d.id for d in found} == expected  # and none lost


def test_multi_vector_retriever_returns_the_parent_documents(store, folder):
    doc_ids = store.add_paths(folder)
    parents = InMemoryStore()
    parents.mset([(doc_id, Document(page_content=f"summary of {doc_id}")) for doc_id in doc_ids])
    retriever = MultiVectorRetriever(
        vectorstore=store, docstore=parents, id_key="doc_id", search_kwargs={"k": 3, "filter": {"doc_id": doc_ids[:2]}}
    )
    found = retriever.invoke(QUERY)
    pages = store.similarity_search(QUERY, k=3, filter={"doc_id": doc_ids[:2]})
    top_docs = list(dict.fromkeys(d.metadata["doc_id"] for d in pages))
    assert [d.page_content for d in found] == [f"summary of {doc_id}" for doc_id in top_docs]


class KeywordJudge(BaseChatModel):
    """Says YES when the prompt holds ``keyword``: a stand-in for an LLM judging relevance from the page text."""

    keyword: str
    prompts: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "keyword-judge"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        self.prompts.append(prompt)
        answer = "YES" if self.keyword in prompt else "NO"
        return ChatResult(generations=[ChatGeneration(message=AIMessage(answer))])


def test_contextual_compression_filters_on_page_text(store, folder):
    store.add_paths(folder)
    judge = KeywordJudge(keyword="Revenue")
    retriever = ContextualCompressionRetriever(
        base_compressor=LLMChainFilter.from_llm(judge), base_retriever=store.as_retriever(search_kwargs={"k": 6})
    )
    found = retriever.invoke(QUERY)
    assert [d.page_content for d in found] == ["Revenue 2023 was 42"]
    assert len(judge.prompts) == 6 and any("Hospital survey" in p for p in judge.prompts)


# --- tools for agents ----------------------------------------------------------------------


def _call(tool, query: str) -> ToolMessage:
    return tool.invoke({"type": "tool_call", "name": tool.name, "args": {"query": query}, "id": "call-1"})


def test_page_retriever_tool_gives_the_model_page_text_and_images(store, folder):
    store.add_paths(folder)
    retriever = store.as_retriever(search_kwargs={"k": 3})
    tool = create_page_retriever_tool(retriever)
    message = _call(tool, QUERY)
    assert isinstance(message, ToolMessage) and message.tool_call_id == "call-1"
    docs = message.artifact
    assert [d.id for d in docs] == [d.id for d in retriever.invoke(QUERY)]
    texts = [b["text"] for b in message.content if b["type"] == "text"]
    images = [b for b in message.content if b["type"] == "image"]
    assert len(texts) == len(images) == 3
    for doc, text, image in zip(docs, texts, images):
        assert doc.id in text and doc.page_content in text
        sent = Image.open(io.BytesIO(base64.b64decode(image["base64"])))
        stored = Image.open(doc.metadata["image_path"])
        assert max(sent.size) <= DEFAULT_MAX_SIDE and sent.size == stored.size  # small pages go at full size
        assert "image_base64" not in doc.metadata  # the image is in the content, not in the artifact's metadata
    assert [b["type"] for b in message.content_blocks] == ["text", "image"] * 3  # standard content blocks
    exact = _call(create_page_retriever_tool(retriever, max_side=None, quality=None), QUERY)
    for doc, block in zip(exact.artifact, [b for b in exact.content if b["type"] == "image"]):
        assert base64.b64decode(block["base64"]) == Path(doc.metadata["image_path"]).read_bytes()
    text_only = _call(create_page_retriever_tool(retriever, images=False), QUERY)
    assert [b["type"] for b in text_only.content] == ["text"] * 3
    async_message = asyncio.run(
        tool.ainvoke({"type": "tool_call", "name": tool.name, "args": {"query": QUERY}, "id": "call-2"})
    )
    assert [d.id for d in async_message.artifact] == [d.id for d in docs]


def test_langchains_own_retriever_tool_now_gives_page_text(store, folder):
    store.add_paths(folder)
    tool = create_retriever_tool(SAPRetriever(index=store.index, k=6), "pages", "search pages")
    content = tool.invoke({"query": QUERY})
    assert "Revenue 2023 was 42" in content and "page 1 of chart.png" in content
