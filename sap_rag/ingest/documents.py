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

from ..errors import InvalidInputError, NothingToIndexError, UnreadableInputError
from .images import IMAGE_SUFFIXES, load_image, path_label
from .pdf import DEFAULT_DPI, render_pdf

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_INCLUDE",
    "SUPPORTED_TYPES",
    "Document",
    "IngestError",
    "content_id",
    "discover",
    "load_document",
    "load_documents",
]

DEFAULT_INCLUDE = ("*.pdf", *(f"*{suffix}" for suffix in IMAGE_SUFFIXES))
SUPPORTED_TYPES = ", ".join((".pdf", *IMAGE_SUFFIXES))


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
    no pattern matches it. Symbolic links inside a folder are followed only when they point to a
    file inside that same folder (a link out of the tree, a broken link, and links to folders
    are skipped with a warning); a path given directly is taken as given.

    Raises:
        InvalidInputError: a path does not exist.
        NothingToIndexError: nothing to index was found (the message lists the supported types).
    """
    found: list[Path] = []
    seen: set[Path] = set()
    others: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = _walk(path)
            candidates = [p for p in files if _matches(p, include)]
            others += [path_label(p.name) for p in files if not _matches(p, include)]
        elif path.is_file():
            candidates = [path]
        else:
            raise InvalidInputError(f"{path_label(path)}: no such file or folder")
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    if not found:
        given = ", ".join(path_label(p) for p in paths) or "(no paths)"
        skipped = f"; found only other files ({', '.join(sorted(others)[:5])}{', ...' if len(others) > 5 else ''})"
        raise NothingToIndexError(
            f"nothing to index in {given}{skipped if others else ''}: supported types are {SUPPORTED_TYPES}"
            + ("" if tuple(include) == DEFAULT_INCLUDE else f" (and --include {' '.join(include)} matched none)")
        )
    return found


def _matches(path: Path, include: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path.name.lower(), pattern.lower()) for pattern in include)


def _walk(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted; links followed only to files inside ``folder`` (see :func:`discover`)."""
    root = folder.resolve()
    files: list[Path] = []

    def unreadable(error: OSError) -> None:
        logger.warning("skipping %s: cannot be read (%s)", path_label(error.filename or folder), error.strerror)

    for directory, dirs, names in os.walk(folder, onerror=unreadable, followlinks=False):
        for name in [*dirs, *names]:
            entry = Path(directory) / name
            if entry.is_symlink():
                target = entry.resolve()
                if not target.exists():
                    logger.warning("skipping %s: a broken symbolic link", path_label(entry))
                elif not target.is_relative_to(root):
                    logger.warning("skipping %s: a symbolic link out of %s", path_label(entry), path_label(folder))
                elif target.is_dir():
                    logger.warning("skipping %s: a link to a folder inside %s", path_label(entry), path_label(folder))
                else:
                    files.append(entry)
            elif name in names:
                files.append(entry)
    return sorted(files)


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
        UnreadableInputError: the file is missing, of an unknown type (the message lists the
            supported ones), unreadable (permissions), or its name is not valid UTF-8.
    """
    source = Path(path)
    label = path_label(source)
    if not source.is_file():
        raise UnreadableInputError(f"{label}: no such file; check the path")
    if label != os.fsdecode(source):
        # The name is only metadata, but metadata is UTF-8 text (JSON, the engine's payload).
        raise UnreadableInputError(f"{label}: the file name is not valid UTF-8; rename the file to index it")
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise UnreadableInputError(f"{label}: cannot be read ({exc.strerror or exc}); check its permissions") from exc
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
            errors.append(IngestError(source=path_label(path), message=str(exc)))
    return documents, errors
