"""The page a LangChain Document names is the page the index stores: page 2 added alone under an id is
``<id>:p2`` for the core, the CLI and LangChain alike; pages written by the old adapter (page 1 with
``langchain_page``) still cite their page; an index without ``add_images`` (a remote client) refuses
Documents with ids before writing anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from _lc_fixtures import write_pdf
from langchain_core.documents import Document
from langchain_sap_rag import SAPVectorStore

from sap_rag import InvalidInputError, SAPIndex
from sap_rag.cli import main


@pytest.fixture
def pdf(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return write_pdf(folder / "report.pdf", ["Revenue 2023 was 42", "Energy by sector", "Hospital survey"])


def test_page_added_with_an_id_is_stored_under_its_number_for_every_reader(tmp_path, tiny_encoder, pdf, capsys):
    with SAPVectorStore(SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)) as store:
        docs = [Document(page_content="", metadata={"source": str(pdf), "page": p}) for p in (1, 2)]
        assert store.add_documents(docs, ids=["b", "c"]) == ["b", "c"]
        record = store.index.document("b")
        assert record.page_ids == ["b:p2"] and record.page_numbers == [2]
        (hit,) = store.index.search("energy", k=1, filter={"page_number": 2})
        assert (hit.page_id, hit.page_number, hit.text) == ("b:p2", 2, "Energy by sector")
        (doc,) = store.similarity_search("energy", k=1, filter={"page_number": 3})
        assert (doc.id, doc.metadata["page_id"], doc.metadata["page_number"]) == ("c", "c:p3", 3)
        # No text layer and no text of its own: the index labels the page by its number in the file.
        store.add_documents([Document(page_content="", metadata={"source": str(pdf), "page": 2})], ids=["d"])
        assert store.index.get_pages(["d:p3"])[0] is not None
    # The CLI, another reader, sees page 2 too.
    capsys.readouterr()
    assert main(["search", "energy", "--index", str(tmp_path / "index"), "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {(h["page_id"], h["page_number"]) for h in hits} == {("b:p2", 2), ("c:p3", 3), ("d:p3", 3)}


def test_pages_written_with_langchain_page_still_cite_their_page(tmp_path, tiny_encoder, pdf):
    """Indexes written before the core stored page numbers kept the page as page 1 with ``langchain_page``."""
    from sap_rag.ingest.documents import load_document

    index = SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)
    page = load_document(pdf).pages[1]
    meta = {"source": str(pdf), "filename": pdf.name, "langchain_page": 2}
    index.add_images([page], doc_id="old", metadata=meta, texts=["Energy by sector"])
    with SAPVectorStore(index) as store:
        (doc,) = store.get_by_ids(["old"])
        assert (doc.id, doc.metadata["page_id"], doc.metadata["page_number"]) == ("old", "old:p1", 2)
        assert "langchain_page" not in doc.metadata


def test_a_remote_client_refuses_ids_and_texts_before_writing(pdf):
    """A ``SAPClient`` has no ``add_images``: Documents with ids or texts of their own are refused with a
    clear error, before any request (a plain file in the same call is not uploaded either)."""
    httpx = pytest.importorskip("httpx")
    from sap_rag.serve.client import SAPClient

    requests: list[Any] = []

    def handler(request: Any) -> Any:
        requests.append(request)
        return httpx.Response(500, json={"detail": "nothing may be sent"})

    with SAPClient("http://127.0.0.1:9", transport=httpx.MockTransport(handler)) as client:
        store = SAPVectorStore(client)
        plain = Document(page_content="", metadata={"source": str(pdf)})
        named = Document(page_content="", metadata={"source": str(pdf), "page": 1}, id="x")
        with pytest.raises(InvalidInputError, match="add_images"):
            store.add_documents([plain, named])
        with pytest.raises(InvalidInputError, match="add_images"):
            store.add_documents([Document(page_content="my OCR text", metadata={"source": str(pdf), "page": 0})])
    assert requests == []
