"""Making and opening the parts of an index (lock, engine, registry, images): ``SAPIndex.create`` and
``SAPIndex.open`` hand over to these, and a finalizer hands them back (:func:`release`)."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError
from .backends.base import Backend
from .backends.edge import SHARD_DIR
from .backends.factory import create_backend, open_backend
from .checks import check_encoder, check_pruner, positive_int, resolve_dim, resolve_pruner
from .errors import IndexExistsError, IndexFormatError, IndexNotFoundError, IndexReadOnlyError
from .images import ImageStore
from .lock import LOCK_NAME, WAIT_NAME, IndexLock, check_timeout
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

__all__ = ["IMAGES_DIR", "Created", "IndexParts", "create_parts", "open_parts", "release", "remove_created"]

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
    timeout: float = 0.0,
) -> tuple[IndexParts, Created]:
    """A new, empty index at ``path`` (see ``SAPIndex.create``) and what making it created.

    Whether the index is new is decided under the lock: two processes creating the same path
    race for the lock, and the loser finds the winner's index (:class:`IndexExistsError`) or
    its lock (:class:`IndexLockedError`). A failure removes only what this call created, while
    it still holds the lock, so it never removes another process's folder or index.
    """
    from .. import __version__

    root = Path(path)
    _refuse_existing(root)  # the quick answer; the one that counts is given under the lock
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
    timeout = check_timeout(timeout)

    lock, created = _lock_new_directory(root, timeout)
    backend: Backend | None = None
    registry: Registry | None = None
    try:
        _refuse_existing(root, locked=True)
        created.names.append(SHARD_DIR)
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
        created.names += [REGISTRY_NAME, REGISTRY_NAME + "-journal", REGISTRY_NAME + "-wal", REGISTRY_NAME + "-shm"]
        registry = Registry(root / REGISTRY_NAME)
        created.names.append(IMAGES_DIR)
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
        created.names.append(MANIFEST_NAME)
        manifest.write(root)  # last: an index exists once its manifest does
    except BaseException:
        if registry is not None:
            registry.close()
        if backend is not None:
            try:
                backend.close()
            except Exception:  # pragma: no cover - best effort while already failing
                logger.exception("closing the backend after a failed create")
        remove_created(root, created, lock)
        raise
    logger.info("created index %s (%s backend, %s storage, dim %d)", root, backend.kind, storage_type.value, dim)
    store = PageStore(backend, registry, ImageStore(root / IMAGES_DIR), store_images=manifest.store_images)
    return (root, manifest, store, lock, pruner), created


@dataclass
class Created:
    """What ``SAPIndex.create`` made: the directories it created (``dirs``, deepest last: the index
    directory and missing parents) and the entries it wrote in the index directory (``names``)."""

    dirs: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def _refuse_existing(root: Path, *, locked: bool = False) -> None:
    """Refuse a path that holds an index or anything but (when ``locked``) the lock files."""
    if root.exists() and not root.is_dir():
        raise IndexExistsError(f"{root} exists and is not a directory; pick a new path for the index")
    if not root.exists():
        return
    if (root / MANIFEST_NAME).is_file() or (root / MANIFEST_NAME).is_symlink():
        raise IndexExistsError(f"{root} already holds an index; open it with SAPIndex.open({str(root)!r})")
    # Lock files (plain ones) are what a racing creator leaves first: its lock decides, not this check.
    allowed = {LOCK_NAME, WAIT_NAME}
    for name in os.listdir(root):
        if name not in allowed or not (locked or _plain_file(root / name)):
            raise IndexExistsError(f"{root} exists and is not an empty directory; pick a new path for the index")


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return True  # gone already: nothing in the way


def _lock_new_directory(root: Path, timeout: float) -> tuple[IndexLock, Created]:
    """Make ``root`` (where missing, with its parents) and take its lock; what was made is recorded."""
    for _ in range(5):
        created = Created()
        missing = [p for p in (root, *root.parents) if not p.exists()]
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                continue  # another process made it first: it is not ours to remove
            created.dirs.append(directory)
        try:
            lock = IndexLock.acquire(root, timeout=timeout)
        except IndexNotFoundError:
            continue  # a failed creator removed the directory while we waited for its lock: make it again
        except BaseException:
            _remove_empty_dirs(created.dirs)  # without the lock: only directories still empty
            raise
        if lock.created_file:
            created.names.append(LOCK_NAME)
        return lock, created
    raise IndexExistsError(f"{root} keeps being created and removed by other processes; try again")


def remove_created(root: Path, created: Created, lock: IndexLock) -> None:
    """Undo a create (a failed one, or a first CLI run that indexed nothing): remove what it made,
    while still holding the lock, then release the lock. Waiters notice the lock file went."""
    try:
        names = list(created.names)
        if created.dirs and created.dirs[-1] == root:
            names += [LOCK_NAME, WAIT_NAME]  # the directory is ours: so are the lock files in it
        for name in dict.fromkeys(names):
            target = root / name
            try:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            except FileNotFoundError:
                continue
            except OSError:
                logger.exception("could not remove %s after a failed create", target)
        _remove_empty_dirs(created.dirs)
    finally:
        lock.release()


def _remove_empty_dirs(dirs: list[Path]) -> None:
    for directory in reversed(dirs):
        try:
            directory.rmdir()  # only when empty: never what another process put there
        except OSError:
            return


def open_parts(
    path: str | os.PathLike,
    encoder: PageEncoder | None,
    *,
    pruner: Pruner | None,
    client: Any,
    qdrant_api_key: str | None,
    read_only: bool,
    timeout: float = 0.0,
) -> IndexParts:
    """The parts of an existing index (see ``SAPIndex.open``); a writer's open also recovers."""
    root = Path(path)
    timeout = check_timeout(timeout)
    manifest = Manifest.read(root)
    check_encoder(manifest, encoder)
    pruner = check_pruner(manifest, pruner)
    lock = IndexLock.acquire(root, shared=bool(read_only), timeout=timeout)
    backend: Backend | None = None
    registry: Registry | None = None
    try:
        if read_only and manifest.backend.get("kind") == "edge":
            backend = open_edge_read_only(root, manifest, lock, timeout)
        else:
            with lock.engine_section(timeout):
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
            with _engine_turn(lock, backend):
                backend.close_read_only() if read_only else backend.close()
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
    from ..transfer.marker import incomplete_import  # here: transfer imports the index package

    notice = incomplete_import(root, documents=registry.totals()[0])
    if notice:
        logger.warning(notice)
    return root, manifest, store, lock, pruner


def open_edge_read_only(root: Path, manifest: Manifest, lock: IndexLock, timeout: float) -> Backend:
    """A read-only open's Qdrant Edge shard: loaded in place, or from a private copy where the folder
    is read-only or its disk too full for what a load writes (see :mod:`.backends.edge`)."""
    from .backends.edge import EdgeBackend

    return EdgeBackend.open_read_only(
        root,
        dim=manifest.dim,
        storage=StorageType(manifest.storage),
        oversampling=manifest.oversampling,
        pooled=manifest.pooled_vectors > 0,
        turn=lambda: lock.engine_section(timeout),
    )


def _engine_turn(lock: IndexLock, backend: Backend) -> Any:
    """The engine section for closing ``backend`` (none needed for a private copy of the shard)."""
    if getattr(backend, "private_copy", None) is not None:
        return nullcontext()
    return lock.engine_section(closing=True)


def release(store: PageStore, lock: IndexLock) -> None:
    """Close the engine and registry, then drop the lock (the finalizer of a ``SAPIndex``)."""
    try:
        with _engine_turn(lock, store.backend):
            store.close()
    except Exception:  # pragma: no cover - also runs at interpreter exit, where raising helps nobody
        logger.exception("closing the index at %s", lock.path.parent)
    finally:
        lock.release()


def discard_new(index: Any) -> None:
    """Remove an index that ``index`` (a ``SAPIndex``) created and has held since: the undo of a
    failed first run (the CLI's first ``index``, an import). Everything in it is this object's
    own, as no other process could open it meanwhile; removed under the lock, then released.

    Raises:
        InvalidInputError: ``index`` was opened, not created (or was closed).
    """
    from .errors import IndexClosedError

    with index._mutex:
        created = index._created
        if index._closed:
            raise IndexClosedError(f"the index at {index.path} is closed; only an open new index can be discarded")
        if created is None:
            raise InvalidInputError(f"the index at {index.path} was opened, not created here: it is not discarded")
        index._closed = True
        index._finalizer.detach()
        try:
            index._store.close()
        except Exception:  # pragma: no cover - best effort while already failing
            logger.exception("closing the new index at %s before removing it", index.path)
        remove_created(index.path, created, index._lock)
        logger.info("removed the new index at %s", index.path)
