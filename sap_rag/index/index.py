"""``SAPIndex``: a compressed, on-disk page index searched with MaxSim.

The index directory holds::

    manifest.json      what the index was built with (format version, encoder, pruner, storage...)
    registry.sqlite    committed documents and the journal of unfinished writes (the source of truth)
    shard/             the Qdrant Edge shard (embedded backend only)
    images/            page images, content-addressed
    .lock              the lock: one writer's, or the shared one of read-only opens

``SAPIndex`` fronts the store: construction and lifecycle here (parts made in
:mod:`~sap_rag.index.lifecycle`), searching in :mod:`~sap_rag.index.reads`, changes in
:mod:`~sap_rag.index.writes`. What happens to pages and queries before they reach the store
(ingest, encode, prune) is :mod:`sap_rag.pipeline`'s; :class:`~sap_rag.index.store.PageStore`
does the all-or-nothing writes, and a :class:`~sap_rag.index.backends.base.Backend` stores the
vectors.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from ..pipeline import pruned_page
from .lifecycle import IMAGES_DIR, create_parts, open_parts
from .options import DEFAULT_COARSE, DEFAULT_POOLED_VECTORS, DEFAULT_TWO_STAGE_THRESHOLD, StorageType
from .reads import IndexReads
from .writes import IndexWrites

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder
    from ..pruning.base import Pruner

logger = logging.getLogger(__name__)

__all__ = ["IMAGES_DIR", "SAPIndex", "pruned_page"]


class SAPIndex(IndexReads, IndexWrites):
    """A page index: SAP-pruned multi-vector pages in Qdrant, searched with exact MaxSim.

    Create with :meth:`create`, reopen with :meth:`open`; use as a context manager or call
    :meth:`close` (or let it be collected). One writer, or any number of read-only opens, may have
    an index open at a time (a file lock).

    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d, SAPIndex.create(d + "/idx", dim=4) as index:
    ...     anchors = torch.eye(4)[:2]  # one page with 2 anchors of dim 4
    ...     info = index.add_pages([pruned_page(anchors)], doc_id="doc")
    ...     hits = index.search(torch.eye(4)[:1], k=1)
    ...     (hits[0].doc_id, hits[0].page_number, round(hits[0].score, 3))
    ('doc', 1, 1.0)
    """

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        encoder: PageEncoder | None = None,
        *,
        keep_ratio: float | None = None,
        pruner: Pruner | None = None,
        dim: int | None = None,
        storage: StorageType | str = StorageType.FLOAT16,
        two_stage: bool | str = "auto",
        two_stage_threshold: int = DEFAULT_TWO_STAGE_THRESHOLD,
        prefetch: int | None = None,
        coarse: int = DEFAULT_COARSE,
        pooled_vectors: int = DEFAULT_POOLED_VECTORS,
        oversampling: float = 4.0,
        store_images: bool = True,
        qdrant_url: str | None = None,
        client: Any = None,
        collection: str | None = None,
        qdrant_api_key: str | None = None,
        indexing_threshold_kb: int | None = None,
        timeout: float = 0.0,
    ) -> SAPIndex:
        """Create a new, empty index in directory ``path`` (which must not exist or be empty).

        Two processes creating the same path race for its lock: one creates the index, the other
        gets :class:`IndexLockedError` (or, once the index exists, :class:`IndexExistsError`), and
        a failed create removes only what it made itself, never another process's index.

        Args:
            path: the index directory.
            encoder: the :class:`~sap_rag.PageEncoder` that encodes pages and string queries. May be
                None for an index filled only with precomputed pages (then give ``dim``).
            keep_ratio: fraction of each page's visual tokens to keep (default 0.1); sets up
                ``SAPPruner(keep_ratio)`` unless ``pruner`` is given.
            pruner: any :class:`~sap_rag.Pruner`, instead of the default SAP pruner.
            dim: embedding dimension, when there is no encoder.
            storage: ``"float16"`` (default), ``"float32"`` or ``"int8"``; see :class:`StorageType`.
            two_stage: ``"auto"`` (staged search from ``two_stage_threshold`` pages on), True or
                False. Staged search: the ``coarse`` best pages by their pooled vectors against
                the mean query vector plus the ``coarse // 2`` best by mean vector, of those the
                ``prefetch`` best by MaxSim over the pooled vectors, of those the ``k`` best by
                exact MaxSim over the anchors (see :func:`~sap_rag.index.backends.base.prefetch_plan`).
            two_stage_threshold: page count from which ``"auto"`` turns staged search on.
            prefetch: candidates the exact MaxSim stage reranks (default 150; 1,000 without
                pooled vectors, where they come straight from the mean vectors).
            coarse: candidates of the first stage's pooled probe (default 1,500).
            pooled_vectors: pooled anchors stored per page for the prefetch stages (default 8,
                about 8% more bytes per page); 0 stores none, and staged search then prefetches
                with each page's mean vector alone (faster to add, lower recall).
            oversampling: int8 storage only: how many times ``k`` pages are rescored in float16.
            store_images: keep a copy of every page image in the index (``hit.image_path``).
            qdrant_url: put the vectors on this Qdrant server instead of an embedded shard.
            client: or a ``qdrant_client.QdrantClient`` (also local mode: ``QdrantClient(":memory:")``
                or ``QdrantClient(path=...)``).
            collection: the server collection name (default: derived from the directory name).
            qdrant_api_key: API key for ``qdrant_url`` (never written to disk).
            indexing_threshold_kb: embedded backend: segment size (KB of vectors) from which
                :meth:`optimize` builds the mean-vector HNSW graph and the int8 copy
                (default: Qdrant's).
            timeout: seconds to wait for another process creating the same path (0: fail at once).

        Raises:
            IndexExistsError: ``path`` holds an index or other files.
            IndexLockedError: another process is creating an index at ``path``.
            InvalidInputError: inconsistent options.
        """
        (root, manifest, store, lock, pruner), created = create_parts(
            path,
            encoder,
            keep_ratio=keep_ratio,
            pruner=pruner,
            dim=dim,
            storage=storage,
            two_stage=two_stage,
            two_stage_threshold=two_stage_threshold,
            prefetch=prefetch,
            coarse=coarse,
            pooled_vectors=pooled_vectors,
            oversampling=oversampling,
            store_images=store_images,
            qdrant_url=qdrant_url,
            client=client,
            collection=collection,
            qdrant_api_key=qdrant_api_key,
            indexing_threshold_kb=indexing_threshold_kb,
            timeout=timeout,
        )
        index = cls(root, manifest, store, lock, encoder=encoder, pruner=pruner)
        index._created = created
        return index

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        encoder: PageEncoder | None = None,
        *,
        pruner: Pruner | None = None,
        client: Any = None,
        qdrant_api_key: str | None = None,
        read_only: bool = False,
        timeout: float = 0.0,
    ) -> SAPIndex:
        """Open an existing index (and finish or undo any write a crash interrupted).

        One writer, or any number of read-only opens (from any processes), may have an index open
        at a time: ``read_only=True`` opens share the index with each other, for searching
        (``search``, ``get_pages``, ``document``, ``stats``...); a writer and readers exclude
        each other. With ``timeout`` an open waits up to that many seconds for its turn (a
        waiting writer keeps readers that arrive after it out, so it is not starved); without,
        it is refused at once. The lock is released by :meth:`close`, by leaving a ``with``
        block, when the object is garbage collected, or when the process ends.

        A read-only open also works on a read-only folder or mount, and on a full disk: where the
        engine cannot load the index in place, it loads a private copy of its shard (see
        :mod:`sap_rag.index.backends.edge_space`).

        Args:
            path: the index directory.
            encoder: the encoder to use; it must match the one the index was built with. If None,
                the index's encoder is loaded (with ``load_encoder`` and the recorded window) the
                first time a string query or ``add_images`` needs it.
            pruner: only for indexes built with a pruner other than SAP: the same pruner, to prune
                new pages (its ``config()`` must equal the recorded one).
            client: a ``QdrantClient`` for an index whose vectors live on a server (default:
                reconnect to the recorded url or local-mode path).
            qdrant_api_key: API key for the recorded server url.
            read_only: open for searching only, sharing the index with other read-only opens.
            timeout: seconds to wait for other processes to let go of the index (0: fail at once).

        Raises:
            IndexNotFoundError: no index at ``path``.
            IndexFormatError: a newer format version, or a damaged index.
            IndexLockedError: the index is open elsewhere (for writing; or, for a writer, read-only):
                the message says by whom and what to do; :class:`IndexLockTimeoutError` after a wait.
            IndexReadOnlyError: ``read_only`` and a write was interrupted; open it for writing once.
                Or a writer's open of a read-only folder.
            IndexStorageError: ``read_only`` on a full disk or read-only folder, with no room for a
                private copy of the shard either.
            EncoderMismatchError: ``encoder`` differs from the index's.
        """
        root, manifest, store, lock, pruner = open_parts(
            path,
            encoder,
            pruner=pruner,
            client=client,
            qdrant_api_key=qdrant_api_key,
            read_only=bool(read_only),
            timeout=timeout,
        )
        return cls(root, manifest, store, lock, encoder=encoder, pruner=pruner)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._store.pages} pages"
        return f"SAPIndex({str(self.path)!r}, {state}, {self.manifest.backend.get('kind')}, {self.storage.value})"

    def __enter__(self) -> SAPIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush and release the index (idempotent); also done when the object is collected.

        Waits for calls in flight in other threads; every call after it (or that was waiting
        for it) raises :class:`IndexClosedError`."""
        if self._closed:
            return
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._anchor_copy = None  # drop the memory map of the anchor copy
            self._finalizer()
