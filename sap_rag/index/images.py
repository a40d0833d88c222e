"""Content-addressed store of page images inside the index directory.

Each image is stored once under ``images/<aa>/<sha256>.<ext>`` where the name is the SHA-256 of
the stored bytes: the same page added twice (or by two documents) takes the space of one. Files
given as paths or bytes are stored byte for byte (a JPEG stays a JPEG); PIL images are saved as PNG.

An index directory is untrusted input (it is copied, shared, downloaded): every name read back from
the registry is checked to be such a content-hash name before it is turned into a path, and no
symbolic link under ``images/`` is ever followed, so neither reads nor deletes can leave the folder.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from ._fs import atomic_write_bytes
from .errors import IndexFormatError

logger = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "ImageStore", "is_image_name"]

IMAGE_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}
"""The file extension the store gives each image format it keeps byte for byte (others become PNG)."""
_EXTENSIONS = IMAGE_EXTENSIONS
_NAME = re.compile(r"[0-9a-f]{64}\.(?:" + "|".join(sorted(set(_EXTENSIONS.values()))) + ")")


def is_image_name(name: object) -> bool:
    """True for a name the store itself makes: ``<64 lowercase hex>.<known extension>``, nothing else.

    >>> is_image_name("0" * 64 + ".png"), is_image_name("../victim.txt")
    (True, False)
    """
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


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
    """Page images under ``<index>/images``, named by content hash (paths are absolute)."""

    def __init__(self, root: Path) -> None:
        # Absolute (not resolved: a link above the index is the user's business), so hits carry
        # image paths that stay valid whatever the working directory of the caller.
        self.root = Path(root).absolute()

    # --- safety checks ------------------------------------------------------------------------

    def _linked(self, *paths: Path) -> Path | None:
        """The first of ``paths`` that is a symbolic link, if any."""
        return next((p for p in paths if os.path.islink(p)), None)

    def _checked(self, name: str) -> Path:
        """The path of ``name``, refusing a name the store does not make and any link on the way."""
        if not is_image_name(name):
            raise IndexFormatError(
                f"the index at {self.root.parent} names a page image {name!r}, which is not a content-hash name; "
                "the index is damaged or was tampered with (rebuild it from the original files)"
            )
        path = self.root / name[:2] / name
        link = self._linked(self.root, path.parent, path)
        if link is not None:
            raise IndexFormatError(
                f"{link} is a symbolic link; sap-rag never follows links inside an index (it may have been "
                "tampered with): remove the link or rebuild the index"
            )
        return path

    # --- API ----------------------------------------------------------------------------------

    def path(self, name: str) -> Path:
        """Absolute path of a stored image from its name (``<sha256>.<ext>``).

        Raises:
            IndexFormatError: the name is not a content-hash name, or a link lies on the way.
        """
        return self._checked(name)

    def put(self, source: Any, image: Image.Image) -> tuple[str, bool]:
        """Store one page (``source`` as given by the caller, ``image`` decoded from it).

        Returns ``(name, created)``; ``created`` is False when the same bytes were already stored.
        The file is fsynced before this returns, so a later registry commit never points at a
        missing image.
        """
        data, ext = _encoded(source, image)
        name = f"{hashlib.sha256(data).hexdigest()}.{ext}"
        target = self._checked(name)
        if target.is_file() and target.stat().st_size == len(data):
            return name, False
        target.parent.mkdir(parents=True, exist_ok=True)
        self._checked(name)  # a link planted between the check and mkdir is still refused
        atomic_write_bytes(target, data)  # its temporary file starts with ".", which collect_garbage removes
        return name, True

    def remove(self, names: Iterable[str]) -> None:
        """Delete the named images (missing ones are ignored; unsafe names are logged and left alone)."""
        for name in names:
            try:
                path = self._checked(name)
            except IndexFormatError as exc:
                logger.warning("not deleting a page image: %s", exc)
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _buckets(self) -> list[os.DirEntry]:
        """The real sub-folders of the store (links to folders are reported, never entered)."""
        if os.path.islink(self.root):
            logger.warning("%s is a symbolic link; its contents are ignored", self.root)
            return []
        if not self.root.is_dir():
            return []
        buckets = []
        with os.scandir(self.root) as entries:
            for entry in entries:
                if entry.is_symlink():
                    logger.warning("%s is a symbolic link inside the index; it is ignored", entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    buckets.append(entry)
        return buckets

    @staticmethod
    def _files(bucket: os.DirEntry) -> list[os.DirEntry]:
        with os.scandir(bucket.path) as entries:
            return [entry for entry in entries if not entry.is_dir(follow_symlinks=False)]

    def names(self) -> set[str]:
        """Every stored image name (temporary files excluded)."""
        return {
            entry.name for bucket in self._buckets() for entry in self._files(bucket) if not entry.name.startswith(".")
        }

    def collect_garbage(self, referenced: set[str]) -> int:
        """Delete images nobody references and leftover temporary files; return how many files went.

        Only plain entries of the store's own sub-folders are removed (a link is removed as a link,
        its target is untouched); linked sub-folders are never entered.
        """
        removed = 0
        for bucket in self._buckets():
            for entry in self._files(bucket):
                if entry.name.startswith(".") or entry.name not in referenced:
                    os.unlink(entry.path)
                    removed += 1
        if removed:
            logger.info("removed %d unreferenced image files from %s", removed, self.root)
        return removed

    def bytes_on_disk(self) -> int:
        from ._fs import allocated_bytes

        return allocated_bytes(self.root) if self.root.is_dir() and not os.path.islink(self.root) else 0
