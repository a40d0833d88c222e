"""A derived, memory-mapped copy of every committed page's anchors, for fast exact scans.

The engine's stored vectors are the source of truth. This file is derived from them and from the
registry, lives at ``<index>/derived/anchors.bin`` and is only ever used while it describes the
registry's current state:

- **Stamp.** The copy records the registry's ``(documents, pages, vectors, max generation)``
  when it was built. Generations are never reused and every add takes a new, larger one, so a
  registry whose stamp equals the copy's holds exactly the same pages (the only changes that keep
  the largest generation, removals of documents or pages, lower the page count). A copy whose
  stamp differs is stale: never used, rebuilt by a writable open, ignored by a read-only one.
- **Crash safety.** A rebuild writes ``.anchors.<pid>.tmp`` beside it, fsyncs it, renames it over
  the old copy and fsyncs the directory: SIGKILL at any point leaves the old copy (or none) and
  an orphan temp file that the next rebuild removes; the engine and the registry are only read.
- **Untrusted input.** ``derived`` must be a real directory and the copy a regular file (opened
  without following links); its header, sizes, offsets and point ids are checked before use, and
  anything wrong makes it stale (rebuilt or ignored), never a crash or a wrong answer.

Layout (little-endian): ``b"SAPANCH1"``, a uint64 header length, a JSON header, zero padding to
64 bytes, ``ids`` int64 ``(pages,)``, ``offsets`` int64 ``(pages + 1,)``, then ``anchors``
``(vectors, dim)`` in the storage dtype (float16 for float16/int8 storage, float32 for float32).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._fs import fsync_dir
from .options import StorageType
from .registry import Registry, page_point_id

logger = logging.getLogger(__name__)

__all__ = ["AnchorCopy", "RegistryStamp", "build_copy", "ensure_copy", "open_copy", "registry_stamp"]

DERIVED_DIR = "derived"
COPY_NAME = "anchors.bin"
_MAGIC = b"SAPANCH1"
_FORMAT = 1
_ALIGN = 64
_READ_BATCH = 256
"""Pages read back from the engine per call while building."""


@dataclass(frozen=True)
class RegistryStamp:
    """What identifies the registry's committed pages (see the module docstring)."""

    documents: int
    pages: int
    vectors: int
    max_gen: int

    def as_dict(self) -> dict[str, int]:
        return {"documents": self.documents, "pages": self.pages, "vectors": self.vectors, "max_gen": self.max_gen}


def registry_stamp(registry: Registry) -> RegistryStamp:
    """The registry's current :class:`RegistryStamp` (one aggregate query)."""
    # Registry has no public aggregate with the largest generation; one read-only SELECT on its connection.
    row = registry._db.execute(
        "SELECT COUNT(*), COALESCE(SUM(num_pages), 0), COALESCE(SUM(num_vectors), 0), COALESCE(MAX(gen), 0) "
        "FROM documents"
    ).fetchone()
    return RegistryStamp(*(int(v) for v in row))


def copy_dtype(storage: StorageType) -> np.dtype:
    """The dtype that holds ``storage``'s anchors exactly."""
    return np.dtype(np.float32 if StorageType(storage) is StorageType.FLOAT32 else np.float16)


@dataclass
class AnchorCopy:
    """An open copy.

    Attributes:
        path: the file.
        stamp: the registry state it was built from.
        ids: ``(pages,)`` int64 engine point ids, in page order.
        offsets: ``(pages + 1,)`` int64; page ``p``'s anchors are rows ``offsets[p]:offsets[p + 1]``.
        anchors: ``(vectors, dim)`` read-only memory map (float16 or float32).
    """

    path: Path
    stamp: RegistryStamp
    ids: np.ndarray
    offsets: np.ndarray
    anchors: np.ndarray
    _rows: dict[int, int] | None = None

    def page_of(self, point_id: int) -> int | None:
        """The page index of an engine point id, or None."""
        if self._rows is None:
            self._rows = {int(p): i for i, p in enumerate(self.ids.tolist())}
        return self._rows.get(int(point_id))

    def fresh(self, registry: Registry) -> bool:
        """Whether it still describes the registry's committed pages."""
        return registry_stamp(registry) == self.stamp

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.offsets.nbytes + self.anchors.nbytes)


def _derived_dir(root: Path, *, create: bool) -> Path | None:
    """``<root>/derived`` if it is a real directory (made when ``create``), else None."""
    path = Path(root) / DERIVED_DIR
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        if not create:
            return None
        os.mkdir(path, 0o755)
        fsync_dir(Path(root))
        return path
    if not stat.S_ISDIR(mode):  # a link or a file where the directory should be: not ours to follow or remove
        logger.warning("%s is not a plain directory; the anchor copy is not used", path)
        return None
    return path


def _header_bytes(meta: dict[str, Any]) -> bytes:
    body = json.dumps(meta, sort_keys=True).encode()
    head = _MAGIC + len(body).to_bytes(8, "little") + body
    return head + b"\0" * (-len(head) % _ALIGN)


def open_copy(root: Path, registry: Registry, dim: int, storage: StorageType) -> AnchorCopy | None:
    """The index's copy if it exists, is well formed and is fresh; else None (logged)."""
    directory = _derived_dir(root, create=False)
    if directory is None:
        return None
    path = directory / COPY_NAME
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:  # a link (ELOOP) or unreadable
        logger.warning("the anchor copy %s cannot be opened (%s); not used", path, exc)
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            copy = _parse(handle, path, dim, copy_dtype(storage))
        except (ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
            logger.warning("the anchor copy %s is damaged (%s); not used", path, exc)
            return None
    if copy.stamp != registry_stamp(registry):
        logger.info("the anchor copy %s is stale (built for %s)", path, copy.stamp)
        return None
    return copy


def _parse(handle: Any, path: Path, dim: int, dtype: np.dtype) -> AnchorCopy:
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    size = info.st_size
    head = handle.read(16)
    if len(head) != 16 or head[:8] != _MAGIC:
        raise ValueError("bad magic")
    n = int.from_bytes(head[8:], "little")
    if n > 1 << 20 or 16 + n > size:
        raise ValueError("bad header length")
    meta = json.loads(handle.read(n))
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise ValueError("unknown format")
    pages, vectors = int(meta["pages"]), int(meta["vectors"])
    if int(meta["dim"]) != dim or meta["dtype"] != dtype.name or pages < 0 or vectors < 0:
        raise ValueError("dim or dtype differs from the index")
    stamp = RegistryStamp(**{k: int(meta["stamp"][k]) for k in ("documents", "pages", "vectors", "max_gen")})
    start = 16 + n + (-(16 + n) % _ALIGN)
    expected = start + 8 * pages + 8 * (pages + 1) + vectors * dim * dtype.itemsize
    if size != expected or stamp.pages != pages or stamp.vectors != vectors:
        raise ValueError(f"size {size} does not match its header (expected {expected})")
    ids = np.fromfile(handle, dtype="<i8", count=pages, offset=start - 16 - n)
    offsets = np.fromfile(handle, dtype="<i8", count=pages + 1)
    if offsets[0] != 0 or offsets[-1] != vectors or (pages and np.any(np.diff(offsets) <= 0)):
        raise ValueError("offsets are not increasing from 0 to the vector count")
    if pages and (np.any(ids < 0) or np.unique(ids).size != pages):
        raise ValueError("point ids are negative or repeated")
    base = start + 8 * (2 * pages + 1)
    anchors = (
        np.memmap(handle, dtype=dtype.newbyteorder("<"), mode="r", offset=base, shape=(vectors, dim))
        if vectors
        else np.empty((0, dim), dtype)
    )
    return AnchorCopy(path, stamp, ids, offsets, anchors)


def _clean_orphans(directory: Path) -> None:
    """Remove temp files of rebuilds whose process is gone (killed mid-write)."""
    for name in os.listdir(directory):
        if not (name.startswith(".anchors.") and name.endswith(".tmp")):
            continue
        pid = name[len(".anchors.") : -len(".tmp")]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            if int(pid) != os.getpid():
                continue  # a live process is writing it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            os.unlink(directory / name)  # unlink removes a link itself, never its target
        except FileNotFoundError:
            pass


def build_copy(root: Path, registry: Registry, backend: Any, dim: int, storage: StorageType) -> AnchorCopy | None:
    """Rebuild the copy from the engine's stored vectors; None where the engine and the registry
    disagree (a write in flight, missing points: the caller scans through the engine).

    Raises:
        OSError: the index directory cannot be written.
    """
    directory = _derived_dir(root, create=True)
    if directory is None:
        return None
    _clean_orphans(directory)
    stamp = registry_stamp(registry)
    dtype = copy_dtype(storage)
    ids = np.array(
        [page_point_id(r.gen, n) for r in registry.documents() for n in r.page_numbers], dtype=np.int64
    ).reshape(-1)
    pages, vectors = int(ids.size), stamp.vectors
    if pages != stamp.pages:
        return None
    meta = {"format": _FORMAT, "pages": pages, "vectors": vectors, "dim": dim, "dtype": dtype.name}
    meta["stamp"] = stamp.as_dict()
    header = _header_bytes(meta)
    tmp = directory / f".anchors.{os.getpid()}.tmp"
    offsets = np.zeros(pages + 1, dtype="<i8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(header)
            out.write(ids.astype("<i8").tobytes())
            out.seek(8 * (pages + 1), os.SEEK_CUR)  # offsets, written once known
            row = 0
            for lo in range(0, pages, _READ_BATCH):
                batch = ids[lo : lo + _READ_BATCH].tolist()
                points = backend.retrieve_points(batch)
                if len(points) != len(batch):
                    logger.warning(
                        "the engine lacks %d committed pages; anchor copy not built", len(batch) - len(points)
                    )
                    return _abandon(tmp)
                for i, point in enumerate(points):
                    a = np.ascontiguousarray(point.anchors, dtype=np.float32)
                    if a.ndim != 2 or a.shape[1] != dim or a.shape[0] == 0:
                        return _abandon(tmp)
                    out.write(a.astype(dtype.newbyteorder("<")).tobytes())
                    row += a.shape[0]
                    offsets[lo + i + 1] = row
            if row != vectors:
                logger.warning("the engine holds %d anchors, the registry %d; anchor copy not built", row, vectors)
                return _abandon(tmp)
            out.seek(len(header) + 8 * pages)
            out.write(offsets.tobytes())
            out.flush()
            os.fsync(out.fileno())
        if registry_stamp(registry) != stamp:  # a writer committed while we read: this copy is already stale
            return _abandon(tmp)
        os.replace(tmp, directory / COPY_NAME)
        fsync_dir(directory)
    except BaseException:
        _abandon(tmp)
        raise
    logger.info("anchor copy rebuilt: %d pages, %d anchors", pages, vectors)
    return open_copy(root, registry, dim, storage)


def _abandon(tmp: Path) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    return None


def ensure_copy(
    root: Path, registry: Registry, backend: Any, dim: int, storage: StorageType, *, read_only: bool
) -> AnchorCopy | None:
    """A fresh copy: the existing one, else (for a writable open) a rebuilt one; None where there
    is none to use (read-only and stale or missing, or the rebuild could not write)."""
    copy = open_copy(root, registry, dim, storage)
    if copy is not None or read_only:
        return copy
    try:
        return build_copy(root, registry, backend, dim, storage)
    except OSError as exc:
        logger.warning("the anchor copy of %s could not be written (%s); scanning through the engine", root, exc)
        return None


def remove_copy(root: Path) -> None:
    """Delete the copy (a later search rebuilds it)."""
    directory = _derived_dir(root, create=False)
    if directory is not None:
        try:
            os.unlink(directory / COPY_NAME)
        except FileNotFoundError:
            pass


def search_copy(
    copy: AnchorCopy,
    backend: Any,
    queries: list[np.ndarray],
    k: int,
    *,
    precision: str = "float32",
    point_ids: np.ndarray | None = None,
) -> list[list[Any]]:
    """Exact MaxSim top-``k`` of each ``(n_q, dim)`` query over the copy (or only the pages with
    these engine ``point_ids``), as the engine's :class:`ScoredPoint` lists with payloads, best first."""
    from ..search.scan import scan_maxsim
    from .backends.base import ScoredPoint

    if copy.ids.size == 0:
        return [[] for _ in queries]
    subset = None
    if point_ids is not None:
        rows = [copy.page_of(int(p)) for p in np.asarray(point_ids).reshape(-1)]
        subset = np.array([r for r in rows if r is not None], dtype=np.int64)
        if subset.size == 0:
            return [[] for _ in queries]
    result = scan_maxsim(queries, copy.anchors, copy.offsets, k, pages=subset, precision=precision)
    ids = copy.ids[result.pages]
    payloads = backend.retrieve(sorted({int(i) for i in ids.ravel()}))
    return [
        [
            ScoredPoint(int(i), float(s), payloads[int(i)])
            for i, s in zip(row_ids, row_s, strict=True)
            if int(i) in payloads
        ]
        for row_ids, row_s in zip(ids, result.scores, strict=True)
    ]
