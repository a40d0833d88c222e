"""The image of an image ``QueryBundle``, for a :class:`SAPPageStore` queried by ``VectorIndexRetriever``.

``VectorStoreIndex.as_retriever()`` turns a ``QueryBundle`` into a ``VectorStoreQuery``, which
has no field for an image: ``QueryBundle(query_str="", image_path="page.png")`` would reach the
store as an empty query. LlamaIndex announces every retrieval on its instrumentation dispatcher
(``RetrievalStartEvent``, with the query bundle) just before the retriever runs, in the caller's
thread or task. A handler on the root dispatcher keeps the latest such bundle in a context
variable, and the store takes its image when the query it gets has that bundle's text. The
variable is per thread and per asyncio task, and the store takes the bundle once, so a
retrieval never sees another's image.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.schema import QueryBundle

__all__ = ["install", "take_query_image"]

_PENDING: ContextVar[tuple[str, str] | None] = ContextVar("sap_rag_llama_index_query_image", default=None)
_LOCK = threading.Lock()
_INSTALLED = False


class QueryImageRecorder(BaseEventHandler):
    """Remembers the image of the retrieval starting in this context (see the module docstring)."""

    @classmethod
    def class_name(cls) -> str:
        return "SAPQueryImageRecorder"

    def handle(self, event: Any, **kwargs: Any) -> None:
        if isinstance(event, RetrievalStartEvent):
            query = event.str_or_query_bundle
            image = query.image_path if isinstance(query, QueryBundle) else None
            _PENDING.set((query.query_str, str(image)) if image else None)
        elif isinstance(event, RetrievalEndEvent):
            _PENDING.set(None)


def install() -> None:
    """Add the recorder to LlamaIndex's root dispatcher, once per process."""
    global _INSTALLED
    with _LOCK:
        if not _INSTALLED:
            get_dispatcher().add_event_handler(QueryImageRecorder())
            _INSTALLED = True


def take_query_image(query_str: str | None) -> str | None:
    """The image path of the retrieval running in this context, if its text is ``query_str``;
    taken once (a second query of the same retrieval gets None)."""
    pending = _PENDING.get()
    if pending is None or pending[0] != (query_str or ""):
        return None
    _PENDING.set(None)
    return pending[1]
