"""Retrievers only read: given a path, each opens the index read-only, so several retrievers,
stores and other processes search it at once; a store given a path opens it for writing only
when asked to write, and says clearly when it cannot."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("llama_index.core")

from _li_fixtures import png_b64
from llama_index.core import VectorStoreIndex
from llama_index.core.schema import ImageDocument
from llama_index.retrievers.sap_rag import SAPPageStore, SAPRetriever, VisualDocumentIndexer

from sap_rag import SapRagError
from sap_rag.index import IndexLockedError, IndexReadOnlyError, SAPIndex

QUERY = "revenue table"
HOLD_READ_ONLY = (
    "import sys\n"
    "from sap_rag.index import SAPIndex\n"
    "index = SAPIndex.open(sys.argv[1], read_only=True)\n"
    "print(len(index), flush=True)\n"
    "sys.stdin.read()\n"  # hold it until the test closes our stdin
    "index.close()\n"
)


@pytest.fixture
def path(tmp_path, tiny_encoder, pages):
    location = tmp_path / "index"
    with SAPIndex.create(location, encoder=tiny_encoder, keep_ratio=0.1) as index:
        index.add_images(pages[:2], doc_id="report", metadata={"team": "a"})
    return location


def _page(seed: int) -> ImageDocument:
    return ImageDocument(image=png_b64(seed), text=f"page {seed}", id_=f"image-{seed}")


def test_two_path_retrievers_and_a_store_search_at_once(path, tiny_encoder):
    first = SAPRetriever(path, encoder=tiny_encoder)
    second = SAPRetriever(str(path), encoder=tiny_encoder, similarity_top_k=1)
    store = SAPPageStore(path, encoder=tiny_encoder)
    try:
        assert first.index.read_only and second.index.read_only and store.index.read_only
        ids = [h.node.node_id for h in first.retrieve(QUERY)]
        assert sorted(ids) == ["report:p1", "report:p2"]
        assert [h.node.node_id for h in second.retrieve(QUERY)] == ids[:1]
        via_index = VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model).as_retriever()
        assert [h.node.node_id for h in via_index.retrieve(QUERY)] == ids
    finally:
        first.close(), second.close(), store.close()
    with SAPIndex.open(path) as writer:  # every read-only open was released
        assert len(writer) == 2


def test_another_process_holding_the_index_read_only(path, tiny_encoder):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_READ_ONLY, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "2", holder.stderr.read()
        with SAPRetriever(path, encoder=tiny_encoder) as retriever:
            assert len(retriever.retrieve(QUERY)) == 2
        store = SAPPageStore(path, encoder=tiny_encoder)
        assert len(store.get_nodes()) == 2  # searching shares the index
        with pytest.raises(IndexLockedError, match=r"SAPPageStore.add needs the index at .* open for writing"):
            store.add([_page(5)])
        assert len(store.index) == 2 and store.index.read_only  # nothing written; still searchable
        assert len(
            VectorStoreIndex.from_vector_store(store, embed_model=store.embed_model).as_retriever().retrieve(QUERY)
        )
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    # the other process is gone: the first write opens the index for writing
    (page_id,) = store.add([_page(5)])
    assert not store.index.read_only and len(store.index) == 3
    assert [n.node_id for n in store.get_nodes(node_ids=[page_id])] == [page_id]
    store.delete("image-5")
    assert len(store.index) == 2
    store.close()


def test_a_read_only_store_refuses_to_write(path, tiny_encoder):
    with SAPPageStore(path, read_only=True, encoder=tiny_encoder) as store:
        with pytest.raises(IndexReadOnlyError, match="read_only=True"):
            store.add([_page(6)])
        with pytest.raises(IndexReadOnlyError):
            store.delete_nodes(["report:p1"])
        assert len(store.index) == 2
    with SAPIndex.open(path, encoder=tiny_encoder) as writer:  # an index object, writable, but the store is not
        with pytest.raises(IndexReadOnlyError, match="read_only=True"):
            SAPPageStore(writer, read_only=True).add([_page(6)])
        assert len(writer) == 2


def test_a_path_retriever_opens_for_writing_only_when_asked(path, tiny_encoder):
    with SAPRetriever(path, read_only=False, encoder=tiny_encoder) as writer_side:
        assert not writer_side.index.read_only
        with pytest.raises(IndexLockedError, match="open for writing"):
            SAPRetriever(path)  # a writer has it: readers wait
    # an indexer writes: it opens a path for writing, and a retriever over it shares its index
    with VisualDocumentIndexer(index=str(path)) as indexer:
        indexer.get_nodes_from_documents([_page(7)])
        assert len(indexer.as_retriever(similarity_top_k=5).retrieve(QUERY)) == 3


def test_keywords_are_checked_before_opening(path):
    with pytest.raises(SapRagError, match="did you mean 'similarity_top_k'") as info:
        SAPRetriever(path, top_k=3)
    assert not isinstance(info.value, TypeError)
    with pytest.raises(SapRagError, match="unexpected keyword argument 'colour'"):
        SAPRetriever(path, colour="red")
    with pytest.raises(SapRagError, match="did you mean 'similarity_top_k'"):
        SAPRetriever(SAPIndex.open(path, read_only=True), top_k=3)  # with an index object too
