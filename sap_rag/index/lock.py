"""An exclusive, process-wide lock on an index directory (``fcntl.flock`` on ``<index>/.lock``).

Qdrant Edge does no locking of its own, and even loading a shard rewrites some of its files, so
only one ``SAPIndex`` may have an index open at a time. The kernel drops the lock when its holder
exits, also on ``SIGKILL``, so a crashed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import socket
from pathlib import Path

from .errors import IndexLockedError

__all__ = ["LOCK_NAME", "IndexLock"]

LOCK_NAME = ".lock"


class IndexLock:
    """Hold ``<directory>/.lock`` exclusively until :meth:`release`.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     first = IndexLock.acquire(d)
    ...     try:
    ...         IndexLock.acquire(d)
    ...     except IndexLockedError as exc:
    ...         print("locked:", "pid" in str(exc))
    ...     first.release()
    locked: True
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: str | os.PathLike) -> IndexLock:
        """Take the lock or raise :class:`IndexLockedError` naming the holder's pid."""
        path = Path(directory) / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise IndexLockedError(
                f"the index at {Path(directory)} is already open for writing by {holder}. "
                "Qdrant Edge cannot be shared by two writers: close the other SAPIndex (or end that "
                "process) first; for many processes at once, put the index on a Qdrant server (qdrant_url=...)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = (
            f"pid={os.getpid()} host={socket.gethostname()} since={_dt.datetime.now().isoformat(timespec='seconds')}\n"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Release the lock (idempotent). The lock file stays: deleting it would race with a new holder."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    if not text:
        return "another process or another SAPIndex object in this process"
    return f"process {text} (or another SAPIndex object in that process)"
