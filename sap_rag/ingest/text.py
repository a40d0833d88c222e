"""Page text: the PDF text layer (pypdfium2), cleaned so it can be stored and shown."""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from ..errors import UnreadableInputError

__all__ = ["MAX_PAGE_TEXT_CHARS", "clean_text", "is_pdf", "pdf_page_texts"]

MAX_PAGE_TEXT_CHARS = 100_000
"""Text kept per page (a page of small print holds ~10,000 characters; more is a broken text layer)."""

# Control characters, and lone surrogates (a broken text layer), which cannot be stored as UTF-8.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """``text`` with line endings as ``\\n``, control characters and lone surrogates removed,
    runs of spaces and blank lines collapsed, ends stripped, at most :data:`MAX_PAGE_TEXT_CHARS`.

    >>> clean_text("Title\\r\\n\\r\\n\\r\\n  body\\x00 text  \\ud800")
    'Title\\n\\nbody text'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return text[:MAX_PAGE_TEXT_CHARS]


def is_pdf(path: str | os.PathLike, head: bytes | None = None) -> bool:
    """Whether ``path`` is read as a PDF (the same rule as :func:`sap_rag.ingest.documents.load_document`)."""
    if head is None:
        with open(path, "rb") as handle:
            head = handle.read(5)
    return head[:5] == b"%PDF-" or Path(path).suffix.lower() == ".pdf"


def pdf_page_texts(source: str | os.PathLike | bytes, *, password: str | None = None) -> list[str]:
    """The cleaned text layer of every page of a PDF (``""`` for a page without one, e.g. a scan).

    Raises:
        UnreadableInputError: the PDF cannot be opened.
    """
    import pypdfium2 as pdfium

    label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "PDF bytes"
    data = Path(source).read_bytes() if isinstance(source, (str, os.PathLike)) else bytes(source)
    try:
        document = pdfium.PdfDocument(data, password=password)
    except pdfium.PdfiumError as exc:
        raise UnreadableInputError(f"{label}: cannot read the PDF's text layer ({exc})") from exc
    try:
        texts = []
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    texts.append(clean_text(textpage.get_text_range()))
                finally:
                    textpage.close()
            except pdfium.PdfiumError:
                texts.append("")  # the image is what is indexed; a page without text gets a label
            finally:
                page.close()
        return texts
    finally:
        document.close()
