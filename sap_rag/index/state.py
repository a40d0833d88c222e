"""``IndexState``: what an open index holds (its store, pipeline, lock) and the record conversions
the read and write sides share. :class:`~sap_rag.index.index.SAPIndex` is built on it."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from ..pipeline import PagePipeline
from .backends.base import Backend, ScoredPoint
from .checks import check_encoder
from .errors import IndexClosedError, IndexReadOnlyError
from .lifecycle import Created, release
from .lock import IndexLock
from .manifest import Manifest
from .options import StorageType
from .registry import DocumentRecord, Registry
from .results import DocumentInfo, SearchHit, relevance_score
from .store import PageStore

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder
    from ..pruning.base import Pruner
    from .anchor_copy import AnchorCopy

logger = logging.getLogger(__name__)

__all__ = ["IndexState", "load_recorded_encoder"]


class IndexState:
    """An open index's parts; the base of ``SAPIndex`` (see there)."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        store: PageStore,
        lock: IndexLock,
        *,
        encoder: PageEncoder | None,
        pruner: Pruner | None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.storage = StorageType(manifest.storage)
        self._store = store
        self._lock = lock
        self._pipeline = PagePipeline(
            manifest.dim,
            encoder,
            pruner,
            pruner_name=manifest.pruner.get("name"),
            load_encoder=partial(load_recorded_encoder, manifest) if manifest.encoder is not None else None,
            missing_pruner=(
                f"this index was built with the pruner {manifest.pruner}; reopen it with "
                "SAPIndex.open(path, pruner=<the same pruner>) to prune new pages, or add pruned pages"
            ),
        )
        # Every call runs its index work holding this lock, so close() waits for calls in flight, and
        # a search never sees a document half written (an add holds it from its first engine write
        # to its commit).
        self._mutex = threading.RLock()
        self._closed = False
        self._created: Created | None = None  # what SAPIndex.create made (for discard_new)
        self.read_only = lock.shared
        self._anchor_copy: AnchorCopy | None = None  # see IndexReads._scan_copy
        # Releases the engine and the lock when this object is collected or the process exits,
        # without close(). It must not refer to self, or self would never be collected.
        self._finalizer = weakref.finalize(self, release, store, lock)

    # --- properties -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.manifest.dim)

    @property
    def encoder(self) -> PageEncoder:
        """The index's encoder, loaded on first use when the index was opened without one."""
        return self._pipeline.encoder

    @property
    def pruner(self) -> Pruner:
        """The pruner applied to new ``PageEncoding``s."""
        return self._pipeline.pruner

    @property
    def backend(self) -> Backend:
        return self._store.backend

    @property
    def _registry(self) -> Registry:
        return self._store.registry

    def __len__(self) -> int:
        """Number of pages."""
        with self._open():
            return self._store.pages

    def __contains__(self, doc_id: object) -> bool:
        with self._open():
            return isinstance(doc_id, str) and self._registry.get(doc_id) is not None

    @contextmanager
    def _open(self, *, write: bool = False) -> Iterator[None]:
        """Hold the index for one call: waits for a call in flight in another thread (or a
        close), then checks that the index is still open (and, for ``write``, writable)."""
        with self._mutex:
            self._check_open(write=write)
            yield

    def _check_open(self, *, write: bool = False) -> None:
        if self._closed:
            raise IndexClosedError(f"the index at {self.path} is closed; open it again with SAPIndex.open")
        if write and self.read_only:
            raise IndexReadOnlyError(
                f"the index at {self.path} was opened read-only (for searching); open it with "
                f"SAPIndex.open({str(self.path)!r}) to change it, once no other process has it open"
            )

    def _hit(self, point: ScoredPoint, num_query_tokens: int) -> SearchHit:
        payload = point.payload
        name = payload.get("image")
        text = payload.get("text")
        return SearchHit(
            doc_id=payload.get("doc_id", ""),
            page_number=int(payload.get("page_number", 0)),
            score=point.score,
            image_path=self._store.images.path(name) if name else None,
            metadata=payload.get("metadata") or {},
            point_id=point.id,
            text=text if isinstance(text, str) else "",  # an index from before page texts: a label
            relevance=relevance_score(point.score, num_query_tokens),
            num_query_tokens=num_query_tokens,
        )

    def _info(self, record: DocumentRecord) -> DocumentInfo:
        numbers = record.page_numbers
        return DocumentInfo(
            doc_id=record.doc_id,
            num_pages=record.num_pages,
            num_vectors=record.num_vectors,
            metadata=record.metadata,
            image_paths=[self._store.images.path(n) if (n := record.image_of(i)) else None for i in numbers],
            page_numbers=numbers,
        )


# --- helpers ------------------------------------------------------------------------------------


def load_recorded_encoder(manifest: Manifest) -> PageEncoder:
    """Load the encoder an index's manifest records (for an index opened without one)."""
    from ..encoders.loading import load_encoder

    spec = manifest.encoder or {}
    logger.info("loading the index's encoder %s", spec.get("spec"))
    encoder = load_encoder(spec["spec"], window=spec.get("window"))
    check_encoder(manifest, encoder)
    return encoder


def label_name(doc_id: str, metadata: Mapping[str, Any]) -> str:
    """What a page label names: the file name where the metadata has one, else the doc id."""
    name = metadata.get("filename")
    return name if isinstance(name, str) and name.strip() else doc_id


def id_list(page_ids: Any) -> list[Any]:
    if isinstance(page_ids, str):
        return [page_ids]  # one id: no need to make the caller wrap it
    if not isinstance(page_ids, (Sequence, set, frozenset)):
        raise InvalidInputError(f"page_ids must be a list of page ids, got {type(page_ids).__name__}")
    return list(page_ids)
