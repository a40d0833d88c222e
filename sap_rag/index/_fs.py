"""Small durable-file helpers: atomic replace with fsync, allocated size on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["allocated_bytes", "atomic_write_bytes", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or a new file in it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, never a mix.

    Writes a temporary file in the same directory, fsyncs it, renames it over ``path`` and fsyncs
    the directory.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def allocated_bytes(path: Path) -> int:
    """Bytes actually allocated on disk under ``path`` (a file or a tree).

    Qdrant's files are sparse (pre-sized memory maps), so apparent sizes overstate them; this
    counts allocated blocks, like ``du`` without ``-b``.
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_blocks * 512
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:  # removed while walking (an optimizer at work)
                continue
    return total
