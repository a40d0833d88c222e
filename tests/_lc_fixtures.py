"""Helpers for the LangChain tests: PDFs with a text layer, and small indexes (all under tmp_path)."""

from __future__ import annotations

from pathlib import Path

from conftest import make_page

QUERY = "What was the revenue in 2023?"


def write_pdf(path: Path, texts: list[str]) -> Path:
    """A PDF with one page per text: the text as its text layer, and a bar whose size depends on the page."""
    from reportlab.lib.pagesizes import A6
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A6)
    for i, text in enumerate(texts):
        c.drawString(20, 380, text)
        c.rect(20, 100 + 10 * i, 120 + 15 * (len(text) % 7), 60 + 25 * i, fill=1)
        c.showPage()
    c.save()
    return path


def write_image(path: Path, seed: int) -> Path:
    make_page(seed).save(path)
    return path


def page_ids(docs) -> list[str]:
    return [d.id for d in docs]


def render_text_page(text: str, path: Path) -> Path:
    """A page image showing ``text`` (large, dark on white), for Documents that are text only."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (448, 576), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=48)
    draw.multiline_text((32, 48), "\n".join(text[i : i + 14] for i in range(0, len(text), 14)), fill="black", font=font)
    image.save(path)
    return path
