"""Upload jobs remembered across restarts: a small JSON-lines file in the server's state folder.

Each job appends a ``queued`` line when it is accepted and a ``finished`` line (its whole JSON state)
when it ends. At the next start, a finished job answers ``GET /jobs/{id}`` as before the restart; a
job that was queued but never finished is known to be *lost* (the server stopped while it waited or
ran), so its poller gets a clear error instead of a bare 404. The file is rewritten (atomically) at
each start with only the last ``keep`` jobs, so it stays small. It lives outside the index: the
index's own journal, not this file, is what makes acknowledged documents durable.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["JobLog"]

LOG_NAME = "jobs.jsonl"
MAX_LINE_CHARS = 1_000_000
"""A line longer than this is not one this server wrote (a job of 100 files is far smaller): skipped."""


class JobLog:
    """The finished jobs of earlier runs, and the ids of jobs they lost, read from ``folder/jobs.jsonl``.

    Args:
        folder: the server's state folder (created, mode 0700; a link is refused).
        keep: most jobs kept in the file.
    """

    def __init__(self, folder: str | os.PathLike, keep: int) -> None:
        self.folder = Path(folder)
        self._keep = keep
        self._lock = threading.Lock()
        if self.folder.is_symlink() or (self.folder.exists() and not self.folder.is_dir()):
            raise InvalidInputError(f"the server state folder {self.folder} is a link or not a folder; choose another")
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.folder / LOG_NAME
        self._finished: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lost: OrderedDict[str, None] = OrderedDict()
        self._load()
        self._rewrite()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        self._fd = os.open(self.path, flags, 0o600)

    def _load(self) -> None:
        try:
            info = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISREG(info.st_mode):
            raise InvalidInputError(f"{self.path} is not a plain file; remove it or choose another state folder")
        queued: OrderedDict[str, None] = OrderedDict()
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                record = _parse(line)
                if record is None:
                    if line.strip():
                        logger.warning("%s line %d is not a job record; skipped", self.path, number)
                    continue
                event, job_id, job = record
                if event == "queued":
                    queued[job_id] = None
                elif event == "lost":
                    self._lost[job_id] = None
                else:
                    queued.pop(job_id, None)
                    self._lost.pop(job_id, None)
                    self._finished[job_id] = job
        self._lost.update(queued)  # queued and never finished: the server stopped first
        for table in (self._finished, self._lost):
            while len(table) > self._keep:
                table.popitem(last=False)

    def _rewrite(self) -> None:
        lines = [json.dumps({"event": "finished", "job_id": k, "job": v}) for k, v in self._finished.items()]
        lines += [json.dumps({"event": "lost", "job_id": k}) for k in self._lost]
        temporary = self.folder / f".{LOG_NAME}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)

    def queued(self, job_id: str) -> None:
        """Record that ``job_id`` was accepted."""
        self._append({"event": "queued", "job_id": job_id})

    def finished(self, job: dict[str, Any]) -> None:
        """Record a finished job's JSON state (as ``GET /jobs/{id}`` shows it)."""
        self._append({"event": "finished", "job_id": job["job_id"], "job": job})

    def lookup(self, job_id: str) -> dict[str, Any] | None:
        """A job an earlier run finished, as it was then; None if none."""
        return self._finished.get(job_id)

    def lost(self, job_id: str) -> bool:
        """Whether an earlier run accepted ``job_id`` and stopped before it finished."""
        return job_id in self._lost

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _append(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record) + "\n").encode("utf-8")
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, data)  # one write per line: O_APPEND keeps lines whole
            except OSError as exc:  # a full disk loses the record, never the job
                logger.warning("could not record job %s in %s: %s", record["job_id"], self.path, exc)


def _parse(line: str) -> tuple[str, str, dict[str, Any]] | None:
    if len(line) > MAX_LINE_CHARS:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    event, job_id, job = record.get("event"), record.get("job_id"), record.get("job")
    if event not in ("queued", "finished", "lost") or not isinstance(job_id, str) or not 0 < len(job_id) <= 64:
        return None
    if event == "finished" and not (isinstance(job, dict) and job.get("job_id") == job_id):
        return None
    return event, job_id, job if isinstance(job, dict) else {}
