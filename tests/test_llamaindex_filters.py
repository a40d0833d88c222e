"""Every LlamaIndex MetadataFilters operator, translated to the core's filter grammar and checked
against a brute-force filter over the documents' metadata."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilter, MetadataFilters
from llama_index.retrievers.sap_rag import SAPRetriever, UnsupportedFilterError, to_index_filter

from sap_rag import InvalidInputError
from sap_rag.index import SAPIndex

QUERY = "quarterly revenue"
META = [
    {"year": 2021, "team": "a", "title": "revenue by region", "reviewer": "kim", "tags": ["q1", "draft"], "w": 0.5},
    {"year": 2022, "team": "b", "title": "cost overview", "tags": ["q2"], "w": 1.25},
    {"year": 2023, "team": "c", "title": "revenue outlook", "reviewer": "lee", "tags": ["q1", "final"], "w": 0.5},
    {"year": 2024, "team": "a", "title": "staff costs", "tags": []},
    {"year": 2025, "team": "b", "title": "annual revenue report", "reviewer": "kim", "tags": ["q4", "draft"], "w": 2},
    {"year": 2026, "team": "c", "title": "capital plan", "tags": ["q3"]},
]
RANGE_05 = {"w": {"$gte": 0.5, "$lte": 0.5}}


def F(key, value, op="=="):
    return MetadataFilter(key=key, value=value, operator=FilterOperator(op))


def FS(*items, condition="and"):
    return MetadataFilters(filters=list(items), condition=FilterCondition(condition))


# (LlamaIndex filters, the core filter dict, the brute-force predicate on a document's metadata)
CASES = {
    "eq": (FS(F("team", "a")), {"team": {"$eq": "a"}}, lambda m: m["team"] == "a"),
    "ne": (FS(F("team", "a", "!=")), {"team": {"$ne": "a"}}, lambda m: m["team"] != "a"),
    "gt": (FS(F("year", 2023, ">")), {"year": {"$gt": 2023}}, lambda m: m["year"] > 2023),
    "gte": (FS(F("year", 2023, ">=")), {"year": {"$gte": 2023}}, lambda m: m["year"] >= 2023),
    "lt": (FS(F("year", 2023, "<")), {"year": {"$lt": 2023}}, lambda m: m["year"] < 2023),
    "lte": (FS(F("year", 2023, "<=")), {"year": {"$lte": 2023}}, lambda m: m["year"] <= 2023),
    "in": (FS(F("team", ["a", "c"], "in")), {"team": {"$in": ["a", "c"]}}, lambda m: m["team"] in ("a", "c")),
    "nin": (FS(F("team", ["a", "c"], "nin")), {"team": {"$nin": ["a", "c"]}}, lambda m: m["team"] not in ("a", "c")),
    "is_empty": (FS(F("reviewer", None, "is_empty")), {"reviewer": {"$exists": False}}, lambda m: "reviewer" not in m),
    "text_match": (
        FS(F("title", "revenue", "text_match")),
        {"title": {"$text": "revenue"}},
        lambda m: "revenue" in m["title"],
    ),
    "text_match_insensitive": (
        FS(F("title", "REVENUE", "text_match_insensitive")),
        {"title": {"$text": "REVENUE"}},
        lambda m: "revenue" in m["title"],
    ),
    "contains": (FS(F("tags", "q1", "contains")), {"tags": {"$eq": "q1"}}, lambda m: "q1" in m["tags"]),
    "any": (
        FS(F("tags", ["q1", "q4"], "any")),
        {"tags": {"$in": ["q1", "q4"]}},
        lambda m: bool({"q1", "q4"} & set(m["tags"])),
    ),
    "all": (
        FS(F("tags", ["q1", "draft"], "all")),
        {"$and": [{"tags": {"$eq": "q1"}}, {"tags": {"$eq": "draft"}}]},
        lambda m: {"q1", "draft"} <= set(m["tags"]),
    ),
    "and": (
        FS(F("team", "a"), F("year", 2022, ">")),
        {"$and": [{"team": {"$eq": "a"}}, {"year": {"$gt": 2022}}]},
        lambda m: m["team"] == "a" and m["year"] > 2022,
    ),
    "or-across-keys": (
        FS(F("team", "c"), F("year", 2022, "<="), condition="or"),
        {"$or": [{"team": {"$eq": "c"}}, {"year": {"$lte": 2022}}]},
        lambda m: m["team"] == "c" or m["year"] <= 2022,
    ),
    "nested": (
        FS(FS(F("team", "a"), F("team", "b"), condition="or"), F("year", 2023, ">=")),
        {"$and": [{"$or": [{"team": {"$eq": "a"}}, {"team": {"$eq": "b"}}]}, {"year": {"$gte": 2023}}]},
        lambda m: m["team"] in ("a", "b") and m["year"] >= 2023,
    ),
    "not": (
        FS(F("team", "c"), F("year", 2021), condition="not"),
        {"$not": {"$or": [{"team": {"$eq": "c"}}, {"year": {"$eq": 2021}}]}},
        lambda m: not (m["team"] == "c" or m["year"] == 2021),
    ),
    # floats: equality through a range, as llama-index's Qdrant store does (the core refuses float $eq)
    "eq-float": (FS(F("w", 0.5)), RANGE_05, lambda m: m.get("w") == 0.5),
    "in-float": (
        FS(F("w", [0.5, 2.0], "in")),
        {"$or": [RANGE_05, {"w": {"$gte": 2.0, "$lte": 2.0}}]},
        lambda m: m.get("w") in (0.5, 2),  # 2.0 matches the stored int 2, as in Python
    ),
    # NE / NIN leave out pages without the key (Qdrant's semantics; llama-index-core's keeps them)
    "ne-float": (
        FS(F("w", 0.5, "!=")),
        {"$and": [{"w": {"$exists": True}}, {"$not": RANGE_05}]},
        lambda m: "w" in m and m["w"] != 0.5,
    ),
    "nin-float": (
        FS(F("w", [0.5, 1.25], "nin")),
        {"$and": [{"w": {"$exists": True}}, {"$not": {"$or": [RANGE_05, {"w": {"$gte": 1.25, "$lte": 1.25}}]}}]},
        lambda m: "w" in m and m["w"] not in (0.5, 1.25),
    ),
    "ne-missing-key": (
        FS(F("reviewer", "kim", "!=")),
        {"reviewer": {"$ne": "kim"}},
        lambda m: m.get("reviewer") == "lee",
    ),
    "page-and-doc": (
        FS(F("doc_id", ["d1", "d4"], "in"), F("page_number", 1)),
        {"$and": [{"doc_id": {"$in": ["d1", "d4"]}}, {"page_number": {"$eq": 1}}]},
        lambda m: m["doc"] in ("d1", "d4"),
    ),
}


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_encoder, pages):
    idx = SAPIndex.create(tmp_path_factory.mktemp("li-filters") / "index", encoder=tiny_encoder, keep_ratio=0.1)
    for i, metadata in enumerate(META):
        idx.add_images([pages[i % len(pages)]], doc_id=f"d{i}", metadata=metadata)
    yield idx
    idx.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_translation(case):
    filters, expected, _ = CASES[case]
    assert to_index_filter(filters) == expected


@pytest.mark.parametrize("case", sorted(CASES))
def test_retriever_filters_match_brute_force_and_the_core(index, case):
    filters, expected, keep = CASES[case]
    wanted = {f"d{i}" for i, m in enumerate(META) if keep({**m, "doc": f"d{i}"})}
    assert 0 < len(wanted) < len(META)  # each case selects something, and not everything

    hits = SAPRetriever(index, similarity_top_k=10, filters=filters).retrieve(QUERY)
    assert {h.node.metadata["doc_id"] for h in hits} == wanted
    assert [h.node.node_id for h in hits] == [h.page_id for h in index.search(QUERY, k=10, filter=expected)]


def test_no_filter():
    assert to_index_filter(None) is None and to_index_filter(MetadataFilters(filters=[])) is None


def test_bad_filters_are_clear_errors(index):
    with pytest.raises(InvalidInputError, match="MetadataFilters"):
        SAPRetriever(index, filters={"team": "a"})
    with pytest.raises(UnsupportedFilterError, match="no filters") as info:
        SAPRetriever(index, filters=FS(F("team", "a"), FS()))
    assert isinstance(info.value, InvalidInputError)
    with pytest.raises(UnsupportedFilterError, match="ALL needs"):
        SAPRetriever(index, filters=FS(F("tags", [], "all")))
    with pytest.raises(InvalidInputError, match="nan"):  # the core's checks reach the user
        SAPRetriever(index, filters=FS(F("w", float("nan"))))


def test_float_equality_is_what_llama_index_core_means(index):
    """EQ on a float keeps exactly the pages whose value equals it (llama-index-core's
    SimpleVectorStore semantics, and Qdrant's LlamaIndex store); the core alone refuses it."""
    from llama_index.core.vector_stores.utils import build_metadata_filter_fn

    filters = FS(F("w", 0.5))
    core_keep = build_metadata_filter_fn(lambda doc: META[int(doc[1:])], filters)
    expected = {f"d{i}" for i in range(len(META)) if core_keep(f"d{i}")}
    hits = SAPRetriever(index, similarity_top_k=10, filters=filters).retrieve(QUERY)
    assert {h.node.metadata["doc_id"] for h in hits} == expected == {"d0", "d2"}
    with pytest.raises(InvalidInputError, match="float"):
        index.search(QUERY, k=10, filter={"w": {"$eq": 0.5}})
