"""Page text from files (PDF text layer, else a label) and count options that can never drop pages."""

from __future__ import annotations

import pytest

from sap_rag.errors import InvalidInputError, SapRagError
from sap_rag.index import SAPIndex


def write_pdf(path, pages=3, text="Quarterly revenue", blank=()):
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A5)
    for i in range(pages):
        if i + 1 not in blank:
            c.drawString(40, 500, f"{text} page {i + 1}")
        c.rect(40, 200, 150, 80 + 20 * i, fill=1)
        c.showPage()
    c.save()
    return path


@pytest.fixture
def index(tmp_path, tiny_encoder):
    with SAPIndex.create(tmp_path / "idx", encoder=tiny_encoder) as index:
        yield index


def test_add_documents_stores_the_pdf_text_layer_or_a_label(index, tmp_path, pages):
    pdf = write_pdf(tmp_path / "report.pdf", text="Quarterly revenue", blank=(2,))
    pages[0].save(tmp_path / "scan.png")
    report = index.add_documents([pdf, tmp_path / "scan.png"])
    assert [info.num_pages for info in report.added] == [3, 1]
    pdf_id, png_id = report.doc_ids
    got = index.get_pages([f"{pdf_id}:p1", f"{pdf_id}:p2", f"{pdf_id}:p3", f"{png_id}:p1"])
    assert [g.text for g in got] == [
        "Quarterly revenue page 1",
        "page 2 of report.pdf",  # no text layer on that page
        "Quarterly revenue page 3",
        "page 1 of scan.png",
    ]
    hits = index.search("quarterly revenue", k=4)
    assert {h.page_id: h.text for h in hits} == {g.page_id: g.text for g in got}
    assert all(h.image_path is not None and h.image_path.is_file() for h in hits)


def test_add_images_takes_texts(index, pages):
    info = index.add_images(pages[:2], "doc", texts=["first page", None], metadata={"filename": "a.png"})
    assert [g.text for g in index.get_pages(info.page_ids)] == ["first page", "page 2 of a.png"]


@pytest.mark.parametrize("bad", [-1, 0, 2.5, True, "4"])
def test_count_options_are_checked_before_anything_is_written(index, tmp_path, pages, bad):
    pdf = write_pdf(tmp_path / "five.pdf", pages=5)
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
        index.add_images(pages, "doc", batch_size=bad)
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
        index.add_documents([pdf], batch_size=bad)
    with pytest.raises(InvalidInputError, match="dpi must be a positive integer"):
        index.add_documents([pdf], dpi=bad)
    assert len(index) == 0 and index.documents() == []
    # and the file is then indexed whole
    assert index.add_documents([pdf], batch_size=2).added[0].num_pages == 5


def test_an_encoder_that_drops_pages_commits_nothing(index, tiny_encoder, pages, monkeypatch, tmp_path):
    encode = tiny_encoder.encode_pages

    def lossy(images, **kwargs):
        return encode(images, **kwargs)[:-1]

    monkeypatch.setattr(tiny_encoder, "encode_pages", lossy)
    with pytest.raises(SapRagError, match="4 pages but 3 were encoded"):
        index.add_images(pages, "doc")
    with pytest.raises(SapRagError, match="3 pages but 2 were encoded"):
        index.add_documents([write_pdf(tmp_path / "r.pdf")])
    assert len(index) == 0 and index.documents() == [] and index.check().ok


def test_an_image_is_a_query(index, tiny_encoder, pages):
    index.add_images(pages, "doc")
    by_image = index.search(pages[2], k=4)
    tokens = tiny_encoder.encode_pages([pages[2]], indegree_layers=None)[0].embeddings
    by_vectors = index.search(tokens, k=4)
    assert [(h.page_id, h.score) for h in by_image] == [(h.page_id, h.score) for h in by_vectors]
    assert by_image[0].num_query_tokens == tokens.shape[0]
    mixed = index.search_batch(["a chart", pages[0], tokens], k=2)
    assert [h.page_id for h in mixed[2]] == [h.page_id for h in by_vectors[:2]]
    first = tiny_encoder.encode_pages([pages[0]], indegree_layers=None)[0].embeddings
    assert [(h.page_id, h.score) for h in mixed[1]] == [(h.page_id, h.score) for h in index.search(first, k=2)]
