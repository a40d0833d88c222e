"""The import marker: how an index says an import into it has not finished.

``import_index`` writes ``<index>/import.incomplete.json`` right after the new index exists and
before any document, and removes it last (after every document and the optimize). A process killed
in between leaves an index whose committed documents are intact (each is written all or nothing)
but which lacks the rest of the export: the marker says so, and running the same import again
resumes it (documents already present are verified, not rewritten).

``SAPIndex.open``, ``info``, ``check`` and ``search`` report it through :func:`incomplete_import`.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote

from ..index._fs import atomic_write_bytes

logger = logging.getLogger(__name__)

__all__ = [
    "MARKER_NAME",
    "ImportMarker",
    "incomplete_import",
    "read_marker",
    "remove_marker",
    "resume_command",
    "write_marker",
]

MARKER_NAME = "import.incomplete.json"
_MAX_BYTES = 64 << 10


class ImportMarker(dict):
    """The marker's content: ``source`` (the export's absolute path), ``export_id``, ``documents``
    (how many the export holds), ``index`` (the index path as given), ``command`` (to resume)."""


def write_marker(root: Path, *, source: Path, export_id: str, documents: int, command: str) -> None:
    """Write the marker (atomically, fsynced): from now on the index reads as an unfinished import."""
    data = {
        "source": str(Path(source).absolute()),
        "export_id": export_id,
        "documents": documents,
        "command": command,
        "started_at": time.time(),
    }
    atomic_write_bytes(Path(root) / MARKER_NAME, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def remove_marker(root: Path) -> None:
    """Remove the marker (the import finished), and make the removal durable."""
    path = Path(root) / MARKER_NAME
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_marker(root: str | os.PathLike) -> ImportMarker | None:
    """The marker of the index at ``root``, or None. An unreadable marker (a link, damaged JSON)
    still reads as an unfinished import, with what could be read of it."""
    path = Path(root) / MARKER_NAME
    if not os.path.lexists(path):
        return None
    marker = ImportMarker(source="?", export_id="", documents=None, command="")
    if path.is_symlink() or not path.is_file():
        return marker  # never followed: an index is untrusted input
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            data = json.loads(handle.read(_MAX_BYTES))
    except (OSError, ValueError, RecursionError):
        return marker
    if isinstance(data, dict):
        for key, kind in (("source", str), ("export_id", str), ("documents", int), ("command", str)):
            if isinstance(data.get(key), kind) and not isinstance(data.get(key), bool):
                marker[key] = data[key]
    return marker


def resume_command(source: Path, index: Path) -> str:
    """The command line that resumes an import (the arguments as given, quoted for a shell)."""
    return f"sap-rag import {shlex.quote(str(source))} --index {shlex.quote(str(index))}"


def incomplete_import(root: str | os.PathLike, documents: int | None = None) -> str | None:
    """A one-line notice when the index at ``root`` holds an unfinished import, else None.

    Args:
        root: the index directory.
        documents: the documents the index holds now, if the caller knows (else read from its
            registry, read-only).

    >>> incomplete_import("/nonexistent") is None
    True
    """
    marker = read_marker(root)
    if marker is None:
        return None
    if documents is None:
        documents = _committed(Path(root))
    total = marker["documents"]
    have = "?" if documents is None else str(documents)
    of = f"{have} of {total}" if total is not None else have
    command = marker["command"] or "sap-rag import <the export> --index <this index>"
    return (
        f"the import from {marker['source']} into {root} is incomplete: {of} documents; "
        f"rerun `{command}` (the same arguments) to resume it"
    )


def _committed(root: Path) -> int | None:
    """Documents in the index's registry (read-only, never created), or None if it cannot be read."""
    from ..index.registry import REGISTRY_NAME

    path = root / REGISTRY_NAME
    if not path.is_file() or path.is_symlink():
        return None
    try:
        db = sqlite3.connect(f"file:{quote(str(path.absolute()))}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as exc:
        logger.debug("cannot count the documents of %s: %s", root, exc)
        return None
