"""LangChain's standard retriever suite (langchain_tests.integration_tests.RetrieversIntegrationTests).

The suite's async test needs pytest-asyncio in auto mode (``--asyncio-mode=auto``). Rather than
changing the repository's pytest configuration, this module marks its tests ``asyncio`` (which
is what auto mode does) and silences pytest-asyncio's note that the suite's sync tests carry the
mark.
"""

from __future__ import annotations

import pytest

pytest.importorskip("langchain_tests")
pytest.importorskip("pytest_asyncio")

from langchain_sap_rag import SAPRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from sap_rag.index import SAPIndex

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings(
        "ignore:The test <Function .*> is marked with '@pytest.mark.asyncio':pytest.PytestWarning"
    ),
]


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory, tiny_encoder, pages):
    """One index for the suite (an index can be open once at a time): four one-page documents."""
    idx = SAPIndex.create(tmp_path_factory.mktemp("lc-standard") / "index", encoder=tiny_encoder, keep_ratio=0.1)
    for i, page in enumerate(pages):
        idx.add_images([page], doc_id=f"doc{i}", metadata={"source": f"page{i}.png"})
    yield idx
    idx.close()


class TestSAPRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _use_shared_index(self, shared_index: SAPIndex) -> None:
        self._index = shared_index

    @property
    def retriever_constructor(self) -> type[SAPRetriever]:
        return SAPRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"index": self._index, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "What was the revenue in 2023?"
