"""Export -> import between the embedded index and qdrant-client's local mode, and back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _index_utils import random_corpus, unit_rows
from conftest import make_page

from sap_rag.index import SAPIndex
from sap_rag.index.registry import point_ids
from sap_rag.index.store import StagedPage
from sap_rag.index.vectors import page_pooled, page_summary, to_storage
from sap_rag.transfer import TransferError, export_index, import_index

qdrant_client = pytest.importorskip("qdrant_client")

DIM = 16


def _build(path: Path) -> SAPIndex:
    """An embedded index with images, metadata, a replaced and a deleted document, and a payload
    field this sap-rag does not know (as a newer version's page text would be)."""
    index = SAPIndex.create(path, dim=DIM, two_stage=True, prefetch=4, coarse=6, pooled_vectors=3)
    corpus = random_corpus(7, DIM, docs=6, pages=(1, 4))
    for n, (doc_id, pages) in enumerate(corpus.items()):
        images = [make_page(10 * n + i) for i in range(len(pages))] if n % 2 == 0 else None
        index.add_pages(pages, doc_id=doc_id, metadata={"source": f"/data/{doc_id}.pdf", "n": n}, images=images)
    index.add_pages(corpus["doc-1"][:1], doc_id="doc-1", metadata={"source": "/data/doc-1.pdf", "n": 99})
    index.delete("doc-2")
    rng = np.random.default_rng(3)
    anchors = to_storage(unit_rows(rng, 5, DIM), index.storage)
    staged = StagedPage(
        anchors,
        page_summary(anchors, index.storage),
        {"num_tokens": 50, "positions": [1.5, 2.25] * 5, "text": "quarterly revenue", "future": {"a": [1, 2]}},
        pooled=page_pooled(anchors, 3, index.storage),
    )
    with index._mutex:
        index._store.write("doc-new", [staged], {"source": "/data/new.pdf"})
    return index


def _queries() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [unit_rows(rng, 4, DIM) for _ in range(6)]


def _results(index: SAPIndex) -> list[list[tuple]]:
    out = []
    for query in _queries():
        for kwargs in ({}, {"two_stage": False}, {"filter": {"doc_id": ["doc-0", "doc-3"]}}):
            hits = index.search(query, k=5, **kwargs)
            out.append([(h.doc_id, h.page_number, round(h.score, 5), h.metadata) for h in hits])
    return out


def _stats(index: SAPIndex) -> tuple:
    s = index.stats()
    return (s.pages, s.documents, s.vectors, s.vectors_per_page, s.keep_ratio, s.window, s.storage, s.two_stage)


def _pages(index: SAPIndex) -> dict[tuple[str, int], tuple]:
    """Every committed page: vectors, payload (less gen) and image bytes, by (doc_id, page_number)."""
    out = {}
    for record in index._store.registry.documents():
        for point in index.backend.retrieve_points(point_ids(record.gen, record.num_pages)):
            payload = {k: v for k, v in point.payload.items() if k != "gen"}
            name = payload.get("image")
            image = index._store.images.path(name).read_bytes() if name else None
            out[(payload["doc_id"], payload["page_number"])] = (
                point.anchors.tolist(),
                point.summary.tolist(),
                point.pooled.tolist(),
                payload,
                image,
            )
    return out


def test_embedded_to_local_mode_and_back_keeps_pages_results_and_stats(tmp_path):
    with _build(tmp_path / "edge") as source:
        expected_results, expected_stats, expected_pages = _results(source), _stats(source), _pages(source)
        expected_manifest = source.manifest
        report = export_index(source, tmp_path / "export")
    with_images = sum(1 for *_, image in expected_pages.values() if image is not None)
    assert with_images > 0
    assert (report.documents, report.pages, report.images) == (6, len(expected_pages), with_images)
    assert pq.read_table(tmp_path / "export" / "pages.parquet").num_rows == len(expected_pages)

    client = qdrant_client.QdrantClient(path=str(tmp_path / "qdrant"))
    imported = import_index(tmp_path / "export", tmp_path / "local", client=client, collection="moved")
    assert imported.pages == len(expected_pages)
    with SAPIndex.open(tmp_path / "local", client=client) as local:
        assert local.backend.kind == "qdrant"
        assert local.manifest.pruner == expected_manifest.pruner
        assert local.manifest.two_stage == expected_manifest.two_stage
        assert _stats(local) == expected_stats
        assert _pages(local) == expected_pages  # vectors bit for bit, payloads incl. unknown fields, images
        assert _results(local) == expected_results
        export_index(local, tmp_path / "export2")

    import_index(tmp_path / "export2", tmp_path / "back")
    with SAPIndex.open(tmp_path / "back") as back:
        assert back.backend.kind == "edge"
        assert _stats(back) == expected_stats
        assert _pages(back) == expected_pages
        assert _results(back) == expected_results
        assert back.document("doc-new").num_pages == 1
        hit = back.search(_queries()[0], k=20, two_stage=False)
        assert {h.doc_id for h in hit} >= {"doc-new"}
        assert all(h.image_path is None or h.image_path.is_file() for h in hit)


def test_reference_and_no_images(tmp_path):
    with _build(tmp_path / "edge") as source:
        expected = _pages(source)
        export_index(source, tmp_path / "ref", images="reference")
        export_index(source, tmp_path / "none", images="none")
    assert pq.read_table(tmp_path / "ref" / "pages.parquet").column("image").null_count == len(expected)
    import_index(tmp_path / "ref", tmp_path / "from-ref")
    import_index(tmp_path / "none", tmp_path / "from-none")
    with SAPIndex.open(tmp_path / "from-ref") as index:
        assert _pages(index) == expected
    with SAPIndex.open(tmp_path / "from-none") as index:
        pages = _pages(index)
        assert all(image is None and payload["image"] is None for *_, payload, image in pages.values())
        assert index.stats().image_bytes == 0


def _damage(export: Path, column: str, value) -> None:
    table = pq.read_table(export / "pages.parquet")
    data = table.column(column).to_pylist()
    data[-1] = value
    index = table.schema.get_field_index(column)
    field = table.schema.field(column)
    pq.write_table(table.set_column(index, field, pa.array(data, field.type)), export / "pages.parquet")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("image_name", "../../etc/passwd", "invalid page image"),
        ("payload", json.dumps({"gen": 5}), "payload"),
        ("doc_id", "doc-0", "not one run"),
        ("page_number", 0, "page number 0"),
    ],
)
def test_a_damaged_export_is_refused_and_creates_nothing(tmp_path, column, value, message):
    with _build(tmp_path / "edge") as source:
        export_index(source, tmp_path / "export")
    _damage(tmp_path / "export", column, value)
    with pytest.raises(TransferError, match=message):
        import_index(tmp_path / "export", tmp_path / "new")
    assert not (tmp_path / "new").exists()
    client = qdrant_client.QdrantClient(":memory:")
    with pytest.raises(TransferError, match=message):
        import_index(tmp_path / "export", tmp_path / "new2", client=client, collection="c")
    assert not client.collection_exists("c")


def test_export_refuses_a_used_directory_and_import_a_non_export(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("keep me")
    with SAPIndex.create(tmp_path / "edge", dim=DIM) as index:
        with pytest.raises(TransferError, match="not an empty directory"):
            export_index(index, tmp_path / "used")
    assert (tmp_path / "used" / "x").read_text() == "keep me"
    with pytest.raises(TransferError, match="not a sap-rag export"):
        import_index(tmp_path / "used", tmp_path / "new")
    assert not (tmp_path / "new").exists()
