"""Qdrant Edge backend: the Qdrant engine in-process, one shard in ``<index>/shard``.

Layout of the shard: ``anchors`` (multivector, MaxSim, Dot, HNSW ``m=0`` so every search is an
exact scan), ``pooled`` (a few pooled anchors per page, the same kind of field, for the prefetch
stages; absent in indexes made without pooled vectors), ``mean`` (one vector per page, Dot,
default HNSW, for the first prefetch stage past the scan limit), a keyword payload index on
``doc_id``. The WAL is off: writes are durable once :meth:`flush`
returns, and the index's registry journal (not the WAL) decides what survives a crash.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from ...errors import MissingDependencyError
from .._fs import allocated_bytes
from ..errors import BackendError
from ..filters import Condition, FieldMatch
from ..options import StorageType
from .base import (
    ANCHORS,
    POOLED,
    SUMMARY,
    Backend,
    PagePoint,
    QuerySpec,
    ScoredPoint,
    Stage,
    prefetch_plan,
    record_point,
)
from .edge_space import plan_load, private_copy
from .filter_edge import to_edge_filter

logger = logging.getLogger(__name__)

__all__ = ["EdgeBackend"]

SHARD_DIR = "shard"

ON_DISK_VECTORS = False
"""Default for new shards: keep the anchors and pooled vectors memory-mapped on disk (file-backed
pages the OS can drop) instead of in the process's own memory; the mean vectors stay in RAM."""

MAX_SEGMENT_KB: int | None = None
"""Default for new shards: the largest segment ``optimize()`` builds, in KB of vectors (None: the
engine's default). Bounds the memory a merge needs whatever the index size."""


def _qe() -> Any:
    try:
        import qdrant_edge
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("the embedded index needs Qdrant Edge: pip install qdrant-edge-py==0.9.0") from exc
    return qdrant_edge


def _config(
    dim: int,
    storage: StorageType,
    indexing_threshold_kb: int | None = None,
    pooled: bool = True,
    on_disk: bool | None = None,
    max_segment_kb: int | None = None,
) -> Any:
    qe = _qe()
    datatype = qe.VectorStorageDatatype.Float32 if storage is StorageType.FLOAT32 else qe.VectorStorageDatatype.Float16
    quantization = (
        qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, memory=qe.Memory.Pinned)
        if storage is StorageType.INT8
        else None
    )

    on_disk = ON_DISK_VECTORS if on_disk is None else on_disk
    max_segment_kb = MAX_SEGMENT_KB if max_segment_kb is None else max_segment_kb

    def maxsim_field(quantization_config: Any = None) -> Any:
        # m=0: no graph. MaxSim search is then an exact scan; a graph over multivectors took
        # minutes to build and lost recall when measured.
        return qe.EdgeVectorParams(
            size=dim,
            on_disk=True if on_disk else None,
            distance=qe.Distance.Dot,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
            datatype=datatype,
            quantization_config=quantization_config,
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
        )

    vectors = {
        ANCHORS: maxsim_field(quantization),
        SUMMARY: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Dot, datatype=datatype),
    }
    if pooled:
        vectors[POOLED] = maxsim_field()  # a few vectors per page: never quantized
    limits = {}
    if indexing_threshold_kb:
        limits["indexing_threshold"] = int(indexing_threshold_kb)
    if max_segment_kb:
        limits["max_segment_size"] = int(max_segment_kb)
    optimizers = qe.EdgeOptimizersConfig(**limits) if limits else None
    return qe.EdgeConfig(vectors=vectors, wal_enabled=False, optimizers=optimizers)


def _filter(conditions: tuple[Condition, ...]) -> Any:
    return to_edge_filter(conditions)


def _prefetches(qe: Any, levels: list[list[Stage]], flt: Any) -> list[Any] | None:
    """The plan's levels as nested ``Prefetch`` objects (the last level outermost)."""
    nested = None
    for level in levels:
        nested = [
            qe.Prefetch(
                limit=stage.limit,
                query=qe.Query.Nearest(stage.query, using=stage.using),
                prefetches=nested,
                filter=flt,
                params=qe.SearchParams(exact=True) if stage.exact else qe.SearchParams(hnsw_ef=stage.hnsw_ef),
            )
            for stage in level
        ]
    return nested


class EdgeBackend(Backend):
    """Qdrant Edge shard at ``<index>/shard`` (see the module docstring)."""

    kind = "edge"

    def __init__(
        self, shard: Any, path: Path, *, dim: int, storage: StorageType, oversampling: float = 4.0, pooled: bool = True
    ) -> None:
        super().__init__(dim=dim, storage=storage, oversampling=oversampling, pooled=pooled)
        self._shard = shard
        self.path = Path(path)
        self.private_copy: Path | None = None
        """Where a read-only open loaded a private copy of the shard from (removed at close), or None."""

    @classmethod
    def create(
        cls,
        index_dir: Path,
        *,
        dim: int,
        storage: StorageType,
        oversampling: float = 4.0,
        indexing_threshold_kb: int | None = None,
        pooled: bool = True,
        on_disk_vectors: bool | None = None,
        max_segment_kb: int | None = None,
    ) -> EdgeBackend:
        """Create the shard. ``indexing_threshold_kb``: segment size from which ``optimize()`` builds the
        mean-vector graph and the int8 copy (None: the engine's default). ``pooled``: give it the
        pooled-vector field. ``on_disk_vectors``, ``max_segment_kb``: see :data:`ON_DISK_VECTORS`
        and :data:`MAX_SEGMENT_KB` (the defaults)."""
        qe = _qe()
        path = Path(index_dir) / SHARD_DIR
        try:
            config = _config(dim, storage, indexing_threshold_kb, pooled, on_disk_vectors, max_segment_kb)
            shard = qe.EdgeShard.create(str(path), config)
            shard.update(qe.UpdateOperation.create_field_index("doc_id", qe.PayloadSchemaType.Keyword))
            shard.flush()
        except Exception as exc:
            raise BackendError(f"Qdrant Edge could not create a shard at {path}: {exc}") from exc
        return cls(shard, path, dim=dim, storage=storage, oversampling=oversampling, pooled=pooled)

    @classmethod
    def open(
        cls, index_dir: Path, *, dim: int, storage: StorageType, oversampling: float = 4.0, pooled: bool = True
    ) -> EdgeBackend:
        qe = _qe()
        path = Path(index_dir) / SHARD_DIR
        if not path.is_dir():
            from ..errors import IndexFormatError

            raise IndexFormatError(
                f"the index at {index_dir} has no {SHARD_DIR}/ directory; it is incomplete or damaged"
            )
        try:
            shard = qe.EdgeShard.load(str(path))
        except Exception as exc:
            raise BackendError(f"Qdrant Edge could not load the shard at {path}: {exc}") from exc
        return cls(shard, path, dim=dim, storage=storage, oversampling=oversampling, pooled=pooled)

    @classmethod
    def open_read_only(
        cls,
        index_dir: Path,
        *,
        dim: int,
        storage: StorageType,
        oversampling: float = 4.0,
        pooled: bool = True,
        turn: Callable[[], AbstractContextManager[Any]] = nullcontext,
    ) -> EdgeBackend:
        """Load the shard for searching only: in place (inside ``turn()``, the readers' engine
        section), or from a private copy where loading in place cannot work: a read-only folder
        or mount (the engine opens its files for writing), or a disk with less room than a load
        writes (a load that runs out of room there dies by SIGBUS, see :mod:`.edge_space`).

        Raises:
            IndexStorageError: no room for the load, nor for a private copy.
        """
        path = Path(index_dir) / SHARD_DIR
        if not path.is_dir():
            from ..errors import IndexFormatError

            raise IndexFormatError(
                f"the index at {index_dir} has no {SHARD_DIR}/ directory; it is incomplete or damaged"
            )
        with turn():  # no other reader's load or close changes the files while they are measured or copied
            plan = plan_load(path)
            if plan.in_place:
                backend = cls.open(index_dir, dim=dim, storage=storage, oversampling=oversampling, pooled=pooled)
                return backend
            scratch = private_copy(path, plan)
        try:
            qe = _qe()
            shard = qe.EdgeShard.load(str(scratch / SHARD_DIR))
        except BaseException as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            if isinstance(exc, Exception):
                raise BackendError(f"Qdrant Edge could not load a private copy of the shard at {path}: {exc}") from exc
            raise
        backend = cls(shard, path, dim=dim, storage=storage, oversampling=oversampling, pooled=pooled)
        backend.private_copy = scratch
        return backend

    # --- writes -----------------------------------------------------------------------------

    def upsert(self, points: Sequence[PagePoint]) -> None:
        if not points:
            return
        qe = _qe()
        batch = [qe.Point(p.id, self.named_vectors(p), p.payload) for p in points]
        try:
            self._shard.update(qe.UpdateOperation.upsert_points(batch))
        except Exception as exc:
            raise BackendError(f"Qdrant Edge failed to write {len(batch)} pages: {exc}") from exc

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        qe = _qe()
        try:
            self._shard.update(qe.UpdateOperation.delete_points([int(i) for i in ids]))
        except Exception as exc:
            raise BackendError(f"Qdrant Edge failed to delete {len(ids)} pages: {exc}") from exc

    def flush(self) -> None:
        try:
            self._shard.flush()
        except Exception as exc:
            raise BackendError(f"Qdrant Edge failed to flush the shard at {self.path}: {exc}") from exc

    def optimize(self) -> None:
        try:
            self._shard.optimize()
        except Exception as exc:
            raise BackendError(f"Qdrant Edge failed to optimize the shard at {self.path}: {exc}") from exc

    # --- reads ------------------------------------------------------------------------------

    def _request(self, spec: QuerySpec) -> Any:
        qe = _qe()
        flt = _filter(spec.filter)
        params = None
        if self.storage is StorageType.INT8:
            params = qe.SearchParams(
                quantization=qe.QuantizationSearchParams(rescore=True, oversampling=self.oversampling)
            )
        return qe.QueryRequest(
            limit=int(spec.limit),
            query=qe.Query.Nearest(spec.vectors, using=ANCHORS),
            prefetches=_prefetches(qe, prefetch_plan(spec, self.pooled), flt),
            filter=flt,
            with_payload=True,
            params=params,
        )

    def query(self, requests: Sequence[QuerySpec]) -> list[list[ScoredPoint]]:
        qe = _qe()
        try:
            if len(requests) == 1:
                results = [self._shard.query(self._request(requests[0]))]
            else:
                results = self._shard.query_batch(qe.QueryBatchRequest([self._request(r) for r in requests]))
        except Exception as exc:
            raise BackendError(f"Qdrant Edge search failed: {exc}") from exc
        return [[ScoredPoint(int(p.id), float(p.score), dict(p.payload or {})) for p in hits] for hits in results]

    def _retrieve(self, ids: Sequence[int], with_vector: Any) -> list[Any]:
        if not ids:
            return []
        try:
            return list(self._shard.retrieve([int(i) for i in ids], True, with_vector))
        except Exception as exc:
            raise BackendError(f"Qdrant Edge failed to read {len(ids)} pages: {exc}") from exc

    def retrieve(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return {int(r.id): dict(r.payload or {}) for r in self._retrieve(ids, False)}

    def anchor_counts(self, ids: Sequence[int]) -> dict[int, int]:
        return {int(r.id): len((r.vector or {}).get(ANCHORS) or ()) for r in self._retrieve(ids, [ANCHORS])}

    def count(self, filter: tuple[FieldMatch, ...] = ()) -> int:
        qe = _qe()
        return int(self._shard.count(qe.CountRequest(exact=True, filter=_filter(filter))))

    def iter_payloads(self, keys: Sequence[str], batch: int = 1024) -> Iterator[tuple[int, dict[str, Any]]]:
        qe = _qe()
        offset = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=batch, with_payload=list(keys), with_vector=False)
            )
            for record in records:
                yield int(record.id), dict(record.payload or {})
            if offset is None:
                return

    def bytes_on_disk(self) -> int:
        return allocated_bytes(self.path)

    def retrieve_points(self, ids: Sequence[int]) -> list[PagePoint]:
        if not ids:
            return []
        try:
            records = self._shard.retrieve([int(i) for i in ids], True, True)
        except Exception as exc:
            raise BackendError(f"Qdrant Edge failed to read {len(ids)} pages back: {exc}") from exc
        by_id = {int(r.id): record_point(r.id, r.vector or {}, r.payload) for r in records}
        return [by_id[int(i)] for i in ids if int(i) in by_id]

    def close(self) -> None:
        if self._shard is None:
            return
        shard, self._shard = self._shard, None
        try:
            shard.flush()
        finally:
            shard.close()

    def close_read_only(self) -> None:
        if self._shard is None:
            return
        shard, self._shard = self._shard, None
        try:
            shard.close()  # no flush: a reader wrote nothing
        finally:
            if self.private_copy is not None:
                shutil.rmtree(self.private_copy, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": SHARD_DIR}
