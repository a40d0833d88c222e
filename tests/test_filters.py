"""Search filters: every operator and nesting, on Qdrant Edge and on qdrant-client (local mode),
against a plain Python evaluation of the documented semantics over random metadata."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _index_utils import brute_force, hit_keys, random_page, unit_rows

from sap_rag.errors import InvalidInputError
from sap_rag.index import SAPIndex, parse_filter
from sap_rag.index.filters import AllOf, AnyOf, FieldExcept, FieldMatch, FieldRange, NotOf, payload_path
from sap_rag.index.index import pruned_page

qdrant_client = pytest.importorskip("qdrant_client")

DIM = 16
BACKENDS = ["edge", "qdrant-local"]
WORDS = ["annual", "report", "budget", "Revenue", "north", "south", "draft", "final", "q3", "2024"]
TAGS = ["a", "b", "c", "d"]


# --- the corpus: random pages with random metadata ------------------------------------------------


def _random_metadata(rng: np.random.Generator, i: int) -> dict:
    """Metadata of many shapes: present/missing/null keys, lists, mixed types, text, odd keys."""
    md: dict = {}

    def maybe(p: float = 0.8) -> bool:
        return rng.random() < p

    if maybe():
        md["year"] = int(rng.integers(2018, 2026)) if maybe(0.9) else None
    if maybe():
        md["lang"] = str(rng.choice(["en", "de", "fr"]))
    if maybe(0.7):
        md["tags"] = [str(t) for t in rng.choice(TAGS, size=int(rng.integers(0, 4)), replace=False)]
    if maybe(0.6):
        md["nums"] = [int(x) for x in rng.integers(-5, 6, size=int(rng.integers(1, 4)))]
    if maybe():
        # bools and the ints 0/1 side by side: True must not match 1
        md["flag"] = bool(rng.random() < 0.5) if maybe(0.7) else int(rng.integers(0, 2))
    if maybe():
        md["score"] = float(np.round(rng.uniform(-2, 2), 3)) if maybe(0.6) else int(rng.integers(-2, 3))
    if maybe():
        words = rng.choice(WORDS, size=int(rng.integers(1, 5)))
        md["title"] = str(rng.choice([" ", ", ", ": ", "-"])).join(str(w) for w in words)
    if maybe(0.6):
        md["mixed"] = int(rng.integers(0, 3)) if maybe(0.5) else str(rng.integers(0, 3))
    if maybe(0.5):
        md["my key"] = int(rng.integers(0, 3))  # a key Qdrant needs quoted
    if maybe(0.3):
        md["nested"] = {"x": int(rng.integers(0, 3))}
    md["serial"] = i
    return md


class Page:
    def __init__(self, doc_id: str, page_number: int, metadata: dict) -> None:
        self.doc_id, self.page_number, self.metadata = doc_id, page_number, metadata


def _corpus(seed: int = 5, docs: int = 36):
    rng = np.random.default_rng(seed)
    out = {}
    for d in range(docs):
        pages = [random_page(rng, DIM, k=int(rng.integers(2, 6))) for _ in range(int(rng.integers(1, 3)))]
        out[f"doc-{d}"] = (pages, _random_metadata(rng, d))
    return out


CORPUS = _corpus()
PAGES = [Page(doc, n, md) for doc, (pages, md) in CORPUS.items() for n in range(1, len(pages) + 1)]


def _make(kind: str, path):
    if kind == "edge":
        index = SAPIndex.create(path, dim=DIM, storage="float32")
    else:
        index = SAPIndex.create(path, dim=DIM, storage="float32", client=qdrant_client.QdrantClient(":memory:"))
    for doc_id, (pages, metadata) in CORPUS.items():
        index.add_pages(pages, doc_id, metadata=metadata)
    return index


@pytest.fixture(scope="module", params=BACKENDS)
def index(request, tmp_path_factory):
    idx = _make(request.param, tmp_path_factory.mktemp(request.param) / "index")
    yield idx
    idx.close()


# --- the reference: the documented semantics, evaluated in plain Python ---------------------------

_MISSING = object()


def _values(page: Page, key: str) -> list:
    """The values a condition sees: a list's elements, nothing for missing/null/[]."""
    if key == "doc_id":
        raw = page.doc_id
    elif key == "page_number":
        raw = page.page_number
    else:
        raw = page.metadata.get(key, _MISSING)
    if raw is _MISSING or raw is None:
        return []
    return list(raw) if isinstance(raw, list) else [raw]


def _same(x, v) -> bool:
    """Strict equality: a bool only equals a bool, an int only an int (not a float or a bool)."""
    if isinstance(v, bool) or isinstance(x, bool):
        return isinstance(v, bool) and isinstance(x, bool) and x == v
    if isinstance(v, int):
        return isinstance(x, int) and x == v
    return isinstance(x, str) and x == v


def _words(s: str) -> set[str]:
    return set(re.findall(r"[^\W_]+", s.lower()))


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _compare(op: str, x, bound) -> bool:
    return {"$gt": x > bound, "$gte": x >= bound, "$lt": x < bound, "$lte": x <= bound}[op]


def _field(page: Page, key: str, spec) -> bool:
    vals = _values(page, key)
    if not isinstance(spec, dict):
        spec = {"$in": list(spec)} if isinstance(spec, (list, tuple)) else {"$eq": spec}
    ok = True
    for op, v in spec.items():
        if op == "$eq":
            ok &= any(_same(x, v) for x in vals)
        elif op == "$in":
            ok &= any(_same(x, w) for x in vals for w in v)
        elif op == "$ne":
            ok &= bool(vals) and not any(_same(x, v) for x in vals)
        elif op == "$nin":
            ok &= bool(vals) and not any(_same(x, w) for x in vals for w in v)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok &= any(_number(x) and _compare(op, x, v) for x in vals)
        elif op == "$exists":
            ok &= bool(vals) == v
        elif op == "$text":
            ok &= any(isinstance(x, str) and _words(v) <= _words(x) for x in vals)
        else:
            raise AssertionError(op)
    return ok


def matches(page: Page, flt: dict) -> bool:
    for key, spec in flt.items():
        if key == "$and":
            ok = all(matches(page, f) for f in spec)
        elif key == "$or":
            ok = any(matches(page, f) for f in spec)
        elif key == "$not":
            ok = not matches(page, spec)
        else:
            ok = _field(page, key, spec)
        if not ok:
            return False
    return True


def expected(flt: dict) -> set[tuple[str, int]]:
    return {(p.doc_id, p.page_number) for p in PAGES if matches(p, flt)}


# --- filters: one per operator and value type, then random nestings -------------------------------

HANDWRITTEN = [
    {"year": 2024},
    {"year": {"$eq": 2024}},
    {"year": [2019, 2024]},
    {"year": {"$in": [2019, 2024]}},
    {"year": {"$ne": 2024}},
    {"year": {"$nin": [2019, 2024]}},
    {"year": {"$gt": 2021}},
    {"year": {"$gte": 2021, "$lt": 2024}},
    {"year": {"$lte": 2020}},
    {"year": {"$exists": False}},
    {"year": {"$exists": True}},
    {"lang": "de"},
    {"lang": {"$ne": "de"}},
    {"lang": {"$nin": ["de", "fr"]}},
    {"lang": ["en", "fr"]},
    {"tags": "a"},
    {"tags": {"$in": ["a", "b"]}},
    {"tags": {"$ne": "a"}},
    {"tags": {"$nin": ["a", "b"]}},
    {"tags": {"$exists": False}},
    {"nums": {"$gt": 3}},
    {"nums": {"$lt": -3}},
    {"nums": 0},
    {"nums": {"$ne": 0}},
    {"flag": True},
    {"flag": False},
    {"flag": {"$eq": True}},
    {"flag": {"$ne": True}},
    {"flag": 1},
    {"flag": {"$gte": 1}},
    {"score": {"$gt": 0.5}},
    {"score": {"$gte": -1, "$lte": 1.25}},
    {"score": 1},
    {"score": {"$ne": 1}},
    {"title": {"$text": "annual"}},
    {"title": {"$text": "Annual REPORT"}},
    {"title": {"$text": "revenue 2024"}},
    {"title": {"$text": "q3"}},
    {"title": {"$text": "port"}},
    {"title": {"$exists": False}},
    {"mixed": 1},
    {"mixed": "1"},
    {"mixed": {"$in": ["0", "2"]}},
    {"mixed": {"$ne": 1}},
    {"my key": 1},
    {"my key": {"$gte": 1}},
    {"my key": {"$exists": False}},
    {"nested": {"$exists": True}},
    {"nested": {"$ne": 1}},
    {"doc_id": "doc-3"},
    {"doc_id": {"$ne": "doc-3"}},
    {"doc_id": {"$nin": ["doc-1", "doc-2"]}},
    {"doc_id": {"$text": "doc"}},
    {"page_number": 2},
    {"page_number": {"$gt": 1}},
    {"page_number": {"$in": [1, 2]}},
    {"serial": {"$gte": 10, "$lt": 20}, "lang": "en"},
    {"$and": [{"year": {"$gte": 2020}}, {"lang": {"$ne": "en"}}]},
    {"$or": [{"tags": "a"}, {"flag": True}]},
    {"$not": {"lang": "en"}},
    {"$not": {"year": {"$exists": False}}},
    {"$or": [{"$and": [{"year": 2024}, {"$not": {"tags": "b"}}]}, {"title": {"$text": "budget"}}]},
    {"$not": {"$or": [{"lang": "de"}, {"score": {"$lt": 0}}]}},
    {"$and": [{"$or": [{"lang": "de"}, {"lang": "fr"}]}, {"$or": [{"flag": False}, {"nums": {"$gt": 0}}]}]},
    {"year": {"$gte": 2100}},  # matches nothing
]


def _random_leaf(rng: np.random.Generator) -> dict:
    key = str(rng.choice(["year", "lang", "tags", "nums", "flag", "score", "title", "mixed", "my key", "serial"]))
    op = str(rng.choice(["$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists", "$text", "old"]))
    sample = {
        "year": lambda: int(rng.integers(2018, 2026)),
        "lang": lambda: str(rng.choice(["en", "de", "fr", "it"])),
        "tags": lambda: str(rng.choice(TAGS)),
        "nums": lambda: int(rng.integers(-5, 6)),
        "flag": lambda: bool(rng.random() < 0.5),
        "score": lambda: int(rng.integers(-2, 3)),
        "title": lambda: str(rng.choice(WORDS)),
        "mixed": lambda: int(rng.integers(0, 3)) if rng.random() < 0.5 else str(rng.integers(0, 3)),
        "my key": lambda: int(rng.integers(0, 3)),
        "serial": lambda: int(rng.integers(0, 40)),
    }[key]
    if op == "$exists":
        return {key: {"$exists": bool(rng.random() < 0.5)}}
    if op == "$text":
        return {key: {"$text": " ".join(str(w) for w in rng.choice(WORDS, size=int(rng.integers(1, 3))))}}
    if op in ("$gt", "$gte", "$lt", "$lte"):
        bound = sample()
        if isinstance(bound, (bool, str)):
            bound = float(np.round(rng.uniform(-3, 3), 2))
        return {key: {op: bound}}
    value = sample()
    if op in ("$in", "$nin", "old"):
        values = [value, sample()]
        if len({type(v) for v in values}) > 1 or isinstance(value, bool):
            values = [value]  # lists take only strings or only integers
            if isinstance(value, bool):
                return {key: {"$eq" if op != "$nin" else "$ne": value}}
        return {key: values} if op == "old" else {key: {op: values}}
    return {key: {op: value}}


def _random_filter(rng: np.random.Generator, depth: int = 0) -> dict:
    r = rng.random()
    if depth >= 3 or r < 0.4:
        return _random_leaf(rng)
    if r < 0.6:
        return {"$and": [_random_filter(rng, depth + 1) for _ in range(int(rng.integers(1, 4)))]}
    if r < 0.85:
        return {"$or": [_random_filter(rng, depth + 1) for _ in range(int(rng.integers(1, 4)))]}
    return {"$not": _random_filter(rng, depth + 1)}


RANDOM = [_random_filter(np.random.default_rng(100 + i)) for i in range(60)]


def _search_all(index: SAPIndex, flt: dict, seed: int = 0) -> set[tuple[str, int]]:
    query = unit_rows(np.random.default_rng(seed), 3, DIM)
    hits = index.search(query, k=len(PAGES) + 5, filter=flt)
    keys = hit_keys(hits)
    assert len(keys) == len(set(keys))
    return set(keys)


def test_the_corpus_exercises_every_operator():
    """The reference is not vacuous: each handwritten filter's result differs between the pages."""
    trivial = [f for f in HANDWRITTEN if not 0 < len(expected(f)) < len(PAGES)]
    assert trivial == [
        {"title": {"$text": "port"}},  # whole words only: 'port' is not in 'report'
        {"doc_id": {"$text": "doc"}},  # 'doc-3' is the words 'doc' and '3'
        {"page_number": {"$in": [1, 2]}},
        {"year": {"$gte": 2100}},
    ]
    # True is not 1, "1" is not 1, $ne leaves out pages without the key, $not keeps them
    assert expected({"flag": True}) != expected({"flag": 1})
    assert expected({"mixed": 1}).isdisjoint(expected({"mixed": "1"}))
    no_lang = expected({"lang": {"$exists": False}})
    assert no_lang and no_lang.isdisjoint(expected({"lang": {"$ne": "en"}}))
    assert no_lang <= expected({"$not": {"lang": "en"}})


@pytest.mark.parametrize("flt", HANDWRITTEN, ids=[str(f) for f in HANDWRITTEN])
def test_each_operator_matches_the_reference(index, flt):
    assert _search_all(index, flt) == expected(flt)


@pytest.mark.parametrize("i", range(len(RANDOM)))
def test_random_nested_filters_match_the_reference(index, i):
    flt = RANDOM[i]
    assert _search_all(index, flt, seed=i) == expected(flt), flt


def test_filtered_results_are_the_brute_force_top_k(index):
    """A filter restricts the candidates of every search stage; order and scores stay exact."""
    flt = {"$or": [{"tags": {"$in": ["a", "b"]}}, {"year": {"$lt": 2021}}]}
    keep = expected(flt)
    corpus = {doc: pages for doc, (pages, _) in CORPUS.items()}
    rng = np.random.default_rng(7)
    for _ in range(3):
        query = unit_rows(rng, 4, DIM)
        reference = brute_force(query, corpus, "float32", keep=lambda d, p: (d, p) in keep)
        hits = index.search(query, k=5, filter=flt)
        assert hit_keys(hits) == [(d, p) for d, p, _ in reference[:5]]
        assert all(abs(h.score - s) < 1e-4 for h, (_, _, s) in zip(hits, reference))
        staged = index.search(query, k=3, filter=flt, two_stage=True, prefetch=len(PAGES), coarse=len(PAGES))
        assert hit_keys(staged) == [(d, p) for d, p, _ in reference[:3]]


def test_count_uses_the_same_filter(index):
    for flt in HANDWRITTEN[:20]:
        assert index.backend.count(parse_filter(flt)) == len(expected(flt))


# --- the old forms and the parsed conditions -------------------------------------------------------


def test_old_forms_parse_as_before():
    assert parse_filter(None) == () == parse_filter({})
    assert parse_filter({"doc_id": "a", "page_number": 3, "year": [2023, 2024], "flag": True}) == (
        FieldMatch("doc_id", ("a",)),
        FieldMatch("page_number", (3,)),
        FieldMatch("metadata.year", (2023, 2024)),
        FieldMatch("metadata.flag", (True,)),
    )
    # an operator form is the same condition as the old form it spells out
    assert parse_filter({"year": {"$eq": 2024}}) == parse_filter({"year": 2024})
    assert parse_filter({"year": {"$in": [1, 2]}}) == parse_filter({"year": [1, 2]})
    assert parse_filter({"year": {"$nin": [1, 2]}}) == (FieldExcept("metadata.year", (1, 2)),)
    assert parse_filter({"a": {"$gt": 1, "$lte": 2.5}}) == (FieldRange("metadata.a", gt=1, lte=2.5),)
    assert parse_filter({"$or": [{"a": 1}, {"b": 2, "c": 3}]}) == (
        AnyOf(
            (FieldMatch("metadata.a", (1,)), AllOf((FieldMatch("metadata.b", (2,)), FieldMatch("metadata.c", (3,)))))
        ),
    )
    assert parse_filter({"$not": {"a": 1}}) == (NotOf(FieldMatch("metadata.a", (1,))),)
    assert parse_filter({"$and": [{"a": 1}, {"b": 2}]}) == parse_filter({"a": 1, "b": 2})


def test_numpy_values_are_plain_values():
    assert parse_filter({"a": np.int64(3), "b": {"$gt": np.float32(0.5)}, "c": np.bool_(True)}) == (
        FieldMatch("metadata.a", (3,)),
        FieldRange("metadata.b", gt=0.5),
        FieldMatch("metadata.c", (True,)),
    )


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("doc_id", "doc_id"),
        ("year", "metadata.year"),
        ("a-b_9", "metadata.a-b_9"),
        ("my key", 'metadata."my key"'),
        ("dc:title", 'metadata."dc:title"'),
        ("naïve", 'metadata."naïve"'),
    ],
)
def test_payload_paths_quote_what_qdrant_needs_quoted(key, path):
    assert payload_path(key) == path


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"$where": 1}, r"unknown operator '\$where'.*\$and, \$or or \$not"),
        ({"year": {"$like": "x"}}, r"unknown operator '\$like'; field operators are \$eq"),
        ({"year": {"gt": 1}}, "'gt' is not an operator"),
        ({"year": {}}, "empty dict"),
        ({"$or": []}, r"filter\['\$or'\] must be a non-empty list"),
        ({"$or": [{}]}, "empty filter, which matches every page"),
        ({"$and": {"a": 1}}, "non-empty list of filter dicts"),
        ({"$not": [{"a": 1}]}, r"filter\['\$not'\] must be a filter dict"),
        ({"year": {"$gt": "2020"}}, "ranges compare numbers only"),
        ({"year": {"$gt": True}}, "ranges compare numbers only"),
        ({"year": {"$gt": float("nan")}}, "finite"),
        ({"year": {"$lt": float("inf")}}, "finite"),
        ({"year": {"$gt": 2**60}}, r"2\*\*53"),
        ({"year": 2**70}, r"filter\['year'\]: 1180591620717411303424 is outside the 64-bit integer range"),
        ({"year": {"$eq": -(2**63) - 1}}, "64-bit"),
        ({"year": {"$nin": [1, 2**64]}}, r"filter\['year'\]\['\$nin'\]: 18446744073709551616 is outside"),
        ({"year": {"$in": 2024}}, "must be a list"),
        ({"year": {"$in": []}}, "empty list"),
        ({"year": {"$in": [1, "1"]}}, "only strings or only integers"),
        ({"year": {"$eq": 2024.0}}, r"floats cannot be matched exactly: use \{'\$gte'"),
        ({"year": {"$ne": [1]}}, "must be a str, int or bool"),
        ({"year": {"$exists": 1}}, "True or False"),
        ({"title": {"$text": "  "}}, "non-empty string of words"),
        ({"title": {"$text": 3}}, "non-empty string of words"),
        ({"title": "x\ud800"}, "lone surrogate"),
        ({"title": {"$text": "\udcff"}}, "lone surrogate"),
        ({"x\udcff": 1}, "filter key .* lone surrogate"),
        ({"a.b": 1}, "may not contain"),
        ({"": 1}, "non-empty strings"),
        ({3: 1}, "non-empty strings"),
        ({"year": object()}, "must be a str, int, bool, a list"),
    ],
)
def test_bad_filters_are_refused_with_our_words(flt, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_filter(flt)


def test_nesting_depth_is_bounded():
    flt: dict = {"a": 1}
    for _ in range(31):
        flt = {"$not": flt}
    parse_filter(flt)
    for _ in range(5000):
        flt = {"$not": flt}
    with pytest.raises(InvalidInputError, match="at most 32 deep"):
        parse_filter(flt)


def test_a_refused_filter_changes_nothing(index):
    before = _search_all(index, {"lang": "en"})
    count = len(index)
    with pytest.raises(InvalidInputError):
        index.search(unit_rows(np.random.default_rng(0), 2, DIM), filter={"year": {"$gt": "x"}})
    assert _search_all(index, {"lang": "en"}) == before and len(index) == count


@pytest.mark.parametrize("kind", BACKENDS)
def test_bool_metadata_is_not_the_integer_one(tmp_path, kind):
    """Qdrant Edge's Python binding reads True as 1: the translation must not."""
    if kind == "edge":
        index = SAPIndex.create(tmp_path / "i", dim=4)
    else:
        index = SAPIndex.create(tmp_path / "i", dim=4, client=qdrant_client.QdrantClient(":memory:"))
    with index:
        for name, value in [("t", True), ("f", False), ("one", 1), ("zero", 0)]:
            index.add_pages([pruned_page(np.eye(4, dtype=np.float32)[:2])], name, metadata={"v": value})
        q = np.eye(4, dtype=np.float32)[:1]
        assert {h.doc_id for h in index.search(q, k=9, filter={"v": True})} == {"t"}
        assert {h.doc_id for h in index.search(q, k=9, filter={"v": False})} == {"f"}
        assert {h.doc_id for h in index.search(q, k=9, filter={"v": 1})} == {"one"}
        assert {h.doc_id for h in index.search(q, k=9, filter={"v": {"$ne": True}})} == {"f", "one", "zero"}


def test_payload_indexes_leave_results_unchanged(tmp_path):
    """The payload indexes a server user would add (full-text, integer, float, keyword, bool) are
    only for speed: Qdrant Edge gives the same pages with them as without."""
    import qdrant_edge as qe

    index = _make("edge", tmp_path / "indexed")
    with index:
        for path, kind in [
            ("metadata.title", qe.PayloadSchemaType.Text),
            ("metadata.year", qe.PayloadSchemaType.Integer),
            ("metadata.nums", qe.PayloadSchemaType.Integer),
            ("metadata.score", qe.PayloadSchemaType.Float),
            ("metadata.lang", qe.PayloadSchemaType.Keyword),
            ("metadata.tags", qe.PayloadSchemaType.Keyword),
            ("metadata.flag", qe.PayloadSchemaType.Bool),
            ('metadata."my key"', qe.PayloadSchemaType.Integer),
            ("page_number", qe.PayloadSchemaType.Integer),
        ]:
            index.backend._shard.update(qe.UpdateOperation.create_field_index(path, kind))
        index.optimize()
        for i, flt in enumerate(HANDWRITTEN + RANDOM):
            assert _search_all(index, flt, seed=i) == expected(flt), flt
