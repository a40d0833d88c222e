"""Ingestion: PDFs and images to pages, discovery, content ids, and a clear error for each bad input."""

from __future__ import annotations

import io

import pytest
from conftest import make_page
from PIL import Image

from sap_rag import InvalidInputError, UnreadableInputError
from sap_rag.ingest import content_id, discover, load_document, load_documents, render_pdf


def write_pdf(path, pages=2, text="Quarterly revenue"):
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for i in range(pages):
        c.drawString(72, 760, f"{text} page {i + 1}")
        c.rect(72, 500, 200, 100 + 20 * i, fill=1)
        c.showPage()
    c.save()
    return path


def write_encrypted_pdf(path):
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), encrypt=pdfencrypt.StandardEncryption("secret", canPrint=0))
    c.drawString(72, 700, "secret page")
    c.save()
    return path


def write_empty_pdf(path):
    """A well-formed PDF whose page tree is empty."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 3\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size 3 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(out)
    return path


def test_pdf_pages_render_at_the_requested_resolution(tmp_path):
    pdf = write_pdf(tmp_path / "report.pdf", pages=3)
    pages = render_pdf(pdf, dpi=72)
    assert len(pages) == 3
    assert pages[0].size == (595, 842) or pages[0].size == (596, 842)  # A4 in points
    assert render_pdf(pdf, dpi=144)[0].size[0] == pytest.approx(2 * pages[0].size[0], abs=2)
    assert all(p.mode == "RGB" for p in pages)


def test_documents_get_stable_content_ids_and_metadata(tmp_path):
    pdf = write_pdf(tmp_path / "a.pdf")
    doc = load_document(pdf, metadata={"team": "finance"})
    again = load_document(pdf)
    assert doc.doc_id == again.doc_id == content_id(pdf.read_bytes())
    assert doc.metadata == {"source": str(pdf.resolve()), "filename": "a.pdf", "team": "finance"}
    write_pdf(pdf, text="Changed")  # a changed file gets a new id
    assert load_document(pdf).doc_id != doc.doc_id
    assert load_document(pdf, doc_id="custom").doc_id == "custom"


def test_images_and_multipage_tiffs(tmp_path):
    make_page(0).save(tmp_path / "scan.png")
    frames = [make_page(i) for i in range(3)]
    frames[0].save(tmp_path / "fax.tiff", save_all=True, append_images=frames[1:])
    assert load_document(tmp_path / "scan.png").num_pages == 1
    tiff = load_document(tmp_path / "fax.tiff")
    assert tiff.num_pages == 3 and tiff.pages[2].size == frames[2].size


def test_discover_recurses_with_include_patterns(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write_pdf(tmp_path / "b.pdf")
    make_page(0).save(tmp_path / "sub" / "a.PNG")
    make_page(1).save(tmp_path / "sub" / "deeper" / "c.jpg")
    (tmp_path / "notes.txt").write_text("not a page")
    names = [p.name for p in discover([tmp_path])]
    assert names == ["b.pdf", "a.PNG", "c.jpg"] or sorted(names) == ["a.PNG", "b.pdf", "c.jpg"]
    assert [p.name for p in discover([tmp_path], include=["*.pdf"])] == ["b.pdf"]
    # a file named directly is kept; duplicates are dropped
    assert [p.name for p in discover([tmp_path / "notes.txt", tmp_path / "notes.txt"])] == ["notes.txt"]
    with pytest.raises(InvalidInputError, match="no such file or folder"):
        discover([tmp_path / "missing"])


def bad_inputs(tmp_path):
    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4\n this is not really a pdf")
    truncated = tmp_path / "truncated.pdf"
    whole = write_pdf(tmp_path / "whole.pdf")
    truncated.write_bytes(whole.read_bytes()[:400])
    whole.unlink()
    text = tmp_path / "notes.png"
    text.write_text("plain text with an image suffix")
    cut = tmp_path / "cut.png"
    buf = io.BytesIO()
    make_page(0).save(buf, format="PNG")
    cut.write_bytes(buf.getvalue()[:300])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(bomb)  # 144 M pixels, a few KB on disk
    return {
        corrupt: "not a readable PDF",
        truncated: "not a readable PDF",
        write_encrypted_pdf(tmp_path / "locked.pdf"): "encrypted",
        write_empty_pdf(tmp_path / "empty.pdf"): "no pages",
        text: "not a readable image",
        cut: "truncated or corrupt",
        bomb: "too large to decode safely",
    }


def test_each_bad_input_has_a_clear_message_naming_the_file(tmp_path):
    for path, message in bad_inputs(tmp_path).items():
        with pytest.raises(UnreadableInputError, match=message) as info:
            load_document(path)
        assert path.name in str(info.value)


def test_encrypted_pdf_opens_with_its_password(tmp_path):
    pdf = write_encrypted_pdf(tmp_path / "locked.pdf")
    assert len(render_pdf(pdf, password="secret")) == 1
    with pytest.raises(UnreadableInputError, match="password is wrong"):
        render_pdf(pdf, password="nope")


def test_load_documents_stops_on_the_first_error_or_skips_and_reports(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    write_pdf(good / "report.pdf")
    make_page(0).save(good / "scan.png")
    bad = tmp_path / "bad"
    bad.mkdir()
    expected = bad_inputs(bad)
    with pytest.raises(UnreadableInputError):
        load_documents([good, bad])
    documents, errors = load_documents([good, bad], skip_errors=True)
    assert sorted(d.metadata["filename"] for d in documents) == ["report.pdf", "scan.png"]
    assert sorted(e.source for e in errors) == sorted(str(p) for p in expected)
    for error in errors:
        assert expected[type(bad)(error.source)].split()[0] in error.message
