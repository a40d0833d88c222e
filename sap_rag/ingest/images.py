"""Loading one page image from a PIL image, a path or bytes, with clear errors."""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..errors import UnreadableInputError

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_ASPECT_RATIO",
    "MAX_PAGE_PIXELS",
    "MIN_PAGE_SIDE",
    "check_page_size",
    "load_image",
    "pad_to_aspect",
    "padded_size",
    "path_label",
]

# A page image with more pixels than this is refused as a likely decompression bomb (an A4 page
# at 300 dpi has 8.7 million). Class-constant style: change it here, not per call.
MAX_PAGE_PIXELS = 50_000_000

# Pages longer than this (width/height or height/width) are padded with white to this ratio:
# the model processors refuse extreme ratios (Qwen's at 200:1) or squash them to nothing.
MAX_ASPECT_RATIO = 20.0

# The processors refuse a side shorter than one patch block (28 px for Qwen); smaller pages are padded.
MIN_PAGE_SIDE = 32

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def path_label(path: str | os.PathLike) -> str:
    """A path as printable text: bytes that are not UTF-8 shown as ``\\xNN`` (never a lone surrogate)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def padded_size(width: int, height: int, max_ratio: float = MAX_ASPECT_RATIO) -> tuple[int, int]:
    """The ``(width, height)`` :func:`pad_to_aspect` gives a page of this size.

    >>> padded_size(4000, 100)
    (4000, 200)
    """
    return (
        max(width, MIN_PAGE_SIDE, math.ceil(height / max_ratio)),
        max(height, MIN_PAGE_SIDE, math.ceil(width / max_ratio)),
    )


def pad_to_aspect(image: Image.Image, max_ratio: float = MAX_ASPECT_RATIO) -> Image.Image:
    """``image`` centred on a white canvas whose long side is at most ``max_ratio`` times its short side.

    Only the short side grows (and a side under :data:`MIN_PAGE_SIDE` pixels grows to it), so the
    page keeps its resolution and stays searchable; an image within bounds is returned as is.
    """
    width, height = image.size
    new_width, new_height = padded_size(width, height, max_ratio)
    if (new_width, new_height) == (width, height):
        return image
    canvas = Image.new("RGB", (new_width, new_height), "white")
    canvas.paste(image, ((new_width - width) // 2, (new_height - height) // 2))
    logger.info(
        "padded a %d x %d page to %d x %d (aspect ratio at most %g)", width, height, new_width, new_height, max_ratio
    )
    return canvas


def load_image(source: Any, *, name: str | None = None) -> Image.Image:
    """Return ``source`` as a fully decoded RGB PIL image.

    A page more than :data:`MAX_ASPECT_RATIO` times longer than wide (or wider than long) is
    padded with white to that ratio (see :func:`pad_to_aspect`), so it can still be indexed.

    Args:
        source: a PIL image, a path (str or ``os.PathLike``) to an image file, or the bytes of one.
        name: how to refer to the source in error messages (defaults to the path).

    Raises:
        UnreadableInputError: the source is not an image, has no pixels, or the file is missing,
            unreadable, truncated or a decompression bomb.
    """
    path_text = path_label(source) if isinstance(source, (str, os.PathLike)) else None
    if name and path_text:
        label = f"{name} ({path_text})"
    else:
        label = name or path_text or type(source).__name__
    if isinstance(source, Image.Image):
        image = source
        check_page_size(image, label)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise UnreadableInputError(f"{label}: no such image file; check the path")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnreadableInputError(
                f"{label}: cannot be read ({exc.strerror or exc}); check its permissions"
            ) from exc
        image = _open(io.BytesIO(data), label)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _open(io.BytesIO(bytes(source)), label)
    else:
        raise UnreadableInputError(
            f"{label} is not an image: expected a PIL.Image, an image path or image bytes, got {type(source).__name__}"
        )
    try:
        image.load()  # decode now, so a truncated file fails here and not inside the model
        rgb = image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise UnreadableInputError(f"{label}: the image data is truncated or corrupt ({exc})") from exc
    return pad_to_aspect(rgb)


def check_page_size(image: Image.Image, label: str) -> None:
    """Refuse an image (opened, not yet decoded) with too many pixels, or too many once padded to
    :data:`MAX_ASPECT_RATIO`, or none; ``label`` names it in the error.

    Raises:
        UnreadableInputError: the size is refused (nothing is decoded before this check).
    """
    width, height = image.size
    if width < 1 or height < 1:
        raise UnreadableInputError(f"{label}: the image has no pixels ({width} x {height}); give a real page image")
    if width * height > MAX_PAGE_PIXELS:
        raise UnreadableInputError(
            f"{label}: {width} x {height} pixels is too large to decode safely (limit {MAX_PAGE_PIXELS:,} pixels, "
            "a possible decompression bomb); downscale the image first"
        )
    # Checked before the pixels are decoded or the canvas made: a long strip within the limit can
    # need a padded page far beyond it (and the error must name the file, not a later content id).
    padded = padded_size(width, height)
    if padded[0] * padded[1] > MAX_PAGE_PIXELS:
        raise UnreadableInputError(
            f"{label}: {width} x {height} pixels is too long or wide to index: padded to an aspect ratio of at most "
            f"{MAX_ASPECT_RATIO:g}:1 it becomes {padded[0]} x {padded[1]} pixels, above the limit of "
            f"{MAX_PAGE_PIXELS:,}; crop it into several pages or downscale it first"
        )


def _open(fp: Any, label: str) -> Image.Image:
    supported = ", ".join(IMAGE_SUFFIXES)
    try:
        with warnings.catch_warnings():
            # We refuse oversized images ourselves below, with a clearer message than PIL's warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise UnreadableInputError(
            f"{label}: the image is too large to decode safely ({exc}); downscale it first"
        ) from exc
    except UnidentifiedImageError as exc:
        raise UnreadableInputError(
            f"{label}: not a readable image file (unknown or corrupt format); supported types: .pdf, {supported}"
        ) from exc
    except OSError as exc:
        raise UnreadableInputError(f"{label}: cannot be read ({exc})") from exc
    check_page_size(image, label)
    return image
