"""Helpers for the LlamaIndex tests: PDFs with a text layer, image bytes, a tiny ColPali for ColPaliRerank."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from conftest import make_page

__all__ = ["png_b64", "png_bytes", "write_pdf"]


def write_pdf(path: Path, texts: list[str]) -> Path:
    """A small PDF with one page per text: the text as a real text layer, plus a few shapes that
    depend on the text (so an edited page also looks different)."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=(160, 200))
    for number, text in enumerate(texts, start=1):
        pdf.setFont("Helvetica", 9)
        pdf.drawString(12, 180, text)
        for row in range(2 + len(text) % 5):
            pdf.rect(12, 150 - 18 * row, 20 + (7 * number * (row + 1) + len(text)) % 120, 6, fill=1)
        pdf.showPage()
    pdf.save()
    return path


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    make_page(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def png_b64(seed: int) -> str:
    return base64.b64encode(png_bytes(seed)).decode()
