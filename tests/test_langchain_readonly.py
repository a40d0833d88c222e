"""Retrievers only read: given a path, they open the index read-only, so two of them, a store and other
processes share it; a store given a path opens for writing only when it writes, and says so when it
cannot. And the adapters take any object with the index's read API (a client of a server) in place
of a SAPIndex."""

from __future__ import annotations

import base64
import dataclasses
import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from _lc_fixtures import QUERY, write_image, write_pdf
from langchain_core.documents import Document
from langchain_sap_rag import SAPRetriever, SAPVectorStore, create_page_retriever_tool, page_images_message
from PIL import Image

from sap_rag import IndexLockedError, IndexReadOnlyError, SAPIndex


@pytest.fixture
def built(tmp_path, tiny_encoder) -> Path:
    """An index on disk (closed): a 3-page PDF and an image."""
    folder = tmp_path / "docs"
    folder.mkdir()
    write_pdf(folder / "report.pdf", ["Revenue 2023 was 42", "Energy by sector", "Hospital survey"])
    write_image(folder / "chart.png", 3)
    path = tmp_path / "index"
    SAPVectorStore.from_paths(folder, path, encoder=tiny_encoder, keep_ratio=0.1).close()
    return path


def _hold_read_only(path: Path) -> subprocess.Popen:
    """Another process with the index open read-only, until its stdin closes."""
    code = textwrap.dedent(
        """
        import sys
        from sap_rag import SAPIndex
        index = SAPIndex.open(sys.argv[1], read_only=True)
        print(len(index), flush=True)
        sys.stdin.readline()
        index.close()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "4"  # it holds the index now
    return proc


def _release(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def test_two_path_retrievers_and_another_process_read_at_once(built, tiny_encoder):
    proc = _hold_read_only(built)
    try:
        enc = {"encoder": tiny_encoder}
        with (
            SAPRetriever(index=built, k=3, open_kwargs=enc) as one,
            SAPRetriever(index=built, k=3, open_kwargs=enc) as two,
        ):
            assert one.index.read_only and two.index.read_only
            assert [d.id for d in one.invoke(QUERY)] == [d.id for d in two.invoke(QUERY)]
            with SAPVectorStore(built, encoder=tiny_encoder) as store:  # a store that only searches shares it too
                assert [d.id for d in store.similarity_search(QUERY, k=3)] == [d.id for d in one.invoke(QUERY)]
    finally:
        _release(proc)


def test_a_path_store_opens_for_writing_only_when_it_writes(built, tiny_encoder, tmp_path):
    extra = write_image(tmp_path / "extra.png", 9)
    store = SAPVectorStore(built, encoder=tiny_encoder)
    try:
        assert store.index.read_only  # searching needs no write lock
        proc = _hold_read_only(built)
        try:
            assert len(store.similarity_search(QUERY, k=10)) == 4
            with pytest.raises(IndexLockedError, match="read-only and cannot open it for writing"):
                store.add_documents([Document(page_content="a chart", metadata={"source": str(extra)})], ids=["e"])
            assert len(store.similarity_search(QUERY, k=10)) == 4  # it goes on searching; nothing was written
            store.delete(["no-such-id"])  # nothing to delete: no write lock needed
        finally:
            _release(proc)
        assert store.add_documents([Document(page_content="a chart", metadata={"source": str(extra)})], ids=["e"]) == [
            "e"
        ]
        assert not store.index.read_only and [d.id for d in store.get_by_ids(["e"])] == ["e"]
        with pytest.raises(IndexLockedError):
            SAPRetriever(index=built)  # the store writes now: readers wait for it
    finally:
        store.close()
    with SAPVectorStore(built, read_only=True) as reader:  # read_only=True never writes
        with pytest.raises(IndexReadOnlyError):
            reader.delete(["e"])
        assert len(reader.get_by_ids(["e"])) == 1


def test_a_path_retriever_writes_when_asked_and_from_paths_hands_back_a_reader(built, tiny_encoder, tmp_path):
    extra = write_image(tmp_path / "extra.png", 11)
    retriever = SAPRetriever(index=built, k=10, open_kwargs={"encoder": tiny_encoder})
    try:
        (doc_id,) = retriever.add_paths(extra)  # reopened for writing
        assert not retriever.index.read_only and doc_id in {d.metadata["doc_id"] for d in retriever.invoke(QUERY)}
    finally:
        retriever.close()
    made = SAPRetriever.from_paths(extra, tmp_path / "other", encoder=tiny_encoder, keep_ratio=0.1, k=1)
    with made, SAPRetriever(index=tmp_path / "other", k=1, open_kwargs={"encoder": tiny_encoder}) as second:
        assert made.index.read_only and made.invoke(QUERY)[0].id == second.invoke(QUERY)[0].id


class RemoteIndex:
    """An object with a sap-rag server client's API (no SAPIndex): hits carry no image path, and
    images come from ``page_image``."""

    def __init__(self, index: SAPIndex) -> None:
        self._index = index
        self.image_calls: list[tuple[str, Any]] = []

    def search(self, query: Any, k: int = 10, **options: Any) -> list[Any]:
        return [dataclasses.replace(h, image_path=None) for h in self._index.search(query, k=k, **options)]

    def search_batch(self, queries: Any, k: int = 10, **options: Any) -> list[list[Any]]:
        return [self.search(q, k, **options) for q in queries]

    def get_pages(self, page_ids: list[str]) -> list[Any]:
        return [None if h is None else dataclasses.replace(h, image_path=None) for h in self._index.get_pages(page_ids)]

    def documents(self, *, source: str | None = None) -> list[str]:
        return self._index.documents(source=source)

    def stats(self) -> Any:
        return self._index.stats()

    def page_image(self, page_id: str, *, max_side: int | None = None, format: str = "png") -> bytes:
        self.image_calls.append((page_id, max_side))
        (hit,) = self._index.get_pages([page_id])
        image = Image.open(hit.image_path)
        if max_side:
            image.thumbnail((max_side, max_side))
        out = io.BytesIO()
        image.save(out, format=format.upper())
        return out.getvalue()

    def close(self) -> None:
        pass


def test_an_object_with_the_index_api_works_in_place_of_a_sapindex(built, tiny_encoder):
    with SAPIndex.open(built, encoder=tiny_encoder, read_only=True) as local:
        remote = RemoteIndex(local)
        retriever = SAPRetriever(index=remote, k=3)
        docs = retriever.invoke(QUERY)
        assert [d.id for d in docs] == [h.page_id for h in local.search(QUERY, k=3)]
        assert all(d.metadata["image_path"] is None for d in docs)
        message = page_images_message(docs, index=remote, max_side=64)
        images = [b for b in message.content if b["type"] == "image"]
        assert len(images) == 3 and [p for p, _ in remote.image_calls] == [d.metadata["page_id"] for d in docs]
        assert all(max(Image.open(io.BytesIO(base64.b64decode(b["base64"]))).size) <= 64 for b in images)
        tool = create_page_retriever_tool(retriever)  # finds the object behind the retriever
        out = tool.invoke({"type": "tool_call", "name": tool.name, "args": {"query": QUERY}, "id": "1"})
        assert sum(b["type"] == "image" for b in out.content) == 3
        with_image = retriever.invoke(QUERY, k=1, include_image=True)[0].metadata
        assert (
            Image.open(io.BytesIO(base64.b64decode(with_image["image_base64"]))).size
            == Image.open(local.get_pages([with_image["page_id"]])[0].image_path).size
        )
        store = SAPVectorStore(remote)
        pdf_id = next(i for i in local.documents() if local.document(i).num_pages == 3)
        assert [d.id for d in store.get_by_ids([pdf_id])] == [f"{pdf_id}:p{n}" for n in (1, 2, 3)]
        assert [d.id for d in store.similarity_search(QUERY, k=2, filter={"page_number": 2})] == [f"{pdf_id}:p2"]
