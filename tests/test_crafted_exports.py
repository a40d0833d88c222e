"""Crafted exports (issue 20): each refused by ``import_index`` and ``sap-rag import`` with a one-line
``TransferError``, nothing created, memory bounded whatever the file claims; and ``export --out``
inside the index is refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _index_utils import random_corpus

from sap_rag.cli.main import main
from sap_rag.index import SAPIndex
from sap_rag.transfer import TransferError, export_index, import_index

DIM = 8


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A small real export: 2 documents, 3 pages, one page image."""
    root = tmp_path_factory.mktemp("crafted")
    from PIL import Image

    with SAPIndex.create(root / "src", dim=DIM) as index:
        corpus = random_corpus(2, DIM, docs=2, pages=(1, 3))
        for n, (doc_id, pages) in enumerate(corpus.items()):
            images = [Image.new("RGB", (40, 50 + i), "white") for i in range(len(pages))] if n == 0 else None
            index.add_pages(pages, doc_id=doc_id, metadata={"n": n}, images=images)
        export_index(index, root / "export")
    return root / "export"


def _copy(export: Path, to: Path) -> Path:
    to.mkdir()
    for entry in export.iterdir():
        (to / entry.name).write_bytes(entry.read_bytes())
    return to


def _replace(path: Path, name: str, array: pa.Array, **write) -> None:
    """Write ``path`` (a Parquet file) with column ``name`` replaced by ``array`` (its type taken as is)."""
    table = pq.read_table(path)
    index = table.schema.get_field_index(name)
    table = table.set_column(index, pa.field(name, array.type), array)
    pq.write_table(table, path, **write)


def _refused(export: Path, tmp_path: Path, message: str, capsys) -> None:
    target = tmp_path / "new"
    with pytest.raises(TransferError, match=message):
        import_index(export, target)
    assert not target.exists()
    capsys.readouterr()
    assert main(["import", str(export), "--index", str(target)]) == 1
    err = capsys.readouterr().err.strip()  # a progress bar may come first
    assert "Traceback" not in err and [line.startswith("error:") for line in err.splitlines()][-1], err
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1
    assert not target.exists()


def test_a_run_length_encoded_page_of_a_million_anchors_is_refused_before_decoding(export, tmp_path, capsys):
    crafted = _copy(export, tmp_path / "rle")
    pages = pq.read_table(crafted / "pages.parquet").slice(0, 1)
    n = 1_500_000
    flat = pa.array(np.zeros(n * DIM, np.float32))
    anchors = pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), pa.FixedSizeListArray.from_arrays(flat, DIM))
    pages = pages.set_column(pages.schema.get_field_index("anchors"), pages.schema.field("anchors"), anchors)
    pq.write_table(pages, crafted / "pages.parquet", compression="zstd")
    assert (crafted / "pages.parquet").stat().st_size < 200_000  # small file, 48 MB of vectors
    info = json.loads((crafted / "export.json").read_text())
    info.update(documents=1, pages=1)
    (crafted / "export.json").write_text(json.dumps(info))
    docs = pq.read_table(crafted / "documents.parquet").slice(0, 1)
    pq.write_table(docs, crafted / "documents.parquet")
    _refused(crafted, tmp_path, "more than its pages may have", capsys)
    # In a fresh process, Arrow never allocates the vectors: the footer refuses them.
    script = textwrap.dedent(
        """
        import sys, pyarrow as pa
        from sap_rag.transfer import TransferError, import_index
        try:
            import_index(sys.argv[1], sys.argv[2])
        except TransferError:
            print(pa.default_memory_pool().max_memory())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(crafted), str(tmp_path / "new")], capture_output=True, text=True, check=True
    )
    assert int(done.stdout.strip()) < 4 * n  # a decoded page would take 12 * 4 * n bytes
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("column", "array", "message"),
    [
        ("num_tokens", lambda n: pa.array(["many"] * n), "num_tokens has type string"),
        ("positions", lambda n: pa.array([["1", "2"]] * n, pa.list_(pa.string())), "positions has type"),
        ("page_number", lambda n: pa.array([1.5] * n), "page_number has type double"),
        ("payload", lambda n: pa.array(["[" * 5000 + "]" * 5000] * n), "nested 5000 levels"),
        ("payload", lambda n: pa.array(['{"text": "x", "gen": 3}'] * n), "sets fields sap-rag sets itself"),
    ],
)
def test_a_column_of_the_wrong_type_or_content_is_refused(export, tmp_path, capsys, column, array, message):
    crafted = _copy(export, tmp_path / "bad")
    rows = pq.read_metadata(crafted / "pages.parquet").num_rows
    _replace(crafted / "pages.parquet", column, array(rows))
    _refused(crafted, tmp_path, message, capsys)


def test_a_missing_column_is_refused(export, tmp_path, capsys):
    crafted = _copy(export, tmp_path / "bad")
    table = pq.read_table(crafted / "pages.parquet")
    pq.write_table(table.drop_columns(["anchors"]), crafted / "pages.parquet")
    _refused(crafted, tmp_path, "no anchors column", capsys)


@pytest.mark.parametrize("value", ["3", 2.5, -1, True, None])
def test_non_integer_counts_in_export_json_are_refused(export, tmp_path, capsys, value):
    crafted = _copy(export, tmp_path / "bad")
    info = json.loads((crafted / "export.json").read_text())
    info["pages"] = value
    (crafted / "export.json").write_text(json.dumps(info))
    _refused(crafted, tmp_path, "not a count", capsys)


def test_counts_that_do_not_match_the_files_are_refused(export, tmp_path, capsys):
    crafted = _copy(export, tmp_path / "bad")
    info = json.loads((crafted / "export.json").read_text())
    info["documents"] += 1
    (crafted / "export.json").write_text(json.dumps(info))
    _refused(crafted, tmp_path, "the Parquet files hold", capsys)


def test_anchors_beyond_float16_are_refused(export, tmp_path, capsys):
    crafted = _copy(export, tmp_path / "bad")
    table = pq.read_table(crafted / "pages.parquet")
    rows = table.column("anchors").to_pylist()
    rows[0][0][0] = 1e5  # finite, but stored as inf in float16: the page would vanish from every search
    _replace(crafted / "pages.parquet", "anchors", pa.array(rows, table.schema.field("anchors").type))
    _refused(crafted, tmp_path, "beyond the range", capsys)


def test_more_anchors_than_the_page_has_tokens_are_refused(export, tmp_path, capsys):
    crafted = _copy(export, tmp_path / "bad")
    rows = pq.read_metadata(crafted / "pages.parquet").num_rows
    _replace(crafted / "pages.parquet", "num_tokens", pa.array([1] * rows, pa.int64()))
    _refused(crafted, tmp_path, r"anchors, but a page holds 1 to 1 \(its token count", capsys)


def test_an_image_of_169_megapixels_is_refused(export, tmp_path, capsys):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (13_000, 13_000)).save(buffer, format="PNG")  # 169 Mpx, about 25 KB
    data = buffer.getvalue()
    name = f"{hashlib.sha256(data).hexdigest()}.png"
    crafted = _copy(export, tmp_path / "bad")
    table = pq.read_table(crafted / "pages.parquet")
    names, images = table.column("image_name").to_pylist(), table.column("image").to_pylist()
    names[0], images[0] = name, data
    _replace(crafted / "pages.parquet", "image_name", pa.array(names, pa.string()))
    _replace(crafted / "pages.parquet", "image", pa.array(images, pa.binary()))
    _refused(crafted, tmp_path, "13000 x 13000 pixels is too large", capsys)


def test_export_into_the_index_is_refused(tmp_path, capsys):
    with SAPIndex.create(tmp_path / "idx", dim=DIM) as index:
        index.add_pages(random_corpus(1, DIM, docs=1)["doc-0"], doc_id="d")
        for out in (tmp_path / "idx" / "export", tmp_path / "idx" / "shard" / "segments" / "x", tmp_path / "idx"):
            with pytest.raises(TransferError, match="is inside the index"):
                export_index(index, out)
        os.symlink(tmp_path / "idx" / "shard", tmp_path / "link")
        with pytest.raises(TransferError, match="is inside the index"):
            export_index(index, tmp_path / "link" / "out")
    before = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert main(["export", "--index", str(tmp_path / "idx"), "--out", str(tmp_path / "idx" / "exp")]) == 1
    assert "is inside the index" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "idx").iterdir()) == before
    assert not (tmp_path / "idx" / "shard" / "segments" / "x").exists()
    with SAPIndex.open(tmp_path / "idx", read_only=True) as index:
        assert index.documents() == ["d"]
