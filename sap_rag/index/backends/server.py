"""Qdrant server backend, through ``qdrant-client``: the same collection schema on a server or cluster.

Also runs on ``qdrant-client``'s local mode (``QdrantClient(":memory:")`` or
``QdrantClient(path=...)``), a pure-Python implementation of the same query semantics, which the
tests use as a stand-in for a server. Local mode ignores storage datatypes and quantization (it
scores in float32); sap-rag rounds vectors to the storage precision before sending them, so the
scores still agree with Qdrant Edge.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import InvalidInputError, MissingDependencyError
from .._fs import allocated_bytes
from ..errors import BackendError, IndexExistsError, IndexFormatError
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
from .filter_qdrant import to_qdrant_filter

logger = logging.getLogger(__name__)

__all__ = ["CollectionOptions", "QdrantBackend", "connect"]


@dataclass(frozen=True)
class CollectionOptions:
    """How a new collection is laid out on a Qdrant server or cluster (see docs/scale.md).

    Attributes:
        shard_number: shards the collection is split into (a cluster spreads them over its nodes;
            fixed at creation). None: the server's default (1 per node in a cluster).
        replication_factor: copies of each shard (cluster only; a single node keeps 1).
        write_consistency_factor: replicas that must acknowledge a write before it returns.
        on_disk_vectors: keep the anchors and pooled vectors memory-mapped on disk instead of in
            RAM (the mean vectors stay in RAM for the graph). None: the server's default (RAM).
        on_disk_payload: keep payloads on disk (they hold page positions and text).
        payload_indexes: extra payload keys to index for filters, ``{"metadata.source": "keyword"}``;
            the schema is a ``qdrant_client.models.PayloadSchemaType`` value (keyword, integer,
            float, bool, text, datetime, uuid). ``doc_id`` is always indexed.
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    write_consistency_factor: int | None = None
    on_disk_vectors: bool | None = None
    on_disk_payload: bool | None = None
    payload_indexes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("shard_number", "replication_factor", "write_consistency_factor"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
        for key, schema in self.payload_indexes.items():
            if not isinstance(key, str) or not key or key == "doc_id":
                raise InvalidInputError(f"payload index keys must be non-empty strings other than doc_id, got {key!r}")
            if schema not in _SCHEMAS:
                raise InvalidInputError(
                    f"payload index {key!r}: unknown schema {schema!r}; use one of {', '.join(sorted(_SCHEMAS))}"
                )


_SCHEMAS = {"keyword", "integer", "float", "bool", "text", "datetime", "uuid"}


def _models() -> Any:
    try:
        from qdrant_client import models
    except ImportError as exc:
        raise MissingDependencyError(
            "a Qdrant server index needs qdrant-client: pip install 'sap-rag[server]'"
        ) from exc
    return models


def connect(
    *, url: str | None = None, path: str | None = None, location: str | None = None, api_key: str | None = None
) -> Any:
    """A ``QdrantClient`` for a server ``url``, a local-mode ``path``, or ``location=":memory:"``."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as exc:
        raise MissingDependencyError(
            "a Qdrant server index needs qdrant-client: pip install 'sap-rag[server]'"
        ) from exc
    if url:
        return QdrantClient(url=url, api_key=api_key)
    if path:
        return QdrantClient(path=path)
    if location:
        return QdrantClient(location=location)
    raise InvalidInputError("give a Qdrant url, a local-mode path, or a QdrantClient object")


def _filter(conditions: tuple[Condition, ...]) -> Any:
    return to_qdrant_filter(conditions)


def _prefetch(m: Any, levels: list[list[Stage]], flt: Any) -> Any:
    """The plan's levels as nested ``Prefetch`` objects (the last level outermost)."""
    nested = None
    for level in levels:
        nested = [
            m.Prefetch(
                query=stage.query.tolist(),
                using=stage.using,
                limit=stage.limit,
                filter=flt,
                params=m.SearchParams(exact=True) if stage.exact else m.SearchParams(hnsw_ef=stage.hnsw_ef),
                prefetch=nested,
            )
            for stage in level
        ]
    return nested


class QdrantBackend(Backend):
    """One collection on a Qdrant server (or in ``qdrant-client`` local mode)."""

    kind = "qdrant"

    def __init__(
        self,
        client: Any,
        collection: str,
        *,
        dim: int,
        storage: StorageType,
        oversampling: float = 4.0,
        owns_client: bool = False,
        pooled: bool = True,
    ) -> None:
        super().__init__(dim=dim, storage=storage, oversampling=oversampling, pooled=pooled)
        self.client = client
        self.collection = collection
        self._owns_client = owns_client

    @property
    def is_local(self) -> bool:
        """True for ``qdrant-client`` local mode (no server)."""
        inner = getattr(self.client, "_client", None)
        return type(inner).__name__ == "QdrantLocal"

    @classmethod
    def create(
        cls,
        client: Any,
        collection: str,
        *,
        dim: int,
        storage: StorageType,
        oversampling: float = 4.0,
        owns_client: bool = False,
        pooled: bool = True,
        options: CollectionOptions | None = None,
    ) -> QdrantBackend:
        m = _models()
        options = options or CollectionOptions()
        if client.collection_exists(collection):
            raise IndexExistsError(
                f"the Qdrant collection {collection!r} already exists; open its index with SAPIndex.open, "
                "or pick another collection name"
            )
        datatype = m.Datatype.FLOAT32 if storage is StorageType.FLOAT32 else m.Datatype.FLOAT16
        quantization = (
            m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8, always_ram=True))
            if storage is StorageType.INT8
            else None
        )

        def maxsim_field(quantization_config: Any = None) -> Any:  # exact scan: no graph (m=0)
            return m.VectorParams(
                size=dim,
                distance=m.Distance.DOT,
                multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM),
                datatype=datatype,
                hnsw_config=m.HnswConfigDiff(m=0),
                quantization_config=quantization_config,
                on_disk=options.on_disk_vectors,
            )

        vectors = {
            ANCHORS: maxsim_field(quantization),
            SUMMARY: m.VectorParams(size=dim, distance=m.Distance.DOT, datatype=datatype),
        }
        if pooled:
            vectors[POOLED] = maxsim_field()  # a few vectors per page: never quantized
        backend = cls(
            client,
            collection,
            dim=dim,
            storage=storage,
            oversampling=oversampling,
            owns_client=owns_client,
            pooled=pooled,
        )
        try:
            client.create_collection(
                collection,
                vectors_config=vectors,
                shard_number=options.shard_number,
                replication_factor=options.replication_factor,
                write_consistency_factor=options.write_consistency_factor,
                on_disk_payload=options.on_disk_payload,
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # local mode warns that payload indexes do nothing there
                client.create_payload_index(collection, "doc_id", m.PayloadSchemaType.KEYWORD)
                for key, schema in options.payload_indexes.items():
                    client.create_payload_index(collection, key, m.PayloadSchemaType(schema))
        except Exception as exc:
            raise BackendError(f"Qdrant could not create the collection {collection!r}: {exc}") from exc
        return backend

    @classmethod
    def open(
        cls,
        client: Any,
        collection: str,
        *,
        dim: int,
        storage: StorageType,
        oversampling: float = 4.0,
        owns_client: bool = False,
        pooled: bool = True,
    ) -> QdrantBackend:
        try:
            exists = client.collection_exists(collection)
        except Exception as exc:
            raise BackendError(f"cannot reach Qdrant to open the collection {collection!r}: {exc}") from exc
        if not exists:
            raise IndexFormatError(
                f"the Qdrant collection {collection!r} of this index does not exist on this server; "
                "was the index created against another server, or the collection deleted?"
            )
        params = client.get_collection(collection).config.params.vectors
        fields = params if isinstance(params, dict) else {}
        size = getattr(fields.get(ANCHORS), "size", None)
        if size != dim:
            raise IndexFormatError(
                f"the Qdrant collection {collection!r} has anchors of size {size}, the manifest says {dim}"
            )
        if pooled and POOLED not in fields:
            raise IndexFormatError(
                f"the Qdrant collection {collection!r} has no {POOLED!r} vectors, but the manifest says it does; "
                "the collection was changed or belongs to another index"
            )
        return cls(
            client,
            collection,
            dim=dim,
            storage=storage,
            oversampling=oversampling,
            owns_client=owns_client,
            pooled=pooled,
        )

    # --- writes -----------------------------------------------------------------------------

    def upsert(self, points: Sequence[PagePoint]) -> None:
        if not points:
            return
        m = _models()
        structs = [
            m.PointStruct(
                id=p.id, vector={name: v.tolist() for name, v in self.named_vectors(p).items()}, payload=p.payload
            )
            for p in points
        ]
        try:
            self.client.upsert(self.collection, points=structs, wait=True)
        except Exception as exc:
            raise BackendError(f"Qdrant failed to write {len(structs)} pages: {exc}") from exc

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        m = _models()
        try:
            self.client.delete(self.collection, points_selector=m.PointIdsList(points=[int(i) for i in ids]), wait=True)
        except Exception as exc:
            raise BackendError(f"Qdrant failed to delete {len(ids)} pages: {exc}") from exc

    def flush(self) -> None:
        """Nothing to do: writes were sent with ``wait=True`` and the server's WAL holds them."""

    # --- reads ------------------------------------------------------------------------------

    def _request(self, spec: QuerySpec) -> Any:
        m = _models()
        flt = _filter(spec.filter)
        params = None
        if self.storage is StorageType.INT8:
            params = m.SearchParams(
                quantization=m.QuantizationSearchParams(rescore=True, oversampling=self.oversampling)
            )
        return m.QueryRequest(
            query=spec.vectors.tolist(),
            using=ANCHORS,
            prefetch=_prefetch(m, prefetch_plan(spec, self.pooled), flt),
            filter=flt,
            limit=int(spec.limit),
            with_payload=True,
            params=params,
        )

    def query(self, requests: Sequence[QuerySpec]) -> list[list[ScoredPoint]]:
        try:
            responses = self.client.query_batch_points(self.collection, requests=[self._request(r) for r in requests])
        except Exception as exc:
            raise BackendError(f"Qdrant search failed: {exc}") from exc
        return [
            [ScoredPoint(int(p.id), float(p.score), dict(p.payload or {})) for p in response.points]
            for response in responses
        ]

    def _retrieve(self, ids: Sequence[int], with_vectors: Any) -> list[Any]:
        if not ids:
            return []
        try:
            return list(
                self.client.retrieve(
                    self.collection, ids=[int(i) for i in ids], with_payload=True, with_vectors=with_vectors
                )
            )
        except Exception as exc:
            raise BackendError(f"Qdrant failed to read {len(ids)} pages: {exc}") from exc

    def retrieve(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return {int(r.id): dict(r.payload or {}) for r in self._retrieve(ids, False)}

    def anchor_counts(self, ids: Sequence[int]) -> dict[int, int]:
        out = {}
        for record in self._retrieve(ids, [ANCHORS]):
            vectors = record.vector if isinstance(record.vector, dict) else {}
            out[int(record.id)] = len(vectors.get(ANCHORS) or ())
        return out

    def count(self, filter: tuple[FieldMatch, ...] = ()) -> int:
        return int(self.client.count(self.collection, count_filter=_filter(filter), exact=True).count)

    def iter_payloads(self, keys: Sequence[str], batch: int = 1024) -> Iterator[tuple[int, dict[str, Any]]]:
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection, limit=batch, offset=offset, with_payload=list(keys), with_vectors=False
            )
            for record in records:
                yield int(record.id), dict(record.payload or {})
            if offset is None:
                return

    def retrieve_points(self, ids: Sequence[int]) -> list[PagePoint]:
        if not ids:
            return []
        try:
            records = self.client.retrieve(self.collection, [int(i) for i in ids], with_payload=True, with_vectors=True)
        except Exception as exc:
            raise BackendError(f"Qdrant failed to read {len(ids)} pages back: {exc}") from exc
        by_id = {int(r.id): record_point(r.id, r.vector or {}, r.payload) for r in records}
        return [by_id[int(i)] for i in ids if int(i) in by_id]

    def bytes_on_disk(self) -> int | None:
        path = (getattr(self.client, "init_options", None) or {}).get("path")
        return allocated_bytes(Path(path)) if path and self.is_local else None

    def close(self) -> None:
        if self._owns_client and self.client is not None:
            self.client.close()
        self.client = None

    def describe(self) -> dict[str, Any]:
        options = getattr(self.client, "init_options", None) or {}
        out: dict[str, Any] = {"kind": self.kind, "collection": self.collection}
        for key in ("url", "host", "port", "path", "location"):
            value = options.get(key)
            if value is None or (key == "port" and not (options.get("url") or options.get("host"))):
                continue
            out[key] = str(Path(value).resolve()) if key == "path" else value
        return out
