"""Crafted and oversized input through the API and the CLI: values beyond float16's range, filter
values nested thousands deep, and page images whose padded size is too large (issue 20)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from _index_utils import tree_listing, unit_rows
from PIL import Image

from sap_rag.cli.main import main
from sap_rag.errors import InvalidInputError, UnreadableInputError
from sap_rag.index import SAPIndex, parse_filter
from sap_rag.index.vectors import FLOAT16_MAX
from sap_rag.ingest import load_document
from sap_rag.pipeline import pruned_page

DIM = 8


# --- float16 range ---------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", ["float16", "int8"])
def test_values_beyond_float16_are_refused_for_pages_and_queries(tmp_path, storage):
    rng = np.random.default_rng(0)
    with SAPIndex.create(tmp_path / "idx", dim=DIM, storage=storage) as index:
        index.add_pages([pruned_page(unit_rows(rng, 3, DIM))], doc_id="ok")
        before = tree_listing(tmp_path / "idx")
        big = unit_rows(rng, 3, DIM)
        big[1, 2] = 1e5  # finite, but float16 holds at most 65504
        with pytest.raises(InvalidInputError, match=r"100000 .*beyond the range.*65504.*storage='float32'"):
            index.add_pages([pruned_page(big)], doc_id="big")
        assert index.documents() == ["ok"] and len(index) == 1
        assert tree_listing(tmp_path / "idx") == before
        query = unit_rows(rng, 2, DIM)
        query[0, 0] = -2e5
        with pytest.raises(InvalidInputError, match="beyond the range"):
            index.search(query)
        with pytest.raises(InvalidInputError, match="beyond the range"):
            index.search(torch.from_numpy(query))
        # The largest value float16 holds still works, and the page is found.
        edge = unit_rows(rng, 3, DIM)
        edge[0, 0] = FLOAT16_MAX
        index.add_pages([pruned_page(edge)], doc_id="edge")
        assert index.search(edge[:1] / FLOAT16_MAX, k=1)[0].doc_id == "edge"


def test_float32_storage_keeps_large_values(tmp_path):
    rng = np.random.default_rng(1)
    big = unit_rows(rng, 3, DIM) * 1e5
    with SAPIndex.create(tmp_path / "idx", dim=DIM, storage="float32") as index:
        index.add_pages([pruned_page(big)], doc_id="big")
        hits = index.search(big[:1], k=1)
        assert hits and hits[0].doc_id == "big" and np.isfinite(hits[0].score)


# --- filters nested thousands deep -----------------------------------------------------------------


def _nested_list(depth: int) -> list:
    value: list = [1]
    for _ in range(depth):
        value = [value]
    return value


def _nested_tuple(depth: int) -> tuple:
    value: tuple = (1,)
    for _ in range(depth):
        value = (value,)
    return value


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"k": _nested_list(5000)}, "must list plain values"),
        ({"k": {"$in": _nested_list(5000)}}, "must list plain values"),
        ({"k": {"$nin": [1, _nested_list(5000)]}}, "must list plain values"),
        ({"k": {"$eq": _nested_list(5000)}}, "must be a str, int or bool"),
        ({"k": {"$gte": _nested_list(5000)}}, "must be a number"),
        ({"k": {"$text": _nested_list(5000)}}, "non-empty string of words"),
        ({"k": {_nested_tuple(5000): 1}}, "is not an operator"),
        ({_nested_tuple(5000): 1}, "keys must be non-empty strings"),
        ({"k": 10**5000}, "outside the 64-bit integer range"),
        ({"k": [1, 10**5000]}, "outside the 64-bit integer range"),
    ],
)
def test_deeply_nested_or_huge_filter_values_get_a_short_clear_error(flt, message):
    with pytest.raises(InvalidInputError, match=message) as caught:
        parse_filter(flt)
    assert len(str(caught.value)) < 400 and "\n" not in str(caught.value)


def test_a_deep_filter_value_in_a_search_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    with SAPIndex.create(tmp_path / "idx", dim=DIM) as index:
        index.add_pages([pruned_page(unit_rows(rng, 3, DIM))], doc_id="a", metadata={"k": 1})
        with pytest.raises(InvalidInputError, match="must list plain values"):
            index.search(unit_rows(rng, 1, DIM), filter={"$or": [{"k": _nested_list(20_000)}, {"k": 1}]})


# --- pages too large once padded: the error names the file ---------------------------------------


def _strip_png(path, size=(40_000, 500)):
    """A long strip: 20 Mpx (within the limit), but 80 Mpx once padded to a 20:1 aspect ratio."""
    Image.new("L", size, 255).save(path)
    return path


def test_a_strip_too_large_once_padded_names_the_file(tmp_path, tiny_encoder):
    strip = _strip_png(tmp_path / "long strip.png")
    with pytest.raises(UnreadableInputError, match=r"long strip\.png: 40000 x 500 pixels .*40000 x 2000"):
        load_document(strip)
    with SAPIndex.create(tmp_path / "idx", tiny_encoder) as index:
        with pytest.raises(UnreadableInputError) as caught:
            index.add_documents([strip])
        assert str(strip) in str(caught.value) and "40000 x 2000" in str(caught.value)
        assert len(index) == 0
        # Given as bytes to add_images, the page is named by its doc id and number.
        with pytest.raises(UnreadableInputError, match=r"'strip' page 1: 40000 x 500"):
            index.add_images([strip.read_bytes()], doc_id="strip")


def test_the_cli_names_the_file_of_a_page_too_large(tmp_path, capsys):
    strip = _strip_png(tmp_path / "strip.png")
    code = main(["index", str(strip), "--index", str(tmp_path / "idx"), "--model", "tiny:colqwen2"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{strip}: 40000 x 500 pixels" in err and "Traceback" not in err
    assert not (tmp_path / "idx").exists()


def test_a_long_pdf_page_is_rendered_small_enough_to_pad(tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    pdf = pdfium.PdfDocument.new()
    pdf.new_page(14_400, 20)  # the largest PDF page width, 20 pt high
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    path = tmp_path / "banner.pdf"
    path.write_bytes(buffer.getvalue())
    page = load_document(path, dpi=200).pages[0]  # 40000 x 56 px at 200 dpi: 80 Mpx once padded
    width, height = page.size
    assert width * height <= 50_000_000 and width <= 20 * height
    assert width > 20_000  # scaled down only as far as needed
