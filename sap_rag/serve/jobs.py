"""Upload jobs: one writer thread indexes queued files while searches go on.

A job is a list of files (uploaded into a private folder, or read from an allowed server folder).
Each file is one document, added all or nothing by ``SAPIndex.add_documents`` (the same checks and
errors as ``sap-rag index``); a file that cannot be read gets its one-line error in the job's
results and the others are still indexed. A job is ``done`` only once every document it reports is
committed (the index's journal makes that survive ``kill -9``). Uploaded files are removed after.
"""

from __future__ import annotations

import itertools
import logging
import queue
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SapRagError
from .errors import TooManyJobsError, error_body, one_line
from .joblog import JobLog
from .uploads import remove_quietly

logger = logging.getLogger(__name__)

__all__ = ["FileResult", "Job", "JobQueue", "JobState"]


class JobState:
    """A job's states (plain strings in JSON)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass
class FileResult:
    """What became of one file: its document id and pages, or its error (one line) and the error's class name."""

    file: str
    doc_id: str | None = None
    pages: int = 0
    status: str = "pending"  # pending | added | unchanged | failed
    error: str | None = None
    error_type: str | None = None


@dataclass
class Job:
    """An upload job (see :class:`JobQueue`)."""

    job_id: str
    paths: list[Path]
    names: list[str]
    metadata: dict[str, Any]
    folder: Path | None  # the private upload folder to remove afterwards (None: server-side files)
    state: str = JobState.QUEUED
    results: list[FileResult] = field(default_factory=list)
    files_done: int = 0
    pages_done: int = 0
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "progress": {"files_done": self.files_done, "files_total": len(self.paths), "pages_done": self.pages_done},
            "results": [vars(r).copy() for r in self.results],
            "error": self.error,
            "created": self.created,
            "finished": self.finished,
        }


class JobQueue:
    """The single writer: queued jobs run one after another on one thread.

    Args:
        index: the open, writable ``SAPIndex``.
        max_queued: most jobs queued or running at once (``TooManyJobsError``, 429, beyond it).
        keep: finished jobs remembered.
        batch_size: pages per forward pass while indexing.
        log: where accepted and finished jobs are recorded, so ``GET /jobs/{id}`` answers across a
            restart (None: jobs live in memory only).
    """

    def __init__(self, index: Any, *, max_queued: int, keep: int, batch_size: int, log: JobLog | None = None) -> None:
        self.log = log
        self._index = index
        self._max_queued = max_queued
        self._keep = keep
        self._batch_size = batch_size
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending = 0
        self._counter = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="sap-rag-writer", daemon=True)
        self._thread.start()

    def submit(self, paths: list[Path], names: list[str], metadata: dict[str, Any], folder: Path | None) -> Job:
        """Queue a job; raises ``TooManyJobsError`` when the queue is full (the caller removes ``folder``)."""
        with self._lock:
            if self._closed:
                raise TooManyJobsError("the server is shutting down; no uploads are taken")
            if self._pending >= self._max_queued:
                raise TooManyJobsError(
                    f"{self._pending} uploads are waiting to be indexed, the most this server queues; retry later"
                )
            job_id = f"{next(self._counter)}-{secrets.token_hex(6)}"
            job = Job(job_id, list(paths), list(names), dict(metadata), folder)
            job.results = [FileResult(file=name) for name in names]
            self._jobs[job_id] = job
            self._pending += 1
            self._forget_old()
        if self.log is not None:
            self.log.queued(job_id)
        self._queue.put(job)
        logger.info("job %s queued: %d files", job_id, len(paths))
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def snapshot(self, job_id: str) -> dict[str, Any] | None:
        """The job as JSON data, read under the lock (the writer updates it as it goes)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.to_dict()
        return self.log.lookup(job_id) if self.log is not None else None

    def lost(self, job_id: str) -> bool:
        """Whether an earlier run of this server accepted ``job_id`` and stopped before it finished."""
        return self.log is not None and self.log.lost(job_id)

    @property
    def pending(self) -> int:
        return self._pending

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, finish the running one, drop the queued ones (their files are removed)."""
        with self._lock:
            self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._finish(job, JobState.FAILED, "the server stopped before this job ran")
        if self.log is not None:
            self.log.close()

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in (JobState.DONE, JobState.FAILED)]
        for key in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[key]

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                if job is not None:
                    self._queue.put(job)  # left for close() to fail and clean up
                return
            try:
                self._run(job)
            except BaseException as exc:  # the writer must outlive any job
                _, body = error_body(exc)
                self._finish(job, JobState.FAILED, body["error"]["message"])
            else:
                self._finish(job, JobState.DONE, None)

    def _run(self, job: Job) -> None:
        with self._lock:
            job.state = JobState.RUNNING
        for i, (path, name) in enumerate(zip(job.paths, job.names)):
            result = self._add_one(path, name, job)
            with self._lock:
                job.results[i] = result
                job.files_done += 1
                job.pages_done += result.pages if result.status == "added" else 0

    def _add_one(self, path: Path, name: str, job: Job) -> FileResult:
        meta = dict(job.metadata)
        if job.folder is not None:
            # An upload: the client's file name, not the private temporary path, is its source.
            meta.update(source=name, filename=name)
        try:
            report = self._index.add_documents([path], metadata=meta, batch_size=self._batch_size)
        except SapRagError as exc:
            _, body = error_body(exc)
            message = self._private(body["error"]["message"], path, name, job)
            logger.info("job %s: %s was not indexed: %s", job.job_id, name, message)
            return FileResult(name, status="failed", error=message, error_type=body["error"]["type"])
        except OSError as exc:
            message = self._private(one_line(exc), path, name, job)
            logger.warning("job %s: %s was not indexed: %s", job.job_id, name, message)
            return FileResult(name, status="failed", error=message, error_type="OSError")
        doc_id = report.doc_ids[0] if report.doc_ids else None
        if report.added:
            return FileResult(name, doc_id=report.added[0].doc_id, pages=report.added[0].num_pages, status="added")
        pages = self._index.document(doc_id).num_pages if doc_id is not None and doc_id in self._index else 0
        return FileResult(name, doc_id=doc_id, pages=pages, status="unchanged")

    @staticmethod
    def _private(message: str, path: Path, name: str, job: Job) -> str:
        """An upload's error names the file as the client sent it, never the private temporary path."""
        if job.folder is None:
            return message
        return message.replace(str(path), name).replace(str(job.folder), "(upload)")

    def _finish(self, job: Job, state: str, error: str | None) -> None:
        if job.folder is not None:
            remove_quietly(job.folder)
        with self._lock:
            job.state = state
            job.error = error
            job.finished = time.time()
            self._pending -= 1
            for result in job.results:
                if result.status == "pending":
                    result.status, result.error = "failed", error or "not indexed"
            snapshot = job.to_dict()
        if self.log is not None:
            self.log.finished(snapshot)
        done = sum(r.status in ("added", "unchanged") for r in job.results)
        logger.info("job %s %s: %d of %d files indexed", job.job_id, state, done, len(job.paths))
