"""SAPVectorStore: pages as records (ids, text, metadata), add/upsert/get/delete, search options, scores, images."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("langchain_core")

from _lc_fixtures import QUERY, write_image, write_pdf
from conftest import make_page
from langchain_core.documents import Document
from langchain_sap_rag import SAPPageLoader, SAPRetriever, SAPVectorStore

from sap_rag import InvalidInputError, SAPIndex
from sap_rag.index.results import relevance_score

PAGE_KEYS = {"page_id", "doc_id", "page_number", "score", "relevance", "image_path"}


@pytest.fixture
def store(tmp_path, tiny_encoder):
    with SAPVectorStore(SAPIndex.create(tmp_path / "index", encoder=tiny_encoder, keep_ratio=0.1)) as vs:
        yield vs


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    pdf = write_pdf(folder / "report.pdf", ["Revenue 2023 was 42", "Energy by sector", "Hospital survey"])
    png = write_image(folder / "chart.png", 5)
    return pdf, png


def _check_page(doc: Document) -> None:
    meta = doc.metadata
    assert PAGE_KEYS <= set(meta)
    assert doc.page_content.strip() and doc.id == meta["page_id"] == f"{meta['doc_id']}:p{meta['page_number']}"
    assert "image_base64" not in meta


def test_loader_pages_index_each_page_with_its_text(store, files):
    pdf, png = files
    docs = SAPPageLoader([pdf, png]).load()
    assert [d.metadata["page"] for d in docs] == [0, 1, 2, 0]
    ids = store.add_documents(docs)
    assert len(ids) == 4 and len(set(ids)) == 4
    got = {d.id: d for d in store.get_by_ids(ids)}
    assert set(got) == set(ids)
    for doc in got.values():
        _check_page(doc)
        assert doc.metadata["score"] is None and doc.metadata["relevance"] is None  # fetched, not searched
    texts = [got[i].page_content for i in ids]
    assert texts[:3] == ["Revenue 2023 was 42", "Energy by sector", "Hospital survey"]  # the PDF's text layer
    assert texts[3] == "page 1 of chart.png"
    assert [got[i].metadata["page_number"] for i in ids] == [1, 2, 3, 1]
    # The same pages again: nothing new (the file's content-hash id).
    assert store.add_documents(SAPPageLoader([pdf, png]).load()) == ids
    assert len(store.index) == 4


def test_search_returns_page_documents(store, files):
    store.add_paths(list(files))
    with_score = store.similarity_search_with_score(QUERY, k=4)
    assert len(with_score) == 4
    for doc, score in with_score:
        _check_page(doc)
        assert doc.metadata["score"] == pytest.approx(score)
    scores = [s for _, s in with_score]
    assert scores == sorted(scores, reverse=True)
    assert [d.id for d in store.similarity_search(QUERY, k=4)] == [d.id for d, _ in with_score]


def test_ids_round_trip_through_add_search_get_and_delete(store, files):
    """The id a Document is added with is the id it comes back with (as langchain-qdrant's); the page
    id stays in the metadata, and the page it names in its file is the page it cites."""
    pdf, png = files
    doc = Document(page_content="the second page", metadata={"source": str(pdf), "page": 1, "team": "a"})
    assert store.add_documents([doc], ids=["x"]) == ["x"]
    assert doc.id is None  # the caller's Document is not changed
    (page,) = store.get_by_ids(["x"])
    assert page.id == "x" and page.page_content == "the second page" and page.metadata["team"] == "a"
    assert page.metadata["page_id"] == "x:p2" and page.metadata["page_number"] == 2 and page.metadata["page"] == 1
    assert "langchain_id" not in page.metadata  # the adapter's own marker stays inside
    # The index itself stores the page as page 2 (the CLI and LlamaIndex see it so too).
    (core,) = store.index.get_pages(["x:p2"])
    assert core.page_number == 2 and store.index.get_pages(["x:p1"]) == [None]
    assert store.index.document("x").page_numbers == [2]
    (hit,) = store.similarity_search(QUERY, k=1)
    assert hit == page.model_copy(
        update={"metadata": {**page.metadata, **{k: hit.metadata[k] for k in ("score", "relevance")}}}
    )
    # Re-adding the id replaces the document (upsert), here with another page and no text of its own.
    other = Document(page_content="", metadata={"source": str(pdf), "page": 2}, id="x")
    assert store.add_documents([other]) == ["x"]
    (page,) = store.get_by_ids(["x"])
    assert (page.id, page.page_content, page.metadata["page_number"]) == ("x", "Hospital survey", 3)
    assert page.metadata["page_id"] == "x:p3" and store.index.get_pages(["x:p2"]) == [None]
    assert "team" not in page.metadata and len(store.index) == 1
    store.add_documents([Document(page_content="chart", metadata={"file_path": str(png)})], ids=["y"])
    assert {d.id for d in store.get_by_ids(["x", "y:p1", "missing", "nope:p3"])} == {"x", "y"}
    assert store.delete(["x", "unknown-id"]) is True  # by the id it was added with; unknown ids are skipped
    assert store.get_by_ids(["x"]) == [] and [d.id for d in store.similarity_search(QUERY, k=5)] == ["y"]
    store.delete(["y:p1"])  # by page id
    assert len(store.index) == 0


def test_given_page_text_is_stored_without_ids(store, files):
    """A Document's own page_content (an OCR text, a caption) is its page's text, with or without ids;
    the file's other pages keep their text layer, and chunks of one page are joined."""
    pdf, png = files
    docs = [
        Document(page_content="caption: a bar chart", metadata={"source": str(png)}),
        Document(page_content="OCR: revenue grew", metadata={"source": str(pdf), "page": 0}),
        Document(page_content="OCR: by sector", metadata={"source": str(pdf), "page": 1}),
        Document(page_content="and more", metadata={"source": str(pdf), "page": 1}),
    ]
    ids = store.add_documents(docs)
    # Each Document gets the id of the page it names (an image's only page), the id it comes back with.
    assert len(ids) == 4 and ids[2] == ids[3] and ids[0].endswith(":p1") and ids[2].endswith(":p2")
    texts = {d.id: d.page_content for d in store.get_by_ids(ids)}
    assert texts[ids[0]] == "caption: a bar chart" and texts[ids[1]] == "OCR: revenue grew"
    assert texts[ids[2]] == "OCR: by sector\n\nand more"
    doc_id = store.get_by_ids([ids[1]])[0].metadata["doc_id"]
    assert [d.page_content for d in store.get_by_ids([doc_id])][2] == "Hospital survey"  # its text layer
    assert store.add_documents(docs) == ids and len(store.index) == 4  # the same again: nothing changes
    store.add_documents([Document(page_content="a new caption", metadata={"source": str(png)})])
    assert [d.page_content for d in store.get_by_ids([ids[0]])] == ["a new caption"] and len(store.index) == 4
    # SAPPageLoader's own texts (text layer, labels) are what the file says: no rewrite, same ids.
    loaded = SAPPageLoader([pdf]).load()
    assert [d.id for d in loaded] == [d.metadata["page_id"] for d in loaded]
    assert store.add_documents(loaded) == [d.id for d in loaded] == [f"{doc_id}:p{n}" for n in (1, 2, 3)]


def test_delete_one_page_of_a_file(store, files):
    pdf, _ = files
    (doc_id,) = store.add_paths(pdf)
    store.delete([f"{doc_id}:p2"])
    assert [d.id for d in store.get_by_ids([doc_id])] == [f"{doc_id}:p1", f"{doc_id}:p3"]
    assert f"{doc_id}:p2" not in {d.id for d in store.similarity_search(QUERY, k=10)}


def test_bad_input_is_refused_before_writing(store, files):
    pdf, _ = files
    with pytest.raises(InvalidInputError, match="names no file"):
        store.add_documents([Document(page_content="just text")])
    with pytest.raises(InvalidInputError, match="3 page"):
        store.add_documents(
            [
                Document(page_content="ok", metadata={"source": str(pdf), "page": 0}),
                Document(page_content="", metadata={"source": str(pdf), "page": 7}),
            ],
            ids=["a", "b"],
        )
    with pytest.raises(InvalidInputError, match="one id per document"):
        store.add_documents([Document(page_content="", metadata={"source": str(pdf)})], ids=["a", "b"])
    with pytest.raises(InvalidInputError, match="never deletes all"):
        store.delete()
    assert len(store.index) == 0


def test_relevance_scores_are_normalised_and_monotone(store, files, tiny_encoder):
    store.add_paths(list(files))
    raw = store.similarity_search_with_score(QUERY, k=4)
    rel = store.similarity_search_with_relevance_scores(QUERY, k=4)
    assert [d.id for d, _ in raw] == [d.id for d, _ in rel]
    n_tokens = int(tiny_encoder.encode_queries([QUERY])[0].shape[0])
    for (doc, score), (_, relevance) in zip(raw, rel):
        assert 0.0 <= relevance <= 1.0
        assert relevance == pytest.approx(relevance_score(score, n_tokens), abs=1e-6)
        assert doc.metadata["relevance"] == pytest.approx(relevance, abs=1e-6)
    relevances = [r for _, r in rel]
    assert relevances == sorted(relevances, reverse=True)  # monotone in the raw score
    threshold = (relevances[1] + relevances[2]) / 2
    kept = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"k": 4, "score_threshold": threshold}
    ).invoke(QUERY)
    assert [d.id for d in kept] == [d.id for d, _ in rel[:2]]


def test_search_kwargs_are_honoured_and_unknown_ones_refused(store, files):
    pdf, png = files
    _, png_id = store.add_paths([pdf, png])
    assert len(store.as_retriever(search_kwargs={"k": 1}).invoke(QUERY)) == 1
    filtered = store.as_retriever(search_kwargs={"k": 4, "filter": {"doc_id": png_id}}).invoke(QUERY)
    assert [d.metadata["doc_id"] for d in filtered] == [png_id]
    staged = store.as_retriever(search_kwargs={"k": 2, "two_stage": True, "prefetch": 3, "coarse": 3})
    assert len(staged.invoke(QUERY)) == 2
    with pytest.raises(InvalidInputError, match="prefetch"):  # reaches the index, which checks it
        store.as_retriever(search_kwargs={"two_stage": True, "prefetch": 0}).invoke(QUERY)
    pdf_pages = store.as_retriever(search_kwargs={"k": 4, "filter": {"page_number": {"$gte": 2}}}).invoke(QUERY)
    assert sorted(d.metadata["page_number"] for d in pdf_pages) == [2, 3]  # the filter operators pass through
    either = {"$or": [{"doc_id": png_id}, {"page_number": 3}]}
    assert len(store.similarity_search(QUERY, k=4, filter=either)) == 2
    with pytest.raises(InvalidInputError, match=r"\$gte"):
        store.as_retriever(search_kwargs={"filter": {"page_number": {"$gte": "two"}}})  # refused up front
    with pytest.raises(InvalidInputError, match="top_k"):
        store.as_retriever(search_kwargs={"top_k": 1})
    with pytest.raises(InvalidInputError, match="fetch_k"):
        store.as_retriever().invoke(QUERY, fetch_k=3)
    with pytest.raises(InvalidInputError, match="score_threshold"):
        store.as_retriever(search_kwargs={"score_threshold": 0.5})  # would be ignored by a similarity search
    with pytest.raises(ValueError, match="mmr"):
        store.as_retriever(search_type="mmr")
    with pytest.raises(InvalidInputError, match="lambda_mult"):
        store.similarity_search(QUERY, lambda_mult=0.5)
    retriever = SAPRetriever(index=store.index, k=4, two_stage=True, prefetch=2, coarse=2)
    assert len(retriever.invoke(QUERY)) == 4 and len(retriever.invoke(QUERY, k=1, two_stage=False)) == 1
    with pytest.raises(InvalidInputError, match="top_k"):
        retriever.invoke(QUERY, top_k=1)


def test_image_queries(store, tmp_path, pages):
    for i, page in enumerate(pages):
        page.save(tmp_path / f"p{i}.png")
    store.add_paths([tmp_path / f"p{i}.png" for i in range(len(pages))])
    query = make_page(42)
    query.save(tmp_path / "query.png")
    expected = [(h.page_id, h.score) for h in store.index.search(query, k=3)]  # the core's image search
    found = store.similarity_search_with_score(query, k=3)
    assert [(d.id, s) for d, s in found] == expected
    by_path = store.similarity_search_by_image(str(tmp_path / "query.png"), k=3)
    assert [d.id for d in by_path] == [i for i, _ in expected]
    assert [d.id for d in store.similarity_search_by_image(tmp_path / "query.png", k=3)] == [i for i, _ in expected]
    assert all(0.0 <= d.metadata["relevance"] <= 1.0 for d in by_path)
    other = [(h.page_id, h.score) for h in store.index.search(pages[1], k=3)]
    assert other != expected  # a different image is a different query
    assert [d.id for d in SAPRetriever(index=store.index, k=3).invoke(pages[1])] == [i for i, _ in other]
    assert [d.id for d in asyncio.run(store.asimilarity_search_by_image(pages[1], k=3))] == [i for i, _ in other]
    with pytest.raises(InvalidInputError, match=r"missing\.png"):
        store.similarity_search_by_image(str(tmp_path / "missing.png"))


def test_async_variants_match_sync(store, files):
    pdf, png = files
    ids = asyncio.run(store.aadd_documents([Document(page_content="p", metadata={"source": str(png)})], ids=["a"]))
    assert ids == ["a"]
    store.add_paths(pdf)
    expected = [d.id for d in store.similarity_search(QUERY, k=3)]
    assert [d.id for d in asyncio.run(store.asimilarity_search(QUERY, k=3))] == expected
    scored = asyncio.run(store.asimilarity_search_with_relevance_scores(QUERY, k=3))
    assert [d.id for d, _ in scored] == expected and all(0 <= r <= 1 for _, r in scored)
    assert [d.id for d in asyncio.run(store.aget_by_ids(["a"]))] == ["a"]
    assert asyncio.run(store.as_retriever(search_kwargs={"k": 3}).ainvoke(QUERY))[0].id == expected[0]
    asyncio.run(store.adelete(["a"]))
    assert store.get_by_ids(["a"]) == []


def test_images_stay_out_of_metadata_unless_asked(store, files):
    store.add_paths(list(files))
    docs = store.similarity_search(QUERY, k=4)
    assert all("image_base64" not in d.metadata for d in docs)
    assert max(len(json.dumps(d.metadata)) for d in docs) < 2_000
    asked = store.similarity_search(QUERY, k=1, include_image=True)[0].metadata
    assert len(asked["image_base64"]) > 1_000 and asked["mime_type"] == "image/png"


def test_close_and_context_manager_release_the_index(tmp_path, tiny_encoder, files):
    path = tmp_path / "idx"
    store = SAPVectorStore.from_paths(files[1], path, encoder=tiny_encoder, keep_ratio=0.1)
    store.close()
    store.close()  # idempotent
    with SAPVectorStore(path) as reopened:  # a path opens the index; the lock is free again
        assert len(reopened.index) == 1
    with SAPRetriever(index=path, k=1) as retriever:
        assert len(retriever.invoke(QUERY)) == 1
    retriever = SAPRetriever(index=path)
    retriever.close()
    SAPIndex.open(path).close()


def test_from_documents_and_from_texts(tmp_path, tiny_encoder, files):
    pdf, png = files
    docs = SAPPageLoader([pdf, png]).load()
    with SAPVectorStore.from_documents(docs, index_path=tmp_path / "a", encoder=tiny_encoder, keep_ratio=0.1) as vs:
        assert len(vs.index) == 4
        assert sorted(d.page_content for d in vs.similarity_search(QUERY, k=4))[0] == "Energy by sector"
    with SAPVectorStore.from_texts(
        ["my caption"], metadatas=[{"source": str(png)}], ids=["c"], index_path=tmp_path / "b", encoder=tiny_encoder
    ) as vs:
        assert [(d.id, d.page_content) for d in vs.get_by_ids(["c"])] == [("c", "my caption")]
    with pytest.raises(InvalidInputError, match="embedding"):
        SAPVectorStore.from_texts(["x"], embedding=object(), index_path=tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_read_only_stores_share_an_index(tmp_path, tiny_encoder, files):
    from sap_rag import IndexReadOnlyError

    path = tmp_path / "idx"
    SAPVectorStore.from_paths(list(files), path, encoder=tiny_encoder, keep_ratio=0.1).close()
    with SAPVectorStore(path, read_only=True) as one, SAPRetriever(index=path, read_only=True, k=3) as two:
        assert [d.id for d in one.similarity_search(QUERY, k=3)] == [d.id for d in two.invoke(QUERY)]
        with pytest.raises(IndexReadOnlyError):
            one.add_paths(files[1])
        with pytest.raises(IndexReadOnlyError):
            one.delete([one.similarity_search(QUERY, k=1)[0].id])
    with pytest.raises(InvalidInputError, match="already open"):
        SAPVectorStore(one.index, read_only=True)


def test_changed_file_keeps_exactly_the_new_pages(store, files):
    """Re-indexing an edited PDF through each path leaves its new pages only."""
    pdf, _ = files
    old = SAPPageLoader(pdf).load()
    store.add_documents(old)  # without ids
    write_pdf(pdf, ["Revenue 2024 was 50", "Outlook"])
    new_ids = store.add_documents(SAPPageLoader(pdf).load())
    texts = sorted(d.page_content for d in store.similarity_search(QUERY, k=10))
    assert texts == ["Outlook", "Revenue 2024 was 50"] and len(new_ids) == 2
    write_pdf(pdf, ["Only page"])
    store.add_paths(pdf)  # through the path
    assert [d.page_content for d in store.similarity_search(QUERY, k=10)] == ["Only page"]
    retriever = SAPRetriever(index=store.index, k=10)
    write_pdf(pdf, ["Third version", "again"])
    retriever.add_paths(pdf)  # through the retriever
    assert sorted(d.page_content for d in retriever.invoke(QUERY)) == ["Third version", "again"]
