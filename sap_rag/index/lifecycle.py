"""Making and opening the parts of an index (lock, engine, registry, images): ``SAPIndex.create`` and
``SAPIndex.open`` hand over to these, and a finalizer hands them back (:func:`release`)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from .backends.base import Backend
from .backends.factory import create_backend, open_backend
from .checks import check_encoder, check_pruner, positive_int, resolve_dim, resolve_pruner
from .errors import IndexExistsError, IndexFormatError, IndexReadOnlyError
from .images import ImageStore
from .lock import LOCK_NAME, IndexLock
from .manifest import MANIFEST_NAME, Manifest
from .options import (
    DEFAULT_EXACT_PREFETCH_MAX_PAGES,
    DEFAULT_MEAN_PREFETCH,
    DEFAULT_PREFETCH,
    StorageType,
    parse_two_stage,
)
from .registry import REGISTRY_NAME, Registry
from .store import PageStore
from .vectors import POOLING_KIND, SUMMARY_KIND

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder
    from ..pruning.base import Pruner

logger = logging.getLogger(__name__)

__all__ = ["IMAGES_DIR", "IndexParts", "create_parts", "open_parts", "release"]

IMAGES_DIR = "images"

IndexParts = tuple[Path, Manifest, PageStore, IndexLock, "Pruner | None"]
"""``(root, manifest, store, lock, pruner)`` of an open index."""


def create_parts(
    path: str | os.PathLike,
    encoder: PageEncoder | None,
    *,
    keep_ratio: float | None,
    pruner: Pruner | None,
    dim: int | None,
    storage: StorageType | str,
    two_stage: bool | str,
    two_stage_threshold: int,
    prefetch: int | None,
    coarse: int,
    pooled_vectors: int,
    oversampling: float,
    store_images: bool,
    qdrant_url: str | None,
    client: Any,
    collection: str | None,
    qdrant_api_key: str | None,
    indexing_threshold_kb: int | None,
) -> IndexParts:
    """A new, empty index at ``path`` (see ``SAPIndex.create``); nothing is left behind on failure."""
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
    return root, manifest, store, lock, pruner


def open_parts(
    path: str | os.PathLike,
    encoder: PageEncoder | None,
    *,
    pruner: Pruner | None,
    client: Any,
    qdrant_api_key: str | None,
    read_only: bool,
) -> IndexParts:
    """The parts of an existing index (see ``SAPIndex.open``); a writer's open also recovers."""
    root = Path(path)
    manifest = Manifest.read(root)
    check_encoder(manifest, encoder)
    pruner = check_pruner(manifest, pruner)
    lock = IndexLock.acquire(root, shared=bool(read_only))
    backend: Backend | None = None
    registry: Registry | None = None
    try:
        with lock.engine_section():
            backend = open_backend(root, manifest, client, qdrant_api_key)
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
    if not read_only:
        try:
            store.recover()
        except BaseException:
            release(store, lock)
            raise
    return root, manifest, store, lock, pruner


def release(store: PageStore, lock: IndexLock) -> None:
    """Close the engine and registry, then drop the lock (the finalizer of a ``SAPIndex``)."""
    try:
        with lock.engine_section():
            store.close()
    except Exception:  # pragma: no cover - also runs at interpreter exit, where raising helps nobody
        logger.exception("closing the index at %s", lock.path.parent)
    finally:
        lock.release()


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
