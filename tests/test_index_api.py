"""SAPIndex end to end with a tiny encoder: images in, hits out; manifest, images, errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from _index_utils import hit_keys, random_page, unit_rows
from conftest import make_page

from sap_rag.errors import DimensionMismatchError, InvalidInputError, UnreadableInputError
from sap_rag.index import (
    DocumentNotFoundError,
    EncoderMismatchError,
    IndexClosedError,
    IndexExistsError,
    IndexFormatError,
    IndexNotFoundError,
    SAPIndex,
)
from sap_rag.index.manifest import FORMAT_VERSION
from sap_rag.pruning import SAPPruner, budget


@pytest.fixture
def index(tmp_path, tiny_encoder, pages):
    idx = SAPIndex.create(tmp_path / "idx", encoder=tiny_encoder, keep_ratio=0.25)
    idx.add_images(pages[:3], doc_id="report-2024", metadata={"source": "report.pdf", "year": 2024})
    idx.add_images([pages[3]], doc_id="memo", metadata={"source": "memo.png", "year": 2023})
    yield idx
    idx.close()


def test_add_and_search_images(index, tiny_encoder, pages):
    hits = index.search("what was the revenue in 2023?", k=3)
    assert len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    for hit in hits:
        assert hit.doc_id in ("report-2024", "memo") and hit.page_number >= 1
        assert hit.image_path is not None and hit.image_path.is_file()
        assert hit.metadata["source"] in ("report.pdf", "memo.png")
    # the hit's image is the page that was added
    top = index.search("revenue", k=4, filter={"doc_id": "report-2024", "page_number": 2})
    assert hit_keys(top) == [("report-2024", 2)]
    from PIL import Image

    assert Image.open(top[0].image_path).size == pages[1].size
    # a string query is the same as its embeddings
    q = tiny_encoder.encode_queries(["revenue"])[0]
    assert hit_keys(index.search(q, k=4)) == hit_keys(index.search("revenue", k=4))
    # the stored anchors are the SAP-pruned page: budget(0.25, N) vectors per page
    sizes = [e.num_tokens for e in tiny_encoder.encode_pages(pages[:3])]
    assert index.document("report-2024").num_vectors == sum(budget(0.25, n) for n in sizes)


def test_search_batch_matches_search(index):
    queries = ["revenue 2023", "a chart", "summary table"]
    batch = index.search_batch(queries, k=2, filter={"source": ["report.pdf", "memo.png"]})
    assert [hit_keys(h) for h in batch] == [hit_keys(index.search(q, k=2)) for q in queries]
    assert all(h.doc_id == "report-2024" for h in index.search("x", k=4, filter={"year": 2024}))


def test_stats(index, tiny_encoder):
    stats = index.stats()
    assert (stats.pages, stats.documents) == (4, 2)
    assert stats.vectors == sum(index.document(d).num_vectors for d in index.documents())
    assert stats.keep_ratio == 0.25 and stats.window == list(tiny_encoder.window)
    assert stats.storage == "float16" and stats.backend == "edge" and not stats.two_stage
    assert stats.bytes_on_disk > 0 and stats.bytes_per_page == stats.bytes_on_disk / 4
    assert stats.image_bytes > 0


def test_manifest_records_the_build(index, tiny_encoder):
    data = json.loads((index.path / "manifest.json").read_text())
    assert data["format_version"] == FORMAT_VERSION
    assert data["encoder"]["spec"] == "tiny:colqwen2" and data["encoder"]["family"] == "colqwen2"
    assert data["encoder"]["window"] == list(tiny_encoder.window)
    assert data["dim"] == tiny_encoder.dim
    assert data["pruner"] == {"name": "sap", "keep_ratio": 0.25, "window": None, "heads": "mean"}
    assert data["storage"] == "float16" and data["backend"] == {"kind": "edge", "path": "shard"}
    assert data["two_stage"]["mode"] == "auto"


def test_open_without_encoder_loads_the_same_one(tmp_path, index):
    expected = hit_keys(index.search("revenue in 2023", k=4))
    index.close()
    with SAPIndex.open(tmp_path / "idx") as reopened:  # tiny:colqwen2 rebuilds with seed 0
        assert hit_keys(reopened.search("revenue in 2023", k=4)) == expected


class _FakeEncoder:
    def __init__(self, **changes):
        self._desc = {
            "spec": "tiny:colqwen2",
            "family": "colqwen2",
            "model_type": "qwen2_vl",
            "num_layers": 4,
            "dim": 128,
            "window": [2],
        }
        self._desc.update(changes)
        self.dim = self._desc["dim"]

    def describe(self):
        return dict(self._desc)


def test_encoder_mismatch_is_a_clear_error(tmp_path, index, tiny_encoder):
    index.close()
    real = tiny_encoder.describe()
    for change in ({"family": "colpali"}, {"window": [1, 2]}, {"dim": 320}, {"num_layers": 28}):
        fake = _FakeEncoder(
            **{**{k: real[k] for k in ("family", "model_type", "num_layers", "dim", "window")}, **change}
        )
        with pytest.raises(EncoderMismatchError) as err:
            SAPIndex.open(tmp_path / "idx", encoder=fake)
        key = next(iter(change))
        assert key in str(err.value) and "tiny:colqwen2" in str(err.value)
    SAPIndex.open(tmp_path / "idx", encoder=tiny_encoder).close()  # the right one opens


def test_newer_format_and_missing_index_are_clear_errors(tmp_path, index):
    index.close()
    manifest = index.path / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = FORMAT_VERSION + 1
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="upgrade sap-rag"):
        SAPIndex.open(index.path)
    manifest.write_text("{not json")
    with pytest.raises(IndexFormatError, match="damaged"):
        SAPIndex.open(index.path)
    with pytest.raises(IndexNotFoundError):
        SAPIndex.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexNotFoundError, match="not a sap-rag index"):
        SAPIndex.open(tmp_path / "empty")


def test_create_refuses_existing_paths(tmp_path, index):
    with pytest.raises(IndexExistsError, match="open it"):
        SAPIndex.create(index.path, dim=128)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(IndexExistsError, match="not an empty directory"):
        SAPIndex.create(tmp_path / "other", dim=128)
    with pytest.raises(InvalidInputError, match="dim"):
        SAPIndex.create(tmp_path / "nodim")
    with pytest.raises(InvalidInputError, match="storage"):
        SAPIndex.create(tmp_path / "bad", dim=8, storage="bfloat16")
    with pytest.raises(InvalidInputError, match="two_stage"):
        SAPIndex.create(tmp_path / "bad", dim=8, two_stage="sometimes")
    with pytest.raises(InvalidInputError, match="keep_ratio"):
        SAPIndex.create(tmp_path / "bad", dim=8, keep_ratio=0.2, pruner=SAPPruner(0.1))
    assert not (tmp_path / "bad").exists() and not (tmp_path / "nodim").exists()


def test_query_validation(index):
    with pytest.raises(InvalidInputError, match="empty"):
        index.search("   ")
    with pytest.raises(DimensionMismatchError, match="dim 7"):
        index.search(torch.zeros(3, 7))
    with pytest.raises(InvalidInputError, match="2-D"):
        index.search(np.ones(128, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="NaN"):
        index.search(np.full((2, 128), np.nan, dtype=np.float32))
    with pytest.raises(InvalidInputError, match="k must"):
        index.search("revenue", k=0)
    with pytest.raises(InvalidInputError, match="search_batch"):
        index.search(["a", "b"])
    with pytest.raises(InvalidInputError, match="floats"):
        index.search("revenue", filter={"year": 2024.0})
    with pytest.raises(InvalidInputError, match="filter must be a dict"):
        index.search("revenue", filter=[("doc_id", "memo")])
    with pytest.raises(InvalidInputError, match="empty list"):
        index.search("revenue", filter={"doc_id": []})
    with pytest.raises(InvalidInputError, match="only strings or only integers"):
        index.search("revenue", filter={"doc_id": ["memo", 3]})
    with pytest.raises(InvalidInputError, match="may not contain"):
        index.search("revenue", filter={"a.b": 1})
    with pytest.raises(InvalidInputError, match="wrap"):
        index.search_batch(torch.zeros(3, 128))


def test_write_validation(index, pages):
    with pytest.raises(InvalidInputError, match="doc_id"):
        index.add_images(pages[:1], doc_id="")
    with pytest.raises(InvalidInputError, match="empty"):
        index.add_images([], doc_id="x")
    with pytest.raises(InvalidInputError, match="JSON"):
        index.add_images(pages[:1], doc_id="x", metadata={"when": object()})
    with pytest.raises(UnreadableInputError, match="'x' page 1"):
        index.add_images(["/no/such/file.png"], doc_id="x")
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidInputError, match="pruned with 'random'"):
        index.add_pages([random_page(rng, 128, method="random")], doc_id="x")
    with pytest.raises(DimensionMismatchError):
        index.add_pages([random_page(rng, 64)], doc_id="x")
    with pytest.raises(InvalidInputError, match="one image per page"):
        index.add_pages([random_page(rng, 128)], doc_id="x", images=pages[:2])
    with pytest.raises(DocumentNotFoundError, match="nope"):
        index.delete("nope")
    assert index.delete("nope", missing_ok=True) == 0
    assert index.documents() == ["memo", "report-2024"]


def test_add_pages_from_encodings_and_precomputed(index, tiny_encoder, pages):
    encodings = tiny_encoder.encode_pages(pages[:2])
    info = index.add_pages(encodings, doc_id="pre", images=pages[:2])
    assert info.num_vectors == sum(budget(0.25, e.num_tokens) for e in encodings)
    pruned = SAPPruner(0.25).prune_many(encodings)
    again = index.add_pages(pruned, doc_id="pre2")
    assert again.num_vectors == info.num_vectors and again.image_paths == [None, None]
    q = tiny_encoder.encode_queries(["revenue"])[0]
    a = {h.page_number: h.score for h in index.search(q, k=10, filter={"doc_id": "pre"})}
    b = {h.page_number: h.score for h in index.search(q, k=10, filter={"doc_id": "pre2"})}
    assert a == pytest.approx(b, abs=1e-6)


def test_images_are_content_addressed_and_collected(tmp_path, tiny_encoder, pages):
    buffer = io.BytesIO()
    make_page(42).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    (tmp_path / "page.jpg").write_bytes(jpeg)
    with SAPIndex.create(tmp_path / "idx", encoder=tiny_encoder) as index:
        a = index.add_images([pages[0], tmp_path / "page.jpg"], doc_id="a")
        b = index.add_images([pages[0], jpeg], doc_id="b")  # same two pages, other sources
        assert a.image_paths == b.image_paths  # no duplicates
        assert a.image_paths[1].suffix == ".jpg" and a.image_paths[1].read_bytes() == jpeg  # stored as given
        assert a.image_paths[0].suffix == ".png"
        assert len(list((index.path / "images").rglob("*.*"))) == 2
        index.delete("a")
        assert all(p.is_file() for p in b.image_paths)  # still used by b
        index.add_images([pages[1]], doc_id="b")  # replace: the old images are no longer used
        assert not any(p.is_file() for p in b.image_paths)
        assert len(list((index.path / "images").rglob("*.*"))) == 1


def test_encoderless_index(tmp_path):
    rng = np.random.default_rng(1)
    with SAPIndex.create(tmp_path / "idx", dim=16) as index:
        index.add_pages([random_page(rng, 16)], doc_id="d")
        with pytest.raises(InvalidInputError, match="without an encoder"):
            index.search("a string query")
        with pytest.raises(InvalidInputError, match="without an encoder"):
            index.add_images([make_page(0)], doc_id="e")
        assert index.search(unit_rows(rng, 2, 16), k=1)[0].doc_id == "d"


def test_closed_index_refuses_work(tmp_path):
    index = SAPIndex.create(tmp_path / "idx", dim=8)
    index.close()
    index.close()  # idempotent
    with pytest.raises(IndexClosedError):
        index.search(np.ones((1, 8), dtype=np.float32))
    with pytest.raises(IndexClosedError):
        index.stats()
    SAPIndex.open(tmp_path / "idx").close()  # the lock was released


def test_documents_by_source_is_an_indexed_lookup(tmp_path):
    """add_documents finds a changed file's old version by its source path without reading every document."""
    from sap_rag.index.registry import _BY_SOURCE

    rng = np.random.default_rng(0)
    with SAPIndex.create(tmp_path / "idx", dim=8) as index:
        for doc_id, metadata in [
            ("a", {"source": "/x/a.pdf"}),
            ("b", {"source": "/x/b.pdf"}),
            ("c", {"source": "/x/a.pdf"}),
            ("d", {"other": 1}),
        ]:
            index.add_pages([random_page(rng, 8, k=2)], doc_id, metadata=metadata)
        assert index.documents(source="/x/a.pdf") == ["a", "c"]
        assert index.documents(source="/nowhere") == []
        assert index.documents() == ["a", "b", "c", "d"]
        index.delete("a")
        assert index.documents(source="/x/a.pdf") == ["c"]
        plan = index._registry._db.execute("EXPLAIN QUERY PLAN " + _BY_SOURCE, ("/x/a.pdf",)).fetchall()
        assert any("documents_source" in str(row[-1]) for row in plan), plan
