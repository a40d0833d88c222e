"""Page images for models: where a page's image comes from, and how big it may be when sent.

A page image sent to a chat model is bounded: its longer side is at most ``max_side`` pixels
(default :data:`DEFAULT_MAX_SIDE`) and, when it has to be re-encoded, it is a JPEG of ``quality``
(default :data:`DEFAULT_QUALITY`). A stored image already within the bound is sent as it is when
that is smaller than the JPEG. ``max_side=None`` and ``quality=None`` send the stored bytes as
they are.
"""

from __future__ import annotations

import base64
import io
import logging
import mimetypes
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sap_rag.errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_SIDE", "DEFAULT_QUALITY", "PageImage", "bounded_image", "check_bounds", "page_image"]

DEFAULT_MAX_SIDE = 1280
"""Longest side, in pixels, of a page image sent to a model by default (a 144-dpi A4 page is 1684)."""

DEFAULT_QUALITY = 75
"""JPEG quality (1-95) of a page image re-encoded for a model by default."""

PageImage = tuple[bytes, str]
"""An image's bytes and MIME type."""


def mime_type(path: str | os.PathLike) -> str:
    return mimetypes.guess_type(os.fspath(path))[0] or "image/png"


def check_bounds(max_side: Any, quality: Any) -> None:
    """Refuse a ``max_side`` that is not a positive integer (or None) and a ``quality`` outside 1-95 (or None)."""
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 16):
        raise InvalidInputError(f"max_side must be an integer >= 16 (pixels) or None, got {max_side!r}")
    if quality is not None and (isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95):
        raise InvalidInputError(f"quality must be an integer from 1 to 95 (JPEG quality) or None, got {quality!r}")


def bounded_image(data: bytes, mime: str, *, max_side: int | None, quality: int | None) -> PageImage:
    """``(bytes, mime type)`` of an image no larger than ``max_side`` on its longer side.

    A larger image is scaled down (aspect kept) and saved as a JPEG of ``quality`` (85 when
    ``quality`` is None); one within the bound is re-encoded as a JPEG only when ``quality`` is given
    and the JPEG is smaller.
    """
    from PIL import Image

    check_bounds(max_side, quality)
    if max_side is None and quality is None:
        return data, mime
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:
        raise InvalidInputError(f"a page image ({mime}, {len(data)} bytes) cannot be decoded: {exc}") from exc
    too_big = max_side is not None and max(image.size) > max_side
    if not too_big and quality is None:
        return data, mime
    if too_big:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if image.mode not in ("RGB", "L"):
        background = Image.new("RGB", image.size, "white")  # transparency onto white, as a page
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality if quality is not None else 85, optimize=True)
    jpeg = buffer.getvalue()
    if not too_big and len(jpeg) >= len(data):
        return data, mime
    return jpeg, "image/jpeg"


def _fetched(index: Any, page_id: str, max_side: int | None) -> PageImage | None:
    """A page's image from ``index``: ``index.page_image(page_id, ...)`` where it has that (a client
    of a server), else the ``image_path`` of ``index.get_pages([page_id])``."""
    fetch = getattr(index, "page_image", None)
    if callable(fetch):
        data = fetch(page_id, max_side=max_side, format="png")
        return (bytes(data), "image/png") if data else None
    (page,) = index.get_pages([page_id])
    if page is None or page.image_path is None:
        return None
    return Path(page.image_path).read_bytes(), mime_type(page.image_path)


def page_image(
    metadata: Mapping[str, Any], page_id: str | None, index: Any = None, *, max_side: int | None = None
) -> PageImage | None:
    """The image of a page Document: ``image_base64`` in its metadata, its ``image_path``, or fetched
    from ``index`` by ``page_id``; None where there is none of these.

    Raises:
        InvalidInputError: the Document is a page (it has a ``page_id``) without an image of its own
            and no ``index`` is given to fetch it from.
    """
    data = metadata.get("image_base64")
    if isinstance(data, str) and data:
        return base64.b64decode(data), str(metadata.get("mime_type") or "image/png")
    path = metadata.get("image_path")
    if path:
        return Path(path).read_bytes(), mime_type(path)
    if not page_id:
        return None
    if index is None:
        raise InvalidInputError(
            f"page {page_id!r} has no image in its metadata (no image_path or image_base64, e.g. a Document from "
            "a text retriever fused with the page retriever); pass index=<the SAPIndex> to fetch it"
        )
    found = _fetched(index, page_id, max_side)
    if found is None:
        logger.info("the index holds no image for page %r", page_id)
    return found
