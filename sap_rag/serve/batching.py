"""Dynamic micro-batching: requests from many threads are gathered for a few milliseconds and run as one batch.

A request waits for the first one in the queue plus up to ``max_wait_s``, or until ``max_batch``
requests are in hand, then one worker thread runs the whole batch (one forward pass over every query
text, one engine call over every query). With ``max_batch=1`` each request runs alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

__all__ = ["BatchStats", "MicroBatcher"]

T = TypeVar("T")

_STOP = object()


@dataclass
class BatchStats:
    """Counters since start: batches run, requests served, the largest batch."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class MicroBatcher(Generic[T]):
    """Run ``handler(items) -> results`` over batches of items submitted from any thread.

    Args:
        handler: takes the batch's items, returns one result per item in order; a result that is an
            exception instance is raised to that item's caller only. If the handler itself raises,
            every item of the batch gets that error.
        max_batch: most items per batch (at least 1).
        max_wait_s: how long to wait for more items once the first arrived.
        name: the worker thread's name.
    """

    def __init__(
        self, handler: Callable[[list[T]], Sequence[Any]], *, max_batch: int, max_wait_s: float, name: str
    ) -> None:
        if max_batch < 1:
            raise InvalidInputError(f"max_batch must be at least 1, got {max_batch}")
        self._handler = handler
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.stats = BatchStats()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future:
        """Queue ``item``; the future holds its result (or raises its error)."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued items, then stop the worker."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[T, Future]]) -> None:
        live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
        if not live:
            return
        self.stats.batches += 1
        self.stats.requests += len(live)
        self.stats.largest = max(self.stats.largest, len(live))
        self.stats.sizes[len(live)] = self.stats.sizes.get(len(live), 0) + 1
        try:
            results = list(self._handler([item for item, _ in live]))
            if len(results) != len(live):
                raise RuntimeError(f"the batch handler returned {len(results)} results for {len(live)} items")
        except BaseException as exc:  # the worker must survive anything a batch raises
            for _, future in live:
                future.set_exception(exc)
            return
        for (_, future), result in zip(live, results):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
