"""``SAPIndex``: a compressed, on-disk page index searched with MaxSim.

The index directory holds::

    manifest.json      what the index was built with (format version, encoder, pruner, storage...)
    registry.sqlite    committed documents and the journal of unfinished writes (the source of truth)
    shard/             the Qdrant Edge shard (embedded backend only)
    images/            page images, content-addressed
    .lock              the exclusive lock of the process that has the index open

``SAPIndex`` orchestrates; storage is a :class:`~sap_rag.index.backends.base.Backend`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError
from ..progress import progress
from .backends.base import Backend, PagePoint, QuerySpec, ScoredPoint
from .errors import (
    DocumentNotFoundError,
    EncoderMismatchError,
    IndexClosedError,
    IndexExistsError,
    IndexFormatError,
)
from .filters import parse_filter, validate_metadata
from .images import ImageStore
from .lock import LOCK_NAME, IndexLock
from .manifest import MANIFEST_NAME, Manifest
from .options import (
    DEFAULT_EXACT_PREFETCH_MAX_PAGES,
    DEFAULT_PREFETCH,
    DEFAULT_TWO_STAGE_THRESHOLD,
    StorageType,
    TwoStageMode,
    parse_two_stage,
)
from .registry import REGISTRY_NAME, DocumentRecord, Registry, point_ids
from .results import DocumentInfo, IndexCheck, IndexStats, SearchHit
from .vectors import SUMMARY_KIND, as_matrix, page_summary, query_summary, to_storage

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder
    from ..pruning.base import Pruner
    from ..types import PageEncoding, PrunedPage

logger = logging.getLogger(__name__)

__all__ = ["SAPIndex"]

IMAGES_DIR = "images"
_UPSERT_BATCH = 64
_QUERY_BATCH = 64
_ENCODER_FIELDS = ("family", "model_type", "dim", "num_layers", "window")


class SAPIndex:
    """A page index: SAP-pruned multi-vector pages in Qdrant, searched with exact MaxSim.

    Create with :meth:`create`, reopen with :meth:`open`; use as a context manager or call
    :meth:`close`. One ``SAPIndex`` at a time may have an index open (an exclusive file lock).

    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d, SAPIndex.create(d + "/idx", dim=4) as index:
    ...     page = torch.nn.functional.normalize(torch.eye(4)[:2], dim=1)   # 2 anchors of dim 4
    ...     info = index.add_pages([pruned(page)], doc_id="doc")
    ...     hits = index.search(torch.eye(4)[:1], k=1)
    ...     (hits[0].doc_id, hits[0].page_number, round(hits[0].score, 3))
    ('doc', 1, 1.0)
    """

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        backend: Backend,
        registry: Registry,
        lock: IndexLock,
        *,
        encoder: PageEncoder | None,
        pruner: Pruner | None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self._backend = backend
        self._registry = registry
        self._lock = lock
        self._encoder = encoder
        self._pruner = pruner
        self._images = ImageStore(path / IMAGES_DIR)
        self._mutex = threading.RLock()
        self._needs_recovery = False
        self._closed = False
        self.storage = StorageType(manifest.storage)
        self._pages = registry.totals()[1]

    # --- construction -----------------------------------------------------------------------

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
        prefetch: int = DEFAULT_PREFETCH,
        oversampling: float = 4.0,
        store_images: bool = True,
        qdrant_url: str | None = None,
        client: Any = None,
        collection: str | None = None,
        qdrant_api_key: str | None = None,
        indexing_threshold_kb: int | None = None,
    ) -> SAPIndex:
        """Create a new, empty index in directory ``path`` (which must not exist or be empty).

        Args:
            path: the index directory.
            encoder: the :class:`~sap_rag.PageEncoder` that encodes pages and string queries. May be
                None for an index filled only with precomputed pages (then give ``dim``).
            keep_ratio: fraction of each page's visual tokens to keep (default 0.1); sets up
                ``SAPPruner(keep_ratio)`` unless ``pruner`` is given.
            pruner: any :class:`~sap_rag.Pruner`, instead of the default SAP pruner.
            dim: embedding dimension, when there is no encoder.
            storage: ``"float16"`` (default), ``"float32"`` or ``"int8"``; see :class:`StorageType`.
            two_stage: ``"auto"`` (two stages from ``two_stage_threshold`` pages on), True or False.
            two_stage_threshold: page count from which ``"auto"`` turns two-stage search on.
            prefetch: candidates of the first stage (HNSW over page mean vectors) that the exact
                MaxSim stage reranks.
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

        Raises:
            IndexExistsError: ``path`` holds an index or other files.
            InvalidInputError: inconsistent options.
        """
        from .. import __version__

        root = Path(path)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            if (root / MANIFEST_NAME).is_file():
                raise IndexExistsError(f"{root} already holds an index; open it with SAPIndex.open({str(root)!r})")
            raise IndexExistsError(f"{root} exists and is not an empty directory; pick a new path for the index")
        storage_type = StorageType.parse(storage)
        mode = parse_two_stage(two_stage)
        dim = _resolve_dim(encoder, dim)
        pruner = _resolve_pruner(pruner, keep_ratio)
        threshold = _positive_int(two_stage_threshold, "two_stage_threshold")
        depth = _positive_int(prefetch, "prefetch")
        if not isinstance(oversampling, (int, float)) or isinstance(oversampling, bool) or oversampling < 1:
            raise InvalidInputError(f"oversampling must be a number >= 1, got {oversampling!r}")
        if qdrant_url is not None and client is not None:
            raise InvalidInputError("give qdrant_url or client, not both")

        created_dir = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        lock = IndexLock.acquire(root)
        backend: Backend | None = None
        registry: Registry | None = None
        try:
            if qdrant_url is None and client is None:
                from .backends.edge import EdgeBackend

                backend = EdgeBackend.create(
                    root,
                    dim=dim,
                    storage=storage_type,
                    oversampling=oversampling,
                    indexing_threshold_kb=indexing_threshold_kb,
                )
            else:
                from .backends.server import QdrantBackend, connect

                owns = client is None
                qclient = connect(url=qdrant_url, api_key=qdrant_api_key) if owns else client
                name = collection or _collection_name(root)
                backend = QdrantBackend.create(
                    qclient, name, dim=dim, storage=storage_type, oversampling=oversampling, owns_client=owns
                )
            registry = Registry(root / REGISTRY_NAME)
            (root / IMAGES_DIR).mkdir(exist_ok=True)
            manifest = Manifest(
                dim=dim,
                encoder=encoder.describe() if encoder is not None else None,
                pruner=pruner.config(),
                storage=storage_type.value,
                backend=backend.describe(),
                two_stage={
                    "mode": mode.value,
                    "threshold": threshold,
                    "prefetch": depth,
                    "exact_prefetch_max_pages": DEFAULT_EXACT_PREFETCH_MAX_PAGES,
                    "summary": SUMMARY_KIND,
                },
                store_images=bool(store_images),
                oversampling=float(oversampling),
                sap_rag_version=__version__,
            )
            manifest.write(root)  # last: an index exists once its manifest does
        except BaseException:
            if registry is not None:
                registry.close()
            if backend is not None:
                try:
                    backend.close()
                except Exception:  # pragma: no cover - best effort while already failing
                    logger.exception("closing the backend after a failed create")
            lock.release()
            _remove_partial(root, created_dir)
            raise
        logger.info("created index %s (%s backend, %s storage, dim %d)", root, backend.kind, storage_type.value, dim)
        return cls(root, manifest, backend, registry, lock, encoder=encoder, pruner=pruner)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        encoder: PageEncoder | None = None,
        *,
        pruner: Pruner | None = None,
        client: Any = None,
        qdrant_api_key: str | None = None,
    ) -> SAPIndex:
        """Open an existing index (and finish or undo any write a crash interrupted).

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

        Raises:
            IndexNotFoundError: no index at ``path``.
            IndexFormatError: a newer format version, or a damaged index.
            IndexLockedError: the index is open elsewhere.
            EncoderMismatchError: ``encoder`` differs from the index's.
        """
        root = Path(path)
        manifest = Manifest.read(root)
        _check_encoder(manifest, encoder)
        pruner = _check_pruner(manifest, pruner)
        lock = IndexLock.acquire(root)
        backend: Backend | None = None
        try:
            backend = _open_backend(root, manifest, client, qdrant_api_key)
            if not (root / REGISTRY_NAME).is_file():
                raise IndexFormatError(f"{root} has no {REGISTRY_NAME}; the index is incomplete or damaged")
            registry = Registry(root / REGISTRY_NAME)
        except BaseException:
            if backend is not None:
                backend.close()
            lock.release()
            raise
        index = cls(root, manifest, backend, registry, lock, encoder=encoder, pruner=pruner)
        try:
            index._recover()
        except BaseException:
            index.close()
            raise
        return index

    # --- properties -------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return int(self.manifest.dim)

    @property
    def encoder(self) -> PageEncoder:
        """The index's encoder, loaded on first use when the index was opened without one."""
        if self._encoder is None:
            spec = self.manifest.encoder
            if spec is None:
                raise InvalidInputError(
                    "this index was built without an encoder, so it cannot encode pages or query strings; "
                    "pass precomputed query embeddings, or add pages with add_pages"
                )
            from ..encoders.loading import load_encoder

            logger.info("loading the index's encoder %s", spec["spec"])
            self._encoder = load_encoder(spec["spec"], window=spec.get("window"))
            _check_encoder(self.manifest, self._encoder)
        return self._encoder

    @property
    def pruner(self) -> Pruner:
        if self._pruner is None:
            raise InvalidInputError(
                f"this index was built with the pruner {self.manifest.pruner}; reopen it with "
                "SAPIndex.open(path, pruner=<the same pruner>) to prune new pages, or add pruned pages"
            )
        return self._pruner

    @property
    def backend(self) -> Backend:
        return self._backend

    def __len__(self) -> int:
        """Number of pages."""
        return self._pages

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and self._registry.get(doc_id) is not None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._pages} pages"
        return f"SAPIndex({str(self.path)!r}, {state}, {self.manifest.backend.get('kind')}, {self.storage.value})"

    def __enter__(self) -> SAPIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes -----------------------------------------------------------------------------

    def add_images(
        self,
        images: Sequence[Any],
        doc_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> DocumentInfo:
        """Encode, prune and store the pages of one document, all or nothing.

        Every image is loaded and encoded before anything is written, so an unreadable page
        leaves the index untouched. Re-adding a ``doc_id`` replaces its pages.

        Args:
            images: the document's pages in order: PIL images, image paths, or image bytes.
            doc_id: the document's id (any non-empty string).
            metadata: JSON data kept with every page and usable in search filters.
            batch_size: pages per encoder forward pass.
            show_progress: show progress bars.

        Raises:
            UnreadableInputError: a page is not a readable image (nothing is written).
        """
        self._check_open()
        doc_id = _check_doc_id(doc_id)
        metadata = validate_metadata(metadata)
        sources = _check_sequence(images, "images")
        from ..ingest.images import load_image

        decoded = [load_image(src, name=f"{doc_id!r} page {i + 1}") for i, src in enumerate(sources)]
        window = getattr(self.pruner, "window", None)
        encodings = self.encoder.encode_pages(
            decoded,
            batch_size=batch_size,
            indegree_layers=list(window) if window else "window",
            show_progress=show_progress,
        )
        pruned = [self.pruner.prune(page) for page in encodings]
        return self._write(doc_id, pruned, sources, decoded, metadata, show_progress)

    def add_pages(
        self,
        pages: Sequence[PageEncoding | PrunedPage],
        doc_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        images: Sequence[Any] | None = None,
        show_progress: bool = False,
    ) -> DocumentInfo:
        """Store precomputed pages of one document, all or nothing (no model needed).

        Args:
            pages: per page, a :class:`~sap_rag.PageEncoding` (pruned here with the index's
                pruner) or a :class:`~sap_rag.PrunedPage` (stored as is; it must come from the
                index's pruner). Anchors are ``(k, dim)``.
            doc_id: the document's id; re-adding it replaces its pages.
            metadata: JSON data kept with every page and usable in search filters.
            images: optional page images (one per page) to keep in the index.
            show_progress: show a progress bar.
        """
        from ..types import PageEncoding, PrunedPage

        self._check_open()
        doc_id = _check_doc_id(doc_id)
        metadata = validate_metadata(metadata)
        items = _check_sequence(pages, "pages")
        pruned: list[PrunedPage] = []
        for i, page in enumerate(items):
            if isinstance(page, PrunedPage):
                expected = self.manifest.pruner.get("name")
                if page.method != expected:
                    raise InvalidInputError(
                        f"page {i + 1} was pruned with {page.method!r}, but this index stores {expected!r} pages; "
                        "pass PageEncodings to have the index prune them, or create an index for that pruner"
                    )
                pruned.append(page)
            elif isinstance(page, PageEncoding):
                pruned.append(self.pruner.prune(page))
            else:
                raise InvalidInputError(
                    f"page {i + 1} is a {type(page).__name__}; add_pages takes PageEncoding or PrunedPage objects "
                    "(use add_images for images)"
                )
        sources: list[Any] | None = None
        decoded = None
        if images is not None:
            sources = _check_sequence(images, "images")
            if len(sources) != len(pruned):
                raise InvalidInputError(f"got {len(pruned)} pages but {len(sources)} images; give one image per page")
            from ..ingest.images import load_image

            decoded = [load_image(src, name=f"{doc_id!r} page {i + 1}") for i, src in enumerate(sources)]
        return self._write(doc_id, pruned, sources, decoded, metadata, show_progress)

    def delete(self, doc_id: str, *, missing_ok: bool = False) -> int:
        """Remove every page of a document; return how many pages went.

        Raises:
            DocumentNotFoundError: no such document (unless ``missing_ok``).
        """
        self._check_open()
        doc_id = _check_doc_id(doc_id)
        with self._mutex:
            self._ensure_recovered()
            old = self._registry.remove(doc_id)
            if old is None:
                if missing_ok:
                    return 0
                raise DocumentNotFoundError(f"no document {doc_id!r} in the index at {self.path}")
            self._pages -= old.num_pages
            self._drop(old)
            logger.info("deleted %r (%d pages)", doc_id, old.num_pages)
            return old.num_pages

    def optimize(self) -> None:
        """Let the engine merge segments and build the mean-vector graph; call after bulk adds."""
        self._check_open()
        with self._mutex:
            started = time.perf_counter()
            self._backend.optimize()
            self._backend.flush()
            logger.info("optimized %s in %.1f s", self.path, time.perf_counter() - started)

    # --- reads ------------------------------------------------------------------------------

    def search(
        self,
        query: str | Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
    ) -> list[SearchHit]:
        """The ``k`` pages with the highest MaxSim against ``query``, best first.

        Args:
            query: a query string (encoded with the index's encoder), or precomputed query
                embeddings ``(n_tokens, dim)`` (torch tensor or numpy array).
            k: how many pages to return.
            filter: ``{"doc_id": "a"}``, ``{"doc_id": ["a", "b"]}`` (any of), ``{"page_number": 3}``,
                or any metadata key (``{"source": "report.pdf"}``); all keys must match.
            two_stage: override the index's setting: True, False or ``"auto"``.
            prefetch: override the number of first-stage candidates.
        """
        if isinstance(query, (list, tuple)) and query and isinstance(query[0], str):
            raise InvalidInputError("search takes one query; use search_batch for a list of queries")
        return self.search_batch([query], k, filter=filter, two_stage=two_stage, prefetch=prefetch)[0]

    def search_batch(
        self,
        queries: Sequence[str | Any],
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        show_progress: bool = False,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for many queries (strings and/or ``(n_tokens, dim)`` embeddings) at once."""
        self._check_open()
        items = _check_sequence(queries, "queries")
        k = _positive_int(k, "k")
        conditions = parse_filter(filter)
        vectors = self._query_vectors(items, show_progress)
        depth = self._prefetch_depth(two_stage, prefetch, k)
        exact_prefetch = self._pages <= int(
            self.manifest.two_stage.get("exact_prefetch_max_pages", DEFAULT_EXACT_PREFETCH_MAX_PAGES)
        )
        specs = [QuerySpec(v, query_summary(v), k, conditions, depth, exact_prefetch) for v in vectors]
        out: list[list[SearchHit]] = []
        with self._mutex:
            self._check_open()
            self._ensure_recovered()
            for start in range(0, len(specs), _QUERY_BATCH):
                for hits in self._backend.query(specs[start : start + _QUERY_BATCH]):
                    out.append([self._hit(p) for p in hits])
        return out

    def document(self, doc_id: str) -> DocumentInfo:
        """What the index holds of one document."""
        self._check_open()
        record = self._registry.get(doc_id)
        if record is None:
            raise DocumentNotFoundError(f"no document {doc_id!r} in the index at {self.path}")
        return self._info(record)

    def documents(self) -> list[str]:
        """Ids of every document, sorted."""
        self._check_open()
        return self._registry.doc_ids()

    def stats(self) -> IndexStats:
        """Counts, sizes and settings; see :class:`IndexStats`."""
        self._check_open()
        with self._mutex:
            documents, pages, vectors = self._registry.totals()
            disk = self._backend.bytes_on_disk()
            return IndexStats(
                pages=pages,
                documents=documents,
                vectors=vectors,
                vectors_per_page=vectors / pages if pages else 0.0,
                bytes_on_disk=disk,
                bytes_per_page=(disk / pages if pages else None) if disk is not None else None,
                image_bytes=self._images.bytes_on_disk(),
                keep_ratio=self.manifest.keep_ratio,
                window=self.manifest.window,
                storage=self.storage.value,
                backend=self._backend.kind,
                two_stage=self._prefetch_depth(None, None, 1) is not None,
            )

    def check(self, *, repair: bool = False) -> IndexCheck:
        """Compare every point in the engine with the registry (a full scan).

        Reports points of uncommitted or replaced generations (``stray_points``) and committed
        documents with missing pages. With ``repair=True`` stray points are deleted.
        """
        self._check_open()
        with self._mutex:
            self._ensure_recovered()
            committed = {r.doc_id: r for r in self._registry.documents()}
            seen: dict[str, set[int]] = {}
            stray: list[int] = []
            for pid, payload in self._backend.iter_payloads(["doc_id", "gen", "page_number"]):
                record = committed.get(payload.get("doc_id"))
                if record is None or payload.get("gen") != record.gen:
                    stray.append(pid)
                    continue
                seen.setdefault(record.doc_id, set()).add(int(payload.get("page_number", 0)))
            incomplete = {
                doc_id: record.num_pages - len(seen.get(doc_id, ()))
                for doc_id, record in committed.items()
                if len(seen.get(doc_id, ())) != record.num_pages
            }
            if repair and stray:
                self._backend.delete(stray)
                self._backend.flush()
            return IndexCheck(
                ok=not stray and not incomplete,
                documents=len(committed),
                points=sum(len(pages) for pages in seen.values()) + len(stray),
                stray_points=len(stray),
                incomplete_documents=incomplete,
                repaired=bool(repair and stray),
            )

    def close(self) -> None:
        """Flush and release the index (idempotent)."""
        if self._closed:
            return
        with self._mutex:
            self._closed = True
            try:
                self._backend.close()
            finally:
                self._registry.close()
                self._lock.release()

    # --- internals --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise IndexClosedError(f"the index at {self.path} is closed; open it again with SAPIndex.open")

    def _write(
        self,
        doc_id: str,
        pruned: list[PrunedPage],
        sources: Sequence[Any] | None,
        decoded: list[Any] | None,
        metadata: dict[str, Any],
        show_progress: bool,
    ) -> DocumentInfo:
        """Store one document's pruned pages, all or nothing (see ``registry`` for the protocol)."""
        anchors = []
        for i, page in enumerate(pruned):
            matrix = as_matrix(page.embeddings, self.dim, f"page {i + 1} of {doc_id!r}")
            anchors.append(to_storage(matrix, self.storage))
        with self._mutex:
            self._check_open()
            self._ensure_recovered()
            gen = self._registry.begin(doc_id, len(pruned))
            created: list[str] = []
            try:
                names: list[str | None] = [None] * len(pruned)
                if self.manifest.store_images and sources is not None and decoded is not None:
                    for i, (src, image) in enumerate(zip(sources, decoded)):
                        names[i], new = self._images.put(src, image)
                        if new:
                            created.append(names[i])
                ids = point_ids(gen, len(pruned))
                with progress(total=len(pruned), desc=f"indexing {doc_id}", unit="page", enabled=show_progress) as bar:
                    for start in range(0, len(pruned), _UPSERT_BATCH):
                        stop = min(start + _UPSERT_BATCH, len(pruned))
                        self._backend.upsert(
                            [
                                PagePoint(
                                    ids[i],
                                    anchors[i],
                                    page_summary(anchors[i], self.storage),
                                    _payload(doc_id, i, gen, names[i], metadata, pruned[i]),
                                )
                                for i in range(start, stop)
                            ]
                        )
                        bar.update(stop - start)
                self._backend.flush()
                record = DocumentRecord(
                    doc_id=doc_id,
                    gen=gen,
                    num_pages=len(pruned),
                    num_vectors=sum(int(a.shape[0]) for a in anchors),
                    images=names,
                    metadata=metadata,
                    added_at=time.time(),
                )
                old = self._registry.commit(record)
            except BaseException:
                self._rollback(gen, len(pruned), created)
                raise
            self._pages += record.num_pages - (old.num_pages if old else 0)
            if old is not None:
                self._drop(old)
            logger.info("added %r: %d pages, %d vectors", doc_id, record.num_pages, record.num_vectors)
            return self._info(record)

    def _rollback(self, gen: int, num_pages: int, created_images: list[str]) -> None:
        try:
            self._backend.delete(point_ids(gen, num_pages))
            self._backend.flush()
            self._images.remove(created_images)
            self._registry.forget([gen])
        except Exception:
            logger.exception("could not undo a failed write at once; it will be undone before the next operation")
            self._needs_recovery = True

    def _drop(self, old: DocumentRecord) -> None:
        """Delete the points and now-unused images of a generation already removed from the registry.

        A failure is not raised: the registry already says what the index holds, and the journal
        entry makes the next operation (or the next open) finish the job.
        """
        try:
            self._backend.delete(point_ids(old.gen, old.num_pages))
            self._backend.flush()
            self._images.remove(self._registry.unreferenced(old.images))
            self._registry.forget([old.gen])
        except Exception:
            logger.exception(
                "could not remove the old pages of %r yet; they are journaled and will be removed before the "
                "next operation",
                old.doc_id,
            )
            self._needs_recovery = True

    def _ensure_recovered(self) -> None:
        if self._needs_recovery:
            self._recover()

    def _recover(self) -> None:
        """Delete the points of every journaled generation (interrupted writes, unfinished deletes)."""
        entries = self._registry.journal()
        if not entries and not self._needs_recovery:
            return
        for entry in entries:
            self._backend.delete(point_ids(entry.gen, entry.num_pages))
        self._backend.flush()
        self._registry.forget([entry.gen for entry in entries])
        self._images.collect_garbage(self._registry.referenced_images())
        self._needs_recovery = False
        if entries:
            logger.warning(
                "recovered the index at %s from an interrupted write: removed the points of %d unfinished or "
                "superseded document versions (%s)",
                self.path,
                len(entries),
                ", ".join(sorted({repr(e.doc_id) for e in entries})),
            )

    def _query_vectors(self, items: list[Any], show_progress: bool) -> list[np.ndarray]:
        texts = [(i, q) for i, q in enumerate(items) if isinstance(q, str)]
        for i, text in texts:
            if not text.strip():
                raise InvalidInputError(f"query #{i} is empty; a query needs some text to search with")
        vectors: list[np.ndarray | None] = [None] * len(items)
        if texts:
            encoded = self.encoder.encode_queries([t for _, t in texts], show_progress=show_progress)
            for (i, _), tensor in zip(texts, encoded):
                vectors[i] = as_matrix(tensor, self.dim, f"query #{i}")
        for i, item in enumerate(items):
            if vectors[i] is None:
                vectors[i] = as_matrix(item, self.dim, f"query #{i}")
        return [to_storage(v, self.storage) for v in vectors]  # type: ignore[arg-type]

    def _prefetch_depth(self, two_stage: bool | str | None, prefetch: int | None, k: int) -> int | None:
        settings = self.manifest.two_stage
        mode = parse_two_stage(settings["mode"] if two_stage is None else two_stage)
        if mode is TwoStageMode.NEVER or (mode is TwoStageMode.AUTO and self._pages < int(settings["threshold"])):
            return None
        depth = int(settings["prefetch"]) if prefetch is None else _positive_int(prefetch, "prefetch")
        return max(depth, k)

    def _hit(self, point: ScoredPoint) -> SearchHit:
        payload = point.payload
        name = payload.get("image")
        return SearchHit(
            doc_id=payload.get("doc_id", ""),
            page_number=int(payload.get("page_number", 0)),
            score=point.score,
            image_path=self._images.path(name) if name else None,
            metadata=payload.get("metadata") or {},
            point_id=point.id,
        )

    def _info(self, record: DocumentRecord) -> DocumentInfo:
        return DocumentInfo(
            doc_id=record.doc_id,
            num_pages=record.num_pages,
            num_vectors=record.num_vectors,
            metadata=record.metadata,
            image_paths=[self._images.path(n) if n else None for n in record.images],
        )


# --- helpers ------------------------------------------------------------------------------------


def pruned(embeddings: Any, method: str = "sap") -> PrunedPage:
    """A :class:`~sap_rag.PrunedPage` holding exactly ``embeddings`` ``(k, dim)`` (for tests and examples)."""
    import torch

    from ..types import PrunedPage

    tensor = torch.as_tensor(embeddings, dtype=torch.float32)
    k = int(tensor.shape[0])
    return PrunedPage(
        embeddings=tensor,
        positions=torch.zeros(k, 2),
        indices=torch.arange(k),
        scores=None,
        num_tokens=k,
        method=method,
    )


def _payload(
    doc_id: str, index: int, gen: int, image: str | None, metadata: dict[str, Any], page: PrunedPage
) -> dict[str, Any]:
    positions = page.positions.detach().to("cpu").reshape(-1).tolist() if page.positions is not None else []
    return {
        "doc_id": doc_id,
        "page_number": index + 1,
        "gen": gen,
        "image": image,
        "metadata": metadata,
        "num_tokens": int(page.num_tokens),
        # (row, col) grid cell of each anchor, flattened: drives overlays and debugging.
        "positions": [round(float(x), 2) for x in positions],
    }


def _check_doc_id(doc_id: Any) -> str:
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise InvalidInputError(f"doc_id must be a non-empty string, got {doc_id!r}")
    return doc_id


def _check_sequence(items: Any, what: str) -> list[Any]:
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        try:
            import torch

            is_tensor = isinstance(items, (torch.Tensor, np.ndarray))
        except ImportError:  # pragma: no cover
            is_tensor = isinstance(items, np.ndarray)
        hint = " (wrap a single item in a list)" if is_tensor or isinstance(items, (str, bytes)) else ""
        raise InvalidInputError(f"{what} must be a list, got {type(items).__name__}{hint}")
    if len(items) == 0:
        raise InvalidInputError(f"{what} is empty; give at least one")
    return list(items)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _resolve_dim(encoder: PageEncoder | None, dim: int | None) -> int:
    if encoder is None and dim is None:
        raise InvalidInputError("give an encoder, or the embedding dim of the pages you will add (dim=128)")
    if encoder is not None and not hasattr(encoder, "describe"):
        raise InvalidInputError(
            f"encoder must be a PageEncoder (from sap_rag.load_encoder), got {type(encoder).__name__}"
        )
    if encoder is not None and dim is not None and int(dim) != encoder.dim:
        raise InvalidInputError(f"dim={dim} but the encoder produces dim {encoder.dim}; leave dim out")
    return _positive_int(encoder.dim if encoder is not None else dim, "dim")


def _resolve_pruner(pruner: Pruner | None, keep_ratio: float | None) -> Pruner:
    from ..pruning.base import Pruner
    from ..pruning.sap import SAPPruner

    if pruner is None:
        return SAPPruner(0.1 if keep_ratio is None else keep_ratio)
    if not isinstance(pruner, Pruner):
        raise InvalidInputError(f"pruner must be a sap_rag Pruner, got {type(pruner).__name__}")
    if keep_ratio is not None and float(keep_ratio) != pruner.keep_ratio:
        raise InvalidInputError(
            f"keep_ratio={keep_ratio} but the pruner keeps {pruner.keep_ratio}; give one or the other"
        )
    return pruner


def _check_encoder(manifest: Manifest, encoder: PageEncoder | None) -> None:
    if encoder is None:
        return
    actual = encoder.describe()
    expected = manifest.encoder
    if expected is None:
        if actual.get("dim") != manifest.dim:
            raise EncoderMismatchError(
                f"this index stores dim {manifest.dim} vectors but the encoder produces dim {actual.get('dim')}"
            )
        logger.warning("the index records no encoder; using %s without checking its identity", actual.get("spec"))
        return
    diffs = [
        f"{key}: index has {expected.get(key)!r}, encoder has {actual.get(key)!r}"
        for key in _ENCODER_FIELDS
        if _norm(expected.get(key)) != _norm(actual.get(key))
    ]
    if diffs:
        raise EncoderMismatchError(
            "the encoder does not match the one this index was built with ("
            + "; ".join(diffs)
            + f"). Open it with that encoder: load_encoder({expected.get('spec')!r}, window={expected.get('window')}), "
            "or leave encoder= out to load it automatically"
        )
    if expected.get("spec") != actual.get("spec"):
        logger.warning(
            "the index was built with %r and is opened with %r (same architecture and window); "
            "make sure they are the same checkpoint",
            expected.get("spec"),
            actual.get("spec"),
        )


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _check_pruner(manifest: Manifest, pruner: Pruner | None) -> Pruner | None:
    from ..pruning.sap import SAPPruner

    recorded = manifest.pruner
    if pruner is not None:
        if pruner.config() != recorded:
            raise InvalidInputError(
                f"the pruner {pruner.config()} differs from the one this index was built with ({recorded})"
            )
        return pruner
    if recorded.get("name") == SAPPruner.name:
        window = recorded.get("window")
        return SAPPruner(recorded["keep_ratio"], window=window, heads=recorded.get("heads", "mean"))
    return None


def _open_backend(root: Path, manifest: Manifest, client: Any, api_key: str | None) -> Backend:
    spec = manifest.backend
    storage = StorageType(manifest.storage)
    oversampling = float(manifest.oversampling)
    kind = spec.get("kind")
    if kind == "edge":
        from .backends.edge import EdgeBackend

        return EdgeBackend.open(root, dim=manifest.dim, storage=storage, oversampling=oversampling)
    if kind == "qdrant":
        from .backends.server import QdrantBackend, connect

        owns = client is None
        if owns:
            if spec.get("url") or spec.get("host"):
                url = spec.get("url") or f"http://{spec['host']}:{spec.get('port', 6333)}"
                client = connect(url=url, api_key=api_key)
            elif spec.get("path"):
                client = connect(path=spec["path"])
            else:
                raise InvalidInputError(
                    f"the index's vectors lived in an in-memory Qdrant ({spec.get('location')!r}) or a client "
                    "object sap-rag cannot reconnect to; pass client=QdrantClient(...) to open it"
                )
        return QdrantBackend.open(
            client, spec["collection"], dim=manifest.dim, storage=storage, oversampling=oversampling, owns_client=owns
        )
    raise IndexFormatError(f"the manifest names an unknown backend {kind!r}; upgrade sap-rag")


def _collection_name(root: Path) -> str:
    import uuid

    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", root.resolve().name)[:40] or "index"
    return f"sap_rag_{stem}_{uuid.uuid4().hex[:8]}"


def _remove_partial(root: Path, created_dir: bool) -> None:
    """Undo a failed create: remove what it wrote (the whole directory if it made it)."""
    if created_dir:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in (MANIFEST_NAME, REGISTRY_NAME, LOCK_NAME, IMAGES_DIR, "shard"):
        target = root / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()
