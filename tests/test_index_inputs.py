"""Boundary inputs through the Python API: each refused with a one-line sap_rag error, the index unchanged.

Covers metadata keys that could not be filtered on (refused at add time, not at search time),
integers outside 64 bits, absurd result counts, lone surrogates, metadata nested thousands deep,
and queries given as bytes.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from _index_utils import hit_keys, random_page, tree_listing, unit_rows

from sap_rag.errors import InvalidInputError
from sap_rag.index import SAPIndex
from sap_rag.index.checks import MAX_SEARCH_DEPTH, check_doc_id, check_queries, positive_int
from sap_rag.index.filters import MAX_METADATA_DEPTH, validate_metadata

qdrant_client = pytest.importorskip("qdrant_client")

DIM = 8
BACKENDS = ["edge", "qdrant-local"]


def _create(kind: str, path) -> SAPIndex:
    if kind == "edge":
        return SAPIndex.create(path, dim=DIM)
    return SAPIndex.create(path, dim=DIM, client=qdrant_client.QdrantClient(":memory:"))


@pytest.fixture(params=BACKENDS)
def index(request, tmp_path):
    idx = _create(request.param, tmp_path / "index")
    rng = np.random.default_rng(3)
    for d in range(4):
        idx.add_pages([random_page(rng, DIM, k=3) for _ in range(2)], f"doc-{d}", metadata={"year": 2020 + d})
    yield idx
    idx.close()


def _snapshot(index: SAPIndex):
    """What a failed call must leave unchanged: documents, pages, vectors, results, files."""
    query = unit_rows(np.random.default_rng(99), 3, DIM)
    hits = index.search(query, k=50)
    return (
        index.documents(),
        len(index),
        index.stats().vectors,
        index.backend.count(),
        [(h.doc_id, h.page_number, round(h.score, 5), h.metadata) for h in hits],
        tree_listing(index.path),
    )


def _page() -> list:
    return [random_page(np.random.default_rng(0), DIM, k=2)]


def _deep(depth: int, container: str = "dict"):
    value: object = 1
    for _ in range(depth):
        value = {"k": value} if container == "dict" else [value]
    return value


# --- metadata keys: refused at add time when a filter could not name them --------------------------


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"$where": 1}, r"metadata key '\$where' may not start with '\$' .*rename it, e.g. 'where'"),
        ({"a.b": 1}, r"metadata key 'a.b' may not contain '.'.*rename it, e.g. 'a_b'"),
        ({'say "hi"': 1}, "may not contain"),
        ({"back\\slash": 1}, "may not contain"),
        ({"a[0]": 1}, "may not contain"),
        ({"": 1}, "non-empty strings"),
        ({"x": {"$where": 1}}, r"metadata\['x'\] key '\$where' may not start with '\$'"),
        ({"x": [{"ok": 1}, {"a.b": 2}]}, r"metadata\['x'\]\[1\] key 'a.b' may not contain"),
        ({"x": {1: "one"}}, r"metadata\['x'\] keys must be non-empty strings, got 1"),
    ],
)
def test_unfilterable_metadata_keys_are_refused_at_add(index, metadata, message):
    before = _snapshot(index)
    with pytest.raises(InvalidInputError, match=message) as info:
        index.add_pages(_page(), "new", metadata=metadata)
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidInputError, match=message):
        index.add_pages(_page(), "doc-1", metadata=metadata)  # a replace is refused too: doc-1 stays
    assert _snapshot(index) == before


def test_keys_with_spaces_and_punctuation_can_be_filtered(index):
    """Keys Qdrant cannot take bare (issue 12's 'my key') are quoted in the payload path."""
    keys = ["my key", "dc:title", "naïve", "Größe", "a/b", "1st", "@id", "tab\tkey", "x-y_z"]
    for i, key in enumerate(keys):
        index.add_pages(_page(), f"k{i}", metadata={key: i, "nested": {key: "v"}})
    query = unit_rows(np.random.default_rng(1), 2, DIM)
    for i, key in enumerate(keys):
        assert [h.doc_id for h in index.search(query, k=50, filter={key: i})] == [f"k{i}"]
        assert {h.doc_id for h in index.search(query, k=50, filter={key: {"$exists": True}})} == {f"k{i}"}
        (hit,) = index.search(query, k=5, filter={key: {"$gte": i}, "nested": {"$exists": True}, "$not": {key: 99}})
        assert hit.metadata["nested"] == {key: "v"}


def test_metadata_named_like_a_page_field_is_kept_but_the_filter_means_the_page(index):
    index.add_pages(_page(), "mine", metadata={"doc_id": "other", "page_number": 7})
    query = unit_rows(np.random.default_rng(1), 2, DIM)
    assert index.search(query, k=50, filter={"doc_id": "other"}) == []
    hits = index.search(query, k=50, filter={"doc_id": "mine"})
    assert [h.metadata["doc_id"] for h in hits] == ["other"]


# --- integers beyond 64 bits, absurd counts -------------------------------------------------------


def test_filter_integers_outside_int64_are_refused(index):
    before = _snapshot(index)
    query = unit_rows(np.random.default_rng(2), 2, DIM)
    for flt in ({"year": 2**70}, {"year": {"$in": [2020, 2**64]}}, {"year": {"$ne": -(2**63) - 1}}):
        with pytest.raises(InvalidInputError, match="outside the 64-bit integer range") as info:
            index.search(query, filter=flt)
        assert "\n" not in str(info.value)
    with pytest.raises(InvalidInputError, match=r"2\*\*53"):
        index.search(query, filter={"year": {"$gt": 2**60}})
    # the edges of the range are accepted and matched exactly
    assert index.search(query, filter={"year": 2**63 - 1}) == []
    assert index.search(query, filter={"year": -(2**63)}) == []
    assert _snapshot(index) == before


def test_metadata_integers_outside_int64_are_refused_and_int64_round_trips(index):
    before = _snapshot(index)
    for value in (2**64, 2**70, -(2**63) - 1, [1, 2**63]):
        with pytest.raises(InvalidInputError, match=r"64-bit integer range.*store .* as strings"):
            index.add_pages(_page(), "big", metadata={"n": value})
    assert _snapshot(index) == before
    index.add_pages(_page(), "big", metadata={"n": 2**63 - 1, "m": -(2**63)})
    query = unit_rows(np.random.default_rng(2), 2, DIM)
    hits = index.search(query, k=50, filter={"n": 2**63 - 1, "m": -(2**63)})
    assert [h.doc_id for h in hits] == ["big"] and hits[0].metadata == {"n": 2**63 - 1, "m": -(2**63)}


@pytest.mark.parametrize("name", ["k", "prefetch", "coarse"])
def test_result_counts_are_bounded(index, name):
    before = _snapshot(index)
    query = unit_rows(np.random.default_rng(2), 2, DIM)
    for value in (2**64, MAX_SEARCH_DEPTH + 1):
        kwargs = {"k": 3, "two_stage": True, name: value}
        with pytest.raises(InvalidInputError, match=f"{name} must be at most {MAX_SEARCH_DEPTH}, got {value}"):
            index.search(query, **kwargs)
    # the bound itself is a valid value
    hits = index.search(query, **{"k": 3, "two_stage": True, name: MAX_SEARCH_DEPTH})
    assert len(hits) == (len(index) if name == "k" else 3)
    assert _snapshot(index) == before


def test_positive_int_bounds():
    assert positive_int(MAX_SEARCH_DEPTH, "k") == MAX_SEARCH_DEPTH
    assert positive_int(np.int64(5), "coarse") == 5
    assert positive_int(2**63 - 1, "dim") == 2**63 - 1  # other counts: only the int64 limit
    with pytest.raises(InvalidInputError, match="dim must be at most"):
        positive_int(2**63, "dim")
    with pytest.raises(InvalidInputError, match="batch must be at most 10"):
        positive_int(11, "batch", maximum=10)


# --- text that is not valid Unicode, metadata nested thousands deep ---------------------------------


def test_doc_id_with_a_lone_surrogate_is_refused(index):
    before = _snapshot(index)
    with pytest.raises(InvalidInputError, match=r"doc_id 'x\\ud800y' holds a lone surrogate '\\ud800' at position 1"):
        index.add_pages(_page(), "x\ud800y")
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        index.delete("x\udcff")
    assert _snapshot(index) == before
    assert check_doc_id("ok \u00e9\U0001f600") == "ok \u00e9\U0001f600"


@pytest.mark.parametrize(
    "metadata",
    [{"s": "x\ud800"}, {"s\udcff": 1}, {"a": {"b": ["ok", "\udc80"]}}, {"a": {"k\ud800": 1}}],
    ids=["value", "key", "nested-value", "nested-key"],
)
def test_metadata_with_a_lone_surrogate_is_refused(index, metadata):
    before = _snapshot(index)
    with pytest.raises(InvalidInputError, match="lone surrogate") as info:
        index.add_pages(_page(), "new", metadata=metadata)
    assert "\n" not in str(info.value)
    assert _snapshot(index) == before


@pytest.mark.parametrize("container", ["dict", "list"])
def test_metadata_nested_thousands_deep_is_refused(index, container):
    before = _snapshot(index)
    with pytest.raises(InvalidInputError, match=f"nested more than {MAX_METADATA_DEPTH} levels deep") as info:
        index.add_pages(_page(), "deep", metadata={"d": _deep(5000, container)})
    assert len(str(info.value)) < 400
    with pytest.raises(InvalidInputError, match="nested more than"):
        index.add_pages(_page(), "deep", metadata={"d": _deep(MAX_METADATA_DEPTH, container)})
    assert _snapshot(index) == before


def test_metadata_at_the_depth_limit_is_stored_and_searchable(index):
    """The limit keeps payloads well inside the engine's JSON nesting limit (a deeper payload written
    to Qdrant Edge makes every later filtered read panic)."""
    deep = _deep(MAX_METADATA_DEPTH - 1)
    index.add_pages(_page(), "deep", metadata={"d": deep, "year": 1999})
    query = unit_rows(np.random.default_rng(2), 2, DIM)
    hits = index.search(query, k=50, filter={"d": {"$exists": True}})
    assert [h.doc_id for h in hits] == ["deep"] and hits[0].metadata["d"] == deep
    assert [h.doc_id for h in index.search(query, k=50, filter={"year": {"$lt": 2000}})] == ["deep"]


def test_validate_metadata_returns_a_plain_json_copy():
    source = {"t": (1, 2), "n": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "d": {"x": None}}
    out = validate_metadata(source)
    assert out == {"t": [1, 2], "n": 3, "f": 0.5, "b": True, "d": {"x": None}}
    assert type(out["n"]) is int and type(out["b"]) is bool and out["d"] is not source["d"]
    assert validate_metadata(None) == {}
    with pytest.raises(InvalidInputError, match=r"metadata\['f'\] is nan"):
        validate_metadata({"f": float("nan")})
    with pytest.raises(InvalidInputError, match=r"JSON data .*metadata\['o'\]\[0\] is a object"):
        validate_metadata({"o": [object()]})


# --- queries given as bytes -------------------------------------------------------------------------


def test_check_queries_decodes_utf8_bytes_and_refuses_the_rest():
    array = np.zeros((2, DIM), dtype=np.float32)
    out = check_queries([b"caf\xc3\xa9", bytearray(b"abc"), "text", array])
    assert out[:3] == ["café", "abc", "text"] and out[3] is array
    with pytest.raises(
        InvalidInputError, match=r"query #1 is bytes that are not UTF-8 text \(byte 0xff at position 0\).*PIL image"
    ):
        check_queries(["ok", b"\xff\xfe"])
    with pytest.raises(InvalidInputError, match=r"query #0 'a\\ud800' holds a lone surrogate"):
        check_queries(["a\ud800"])


def test_a_query_of_non_utf8_bytes_is_refused(index):
    before = _snapshot(index)
    for query in (b"\xff\xfe", b"\x89PNG\r\n\x1a\n"):
        with pytest.raises(InvalidInputError, match="bytes"):
            index.search(query)
    assert _snapshot(index) == before


_WIRED = "check_queries" in inspect.getsource(SAPIndex.search_batch)


@pytest.mark.skipif(not _WIRED, reason="needs the check_queries call site in SAPIndex.search_batch (branch core)")
def test_search_uses_check_queries(index):
    before = _snapshot(index)
    with pytest.raises(InvalidInputError, match="not UTF-8 text"):
        index.search(b"\xff\xfe")
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        index.search("revenue \ud800")
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        index.search_batch([unit_rows(np.random.default_rng(0), 2, DIM), "x\udcff"])
    assert _snapshot(index) == before


def test_a_refused_call_leaves_hits_identical(index):
    """One more end-to-end check: after every refusal above, searches still agree with a fresh read."""
    query = unit_rows(np.random.default_rng(5), 2, DIM)
    first = hit_keys(index.search(query, k=8))
    for bad in ({"$where": 1}, {"d": _deep(3000)}, {"s": "\ud800"}, {"n": 2**64}):
        with pytest.raises(InvalidInputError):
            index.add_pages(_page(), "doc-0", metadata=bad)
    assert hit_keys(index.search(query, k=8)) == first
    assert index.document("doc-0").metadata == {"year": 2020}
