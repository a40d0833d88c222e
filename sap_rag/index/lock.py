"""Who may have an index open: one writer alone, or any number of read-only searchers.

``<index>/.lock`` carries an ``flock``: a writer holds it exclusively, a read-only open holds it
shared. So read-only opens (in any processes) coexist, and a writer and readers exclude each
other. Why not readers beside a writer: Qdrant Edge does no locking of its own, a writer rewrites
segment files that readers have mapped, and a reader's view of an engine that changes under it
is undefined (measured with qdrant-edge-py 0.9.0).

Even a read-only ``EdgeShard.load`` writes: it rewrites ``edge_config.json`` (same settings, by
rename), re-sizes and re-maps the ``deleted`` flag files and folds payload trackers' journals in;
``close`` rewrites each ``segment.json`` (same content, by rename) and status files. These are
idempotent, but two of them at the same moment are not known to be safe, so readers load and
close their shard inside :meth:`IndexLock.engine_section`, an exclusive ``flock`` on the index
directory itself (searches run concurrently; only the loads and closes take turns).

The kernel drops every ``flock`` when its holder exits, also on ``SIGKILL``, so a crashed
process never leaves a stale lock behind. The lock file is opened without following links and
must be a regular file with one link, so a crafted ``.lock`` cannot make sap-rag truncate or
write a file elsewhere.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import IndexFormatError, IndexLockedError

__all__ = ["LOCK_NAME", "IndexLock"]

LOCK_NAME = ".lock"

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file; refuse a link or anything but a plain file of its own."""
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise IndexFormatError(
                f"{path} is a symbolic link; an index's lock file must be a plain file, and sap-rag does not "
                "follow links inside an index. If you trust this index, delete the link and open it again"
            ) from None
        raise IndexFormatError(f"cannot open the index's lock file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            what = "not a regular file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file"
            raise IndexFormatError(
                f"{path} is {what}; an index's lock file must be a plain file of its own. If you trust this "
                "index, delete it and open the index again"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


class IndexLock:
    """Hold ``<directory>/.lock`` (exclusively, or ``shared`` for a read-only open) until :meth:`release`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     first = IndexLock.acquire(d)
    ...     try:
    ...         IndexLock.acquire(d)
    ...     except IndexLockedError as exc:
    ...         print("locked:", "pid" in str(exc))
    ...     first.release()
    ...     readers = [IndexLock.acquire(d, shared=True) for _ in range(2)]
    ...     print("two readers:", all(r.held for r in readers))
    ...     for r in readers:
    ...         r.release()
    locked: True
    two readers: True
    """

    def __init__(self, path: Path, fd: int, *, shared: bool = False) -> None:
        self.path = path
        self.shared = shared
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: str | os.PathLike, *, shared: bool = False) -> IndexLock:
        """Take the lock or raise :class:`IndexLockedError` saying who holds it and what to do.

        Raises:
            IndexLockedError: a writer holds it (or, for an exclusive lock, readers do).
            IndexFormatError: ``.lock`` is a link or not a regular file.
        """
        root = Path(directory)
        path = root / LOCK_NAME
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            message = _refusal(root, fd, shared)
            os.close(fd)
            raise IndexLockedError(message) from None
        except BaseException:
            os.close(fd)
            raise
        if not shared:
            info = f"pid={os.getpid()} host={socket.gethostname()} since={_now()}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        return cls(path, fd, shared=shared)

    @property
    def held(self) -> bool:
        return self._fd is not None

    @contextmanager
    def engine_section(self) -> Iterator[None]:
        """Take turns with other readers for what writes engine files (load, close); a no-op for a writer."""
        if not self.shared:
            yield
            return
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # loads take a fraction of a second: wait for the other reader
            yield
        finally:
            os.close(fd)  # drops the flock

    def release(self) -> None:
        """Release the lock (idempotent). The lock file stays: deleting it would race with a new holder."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if not self.shared:
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _writer_holds(fd: int) -> bool:
    """Whether a writer (an exclusive lock) holds the file, as opposed to only readers."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _refusal(root: Path, fd: int, shared: bool) -> str:
    if shared or _writer_holds(fd):
        holder = _read_holder(fd)
        if shared:
            return (
                f"the index at {root} is open for writing by {holder}, so it cannot be opened read-only now: "
                "Qdrant Edge changes files under a reader while writing. Search through that process, or wait "
                "until it closes the index (SAPIndex.close(), or the process ends)"
            )
        return (
            f"the index at {root} is already open for writing by {holder}. Qdrant Edge cannot be shared by two "
            "writers: close the other SAPIndex (or end that process) first; to search from many processes "
            "at once, open it with SAPIndex.open(path, read_only=True) in each of them while no writer has it"
        )
    return (
        f"the index at {root} is open read-only (for searching) by one or more processes, so it cannot be "
        "opened for writing now: a writer needs the index to itself. Close those SAPIndex objects (or end "
        "those processes) first, then open it for writing"
    )


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    if not text:
        return "another process or another SAPIndex object in this process"
    return f"process {text} (or another SAPIndex object in that process)"
