"""``SAPIndex``: a compressed, on-disk page index searched with MaxSim.

The index directory holds::

    manifest.json      what the index was built with (format version, encoder, pruner, storage...)
    registry.sqlite    committed documents and the journal of unfinished writes (the source of truth)
    shard/             the Qdrant Edge shard (embedded backend only)
    images/            page images, content-addressed
    .lock              the exclusive lock of the process that has the index open

``SAPIndex`` orchestrates: it encodes and prunes pages, turns queries into vectors and hits, and
checks arguments. :class:`~sap_rag.index.store.PageStore` does the all-or-nothing writes, and a
:class:`~sap_rag.index.backends.base.Backend` stores the vectors.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError, SapRagError
from .backends.base import Backend, QuerySpec, ScoredPoint
from .backends.factory import create_backend, open_backend
from .checks import (
    check_doc_id,
    check_encoder,
    check_pruner,
    check_sequence,
    positive_int,
    resolve_dim,
    resolve_pruner,
)
from .errors import (
    DocumentNotFoundError,
    IndexClosedError,
    IndexExistsError,
    IndexFormatError,
    IndexLockedError,
    IndexReadOnlyError,
)
from .filters import parse_filter, validate_metadata
from .images import ImageStore
from .lock import LOCK_NAME, IndexLock
from .manifest import MANIFEST_NAME, Manifest
from .options import (
    DEFAULT_COARSE,
    DEFAULT_EXACT_PREFETCH_MAX_PAGES,
    DEFAULT_MEAN_PREFETCH,
    DEFAULT_POOLED_VECTORS,
    DEFAULT_PREFETCH,
    DEFAULT_TWO_STAGE_THRESHOLD,
    StorageType,
    TwoStageMode,
    parse_two_stage,
)
from .registry import REGISTRY_NAME, DocumentRecord, Registry, page_point_id
from .results import (
    DocumentInfo,
    IndexCheck,
    IndexStats,
    SearchHit,
    page_id,
    page_label,
    parse_page_id,
    relevance_score,
)
from .store import PageStore, StagedPage
from .vectors import POOLING_KIND, SUMMARY_KIND, as_matrix, page_pooled, page_summary, query_summary, to_storage

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder
    from ..pruning.base import Pruner
    from ..types import PageEncoding, PrunedPage
    from .documents import AddReport

logger = logging.getLogger(__name__)

__all__ = ["SAPIndex", "pruned_page"]

IMAGES_DIR = "images"
_QUERY_BATCH = 64


class SAPIndex:
    """A page index: SAP-pruned multi-vector pages in Qdrant, searched with exact MaxSim.

    Create with :meth:`create`, reopen with :meth:`open`; use as a context manager or call
    :meth:`close`. One ``SAPIndex`` at a time may have an index open (an exclusive file lock).

    >>> import tempfile, torch
    >>> with tempfile.TemporaryDirectory() as d, SAPIndex.create(d + "/idx", dim=4) as index:
    ...     anchors = torch.eye(4)[:2]  # one page with 2 anchors of dim 4
    ...     info = index.add_pages([pruned_page(anchors)], doc_id="doc")
    ...     hits = index.search(torch.eye(4)[:1], k=1)
    ...     (hits[0].doc_id, hits[0].page_number, round(hits[0].score, 3))
    ('doc', 1, 1.0)
    """

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
        self._encoder = encoder
        self._pruner = pruner
        self._mutex = threading.RLock()
        self._closed = False
        self.read_only = lock.shared
        # Releases the engine and the lock when this object is collected or the process exits,
        # without close(). It must not refer to self, or self would never be collected.
        self._finalizer = weakref.finalize(self, _release, store, lock)

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
        dim = resolve_dim(encoder, dim)
        pruner = resolve_pruner(pruner, keep_ratio)
        threshold = positive_int(two_stage_threshold, "two_stage_threshold")
        if isinstance(pooled_vectors, bool) or not isinstance(pooled_vectors, int) or pooled_vectors < 0:
            raise InvalidInputError(f"pooled_vectors must be an integer >= 0 (0: none), got {pooled_vectors!r}")
        default_depth = DEFAULT_PREFETCH if pooled_vectors else DEFAULT_MEAN_PREFETCH
        depth = default_depth if prefetch is None else positive_int(prefetch, "prefetch")
        coarse_depth = positive_int(coarse, "coarse")
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
            backend = create_backend(
                root,
                dim=dim,
                storage=storage_type,
                oversampling=float(oversampling),
                qdrant_url=qdrant_url,
                client=client,
                collection=collection,
                api_key=qdrant_api_key,
                indexing_threshold_kb=indexing_threshold_kb,
                pooled=pooled_vectors > 0,
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
                    "coarse": coarse_depth,
                    "pooled_vectors": pooled_vectors,
                    "pooling": POOLING_KIND,
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
        store = PageStore(backend, registry, ImageStore(root / IMAGES_DIR), store_images=manifest.store_images)
        return cls(root, manifest, store, lock, encoder=encoder, pruner=pruner)

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
    ) -> SAPIndex:
        """Open an existing index (and finish or undo any write a crash interrupted).

        One writer, or any number of read-only opens (from any processes), may have an index open
        at a time: ``read_only=True`` opens share the index with each other, for searching
        (``search``, ``get_pages``, ``document``, ``stats``...); a writer waits for none of them
        but is refused while they are open, and they are refused while it is. The lock is
        released by :meth:`close`, by leaving a ``with`` block, when the object is garbage
        collected, or when the process ends.

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

        Raises:
            IndexNotFoundError: no index at ``path``.
            IndexFormatError: a newer format version, or a damaged index.
            IndexLockedError: the index is open elsewhere (for writing; or, for a writer, read-only):
                the message says by whom and what to do.
            IndexReadOnlyError: ``read_only`` and a write was interrupted; open it for writing once.
            EncoderMismatchError: ``encoder`` differs from the index's.
        """
        root = Path(path)
        manifest = Manifest.read(root)
        check_encoder(manifest, encoder)
        pruner = check_pruner(manifest, pruner)
        lock = IndexLock.acquire(root, shared=bool(read_only))
        backend: Backend | None = None
        registry: Registry | None = None
        try:
            with lock.engine_section():
                backend = _open_backend(root, manifest, client, qdrant_api_key, bool(read_only))
            if not (root / REGISTRY_NAME).is_file():
                raise IndexFormatError(f"{root} has no {REGISTRY_NAME}; the index is incomplete or damaged")
            registry = Registry(root / REGISTRY_NAME, read_only=bool(read_only))
            if read_only and (registry.journal() or registry.journal_points()):
                raise IndexReadOnlyError(
                    f"the index at {root} has a write that was interrupted (a writer stopped before finishing), "
                    f"which a read-only open cannot clean up: open it once for writing (SAPIndex.open({str(root)!r}) "
                    "or any sap-rag command that changes it), then read-only opens work"
                )
        except BaseException:
            if registry is not None:
                registry.close()
            if backend is not None:
                with lock.engine_section():
                    backend.close()
            lock.release()
            raise
        store = PageStore(
            backend, registry, ImageStore(root / IMAGES_DIR), store_images=manifest.store_images, read_only=read_only
        )
        index = cls(root, manifest, store, lock, encoder=encoder, pruner=pruner)
        if not read_only:
            try:
                store.recover()
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
            encoder = load_encoder(spec["spec"], window=spec.get("window"))
            check_encoder(self.manifest, encoder)
            self._encoder = encoder
        return self._encoder

    @property
    def pruner(self) -> Pruner:
        """The pruner applied to new ``PageEncoding``s."""
        if self._pruner is None:
            raise InvalidInputError(
                f"this index was built with the pruner {self.manifest.pruner}; reopen it with "
                "SAPIndex.open(path, pruner=<the same pruner>) to prune new pages, or add pruned pages"
            )
        return self._pruner

    @property
    def backend(self) -> Backend:
        return self._store.backend

    @property
    def _registry(self) -> Registry:
        return self._store.registry

    def __len__(self) -> int:
        """Number of pages."""
        return self._store.pages

    def __contains__(self, doc_id: object) -> bool:
        with self._mutex:
            return isinstance(doc_id, str) and self._registry.get(doc_id) is not None

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} pages"
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
        texts: Sequence[str | None] | None = None,
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
            texts: per page, its text (e.g. from OCR or a text layer), returned as ``hit.text``;
                None or empty entries (or no list) get a label such as ``"page 3 of report.pdf"``.
            batch_size: pages per encoder forward pass (a positive integer; default: the encoder's).
            show_progress: show progress bars.

        Raises:
            UnreadableInputError: a page is not a readable image (nothing is written).
        """
        self._check_open(write=True)
        doc_id = check_doc_id(doc_id)
        metadata = validate_metadata(metadata)
        sources = check_sequence(images, "images")
        if batch_size is not None:
            batch_size = positive_int(batch_size, "batch_size")
        page_texts = _page_texts(texts, len(sources), doc_id, metadata)
        decoded = _load_images(sources, doc_id)
        window = getattr(self.pruner, "window", None)
        encodings = self.encoder.encode_pages(
            decoded,
            batch_size=batch_size,
            indegree_layers=list(window) if window else "window",
            show_progress=show_progress,
        )
        pruned = [self.pruner.prune(page) for page in encodings]
        return self._write(doc_id, pruned, sources, decoded, metadata, show_progress, page_texts)

    def add_documents(self, paths: Any, **options: Any) -> AddReport:
        """Index PDFs and images from files and folders; see :func:`sap_rag.index.documents.add_documents`.

        Each file is one document with a content-hash id: re-adding a file is a no-op, a changed
        file replaces its old pages, and every file is read before anything is written.
        """
        from .documents import add_documents

        self._check_open(write=True)
        return add_documents(self, paths, **options)

    def add_pages(
        self,
        pages: Sequence[PageEncoding | PrunedPage],
        doc_id: str,
        metadata: Mapping[str, Any] | None = None,
        *,
        images: Sequence[Any] | None = None,
        texts: Sequence[str | None] | None = None,
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
            texts: optional page texts (one per page; see :meth:`add_images`).
            show_progress: show a progress bar.
        """
        self._check_open(write=True)
        doc_id = check_doc_id(doc_id)
        metadata = validate_metadata(metadata)
        pruned = [self._as_pruned(page, i) for i, page in enumerate(check_sequence(pages, "pages"))]
        page_texts = _page_texts(texts, len(pruned), doc_id, metadata)
        sources = decoded = None
        if images is not None:
            sources = check_sequence(images, "images")
            if len(sources) != len(pruned):
                raise InvalidInputError(f"got {len(pruned)} pages but {len(sources)} images; give one image per page")
            decoded = _load_images(sources, doc_id)
        return self._write(doc_id, pruned, sources, decoded, metadata, show_progress, page_texts)

    def delete(self, doc_id: str, *, missing_ok: bool = False) -> int:
        """Remove every page of a document; return how many pages went.

        Raises:
            DocumentNotFoundError: no such document (unless ``missing_ok``).
        """
        self._check_open(write=True)
        doc_id = check_doc_id(doc_id)
        with self._mutex:
            self._check_open()
            old = self._store.remove(doc_id)
        if old is None:
            if missing_ok:
                return 0
            raise DocumentNotFoundError(f"no document {doc_id!r} in the index at {self.path}")
        logger.info("deleted %r (%d pages)", doc_id, old.num_pages)
        return old.num_pages

    def optimize(self) -> None:
        """Let the engine merge segments and build the mean-vector graph; call after bulk adds."""
        self._check_open(write=True)
        with self._mutex:
            started = time.perf_counter()
            self.backend.optimize()
            self.backend.flush()
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
        coarse: int | None = None,
    ) -> list[SearchHit]:
        """The ``k`` pages with the highest MaxSim against ``query``, best first.

        Args:
            query: a query string (encoded with the index's encoder), a ``PIL.Image.Image``
                (encoded as a page: its visual tokens' embeddings are the query vectors, so it
                finds pages that look like it), or precomputed query embeddings ``(n_tokens, dim)``
                (torch tensor or numpy array).
            k: how many pages to return.
            filter: ``{"doc_id": "a"}``, ``{"doc_id": ["a", "b"]}`` (any of), ``{"page_number": 3}``,
                or any metadata key (``{"source": "report.pdf"}``); all keys must match.
            two_stage: override the index's setting: True, False or ``"auto"``.
            prefetch: override how many candidates the exact MaxSim stage reranks.
            coarse: override how many candidates the first stage keeps (at least ``prefetch``).
        """
        if isinstance(query, (list, tuple)) and query and isinstance(query[0], str):
            raise InvalidInputError("search takes one query; use search_batch for a list of queries")
        return self.search_batch([query], k, filter=filter, two_stage=two_stage, prefetch=prefetch, coarse=coarse)[0]

    def search_batch(
        self,
        queries: Sequence[str | Any],
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
        show_progress: bool = False,
    ) -> list[list[SearchHit]]:
        """:meth:`search` for many queries (strings, images and/or ``(n_tokens, dim)`` embeddings) at once."""
        self._check_open()
        items = check_sequence(queries, "queries")
        k = positive_int(k, "k")
        conditions = parse_filter(filter)
        depth = self._prefetch_depth(two_stage, prefetch, k)
        first = self._coarse_depth(coarse, depth)
        vectors = self._query_vectors(items, show_progress)
        limit = self.manifest.two_stage.get("exact_prefetch_max_pages", DEFAULT_EXACT_PREFETCH_MAX_PAGES)
        exact_prefetch = len(self) <= int(limit)
        specs = [QuerySpec(v, query_summary(v), k, conditions, depth, exact_prefetch, coarse=first) for v in vectors]
        out: list[list[SearchHit]] = []
        with self._mutex:
            self._check_open()
            if not self.read_only:
                self._store.ensure_recovered()
            for start in range(0, len(specs), _QUERY_BATCH):
                for hits in self.backend.query(specs[start : start + _QUERY_BATCH]):
                    tokens = int(specs[len(out)].vectors.shape[0])
                    out.append([self._hit(p, tokens) for p in hits])
        return out

    def get_pages(self, page_ids: Sequence[str]) -> list[SearchHit | None]:
        """The pages with these ids (see :func:`sap_rag.page_id`), in order; None for an id the
        index does not hold. Records have ``score`` 0, ``relevance`` 0 and ``num_query_tokens`` 0.

        Raises:
            InvalidInputError: an id is not a page id.
        """
        self._check_open()
        wanted = [parse_page_id(p) for p in _id_list(page_ids)]
        with self._mutex:
            self._check_open()
            records: dict[str, DocumentRecord | None] = {}
            points: list[int | None] = []
            for doc_id, number in wanted:
                if doc_id not in records:
                    records[doc_id] = self._registry.get(doc_id)
                record = records[doc_id]
                ok = record is not None and number in record.page_numbers
                points.append(page_point_id(record.gen, number) if ok and record is not None else None)
            payloads = self.backend.retrieve([p for p in points if p is not None])
        out: list[SearchHit | None] = []
        for point in points:
            payload = payloads.get(point) if point is not None else None
            out.append(None if payload is None else self._hit(ScoredPoint(point, 0.0, payload), 0))  # type: ignore[arg-type]
        return out

    def delete_pages(self, page_ids: Sequence[str], *, missing_ok: bool = False) -> int:
        """Remove pages by id; return how many went. A document that loses all its pages goes
        too (as with :meth:`delete`); the others keep their page ids. Each document's pages go
        all or nothing.

        Raises:
            DocumentNotFoundError: an id names no page in the index (unless ``missing_ok``);
                nothing is deleted then.
            InvalidInputError: an id is not a page id.
        """
        self._check_open(write=True)
        by_doc: dict[str, set[int]] = {}
        for doc_id, number in (parse_page_id(p) for p in _id_list(page_ids)):
            by_doc.setdefault(doc_id, set()).add(number)
        removed = 0
        with self._mutex:
            self._check_open(write=True)
            plan = []
            for doc_id, numbers in by_doc.items():
                record = self._registry.get(doc_id)
                present = set(record.page_numbers) if record is not None else set()
                missing = sorted(numbers - present)
                if missing and not missing_ok:
                    raise DocumentNotFoundError(
                        f"the index at {self.path} has no page {page_id(doc_id, missing[0])!r}"
                        + (f" (document {doc_id!r} holds pages {sorted(present)})" if present else "")
                        + "; nothing was deleted (pass missing_ok=True to skip missing pages)"
                    )
                if record is not None and numbers & present:
                    plan.append((record, sorted(numbers & present)))
            for record, numbers in plan:
                self._store.remove_pages(record, numbers)
                removed += len(numbers)
                logger.info("deleted %d pages of %r", len(numbers), record.doc_id)
        return removed

    def document(self, doc_id: str) -> DocumentInfo:
        """What the index holds of one document."""
        self._check_open()
        with self._mutex:
            record = self._registry.get(doc_id)
        if record is None:
            raise DocumentNotFoundError(f"no document {doc_id!r} in the index at {self.path}")
        return self._info(record)

    def documents(self, *, source: str | None = None) -> list[str]:
        """Ids of every document, sorted; with ``source``, only those whose metadata ``source``
        equals it (an indexed lookup: how ``add_documents`` finds a changed file's old version)."""
        self._check_open()
        with self._mutex:
            return self._registry.doc_ids(source)

    def stats(self) -> IndexStats:
        """Counts, sizes and settings; see :class:`IndexStats`."""
        self._check_open()
        with self._mutex:
            documents, pages, vectors = self._registry.totals()
            disk = self.backend.bytes_on_disk()
            return IndexStats(
                pages=pages,
                documents=documents,
                vectors=vectors,
                vectors_per_page=vectors / pages if pages else 0.0,
                bytes_on_disk=disk,
                bytes_per_page=(disk / pages if pages else None) if disk is not None else None,
                image_bytes=self._store.images.bytes_on_disk(),
                keep_ratio=self.manifest.keep_ratio,
                window=self.manifest.window,
                storage=self.storage.value,
                backend=self.backend.kind,
                two_stage=self._prefetch_depth(None, None, 1) is not None,
            )

    def check(self, *, repair: bool = False) -> IndexCheck:
        """Compare every point in the engine with the registry (a full scan).

        Reports points of uncommitted or replaced generations (``stray_points``) and committed
        documents with missing pages. With ``repair=True`` stray points are deleted.
        """
        self._check_open(write=repair)
        with self._mutex:
            return self._store.check(repair=repair)

    def close(self) -> None:
        """Flush and release the index (idempotent); also done when the object is collected."""
        if self._closed:
            return
        with self._mutex:
            self._closed = True
            self._finalizer()

    # --- internals --------------------------------------------------------------------------

    def _check_open(self, *, write: bool = False) -> None:
        if self._closed:
            raise IndexClosedError(f"the index at {self.path} is closed; open it again with SAPIndex.open")
        if write and self.read_only:
            raise IndexReadOnlyError(
                f"the index at {self.path} was opened read-only (for searching); open it with "
                f"SAPIndex.open({str(self.path)!r}) to change it, once no other process has it open"
            )

    def _as_pruned(self, page: Any, i: int) -> PrunedPage:
        from ..types import PageEncoding, PrunedPage

        if isinstance(page, PrunedPage):
            expected = self.manifest.pruner.get("name")
            if page.method != expected:
                raise InvalidInputError(
                    f"page {i + 1} was pruned with {page.method!r}, but this index stores {expected!r} pages; "
                    "pass PageEncodings to have the index prune them, or create an index for that pruner"
                )
            return page
        if isinstance(page, PageEncoding):
            return self.pruner.prune(page)
        raise InvalidInputError(
            f"page {i + 1} is a {type(page).__name__}; add_pages takes PageEncoding or PrunedPage objects "
            "(use add_images for images)"
        )

    def _write(
        self,
        doc_id: str,
        pruned: list[PrunedPage],
        sources: Sequence[Any] | None,
        decoded: list[Any] | None,
        metadata: dict[str, Any],
        show_progress: bool,
        texts: list[str],
    ) -> DocumentInfo:
        """Round the pages to the storage precision and store them as one document.

        The seam for bulk ingestion (``add_documents``): everything before this point validates
        and computes; from here on the write is all or nothing.
        """
        if len(pruned) != len(texts) or (sources is not None and len(sources) != len(texts)):
            # Never commit a document with fewer pages than it has (an encoder that dropped pages).
            raise SapRagError(
                f"internal error: {doc_id!r} has {len(texts)} pages but {len(pruned)} were encoded; nothing was written"
            )
        staged = []
        pooled = self.manifest.pooled_vectors
        for i, page in enumerate(pruned):
            anchors = to_storage(as_matrix(page.embeddings, self.dim, f"page {i + 1} of {doc_id!r}"), self.storage)
            staged.append(
                StagedPage(
                    anchors,
                    page_summary(anchors, self.storage),
                    _page_payload(page),
                    source=sources[i] if sources is not None else None,
                    image=decoded[i] if decoded is not None else None,
                    pooled=page_pooled(anchors, pooled, self.storage) if pooled else None,
                    text=texts[i],
                )
            )
        with self._mutex:
            self._check_open()
            record = self._store.write(doc_id, staged, metadata, show_progress=show_progress)
        logger.info("added %r: %d pages, %d vectors", doc_id, record.num_pages, record.num_vectors)
        return self._info(record)

    def _query_vectors(self, items: list[Any], show_progress: bool) -> list[np.ndarray]:
        """Per query, its ``(n_tokens, dim)`` vectors at storage precision: strings through the
        encoder's query side, images through its page side (every visual token), arrays as given."""
        from PIL import Image

        texts = [(i, q) for i, q in enumerate(items) if isinstance(q, str)]
        images = [(i, q) for i, q in enumerate(items) if isinstance(q, Image.Image)]
        for i, text in texts:
            if not text.strip():
                raise InvalidInputError(f"query #{i} is empty; a query needs some text to search with")
        vectors: list[np.ndarray | None] = [None] * len(items)
        if texts:
            encoded = self.encoder.encode_queries([t for _, t in texts], show_progress=show_progress)
            for (i, _), tensor in zip(texts, encoded):
                vectors[i] = as_matrix(tensor, self.dim, f"query #{i}")
        if images:
            pages = self.encoder.encode_pages([q for _, q in images], indegree_layers=None, show_progress=show_progress)
            if len(pages) != len(images):
                raise SapRagError(f"internal error: {len(images)} image queries but {len(pages)} were encoded")
            for (i, _), page in zip(images, pages):
                vectors[i] = as_matrix(page.embeddings, self.dim, f"image query #{i}")
        for i, item in enumerate(items):
            if vectors[i] is None:
                vectors[i] = as_matrix(item, self.dim, f"query #{i}")
        return [to_storage(v, self.storage) for v in vectors]  # type: ignore[arg-type]

    def _prefetch_depth(self, two_stage: bool | str | None, prefetch: int | None, k: int) -> int | None:
        settings = self.manifest.two_stage
        mode = parse_two_stage(settings["mode"] if two_stage is None else two_stage)
        if mode is TwoStageMode.NEVER or (mode is TwoStageMode.AUTO and len(self) < int(settings["threshold"])):
            return None
        depth = int(settings["prefetch"]) if prefetch is None else positive_int(prefetch, "prefetch")
        return max(depth, k)

    def _coarse_depth(self, coarse: int | None, depth: int | None) -> int | None:
        """First-stage candidates (None: no pooled stage, as without pooled vectors or stages)."""
        if coarse is not None:
            coarse = positive_int(coarse, "coarse")
        if depth is None or self.manifest.pooled_vectors == 0:
            return None
        value = int(self.manifest.two_stage.get("coarse", DEFAULT_COARSE)) if coarse is None else coarse
        return max(value, depth)

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


def pruned_page(embeddings: Any, method: str = "sap") -> PrunedPage:
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


def _page_payload(page: PrunedPage) -> dict[str, Any]:
    """Per-page payload fields besides doc_id/page_number/gen/image/metadata."""
    positions = page.positions.detach().to("cpu").reshape(-1).tolist() if page.positions is not None else []
    return {
        "num_tokens": int(page.num_tokens),
        # (row, col) grid cell of each anchor, flattened: drives overlays and debugging.
        "positions": [round(float(x), 2) for x in positions],
    }


def _release(store: PageStore, lock: IndexLock) -> None:
    """Close the engine and registry, then drop the lock (the finalizer of a ``SAPIndex``)."""
    try:
        with lock.engine_section():
            store.close()
    except Exception:  # pragma: no cover - also runs at interpreter exit, where raising helps nobody
        logger.exception("closing the index at %s", lock.path.parent)
    finally:
        lock.release()


def _open_backend(root: Path, manifest: Manifest, client: Any, api_key: str | None, read_only: bool) -> Backend:
    """:func:`open_backend`, with what refuses a second local-mode client said in our words."""
    try:
        return open_backend(root, manifest, client, api_key)
    except RuntimeError as exc:
        if "already accessed by another instance" not in str(exc):
            raise
        raise IndexLockedError(
            f"the index at {root} keeps its vectors in qdrant-client local mode ({manifest.backend.get('path')}), "
            "which only one process can open at a time, also for reading. Close the other one first; for many "
            "searching processes, create the index with Qdrant Edge (the default) or on a Qdrant server"
        ) from exc


def _id_list(page_ids: Any) -> list[Any]:
    if isinstance(page_ids, str):
        return [page_ids]  # one id: no need to make the caller wrap it
    if not isinstance(page_ids, (Sequence, set, frozenset)):
        raise InvalidInputError(f"page_ids must be a list of page ids, got {type(page_ids).__name__}")
    return list(page_ids)


def _page_texts(texts: Any, count: int, doc_id: str, metadata: Mapping[str, Any]) -> list[str]:
    """Per page, the given text (cleaned) or, where there is none, a label like "page 3 of report.pdf"."""
    from ..ingest.text import clean_text

    if texts is None:
        given: list[Any] = [None] * count
    else:
        given = check_sequence(texts, "texts")
        if len(given) != count:
            raise InvalidInputError(f"got {count} pages but {len(given)} texts; give one text (or None) per page")
    name = metadata.get("filename")
    name = name if isinstance(name, str) and name.strip() else doc_id
    out = []
    for i, text in enumerate(given):
        if text is not None and not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a str or None, got {type(text).__name__}")
        cleaned = clean_text(text) if text else ""
        out.append(cleaned or page_label(i + 1, name))
    return out


def _load_images(sources: list[Any], doc_id: str) -> list[Any]:
    from ..ingest.images import load_image

    return [load_image(src, name=f"{doc_id!r} page {i + 1}") for i, src in enumerate(sources)]


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
