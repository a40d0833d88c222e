"""PDF pages to images with pypdfium2 (no system dependency)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PIL import Image

from ..errors import InvalidInputError, UnreadableInputError
from .images import MAX_PAGE_PIXELS, pad_to_aspect, padded_size, path_label

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_DPI", "MAX_DPI", "check_dpi", "render_pdf"]

DEFAULT_DPI = 144  # 2x PDF points: small text stays legible after the processors' resizing
MAX_DPI = 1200


def check_dpi(dpi: object) -> float:
    """``dpi`` if it is a resolution PDFs can be rendered at (1 to :data:`MAX_DPI`), else InvalidInputError."""
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not 1 <= dpi <= MAX_DPI:
        raise InvalidInputError(f"dpi must be a number from 1 to {MAX_DPI}, got {dpi!r} (the default is {DEFAULT_DPI})")
    return float(dpi)


_PDFIUM_SUCCESS = 0
_PDFIUM_PASSWORD_ERROR = 4


def render_pdf(
    source: str | os.PathLike | bytes, *, dpi: int = DEFAULT_DPI, password: str | None = None, name: str | None = None
) -> list[Image.Image]:
    """Render every page of a PDF to an RGB image.

    Args:
        source: a path to a PDF file, or its bytes.
        dpi: resolution, 1 to ``MAX_DPI``; a page whose render would exceed ``MAX_PAGE_PIXELS`` is
            scaled down, and a very long or wide one is padded (see ``pad_to_aspect``).
        password: for encrypted PDFs.
        name: how to refer to the PDF in error messages (defaults to its path).

    Raises:
        InvalidInputError: ``dpi`` is not a number from 1 to ``MAX_DPI``.
        UnreadableInputError: the file is missing, not a PDF, corrupt, encrypted (without the right
            password) or has no pages.
    """
    import pypdfium2 as pdfium

    check_dpi(dpi)
    label = name or (path_label(source) if isinstance(source, (str, os.PathLike)) else "PDF bytes")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise UnreadableInputError(f"{label}: no such PDF file; check the path")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnreadableInputError(
                f"{label}: cannot be read ({exc.strerror or exc}); check its permissions"
            ) from exc
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
            # The page as indexed: after padding to MAX_ASPECT_RATIO, a long strip takes far more pixels.
            padded = padded_size(max(1, round(width * scale)), max(1, round(height * scale)))
            pixels = padded[0] * padded[1]
            if pixels > MAX_PAGE_PIXELS:
                scale *= 0.999 * (MAX_PAGE_PIXELS / pixels) ** 0.5  # 0.999: room for rounding to pixels
                logger.warning("%s: page %d is very large; rendered at %.0f dpi", label, index + 1, scale * 72)
            try:
                images.append(pad_to_aspect(page.render(scale=scale).to_pil().convert("RGB")))
            except pdfium.PdfiumError as exc:
                raise UnreadableInputError(f"{label}: page {index + 1} cannot be rendered ({exc})") from exc
            finally:
                page.close()
        return images
    finally:
        document.close()
