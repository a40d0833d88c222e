"""PDF pages to images with pypdfium2 (no system dependency)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PIL import Image

from ..errors import UnreadableInputError
from .images import MAX_PAGE_PIXELS

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_DPI", "render_pdf"]

DEFAULT_DPI = 144  # 2x PDF points: small text stays legible after the processors' resizing

_PDFIUM_SUCCESS = 0
_PDFIUM_PASSWORD_ERROR = 4


def render_pdf(
    source: str | os.PathLike | bytes, *, dpi: int = DEFAULT_DPI, password: str | None = None, name: str | None = None
) -> list[Image.Image]:
    """Render every page of a PDF to an RGB image.

    Args:
        source: a path to a PDF file, or its bytes.
        dpi: resolution; a page whose render would exceed ``MAX_PAGE_PIXELS`` is scaled down.
        password: for encrypted PDFs.
        name: how to refer to the PDF in error messages (defaults to its path).

    Raises:
        UnreadableInputError: the file is missing, not a PDF, corrupt, encrypted (without the right
            password) or has no pages.
    """
    import pypdfium2 as pdfium

    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "PDF bytes")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise UnreadableInputError(f"{label}: no such PDF file; check the path")
        data = path.read_bytes()
    else:
        data = bytes(source)
    try:
        document = pdfium.PdfDocument(data, password=password)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        encrypted = b"/Encrypt" in (data if isinstance(data, bytes) else b"")
        if code == _PDFIUM_PASSWORD_ERROR and encrypted:
            hint = "the password is wrong" if password else "pass its password or decrypt it first"
            raise UnreadableInputError(f"{label}: the PDF is encrypted; {hint}") from exc
        if code in (_PDFIUM_SUCCESS, _PDFIUM_PASSWORD_ERROR):
            # PDFium refuses a document without a page tree with no better error than these.
            raise UnreadableInputError(f"{label}: the PDF has no pages") from exc
        raise UnreadableInputError(f"{label}: not a readable PDF, the file is corrupt or truncated ({exc})") from exc
    try:
        if len(document) == 0:
            raise UnreadableInputError(f"{label}: the PDF has no pages")
        images = []
        for index in range(len(document)):
            page = document[index]
            width, height = page.get_size()  # points, 1/72 inch
            scale = dpi / 72
            pixels = width * scale * height * scale
            if pixels > MAX_PAGE_PIXELS:
                scale *= (MAX_PAGE_PIXELS / pixels) ** 0.5
                logger.warning("%s: page %d is very large; rendered at %.0f dpi", label, index + 1, scale * 72)
            try:
                images.append(page.render(scale=scale).to_pil().convert("RGB"))
            except pdfium.PdfiumError as exc:
                raise UnreadableInputError(f"{label}: page {index + 1} cannot be rendered ({exc})") from exc
            finally:
                page.close()
        return images
    finally:
        document.close()
