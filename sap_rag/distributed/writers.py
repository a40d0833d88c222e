"""Who writes the pages the actors produce, chosen by the index's backend.

- the embedded index (Qdrant Edge, or qdrant-client's in-process local mode) has one writer: the
  driver commits each whole document through :meth:`SAPIndex.add_pages`;
- a Qdrant server or cluster is written by the workers in parallel (:class:`UpsertTask`): the
  driver journals every pending document's generation first, the workers upsert its points, and
  the driver stores the images and commits each document once all its pages are written. A
  failure leaves journal entries, and the index's recovery deletes their points: the index
  holds whole documents only.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from ..index.index import SAPIndex
    from ..index.results import DocumentInfo
    from .actors import JobActors

logger = logging.getLogger(__name__)

UPSERT_CPUS = 0.5  # Ray CPUs of one parallel upsert actor (it waits on the server most of the time)

__all__ = ["DriverWriter", "ParallelWriter", "UpsertTask", "Writer", "choose_writer", "page_point"]


class Writer(ABC):
    """Adds its stage to the Ray dataset, then commits each whole document on the driver."""

    def __init__(self, index: SAPIndex) -> None:
        self.index = index

    def stage(self, ds: Any, options: Any, actors: JobActors) -> Any:
        """The dataset with this writer's worker-side stage (none by default); ``actors`` names its actors."""
        return ds

    def stage_cpus(self, options: Any) -> float:
        """Ray CPUs the worker-side stage holds while the job runs."""
        return 0.0

    def prepare(self, pending: list[dict[str, Any]], metadata: dict[str, dict[str, Any]]) -> None:
        """Called with the documents to write before the job starts."""
        return None

    @abstractmethod
    def commit(self, doc_id: str, rows: list[dict[str, Any]], metadata: dict[str, Any]) -> DocumentInfo:
        """Commit one document whose pages (in order) are ``rows``."""

    def abort(self) -> None:
        """Undo what uncommitted documents left (called when the job fails)."""
        return None


def choose_writer(index: SAPIndex, mode: str = "auto") -> Writer:
    """:class:`ParallelWriter` for a Qdrant server, :class:`DriverWriter` otherwise (``mode`` overrides)."""
    backend = index.backend
    remote = backend.kind == "qdrant" and not getattr(backend, "is_local", True)
    if mode == "parallel" and not remote:
        raise InvalidInputError(
            "parallel writers need a Qdrant server (workers cannot share an embedded or local-mode index); "
            "use writer='driver'"
        )
    if mode == "parallel" or (mode == "auto" and remote):
        return ParallelWriter(index)
    return DriverWriter(index)


def _pruned(row: dict[str, Any], method: str) -> Any:
    import torch

    from ..types import PrunedPage

    anchors = torch.from_numpy(np.array(row["anchors"], dtype=np.float32))
    return PrunedPage(
        embeddings=anchors,
        positions=torch.from_numpy(np.array(row["positions"], dtype=np.float32)),
        indices=None,
        scores=None,
        num_tokens=int(row["num_tokens"]),
        method=str(row.get("method") or method),
    )


class DriverWriter(Writer):
    """One writer, the driver: each whole document through :meth:`SAPIndex.add_pages`."""

    def commit(self, doc_id: str, rows: list[dict[str, Any]], metadata: dict[str, Any]) -> DocumentInfo:
        method = self.index.manifest.pruner.get("name", "sap")
        pages = [_pruned(row, method) for row in rows]
        images = [bytes(row["png"]) for row in rows] if self.index.manifest.store_images else None
        texts = [row.get("text") for row in rows]
        return self.index.add_pages(pages, doc_id=doc_id, metadata=metadata, images=images, texts=texts)


def image_name(png: bytes) -> str:
    """The image store's name for PNG bytes stored as they are."""
    return f"{hashlib.sha256(png).hexdigest()}.png"


def page_point(row: dict[str, Any], *, dim: int, storage: str, pooled: int, store_images: bool) -> Any:
    """The :class:`~sap_rag.index.backends.base.PagePoint` the single-process path stores for a page row
    (``gen``, ``metadata`` and the page's ``anchors``/``positions``/``num_tokens``), so both paths
    write the same vectors and payloads."""
    from ..index.backends.base import PagePoint
    from ..index.options import StorageType
    from ..index.registry import point_ids
    from ..index.state import label_name
    from ..index.vectors import as_matrix, page_pooled, page_summary, to_storage
    from ..ingest.text import clean_text
    from ..pipeline.texts import page_label

    kind = StorageType(storage)
    gen, number = int(row["gen"]), int(row["page_number"])
    where = f"page {number} of {row['doc_id']!r}"
    anchors = to_storage(as_matrix(np.asarray(row["anchors"], dtype=np.float32), dim, where), kind)
    positions = np.asarray(row["positions"], dtype=np.float32).reshape(-1).tolist()
    metadata = json.loads(row["metadata"])  # JSON in the row: Arrow would merge dicts' keys
    text = row.get("text")
    # As the single-process path: the cleaned text layer, else a label naming the file and page.
    text = (clean_text(text) if text else "") or page_label(number, label_name(str(row["doc_id"]), metadata))
    payload = {
        "doc_id": str(row["doc_id"]),
        "page_number": number,
        "gen": gen,
        "image": image_name(bytes(row["png"])) if store_images else None,
        "metadata": metadata,
        "text": text,
        "num_tokens": int(row["num_tokens"]),
        "positions": [round(float(x), 2) for x in positions],
    }
    return PagePoint(
        point_ids(gen, number)[-1],
        anchors,
        page_summary(anchors, kind),
        payload,
        page_pooled(anchors, pooled, kind) if pooled else None,
    )


class UpsertTask:
    """Worker side of :class:`ParallelWriter`: upserts a batch of pages to the Qdrant server.

    Holds one client per worker process; passes each page on without its vectors (the driver
    needs only the PNG for the image store and the vector count).
    """

    def __init__(self, connect: Any, collection: str, settings: dict[str, Any]) -> None:
        from ..index.backends.server import QdrantBackend
        from ..index.options import StorageType

        self.settings = settings
        self.backend = QdrantBackend(
            connect(),
            collection,
            dim=settings["dim"],
            storage=StorageType(settings["storage"]),
            owns_client=True,
            pooled=settings["pooled"] > 0,
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        keys = list(batch)
        rows = [{k: batch[k][i] for k in keys} for i in range(len(batch["doc_id"]))]
        points = [page_point(row, **self.settings) for row in rows]
        self.backend.upsert(points)
        return {
            "doc_id": [r["doc_id"] for r in rows],
            "page_number": [int(r["page_number"]) for r in rows],
            "num_pages": [int(r["num_pages"]) for r in rows],
            "num_vectors": [int(p.anchors.shape[0]) for p in points],
            "png": [bytes(r["png"]) if self.settings["store_images"] else b"" for r in rows],
        }


class _Connect:
    """Picklable: a new client to the index's server (the API key travels in memory, never to disk)."""

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url, self.api_key = url, api_key

    def __call__(self) -> Any:
        from ..index.backends.server import connect

        return connect(url=self.url, api_key=self.api_key)


class ParallelWriter(Writer):
    """Workers upsert to the Qdrant server; the driver journals, stores images and commits."""

    def __init__(self, index: SAPIndex, api_key: str | None = None) -> None:
        super().__init__(index)
        self.gens: dict[str, int] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.api_key = api_key

    def settings(self) -> dict[str, Any]:
        manifest = self.index.manifest
        return {
            "dim": manifest.dim,
            "storage": manifest.storage,
            "pooled": manifest.pooled_vectors,
            "store_images": bool(manifest.store_images),
        }

    def prepare(self, pending: list[dict[str, Any]], metadata: dict[str, dict[str, Any]]) -> None:
        registry = self.index._store.registry
        for row in pending:  # journaled first: a crash from here on is undone on the next open
            self.gens[row["doc_id"]] = registry.begin(row["doc_id"], row["num_pages"])
            row["gen"] = self.gens[row["doc_id"]]
            row["metadata"] = json.dumps(metadata[row["doc_id"]])
        self.metadata = metadata

    def stage_cpus(self, options: Any) -> float:
        return UPSERT_CPUS * options.workers

    def stage(self, ds: Any, options: Any, actors: JobActors) -> Any:
        backend = self.index.backend
        spec = self.index.manifest.backend
        url = spec.get("url") or f"http://{spec['host']}:{spec.get('port', 6333)}"
        return ds.map_batches(
            UpsertTask,
            fn_constructor_kwargs={
                "connect": _Connect(url, options.qdrant_api_key),
                "collection": backend.collection,
                "settings": self.settings(),
            },
            batch_format="numpy",
            compute=_actor_pool(options.workers),
            num_cpus=UPSERT_CPUS,
            ray_remote_args_fn=actors.remote_args,
        )

    def commit(self, doc_id: str, rows: list[dict[str, Any]], metadata: dict[str, Any]) -> DocumentInfo:
        from ..index.registry import DocumentRecord

        store = self.index._store
        names: list[str | None] = [None] * len(rows)
        if self.index.manifest.store_images:
            from PIL import Image

            for i, row in enumerate(rows):
                data = bytes(row["png"])
                names[i], _ = store.images.put(data, Image.open(io.BytesIO(data)))
        record = DocumentRecord(
            doc_id=doc_id,
            gen=self.gens.pop(doc_id),
            num_pages=len(rows),
            num_vectors=sum(int(r["num_vectors"]) for r in rows),
            images=names,
            metadata=metadata,
            added_at=time.time(),
        )
        with self.index._mutex:
            old = store.registry.commit(record)
            store.pages += record.num_pages - (old.num_pages if old else 0)
            if old is not None:
                store._drop(old)
        return self.index.document(doc_id)

    def abort(self) -> None:
        """Delete the points of every document journaled but not committed."""
        if not self.gens:
            return
        store = self.index._store
        store.needs_recovery = True
        with self.index._mutex:
            store.recover()
        self.gens.clear()


def _actor_pool(size: int) -> Any:
    import ray.data

    return ray.data.ActorPoolStrategy(size=size)
