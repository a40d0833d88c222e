"""Citations and page images through LangChain's own classes: LangChain's indexing API with a SQL record
manager over a 3-page PDF cites pages 1, 2 and 3; retrieved ids are the record manager's keys; a text
retriever over SAPPageLoader pages fuses with the page retriever by page id and its pages still reach the
model with their images; images sent to a model are bounded."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_classic")
pytest.importorskip("sqlalchemy")

from langchain_classic.indexes import SQLRecordManager
from langchain_classic.retrievers import EnsembleRetriever
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.indexing import index
from langchain_core.messages import ToolMessage
from langchain_core.retrievers import BaseRetriever
from langchain_sap_rag import (
    DEFAULT_MAX_SIDE,
    SAPPageLoader,
    SAPRetriever,
    SAPVectorStore,
    create_page_retriever_tool,
    page_images_message,
)
from PIL import Image

from sap_rag import InvalidInputError, SAPIndex

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "acme_industries_2023.pdf"
QUERY = "What was the revenue in 2023?"


@pytest.fixture
def pdf(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return Path(shutil.copy(SAMPLE, folder / SAMPLE.name))


@pytest.fixture
def store(tmp_path, tiny_encoder):
    with SAPVectorStore(SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)) as vs:
        yield vs


def _labels(message) -> list[str]:
    return [b["text"] for b in message.content if b["type"] == "text"]


def _image(block: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block["base64"])))


def test_index_api_with_a_sql_record_manager_cites_pages_1_2_3(store, pdf, tmp_path):
    manager = SQLRecordManager("sap", db_url=f"sqlite:///{tmp_path / 'records.sqlite'}")
    manager.create_schema()
    result = index(
        SAPPageLoader(pdf), manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert result["num_added"] == 3
    keys = set(manager.list_keys())
    docs = store.similarity_search(QUERY, k=3)
    assert {d.id for d in docs} == keys  # a retrieved Document's id is the record manager's key
    by_page = {d.metadata["page_number"]: d for d in docs}
    assert sorted(by_page) == [1, 2, 3]
    # The index stores each page under its own number, as every reader of it (CLI, LlamaIndex) sees.
    assert [d.metadata["page_id"] for d in (by_page[1], by_page[2], by_page[3])] == [
        f"{by_page[n].id}:p{n}" for n in (1, 2, 3)
    ]
    core = store.index.get_pages([by_page[n].metadata["page_id"] for n in (1, 2, 3)])
    assert [p.page_number for p in core] == [1, 2, 3]
    assert {h.page_id: h.page_number for h in store.index.search(QUERY, k=3)} == {
        by_page[n].metadata["page_id"]: n for n in (1, 2, 3)
    }
    assert [h.page_id for h in store.index.search(QUERY, k=3, filter={"page_number": 2})] == [
        by_page[2].metadata["page_id"]
    ]
    layer = [d.page_content for d in SAPPageLoader(pdf).load()]
    assert [by_page[n].page_content for n in (1, 2, 3)] == layer  # each page's own text
    ordered = [by_page[n] for n in (1, 2, 3)]
    labels = _labels(page_images_message(ordered))
    assert labels == [f"Page {n} of {pdf.name}" for n in (1, 2, 3)]
    # The retriever tool cites the same pages, with their images.
    tool = create_page_retriever_tool(store.as_retriever(search_kwargs={"k": 3}))
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": {"query": QUERY}, "id": "1"})
    assert isinstance(message, ToolMessage)
    cited = sorted(int(m) for b in _labels(message) for m in re.findall(rf"Page (\d) of {re.escape(pdf.name)}", b))
    assert cited == [1, 2, 3] and sum(b["type"] == "image" for b in message.content) == 3
    # Filters on page_number see the page of the file, as cited.
    (second,) = store.similarity_search(QUERY, k=3, filter={"page_number": 2})
    assert second.id == by_page[2].id
    assert {d.metadata["page_number"] for d in store.similarity_search(QUERY, k=3, filter={"page_number": [1, 3]})} == {
        1,
        3,
    }
    # Delete by the retrieved id; running index() again puts the page back under its key.
    store.delete([by_page[2].id])
    assert sorted(d.metadata["page_number"] for d in store.similarity_search(QUERY, k=3)) == [1, 3]
    manager.delete_keys([by_page[2].id])
    again = index(
        SAPPageLoader(pdf), manager, store, cleanup="incremental", source_id_key="source", key_encoder="sha256"
    )
    assert again["num_added"] == 1 and again["num_skipped"] == 2
    assert store.get_by_ids([by_page[2].id])[0].metadata["page_number"] == 2


class KeywordRetriever(BaseRetriever):
    """A text retriever over given Documents (the pages whose text shares a word with the query): a
    stand-in for BM25 over SAPPageLoader's pages."""

    docs: list[Document]
    k: int = 2

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        words = set(re.findall(r"\w+", query.lower()))
        scored = [(len(words & set(re.findall(r"\w+", d.page_content.lower()))), i) for i, d in enumerate(self.docs)]
        return [self.docs[i] for score, i in sorted(scored, key=lambda t: (-t[0], t[1]))[: self.k] if score]


def test_ensemble_by_page_id_fuses_loader_pages_and_keeps_their_images(store, pdf, tmp_path):
    (doc_id,) = store.add_paths(pdf)
    loaded = SAPPageLoader(pdf).load()
    assert [d.id for d in loaded] == [d.metadata["page_id"] for d in loaded] == [f"{doc_id}:p{n}" for n in (1, 2, 3)]
    text = KeywordRetriever(docs=loaded, k=3)
    pages = SAPRetriever(index=store.index, k=2)
    ensemble = EnsembleRetriever(retrievers=[text, pages], weights=[0.5, 0.5], id_key="page_id")
    query = "revenue operating margin 2023"
    fused = ensemble.invoke(query)
    fused_ids = [d.metadata["page_id"] for d in fused]
    assert len(fused_ids) == len(set(fused_ids))  # each page once
    expected = {d.metadata["page_id"] for d in text.invoke(query)} | {d.id for d in pages.invoke(query)}
    assert set(fused_ids) == expected
    imageless = [d for d in fused if not d.metadata.get("image_path")]
    assert imageless, "the text retriever's pages carry no image"
    with pytest.raises(InvalidInputError, match="index="):
        page_images_message(fused)  # never a page sent without its image
    message = page_images_message(fused, index=store.index, max_side=None, quality=None)
    images = [b for b in message.content if b["type"] == "image"]
    assert len(images) == len(fused)
    stored = {h.page_id: h for h in store.index.get_pages(fused_ids)}
    for doc, block in zip(fused, images):  # each page's own stored image, fetched where the Document had none
        assert base64.b64decode(block["base64"]) == Path(stored[doc.metadata["page_id"]].image_path).read_bytes()
    # The tool finds the index behind the ensemble by itself.
    tool = create_page_retriever_tool(ensemble)
    out = tool.invoke({"type": "tool_call", "name": tool.name, "args": {"query": query}, "id": "1"})
    assert sum(b["type"] == "image" for b in out.content) == len(out.artifact) == len(fused)


def test_page_images_sent_to_a_model_are_bounded(store, pdf):
    store.add_paths(pdf)
    docs = store.similarity_search(QUERY, k=3)
    stored = [Image.open(d.metadata["image_path"]) for d in docs]
    assert max(stored[0].size) > DEFAULT_MAX_SIDE  # a 144-dpi page: larger than the default bound
    raw = [b for b in page_images_message(docs, max_side=None, quality=None).content if b["type"] == "image"]
    assert [base64.b64decode(b["base64"]) for b in raw] == [Path(d.metadata["image_path"]).read_bytes() for d in docs]
    default = [b for b in page_images_message(docs).content if b["type"] == "image"]
    small = [b for b in page_images_message(docs, max_side=512, quality=50).content if b["type"] == "image"]
    for r, d, s, page in zip(raw, default, small, stored):
        assert len(s["base64"]) < len(d["base64"]) < len(r["base64"])
        assert max(_image(d).size) == DEFAULT_MAX_SIDE and max(_image(s).size) == 512
        assert d["mime_type"] == s["mime_type"] == "image/jpeg" and _image(s).format == "JPEG"
        assert abs(_image(s).size[0] / _image(s).size[1] - page.size[0] / page.size[1]) < 0.01  # aspect kept
    tool = create_page_retriever_tool(store.as_retriever(search_kwargs={"k": 3}), max_side=400, quality=60)
    message = tool.invoke({"type": "tool_call", "name": tool.name, "args": {"query": QUERY}, "id": "1"})
    assert all(max(_image(b).size) == 400 for b in message.content if b["type"] == "image")
    with pytest.raises(InvalidInputError, match="max_side"):
        page_images_message(docs, max_side=0)
    with pytest.raises(InvalidInputError, match="quality"):
        create_page_retriever_tool(store.as_retriever(), quality=101)
