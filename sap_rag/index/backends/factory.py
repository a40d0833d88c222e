"""Creating and reopening the backend an index's manifest names."""

from __future__ import annotations

import contextlib
import contextvars
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import InvalidInputError
from ..errors import IndexFormatError
from ..manifest import Manifest
from ..options import StorageType
from .base import Backend

__all__ = ["collection_options", "create_backend", "default_collection_name", "open_backend"]

_COLLECTION_OPTIONS: contextvars.ContextVar[Any] = contextvars.ContextVar("collection_options", default=None)


@contextlib.contextmanager
def collection_options(options: Any) -> Iterator[None]:
    """Within this block, new server collections are created with ``options`` (a
    :class:`~sap_rag.index.backends.server.CollectionOptions`): how callers that go through
    ``SAPIndex.create`` (import, the CLI) pass cluster options to :func:`create_backend`."""
    token = _COLLECTION_OPTIONS.set(options)
    try:
        yield
    finally:
        _COLLECTION_OPTIONS.reset(token)


def default_collection_name(root: Path) -> str:
    """``sap_rag_<directory name>_<8 hex>``: unique, so indexes can share a server."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(root).resolve().name)[:40] or "index"
    return f"sap_rag_{stem}_{uuid.uuid4().hex[:8]}"


def create_backend(
    root: Path,
    *,
    dim: int,
    storage: StorageType,
    oversampling: float,
    qdrant_url: str | None = None,
    client: Any = None,
    collection: str | None = None,
    api_key: str | None = None,
    indexing_threshold_kb: int | None = None,
    pooled: bool = True,
    collection_options: Any = None,
) -> Backend:
    """An embedded Qdrant Edge shard in ``root``, or a new collection on a Qdrant server/client.

    ``collection_options``: a :class:`~sap_rag.index.backends.server.CollectionOptions` for a new
    server collection (shards, replicas, on-disk vectors, payload indexes).
    """
    if qdrant_url is not None and client is not None:
        raise InvalidInputError("give qdrant_url or client, not both")
    if collection_options is None:
        collection_options = _COLLECTION_OPTIONS.get()
    if qdrant_url is None and client is None:
        if collection_options is not None:
            raise InvalidInputError("collection_options apply to a Qdrant server collection; give qdrant_url or client")
        from .edge import EdgeBackend

        return EdgeBackend.create(
            root,
            dim=dim,
            storage=storage,
            oversampling=oversampling,
            indexing_threshold_kb=indexing_threshold_kb,
            pooled=pooled,
        )
    from .server import QdrantBackend, connect

    owns = client is None
    qclient = connect(url=qdrant_url, api_key=api_key) if owns else client
    try:
        return QdrantBackend.create(
            qclient,
            collection or default_collection_name(root),
            dim=dim,
            storage=storage,
            oversampling=oversampling,
            owns_client=owns,
            pooled=pooled,
            options=collection_options,
        )
    except BaseException:
        if owns:
            qclient.close()
        raise


def open_backend(root: Path, manifest: Manifest, client: Any = None, api_key: str | None = None) -> Backend:
    """Reopen the backend recorded in ``manifest`` (for a server: ``client``, or reconnect)."""
    spec = manifest.backend
    storage = StorageType(manifest.storage)
    pooled = manifest.pooled_vectors > 0
    kind = spec.get("kind")
    if kind == "edge":
        from .edge import EdgeBackend

        return EdgeBackend.open(
            root, dim=manifest.dim, storage=storage, oversampling=manifest.oversampling, pooled=pooled
        )
    if kind == "qdrant":
        from .server import QdrantBackend, connect

        owns = client is None
        if owns:
            if spec.get("url") or spec.get("host"):
                url = spec.get("url") or f"http://{spec['host']}:{spec.get('port', 6333)}"
                client = connect(url=url, api_key=api_key)
            elif spec.get("path"):
                # qdrant-client's local mode unpickles the files it finds in its folder: a path read
                # from a manifest (which anyone can write) is never opened, only a caller's client.
                raise InvalidInputError(
                    f"the index's vectors live in a qdrant-client local-mode folder ({spec['path']}); sap-rag never "
                    "opens such a folder because an index's manifest names it (qdrant-client unpickles its files, "
                    "so a crafted index could run code). If you trust that folder, open the index with "
                    "client=QdrantClient(path=...)"
                )
            else:
                raise InvalidInputError(
                    f"the index's vectors lived in an in-memory Qdrant ({spec.get('location')!r}) or a client "
                    "object sap-rag cannot reconnect to; pass client=QdrantClient(...) to open it"
                )
        return QdrantBackend.open(
            client,
            spec["collection"],
            dim=manifest.dim,
            storage=storage,
            oversampling=manifest.oversampling,
            owns_client=owns,
            pooled=pooled,
        )
    raise IndexFormatError(f"the manifest names an unknown backend {kind!r}; upgrade sap-rag")
