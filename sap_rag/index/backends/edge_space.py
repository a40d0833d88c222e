"""Where a read-only open can load a Qdrant Edge shard: in place, or from a private copy.

Measured with qdrant-edge-py 0.9.0: ``EdgeShard.load`` opens the shard's files for writing (it
fails on a read-only folder or mount with "Read-only file system"), rewrites ``edge_config.json``
and folds payload trackers' journals into memory-mapped, sparse ``tracker.dat`` files. Writing a
mapped page of a sparse file on a disk with no free block raises SIGBUS, which kills the process
(a reader on a full disk vanished); on a memory-backed file system (tmpfs) the load fills the
sparse files' holes in: 0.3 MB of allocated files took 178 MB of a 64 MB tmpfs, and died there.

So before a read-only load, :func:`plan_load` measures the room the load needs and the disk has;
where it does not fit, or the folder is read-only, the shard is copied (sparse, hole for hole) to
a private folder under ``$SAP_RAG_SCRATCH`` (default: the temporary directory) and loaded from
there; that copy goes when the index is closed (a reader killed with SIGKILL leaves its
``sap-rag-readonly-*`` folder behind). Where neither fits, the open fails with a one-line
:class:`~sap_rag.index.errors.IndexStorageError` instead of a signal.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import IndexStorageError

logger = logging.getLogger(__name__)

__all__ = ["SCRATCH_ENV", "LoadPlan", "plan_load", "private_copy"]

SCRATCH_ENV = "SAP_RAG_SCRATCH"
"""Environment variable naming the folder for private copies (default: ``tempfile.gettempdir()``)."""

LOAD_MARGIN = 1 << 20
"""Bytes a load may write besides its tracker journals: renamed config files, status files."""

SEGMENT_MARGIN = 256 << 10
"""And per segment (its ``segment.json`` and flag files)."""

JOURNAL_FACTOR = 512
"""Folding a tracker journal in writes at most one 4 KiB page per 8-byte journal entry."""

_MEMORY_FS = frozenset({"tmpfs", "ramfs", "shm", "devtmpfs", "hugetlbfs"})
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class LoadPlan:
    """How a read-only open loads a shard.

    Attributes:
        in_place: load the shard where it is.
        reason: why not in place ("" when in place).
        allocated: bytes the shard's files occupy on disk.
        apparent: their apparent size (the files are sparse).
        need: bytes a load in place may allocate on the shard's disk.
        free: bytes free there.
    """

    in_place: bool
    reason: str
    allocated: int
    apparent: int
    need: int
    free: int


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _free_bytes(path: Path) -> tuple[int, bool]:
    """``(bytes free to this user, read-only)`` of the file system holding ``path``."""
    info = os.statvfs(path)
    read_only = bool(info.f_flag & os.ST_RDONLY) or not os.access(path, os.W_OK)
    return info.f_bavail * info.f_frsize, read_only


def _fs_type(path: Path) -> str:
    """The file system type of ``path`` (from ``/proc/self/mounts``; "" where unknown)."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return ""
    best, kind = "", ""
    for parts in mounts:
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def _walk(shard: Path) -> tuple[int, int, int, int]:
    """``(apparent, allocated, journal bytes, segments)`` of the shard's regular files (links skipped)."""
    apparent = allocated = journals = 0
    for folder, _dirs, files in os.walk(shard, followlinks=False):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            apparent += info.st_size
            allocated += info.st_blocks * 512
            if name == "tracker_journal.dat":
                journals += info.st_size
    segments_dir = shard / "segments"
    segments = sum(1 for p in segments_dir.iterdir() if p.is_dir()) if segments_dir.is_dir() else 1
    return apparent, allocated, journals, segments


def plan_load(shard: Path) -> LoadPlan:
    """Whether a read-only load of ``shard`` fits where it is (see the module docstring)."""
    apparent, allocated, journals, segments = _walk(shard)
    free, read_only = _free_bytes(shard)
    need = LOAD_MARGIN + SEGMENT_MARGIN * segments + JOURNAL_FACTOR * journals
    if _fs_type(shard) in _MEMORY_FS:
        need += max(apparent - allocated, 0)  # the load fills the sparse files in
    if read_only:
        reason = "it is on a read-only folder or mount, and Qdrant Edge opens its files for writing even to search"
    elif free < need:
        reason = (
            f"its disk has {_mb(free)} free and a load there may write up to {_mb(need)} (Qdrant Edge rewrites "
            "some of its files on every open, also to search; out of room it would die by SIGBUS)"
        )
    else:
        reason = ""
    return LoadPlan(not reason, reason, allocated, apparent, need, free)


def scratch_root() -> Path:
    """The folder private copies go in: ``$SAP_RAG_SCRATCH``, else the temporary directory."""
    return Path(os.environ.get(SCRATCH_ENV) or tempfile.gettempdir())


def private_copy(shard: Path, plan: LoadPlan) -> Path:
    """Copy ``shard`` (sparse files stay sparse) into a new private folder; return that folder
    (the copy is ``<folder>/shard``).

    Raises:
        IndexStorageError: the scratch folder has no room for the copy and its load.
    """
    base = scratch_root()
    where = f"the index at {shard.parent} cannot be loaded in place: {plan.reason}"
    try:
        free, read_only = _free_bytes(base)
    except OSError as exc:
        raise IndexStorageError(
            f"{where}; and the folder for a private copy, {base}, cannot be used ({exc.strerror}): set "
            f"{SCRATCH_ENV} to a writable folder with room"
        ) from exc
    need = plan.allocated + LOAD_MARGIN
    if _fs_type(base) in _MEMORY_FS:
        need += max(plan.apparent - plan.allocated, 0)
    if read_only or free < need:
        raise IndexStorageError(
            f"{where}; and a private copy (about {_mb(need)}) does not fit in {base} ({_mb(free)} free"
            + (", read-only" if read_only else "")
            + f"): free some space, or set {SCRATCH_ENV} to a folder with room"
        )
    folder = Path(tempfile.mkdtemp(prefix="sap-rag-readonly-", dir=base))
    try:
        _copy_tree(shard, folder / shard.name)
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError):
            raise IndexStorageError(f"{where}; and copying it to {folder} failed: {exc.strerror or exc}") from exc
        raise
    logger.info("loading the index at %s from a private copy in %s: %s", shard.parent, folder, plan.reason)
    return folder


def _copy_tree(source: Path, target: Path) -> None:
    """Copy a folder of regular files and folders; links and special files are not followed or copied."""
    target.mkdir(mode=0o700)
    for entry in os.scandir(source):
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(Path(entry.path), target / entry.name)
        elif entry.is_file(follow_symlinks=False):
            _copy_sparse(Path(entry.path), target / entry.name)
        else:
            logger.warning("not copying %s: the index holds only plain files and folders", entry.path)


def _copy_sparse(source: Path, target: Path) -> None:
    """Copy the data of ``source`` into a new file, leaving its holes as holes."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(src).st_size
            pos = 0
            while pos < size:
                try:
                    start = os.lseek(src, pos, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                end = os.lseek(src, start, os.SEEK_HOLE)
                while start < end:
                    data = os.pread(src, min(_COPY_CHUNK, end - start), start)
                    if not data:
                        break
                    os.pwrite(dst, data, start)
                    start += len(data)
                pos = end
            os.ftruncate(dst, size)
        finally:
            os.close(dst)
    finally:
        os.close(src)
