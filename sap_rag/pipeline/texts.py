"""Page texts: what a page says (given, or from a PDF text layer), else a label; never empty."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import InvalidInputError

__all__ = ["page_label", "page_texts"]


def page_label(page_number: int, name: str) -> str:
    """The text of a page that has no text layer: ``"page 3 of report.pdf"``.

    >>> page_label(3, "report.pdf")
    'page 3 of report.pdf'
    """
    return f"page {page_number} of {name}"


def page_texts(texts: Any, count: int, name: str, numbers: Sequence[int] | None = None) -> list[str]:
    """Per page, the given text (cleaned) or, where there is none, ``page_label(n, name)``.

    ``texts``: None, or one str-or-None per page (``count`` pages); ``numbers``: the pages'
    numbers for the labels (default ``1..count``).

    >>> page_texts(["Revenue\\r\\n grew", None], 2, "q3.pdf")
    ['Revenue\\ngrew', 'page 2 of q3.pdf']
    """
    from ..ingest.text import clean_text

    if texts is None:
        given: list[Any] = [None] * count
    else:
        if isinstance(texts, (str, bytes)) or not hasattr(texts, "__len__") or not hasattr(texts, "__getitem__"):
            raise InvalidInputError(f"texts must be a list (one str or None per page), got {type(texts).__name__}")
        given = list(texts)
        if len(given) != count:
            raise InvalidInputError(f"got {count} pages but {len(given)} texts; give one text (or None) per page")
    out = []
    for i, text in enumerate(given):
        if text is not None and not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a str or None, got {type(text).__name__}")
        cleaned = clean_text(text) if text else ""
        out.append(cleaned or page_label(numbers[i] if numbers is not None else i + 1, name))
    return out
