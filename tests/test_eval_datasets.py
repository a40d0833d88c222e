"""Loading ViDoRe-format datasets from disk (v2 BEIR-style and v1 rows), and the synthetic generator."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sap_rag.eval import DatasetError, discover_datasets, load_dataset, make_synthetic_dataset
from sap_rag.eval.datasets import read_records

SMALL = (96, 128)


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _png_bytes(color) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_synthetic_v2_jsonl_with_image_files(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", num_pages=6, image_size=SMALL)
    assert sorted(p.name for p in root.iterdir()) == ["corpus.jsonl", "images", "qrels.jsonl", "queries.jsonl"]
    ds = load_dataset(root)
    assert (ds.name, ds.layout, ds.num_pages, ds.num_queries) == ("syn", "v2", 6, 6)
    assert ds.corpus_ids == [str(i) for i in range(6)]
    # Query 2 (every third) is also relevant to its sibling page 3, with a lower grade.
    assert ds.qrels["2"] == {"2": 2, "3": 1} and ds.qrels["0"] == {"0": 2}
    binary, graded = ds.relevance_matrix(), ds.relevance_matrix(binary=False)
    assert binary[2].tolist() == [0, 0, 1, 1, 0, 0] and graded[2].tolist() == [0, 0, 2, 1, 0, 0]
    image = Image.open(ds.images[0])
    assert image.size == SMALL
    assert "Acme" in ds.queries[0]


def test_synthetic_v2_parquet_with_inline_bytes_matches_jsonl(tmp_path):
    pytest.importorskip("pyarrow")
    a = load_dataset(make_synthetic_dataset(tmp_path / "a", num_pages=4, image_size=SMALL))
    b = load_dataset(
        make_synthetic_dataset(tmp_path / "b", num_pages=4, image_size=SMALL, table_format="parquet", images="bytes")
    )
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["corpus.parquet", "qrels.parquet", "queries.parquet"]
    assert isinstance(b.images[0], bytes)
    assert b.fingerprint() == a.fingerprint()  # same content, different storage
    assert b.queries == a.queries and b.qrels == a.qrels


def test_hugging_face_snapshot_layout_with_shards(tmp_path):
    pytest.importorskip("pyarrow")
    flat = make_synthetic_dataset(
        tmp_path / "flat", num_pages=4, image_size=SMALL, table_format="parquet", images="bytes"
    )
    snap = tmp_path / "esg_reports_v2"
    for part in ("corpus", "queries", "qrels"):
        (snap / part).mkdir(parents=True)
        shutil.copy(flat / f"{part}.parquet", snap / part / "test-00000-of-00001.parquet")
    (snap / "README.md").write_text("dataset card")
    ds = load_dataset(snap)
    assert ds.name == "esg_reports_v2" and ds.num_pages == 4 and ds.fingerprint() == load_dataset(flat).fingerprint()


def test_beir_tsv_qrels_and_base64_jsonl_images(tmp_path):
    root = tmp_path / "beir"
    _write_jsonl(
        root / "corpus.jsonl", [{"_id": "d1", "image": {"bytes": base64.b64encode(_png_bytes("red")).decode()}}]
    )
    _write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "red page?"}, {"_id": "q2", "text": "no answer"}])
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td9\t1\n")
    ds = load_dataset(root)
    # q2's page is not in the corpus: the judgement and then the query are dropped.
    assert ds.query_ids == ["q1"] and ds.qrels == {"q1": {"d1": 1}} and ds.corpus_ids == ["d1"]


def test_v1_rows_relevance_by_image_filename(tmp_path):
    root = tmp_path / "docvqa"
    (root / "img").mkdir(parents=True)
    for name, color in (("a.png", "red"), ("b.png", "blue")):
        (root / "img" / name).write_bytes(_png_bytes(color))
    rows = [
        {"query": "q about a", "image": "img/a.png", "image_filename": "a.png"},
        {"query": None, "image": "img/b.png", "image_filename": "b.png"},
        {"query": "q about b", "image": "img/b.png", "image_filename": "b.png"},
        {"query": "q about a", "image": "img/a.png", "image_filename": "a.png"},  # duplicate query
    ]
    _write_jsonl(root / "test.jsonl", rows)
    ds = load_dataset(root)
    assert ds.layout == "v1" and ds.corpus_ids == ["a.png", "b.png"]
    assert ds.queries == ["q about b", "q about a"]  # de-duplicated (order of last occurrence)
    assert ds.relevance_matrix().tolist() == [[0, 1], [1, 0]]


def test_v1_rows_keep_every_query_for_a_language_and_say_so(tmp_path, caplog):
    root = tmp_path / "docvqa"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(_png_bytes("red"))
    _write_jsonl(root / "test.jsonl", [{"query": "q about a", "image": "img/a.png", "image_filename": "a.png"}])
    with caplog.at_level("INFO", logger="sap_rag.eval.datasets"):
        ds = load_dataset(root, language="french")
    assert ds.queries == ["q about a"]
    assert "no language column" in caplog.text


def test_v1_synthetic_parquet_and_content_ids(tmp_path):
    pytest.importorskip("pyarrow")
    root = make_synthetic_dataset(
        tmp_path / "v1",
        num_pages=4,
        num_queries=3,
        image_size=SMALL,
        layout="v1",
        table_format="parquet",
        images="bytes",
    )
    ds = load_dataset(root, layout="v1")
    assert ds.num_pages == 4 and ds.num_queries == 3
    assert np.array_equal(ds.relevance_matrix()[:, :3], np.eye(3))
    # Without image_filename, pages are told apart by content.
    rows = [{"query": "x", "image": {"bytes": base64.b64encode(_png_bytes("red")).decode()}}]
    _write_jsonl(tmp_path / "nofn" / "rows.jsonl", rows * 2)
    assert load_dataset(tmp_path / "nofn").corpus_ids[0].startswith("sha1:")


def test_folder_of_datasets_and_language_filter(tmp_path):
    make_synthetic_dataset(tmp_path / "all" / "b_set", num_pages=2, image_size=SMALL)
    make_synthetic_dataset(tmp_path / "all" / "a_set", num_pages=3, image_size=SMALL)
    found = discover_datasets(tmp_path / "all")
    assert [d.name for d in found] == ["a_set", "b_set"]
    assert load_dataset(tmp_path / "all" / "a_set", language="eng-Latn").num_queries == 3
    with pytest.raises(DatasetError, match=r"no query in language 'french'; the queries use \['english'\]"):
        load_dataset(tmp_path / "all" / "a_set", language="french")


def test_missing_and_malformed_inputs_are_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds no dataset: expected ViDoRe v2 parts"):
        load_dataset(tmp_path / "empty")
    root = make_synthetic_dataset(tmp_path / "syn", num_pages=2, image_size=SMALL)
    (root / "qrels.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"missing qrels: qrels.parquet, qrels.jsonl, qrels.tsv"):
        load_dataset(root)
    _write_jsonl(root / "qrels.jsonl", [{"query-id": 0, "corpus-id": 0}])
    (root / "queries.jsonl").write_text('{"query-id": 0, "query": "fine"}\n{not json\n')
    with pytest.raises(DatasetError, match=r"queries.jsonl line 2 is not valid JSON"):
        load_dataset(root)
    _write_jsonl(root / "queries.jsonl", [{"qid": 0, "query": "x"}])
    with pytest.raises(DatasetError, match=r"row 1 has no query id \('query-id'\) column"):
        load_dataset(root)
    _write_jsonl(root / "queries.jsonl", [{"query-id": 0, "query": None}])
    with pytest.raises(DatasetError, match=r"row 1: the query text \('query'\) column 'query' is empty"):
        load_dataset(root)
    _write_jsonl(root / "queries.jsonl", [{"query-id": 0, "query": "x"}])
    (root / "images" / "page-0001.png").unlink()
    with pytest.raises(DatasetError, match=r"image file 'images/page-0001.png' not found"):
        load_dataset(root)


def test_fingerprint_follows_content_and_limit_keeps_relevant_pages(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", num_pages=6, image_size=SMALL)
    ds = load_dataset(root)
    assert ds.fingerprint() == load_dataset(root).fingerprint()
    (root / "images" / "page-0000.png").write_bytes(_png_bytes("green"))
    assert load_dataset(root).fingerprint() != ds.fingerprint()
    small = ds.limit(max_queries=3, max_pages=4)
    assert small.query_ids == ["0", "1", "2"]
    assert small.corpus_ids == ["0", "1", "2", "3"]  # 0, 1, 2 and 3 (query 2's sibling) are relevant
    assert ds.limit(max_pages=2).query_ids == ["0", "1"]
    assert small.fingerprint() != ds.fingerprint()


def test_read_records_rejects_unknown_formats(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DatasetError, match="unsupported table format"):
        list(read_records(tmp_path / "x.txt"))


def test_missing_optional_dependencies_say_what_to_install(tmp_path, monkeypatch):
    import sys

    from sap_rag.errors import MissingDependencyError

    (tmp_path / "corpus.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match="pip install pyarrow"):
        list(read_records(tmp_path / "corpus.parquet"))
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(MissingDependencyError, match="pip install matplotlib"):
        make_synthetic_dataset(tmp_path / "syn", num_pages=2)
