"""Documents from files and folders: discovery, page rendering, stable content ids, error reports."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import InvalidInputError, UnreadableInputError
from .images import load_image
from .pdf import DEFAULT_DPI, render_pdf

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_INCLUDE",
    "Document",
    "IngestError",
    "content_id",
    "discover",
    "load_document",
    "load_documents",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
DEFAULT_INCLUDE = ("*.pdf", *(f"*{suffix}" for suffix in IMAGE_SUFFIXES))


@dataclass
class Document:
    """A document ready to index: its id, where it came from, its page images and metadata."""

    doc_id: str
    source: str
    pages: list[Image.Image]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_pages(self) -> int:
        return len(self.pages)


@dataclass(frozen=True)
class IngestError:
    """A file that could not be ingested, and why."""

    source: str
    message: str


def content_id(data: bytes) -> str:
    """A stable document id from the file's bytes: the same file always gets the same id.

    >>> content_id(b"hello")
    '2cf24dba5fb0a30e26e83b2a'
    """
    return hashlib.sha256(data).hexdigest()[:24]


def discover(paths: Iterable[str | os.PathLike], include: Sequence[str] = DEFAULT_INCLUDE) -> list[Path]:
    """Files to ingest: each file given, and every file under each folder (recursively) matching ``include``.

    Folder contents are sorted so runs are reproducible; a file given directly is kept even if
    no pattern matches it.

    Raises:
        InvalidInputError: a path does not exist.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file())
            candidates = [p for p in candidates if any(fnmatch.fnmatch(p.name.lower(), pat.lower()) for pat in include)]
        elif path.is_file():
            candidates = [path]
        else:
            raise InvalidInputError(f"{path}: no such file or folder")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def _image_pages(data: bytes, label: str) -> list[Image.Image]:
    """Every frame of an image file (multi-page TIFFs give several pages)."""
    first = load_image(data, name=label)
    try:
        container = Image.open(io.BytesIO(data))
        frames = getattr(container, "n_frames", 1)
    except Exception:  # load_image already proved the first frame readable
        frames = 1
    if frames <= 1:
        return [first]
    pages = []
    for index in range(frames):
        container.seek(index)
        pages.append(load_image(container.copy(), name=f"{label} frame {index + 1}"))
    return pages


def load_document(
    path: str | os.PathLike,
    *,
    doc_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    dpi: int = DEFAULT_DPI,
    password: str | None = None,
) -> Document:
    """Read one PDF or image file as a :class:`Document` (pages fully decoded, so errors surface here).

    The id defaults to :func:`content_id` of the file, so adding the same file twice is a no-op
    and a changed file gets a new id. ``metadata`` gains ``source`` (the absolute path) and
    ``filename``.

    Raises:
        UnreadableInputError: the file is missing, of an unknown type, or unreadable.
    """
    source = Path(path)
    label = os.fspath(source)
    if not source.is_file():
        raise UnreadableInputError(f"{label}: no such file; check the path")
    data = source.read_bytes()
    if data[:5] == b"%PDF-" or source.suffix.lower() == ".pdf":
        pages = render_pdf(data, dpi=dpi, password=password, name=label)
    else:
        pages = _image_pages(data, label)
    # The absolute path identifies the file across runs (a changed file replaces its old pages).
    meta = {"source": os.fspath(source.resolve()), "filename": source.name, **(metadata or {})}
    return Document(doc_id=doc_id or content_id(data), source=meta["source"], pages=pages, metadata=meta)


def load_documents(
    paths: Iterable[str | os.PathLike],
    *,
    include: Sequence[str] = DEFAULT_INCLUDE,
    skip_errors: bool = False,
    dpi: int = DEFAULT_DPI,
    metadata: dict[str, Any] | None = None,
) -> tuple[list[Document], list[IngestError]]:
    """Load every document under ``paths``; nothing is indexed here.

    With ``skip_errors=False`` (the default) the first unreadable file raises, before anything
    can be written anywhere. With ``skip_errors=True`` unreadable files are collected as
    :class:`IngestError` and the rest are returned.
    """
    documents: list[Document] = []
    errors: list[IngestError] = []
    for path in discover(paths, include):
        try:
            documents.append(load_document(path, dpi=dpi, metadata=metadata))
        except UnreadableInputError as exc:
            if not skip_errors:
                raise
            logger.warning("skipping %s", exc)
            errors.append(IngestError(source=os.fspath(path), message=str(exc)))
    return documents, errors
