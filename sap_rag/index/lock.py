"""Who may have an index open: one writer alone, or any number of read-only searchers; and who waits.

``<index>/.lock`` carries an ``flock``: a writer holds it exclusively, a read-only open holds it
shared. So read-only opens (in any processes) coexist, and a writer and readers exclude each
other. Why not readers beside a writer: Qdrant Edge does no locking of its own, a writer rewrites
segment files that readers have mapped, and a reader's view of an engine that changes under it
is undefined (measured with qdrant-edge-py 0.9.0).

Waiting: an open may wait up to ``timeout`` seconds for its turn (polling; a lock never waits
without a limit). A waiting writer is not starved by a stream of new readers: it first takes
``<index>/.lock.wait`` exclusively and holds it while it waits for ``.lock``; a reader passes
through ``.lock.wait`` (shared, for an instant) before it takes ``.lock``, so readers that arrive
after a waiting writer queue behind it, and the writer gets the index once the readers already in
have closed it. A timed-out wait raises :class:`IndexLockTimeoutError` naming the processes that
hold the lock (read off ``/proc/locks``; a stopped one is said to be stopped).

Even a read-only ``EdgeShard.load`` writes: it rewrites ``edge_config.json`` (by rename), re-sizes
and re-maps the ``deleted`` flag files and folds payload trackers' journals in; ``close`` rewrites
each ``segment.json`` (by rename) and status files. These are idempotent, but two of them at the
same moment are not known to be safe, so readers load and close their shard inside
:meth:`IndexLock.engine_section`, an exclusive ``flock`` on the index directory itself (searches
run concurrently; only the loads and closes take turns). That wait is bounded too: a reader
stopped inside its load (Ctrl-Z, a debugger) makes other loads fail after
:attr:`IndexLock.ENGINE_WAIT` seconds with an error naming it, and other readers' closes go ahead
without the section after that time rather than hang.

The kernel drops every ``flock`` when its holder exits, also on ``SIGKILL``, so a crashed
process never leaves a stale lock behind. The lock files are opened without following links and
must be regular files with one link, so a crafted ``.lock`` cannot make sap-rag truncate or write
a file elsewhere. On a read-only folder or mount they are opened read-only (``flock`` works on
those too); where ``.lock`` does not exist there and cannot be made, no writer can exist either.
A lock that a failed creator removed (with its directory) while we waited for it is noticed
(the file at the path is no longer the one locked) and taken again.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import logging
import math
import os
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import (
    IndexFormatError,
    IndexLockedError,
    IndexLockTimeoutError,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexStorageError,
)

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "WAIT_NAME", "IndexLock", "check_timeout", "lock_holders"]

LOCK_NAME = ".lock"
WAIT_NAME = ".lock.wait"

_BASE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_POLL_FIRST = 0.002
_POLL_MAX = 0.05
_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def check_timeout(timeout: object, what: str = "timeout") -> float:
    """``timeout`` as seconds (a finite number >= 0), or an :class:`InvalidInputError`."""
    from ..errors import InvalidInputError

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
        raise InvalidInputError(f"{what} must be a number of seconds >= 0, got {timeout!r}")
    if timeout < 0:
        raise InvalidInputError(f"{what} must be a number of seconds >= 0, got {timeout!r}")
    return float(timeout)


def _open_lock_file(path: Path, *, create: bool, writable: bool, optional: bool = False) -> tuple[int | None, bool]:
    """Open (or create) a lock file: ``(fd, created)``; ``(None, False)`` where it is absent and
    ``optional`` or cannot be made (a read-only folder, only when not ``writable``). Refuses a
    link or anything but a plain file of its own."""
    fd: int | None = None
    created = False
    attempts = [os.O_RDWR | os.O_CREAT | os.O_EXCL, os.O_RDWR] if create else [os.O_RDWR]
    if not writable:
        attempts.append(os.O_RDONLY)  # a read-only folder or mount: flock works on O_RDONLY too
    error: OSError | None = None
    for flags in attempts:
        try:
            fd = os.open(path, flags | _BASE_FLAGS, 0o644)
            created = bool(flags & os.O_EXCL)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IndexFormatError(
                    f"{path} is a symbolic link; an index's lock file must be a plain file, and sap-rag does not "
                    "follow links inside an index. If you trust this index, delete the link and open it again"
                ) from None
            error = exc
            if exc.errno in _READ_ONLY_ERRNOS or exc.errno == errno.ENOENT:
                continue
            break
    if fd is None:
        assert error is not None
        if error.errno == errno.ENOENT and (optional or not writable) and path.parent.is_dir():
            return None, False  # absent and not creatable here: nobody can write here either
        if error.errno == errno.ENOENT and not path.parent.is_dir():
            raise IndexNotFoundError(f"no index at {path.parent}: the directory does not exist (any more)")
        if error.errno in _READ_ONLY_ERRNOS and writable:
            raise IndexReadOnlyError(
                f"the index at {path.parent} is on a read-only folder or mount ({error.strerror}), so it cannot "
                "be opened for writing; open it with read_only=True to search it"
            ) from error
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise IndexStorageError(f"cannot create the lock file {path}: {error.strerror}; free some space") from error
        raise IndexFormatError(f"cannot open the index's lock file {path}: {error.strerror}") from error
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
    return fd, created


def _try_flock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_flock(fd: int, mode: int, deadline: float) -> bool:
    """Take ``flock(fd, mode)`` by polling until ``deadline`` (``time.monotonic``); False if not by then."""
    delay = _POLL_FIRST
    while True:
        if _try_flock(fd, mode):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        time.sleep(min(delay, deadline - now))
        delay = min(delay * 2, _POLL_MAX)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a failed creator may have removed it)."""
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)


def _folder_writable(root: Path) -> bool:
    """Whether files can be created in ``root`` (False on a read-only mount or without permission)."""
    try:
        if os.statvfs(root).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    return os.access(root, os.W_OK)


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

    ENGINE_WAIT = 30.0
    """Seconds a reader waits for another reader's engine load or close (a fraction of a second
    normally); past it, a load fails naming the holder and a close goes ahead without the turn."""

    def __init__(self, path: Path, fd: int | None, *, shared: bool = False, created_file: bool = False) -> None:
        self.path = path
        self.shared = shared
        self.created_file = created_file
        """Whether this lock created ``.lock`` (``SAPIndex.create`` removes only what it made)."""
        self._fd: int | None = fd
        self._held = True

    @classmethod
    def acquire(
        cls, directory: str | os.PathLike, *, shared: bool = False, timeout: float = 0.0, create: bool = True
    ) -> IndexLock:
        """Take the lock, waiting up to ``timeout`` seconds, or raise saying who holds it and what to do.

        Args:
            directory: the index directory.
            shared: a read-only open's lock (shared with other readers).
            timeout: seconds to wait for the holders to let go (0: fail at once). A writer that
                waits keeps readers that arrive after it out, so it gets its turn.
            create: make ``.lock`` where it is missing (a writer always may).

        Raises:
            IndexLockedError: held by others and ``timeout`` is 0 (a writer holds it, or, for an
                exclusive lock, readers do); :class:`IndexLockTimeoutError` after a wait.
            IndexFormatError: a lock file is a link or not a regular file.
            IndexReadOnlyError: an exclusive lock on a read-only folder or mount.
            IndexStorageError: the disk is full.
            IndexNotFoundError: the directory went away (a failed creator removed it).
        """
        root = Path(directory)
        timeout = check_timeout(timeout)
        deadline = time.monotonic() + timeout
        writable = _folder_writable(root) if shared else True
        path = root / LOCK_NAME
        while True:
            fd, created = _open_lock_file(path, create=create or not shared, writable=not shared or writable)
            if fd is None:
                logger.info("no lock file in the read-only folder %s: opening it without one", root)
                return cls(path, None, shared=True)
            try:
                got = cls._take(root, fd, shared, deadline, writable)
                if got and not _same_file(fd, path):
                    os.close(fd)  # removed (by a failed creator) while we waited: take the new one
                    continue
                if not got:
                    raise cls._refusal(root, fd, shared, timeout)
                if not shared:
                    cls._write_holder(path, fd)
            except BaseException:
                os.close(fd)  # drops any flock taken on it: a failed acquire never leaks the lock
                raise
            return cls(path, fd, shared=shared, created_file=created)

    @staticmethod
    def _take(root: Path, fd: int, shared: bool, deadline: float, writable: bool) -> bool:
        """Take ``.lock`` through the ``.lock.wait`` turnstile, polling until ``deadline``."""
        if not shared and _try_flock(fd, fcntl.LOCK_EX):
            return True  # free: nobody to queue behind
        if not shared and time.monotonic() >= deadline:
            return False  # no wait: no need to queue
        turn, _ = _open_lock_file(root / WAIT_NAME, create=not shared, writable=not shared or writable, optional=shared)
        try:
            if not shared:
                # Hold the turnstile while waiting: readers that come after this writer queue behind it.
                assert turn is not None
                return _wait_flock(turn, fcntl.LOCK_EX, deadline) and _wait_flock(fd, fcntl.LOCK_EX, deadline)
            delay = _POLL_FIRST
            while True:
                # No writer waiting (or none ever waited in this read-only folder): try the lock itself.
                if turn is None or _try_flock(turn, fcntl.LOCK_SH):
                    got = _try_flock(fd, fcntl.LOCK_SH)
                    if turn is not None:
                        fcntl.flock(turn, fcntl.LOCK_UN)
                    if got:
                        return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, _POLL_MAX)
        finally:
            if turn is not None:
                os.close(turn)

    @staticmethod
    def _write_holder(path: Path, fd: int) -> None:
        info = f"pid={os.getpid()} host={socket.gethostname()} since={_now()}\n"
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise IndexStorageError(
                    f"cannot write the lock file {path}: {exc.strerror}. The disk holding the index is full: free "
                    "some space, then open it again"
                ) from exc
            raise IndexStorageError(f"cannot write the lock file {path}: {exc.strerror}") from exc

    @property
    def held(self) -> bool:
        return self._held

    @contextmanager
    def engine_section(self, timeout: float | None = None, *, closing: bool = False) -> Iterator[None]:
        """Take turns with other readers for what writes engine files (load, close); a no-op for a writer.

        Waits up to ``max(timeout, ENGINE_WAIT)`` seconds. ``closing``: past that, go ahead
        without the turn (logged) instead of raising, so a stopped reader cannot hang others' exits.

        Raises:
            IndexLockTimeoutError: another reader held the section too long (not when ``closing``).
        """
        if not self.shared:
            yield
            return
        wait = max(self.ENGINE_WAIT, timeout or 0.0)
        root = self.path.parent
        try:
            fd: int | None = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise IndexNotFoundError(f"cannot open the index directory {root}: {exc.strerror}") from exc
        try:
            assert fd is not None
            if not _wait_flock(fd, fcntl.LOCK_EX, time.monotonic() + wait):
                who = describe_holders(lock_holders(fd)) or "another process"
                if not closing:
                    raise IndexLockTimeoutError(
                        f"waited {wait:g} s for {who} to finish loading or closing the index at {root} (readers "
                        "take turns for that, normally a fraction of a second); that process seems stuck: resume "
                        "or end it, then try again"
                    )
                logger.warning("closing the index at %s without waiting any longer for %s", root, who)
            yield
        finally:
            os.close(fd)  # drops the flock

    def release(self) -> None:
        """Release the lock (idempotent). The lock file stays: a creator that failed removes its own."""
        if not self._held:
            return
        self._held = False
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if not self.shared:
                try:
                    os.ftruncate(fd, 0)
                except OSError:  # the holder line is only a hint
                    pass
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # --- refusals ---------------------------------------------------------------------------

    @staticmethod
    def _refusal(root: Path, fd: int, shared: bool, timeout: float) -> IndexLockedError:
        waited = f" (waited {timeout:g} s)" if timeout > 0 else ""
        cls = IndexLockTimeoutError if timeout > 0 else IndexLockedError
        holders = lock_holders(fd)
        if shared and not _writer_holds(fd):
            waiting = _waiting_writer(root)
            return cls(
                f"a writer ({waiting or 'another process'}) is waiting for the index at {root}, and read-only opens "
                f"that arrive meanwhile wait behind it{waited}; try again once it has written, or pass "
                "SAPIndex.open(..., timeout=SECONDS) to wait"
            )
        if shared or _writer_holds(fd):
            holder = _read_holder(fd, holders)
            if shared:
                return cls(
                    f"the index at {root} is open for writing by {holder}, so it cannot be opened read-only now"
                    f"{waited}: Qdrant Edge changes files under a reader while writing. Search through that process, "
                    "or wait until it closes the index (SAPIndex.close(), or the process ends); "
                    "SAPIndex.open(..., timeout=SECONDS) waits for it"
                )
            return cls(
                f"the index at {root} is already open for writing by {holder}{waited}. Qdrant Edge cannot be shared "
                "by two writers: close the other SAPIndex (or end that process) first; to search from many processes "
                "at once, open it with SAPIndex.open(path, read_only=True) in each of them while no writer has it"
            )
        readers = describe_holders(holders)
        return cls(
            f"the index at {root} is open read-only (for searching) by one or more processes"
            + (f" ({readers})" if readers else "")
            + f", so it cannot be opened for writing now{waited}: a writer needs the index to itself. Close those "
            "SAPIndex objects (or end those processes) first, then open it for writing; SAPIndex.open(..., "
            "timeout=SECONDS) waits for them, and readers arriving meanwhile queue behind the writer"
        )


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _writer_holds(fd: int) -> bool:
    """Whether a writer (an exclusive lock) holds the file, as opposed to only readers."""
    if not _try_flock(fd, fcntl.LOCK_SH):
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _waiting_writer(root: Path) -> str:
    """Who holds the turnstile (a waiting writer), as words; "" where unknown."""
    try:
        fd = os.open(root / WAIT_NAME, os.O_RDONLY | _BASE_FLAGS)
    except OSError:
        return ""
    try:
        return describe_holders(lock_holders(fd))
    finally:
        os.close(fd)


def lock_holders(fd: int) -> list[int]:
    """Pids of the processes holding an ``flock`` on the file open as ``fd`` (from ``/proc/locks``;
    empty where that is unavailable, e.g. not Linux, or pids of another pid namespace)."""
    try:
        info = os.fstat(fd)
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    want = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    pids: list[int] = []
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->" or parts[1] != "FLOCK":
            continue
        try:
            major, minor, inode = parts[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(parts[4])
        except ValueError:
            continue
        if key == want and pid > 0 and pid not in pids:
            pids.append(pid)
    return pids


def describe_holders(pids: list[int]) -> str:
    """``"process 123 (stopped)"``, ``"processes 1, 2"``...; "" for none."""
    if not pids:
        return ""
    names = []
    for pid in pids:
        mark = " (this process)" if pid == os.getpid() else _process_state(pid)
        names.append(f"{pid}{mark}")
    return ("process " if len(names) == 1 else "processes ") + ", ".join(names)


def _process_state(pid: int) -> str:
    """`` (stopped)`` for a stopped process (Ctrl-Z, SIGSTOP, a debugger), else ""."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
    return " (stopped: resume it with 'kill -CONT' or end it)" if state in ("T", "t") else ""


def _read_holder(fd: int, pids: list[int]) -> str:
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    if text:
        pid = text.split()[0].removeprefix("pid=")
        state = _process_state(int(pid)) if pid.isdigit() else ""
        return f"process {text}{state} (or another SAPIndex object in that process)"
    if pids:
        return f"{describe_holders(pids)} (or another SAPIndex object in that process)"
    return "another process or another SAPIndex object in this process"
