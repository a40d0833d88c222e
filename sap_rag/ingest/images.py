"""Loading one page image from a PIL image, a path or bytes, with clear errors."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..errors import UnreadableInputError

__all__ = ["MAX_PAGE_PIXELS", "load_image"]

# A page image with more pixels than this is refused as a likely decompression bomb (an A4 page
# at 300 dpi has 8.7 million). Class-constant style: change it here, not per call.
MAX_PAGE_PIXELS = 50_000_000


def load_image(source: Any, *, name: str | None = None) -> Image.Image:
    """Return ``source`` as a fully decoded RGB PIL image.

    Args:
        source: a PIL image, a path (str or ``os.PathLike``) to an image file, or the bytes of one.
        name: how to refer to the source in error messages (defaults to the path).

    Raises:
        UnreadableInputError: the source is not an image, or the file is missing, truncated or a
            decompression bomb.
    """
    path_label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if name and path_label:
        label = f"{name} ({path_label})"
    else:
        label = name or path_label or type(source).__name__
    if isinstance(source, Image.Image):
        image = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise UnreadableInputError(f"{label}: no such image file; check the path")
        image = _open(path, label)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        image = _open(io.BytesIO(bytes(source)), label)
    else:
        raise UnreadableInputError(
            f"{label} is not an image: expected a PIL.Image, an image path or image bytes, got {type(source).__name__}"
        )
    try:
        image.load()  # decode now, so a truncated file fails here and not inside the model
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise UnreadableInputError(f"{label}: the image data is truncated or corrupt ({exc})") from exc


def _open(fp: Any, label: str) -> Image.Image:
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
        raise UnreadableInputError(f"{label}: not a readable image file (unknown or corrupt format)") from exc
    except OSError as exc:
        raise UnreadableInputError(f"{label}: cannot be read ({exc})") from exc
    width, height = image.size
    if width * height > MAX_PAGE_PIXELS:
        raise UnreadableInputError(
            f"{label}: {width} x {height} pixels is too large to decode safely (limit {MAX_PAGE_PIXELS:,} pixels, "
            "a possible decompression bomb); downscale the image first"
        )
    return image
