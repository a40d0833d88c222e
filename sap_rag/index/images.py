"""Content-addressed store of page images inside the index directory.

Each image is stored once under ``images/<aa>/<sha256>.<ext>`` where the name is the SHA-256 of
the stored bytes: the same page added twice (or by two documents) takes the space of one. Files
given as paths or bytes are stored byte for byte (a JPEG stays a JPEG); PIL images are saved as PNG.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from ._fs import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = ["ImageStore"]

_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


def _encoded(source: Any, image: Image.Image) -> tuple[bytes, str]:
    """``(bytes to store, extension)`` for one page: the original file bytes where there are some."""
    raw: bytes | None = None
    if isinstance(source, (str, os.PathLike)):
        raw = Path(source).read_bytes()
    elif isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
    if raw is not None:
        try:
            fmt = Image.open(io.BytesIO(raw)).format or ""
        except Exception:  # already decoded once by load_image; treat oddities as unknown formats
            fmt = ""
        if fmt in _EXTENSIONS:
            return raw, _EXTENSIONS[fmt]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "png"


class ImageStore:
    """Page images under ``<index>/images``, named by content hash."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        """Absolute path of a stored image from its name (``<sha256>.<ext>``)."""
        return self.root / name[:2] / name

    def put(self, source: Any, image: Image.Image) -> tuple[str, bool]:
        """Store one page (``source`` as given by the caller, ``image`` decoded from it).

        Returns ``(name, created)``; ``created`` is False when the same bytes were already stored.
        The file is fsynced before this returns, so a later registry commit never points at a
        missing image.
        """
        data, ext = _encoded(source, image)
        name = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        target = self.path(name)
        if target.is_file() and target.stat().st_size == len(data):
            return name, False
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, data)  # its temporary file starts with ".", which collect_garbage removes
        return name, True

    def remove(self, names: Iterable[str]) -> None:
        """Delete the named images (missing ones are ignored)."""
        for name in names:
            try:
                self.path(name).unlink()
            except FileNotFoundError:
                pass

    def names(self) -> set[str]:
        """Every stored image name (temporary files excluded)."""
        if not self.root.is_dir():
            return set()
        return {
            entry.name
            for bucket in self.root.iterdir()
            if bucket.is_dir()
            for entry in bucket.iterdir()
            if not entry.name.startswith(".")
        }

    def collect_garbage(self, referenced: set[str]) -> int:
        """Delete images nobody references and leftover temporary files; return how many files went."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for bucket in self.root.iterdir():
            if not bucket.is_dir():
                continue
            for entry in bucket.iterdir():
                if entry.name.startswith(".") or entry.name not in referenced:
                    entry.unlink(missing_ok=True)
                    removed += 1
        if removed:
            logger.info("removed %d unreferenced image files from %s", removed, self.root)
        return removed

    def bytes_on_disk(self) -> int:
        from ._fs import allocated_bytes

        return allocated_bytes(self.root) if self.root.is_dir() else 0
