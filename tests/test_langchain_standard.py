"""LangChain's standard suites: ``RetrieversIntegrationTests`` (a retriever given an index path) and
``VectorStoreIntegrationTests`` (through a store that draws each text Document as a page image).

The suite's async test needs pytest-asyncio in auto mode (``--asyncio-mode=auto``). Rather than
changing the repository's pytest configuration, this module marks its tests ``asyncio`` (which
is what auto mode does) and silences pytest-asyncio's note that the suite's sync tests carry the
mark.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_tests")
pytest.importorskip("pytest_asyncio")

from _lc_fixtures import render_text_page
from langchain_core.documents import Document
from langchain_sap_rag import SAPRetriever, SAPVectorStore
from langchain_sap_rag.documents import PAGE_METADATA_KEYS
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from sap_rag.index import SAPIndex

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings(
        "ignore:The test <Function .*> is marked with '@pytest.mark.asyncio':pytest.PytestWarning"
    ),
]


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory, tiny_encoder, pages) -> Path:
    """One index on disk for the suite: four one-page documents. Every retriever the suite builds
    opens it by path, read-only, so several can be open at once."""
    path = tmp_path_factory.mktemp("lc-standard") / "index"
    with SAPIndex.create(path, encoder=tiny_encoder, keep_ratio=0.1) as idx:
        for i, page in enumerate(pages):
            idx.add_images([page], doc_id=f"doc{i}", metadata={"source": f"page{i}.png"})
    return path


class TestSAPRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _use_shared_index(self, shared_index: Path, tiny_encoder) -> None:
        self._index = shared_index
        self._encoder = tiny_encoder

    @property
    def retriever_constructor(self) -> type[SAPRetriever]:
        return SAPRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": self._index, "k": 2, "open_kwargs": {"encoder": self._encoder}}

    @property
    def retriever_query_example(self) -> str:
        return "What was the revenue in 2023?"


# --- the vector store ------------------------------------------------------------------------------

# What SAPVectorStore adds to a Document's own metadata: the page fields, and the file the page
# image came from (here the drawing of the text). Compared without them; everything else (ids, text,
# the Document's metadata, upserts, deletes, async twins) is the store's own behaviour.
ADDED_KEYS = (*PAGE_METADATA_KEYS, "source", "filename")

# The suite's tests that expect the order of its fake text embedding (DeterministicFakeEmbedding):
# "bar" before "foo" for the query "bar". A page index ranks by what the pages look like: these run
# with the trained toy model, which reads the drawn words and ranks as the suite expects (a
# random-weight model fails two of them). The others run with the tiny random-weight model.
RANKED_BY_FAKE_EMBEDDING = {
    "test_add_documents",
    "test_add_documents_async",
    "test_add_documents_with_ids_is_idempotent",
    "test_add_documents_with_ids_is_idempotent_async",
    "test_add_documents_by_id_with_mutation",
    "test_add_documents_by_id_with_mutation_async",
}


class DrawnTextStore(SAPVectorStore):
    """SAPVectorStore for text-only Documents: each is drawn as a page image (one file per text) and
    named by ``metadata["source"]``; returned Documents lose :data:`ADDED_KEYS`."""

    def __init__(self, index: SAPIndex, folder: Path) -> None:
        super().__init__(index)
        self._folder = folder

    def _drawn(self, document: Document) -> Document:
        path = self._folder / f"{hashlib.sha256(document.page_content.encode()).hexdigest()[:16]}.png"
        if not path.exists():
            render_text_page(document.page_content, path)
        return Document(
            id=document.id, page_content=document.page_content, metadata={**document.metadata, "source": str(path)}
        )

    @staticmethod
    def _plain(document: Document) -> Document:
        metadata = {k: v for k, v in document.metadata.items() if k not in ADDED_KEYS}
        return Document(id=document.id, page_content=document.page_content, metadata=metadata)

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        return super().add_documents([self._drawn(d) for d in documents], **kwargs)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [self._plain(d) for d in super().similarity_search(query, k, **kwargs)]

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [self._plain(d) for d in super().get_by_ids(ids)]


class TestSAPVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path, tiny_encoder, request) -> DrawnTextStore:
        ranked = request.node.originalname in RANKED_BY_FAKE_EMBEDDING
        encoder = request.getfixturevalue("toy_encoder") if ranked else tiny_encoder
        folder = tmp_path / "drawn"
        folder.mkdir()
        store = DrawnTextStore(SAPIndex.create(tmp_path / "index", encoder=encoder, keep_ratio=0.1), folder)
        try:
            yield store
        finally:
            store.close()
