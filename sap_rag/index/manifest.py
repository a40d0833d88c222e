"""The index manifest: what the index was built with, written once as ``manifest.json``."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._fs import atomic_write_bytes
from .errors import IndexFormatError, IndexNotFoundError

__all__ = ["FORMAT_VERSION", "MANIFEST_NAME", "Manifest"]

FORMAT_VERSION = 2
"""Version of the on-disk layout. An index with a higher number needs a newer sap-rag.

- 1: anchors and a mean vector per page.
- 2: also a few pooled anchors per page (``two_stage["pooled_vectors"]``, 0 for none) for the
  prefetch stages. Version 1 indexes open and search as before (mean-vector prefetch).
"""

MANIFEST_NAME = "manifest.json"


@dataclass
class Manifest:
    """Everything needed to reopen an index and to check that queries are encoded compatibly.

    Attributes:
        dim: embedding dimension of the stored anchors.
        encoder: the encoder's ``describe()`` (spec, family, model_type, num_layers, dim, window...),
            or None for an index filled only with precomputed pages.
        pruner: the pruner's ``config()`` (``name``, ``keep_ratio``, ...).
        storage: a :class:`~sap_rag.index.options.StorageType` value.
        backend: where the vectors live: ``{"kind": "edge", "path": "shard"}`` or
            ``{"kind": "qdrant", "collection": ..., "url"/"path"/"location": ...}``.
        two_stage: ``{"mode": "auto"|"always"|"never", "threshold": pages, "prefetch": candidates
            of the exact rerank, "coarse": candidates of the first stage, "pooled_vectors": pooled
            anchors per page (0: none), "pooling": how they are made, "exact_prefetch_max_pages":
            pages up to which the first stage scans every page, "summary": how the per-page mean
            vector is made}``.
        store_images: whether page images are copied into the index.
        oversampling: int8 storage: how many times ``k`` pages are rescored with float16 anchors.
        format_version: :data:`FORMAT_VERSION` of the writer.
        created_at: ISO timestamp.
        sap_rag_version: the package version that created the index.
    """

    dim: int
    encoder: dict[str, Any] | None
    pruner: dict[str, Any]
    storage: str
    backend: dict[str, Any]
    two_stage: dict[str, Any]
    store_images: bool = True
    oversampling: float = 4.0
    format_version: int = FORMAT_VERSION
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    sap_rag_version: str = ""

    @property
    def window(self) -> list[int] | None:
        """The encoder's SAP layer window, if the index has an encoder."""
        return list(self.encoder["window"]) if self.encoder and "window" in self.encoder else None

    @property
    def pooled_vectors(self) -> int:
        """Pooled anchors stored per page for the prefetch stages (0: none, as in format version 1)."""
        return int(self.two_stage.get("pooled_vectors", 0))

    @property
    def keep_ratio(self) -> float | None:
        return self.pruner.get("keep_ratio")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def write(self, directory: Path) -> None:
        """Write ``<directory>/manifest.json`` atomically."""
        atomic_write_bytes(Path(directory) / MANIFEST_NAME, self.to_json().encode())

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Read and validate ``<directory>/manifest.json``."""
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            if Path(directory).is_dir():
                raise IndexNotFoundError(
                    f"{directory} is not a sap-rag index (it has no {MANIFEST_NAME}); "
                    "create one with SAPIndex.create(path, encoder=...)"
                )
            raise IndexNotFoundError(f"no index at {directory}; create one with SAPIndex.create(path, encoder=...)")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{path} is unreadable or not valid JSON ({exc}); the index is damaged") from exc
        if not isinstance(data, dict):
            raise IndexFormatError(f"{path} does not hold a JSON object; the index is damaged")
        version = data.get("format_version")
        if not isinstance(version, int):
            raise IndexFormatError(f"{path} has no integer format_version; the index is damaged")
        if version > FORMAT_VERSION:
            raise IndexFormatError(
                f"the index at {directory} has format version {version}, but this sap-rag reads versions up to "
                f"{FORMAT_VERSION}; upgrade sap-rag (pip install -U sap-rag) to open it"
            )
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as exc:
            raise IndexFormatError(f"{path} is missing fields ({exc}); the index is damaged") from exc
