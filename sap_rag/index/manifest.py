"""The index manifest: what the index was built with, written once as ``manifest.json``."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
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
MAX_MANIFEST_BYTES = 1 << 20  # a real manifest is about 1 KB

_COLLECTION = re.compile(r"[A-Za-z0-9_.-]{1,255}")


@dataclass
class Manifest:
    """Everything needed to reopen an index and to check that queries are encoded compatibly.

    Attributes:
        dim: embedding dimension of the stored anchors.
        encoder: the encoder's ``describe()`` (spec, family, model_type, num_layers, dim, window...),
            or None for an index filled only with precomputed pages. ``spec`` is a hub id,
            ``tiny:<family>`` or a local checkpoint folder's absolute path (indexes written before
            sap-rag recorded absolute paths may hold a relative one: it is resolved against the
            working directory when read).
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
        if os.path.islink(path):
            raise IndexFormatError(
                f"{path} is a symbolic link; sap-rag reads an index's manifest only from the index itself "
                "(the index may have been tampered with)"
            )
        if not path.is_file():
            if Path(directory).is_dir():
                raise IndexNotFoundError(
                    f"{directory} is not a sap-rag index (it has no {MANIFEST_NAME}); "
                    "create one with SAPIndex.create(path, encoder=...) or 'sap-rag index FILES... --index DIR'"
                )
            raise IndexNotFoundError(
                f"no index at {directory}; create one with SAPIndex.create(path, encoder=...) "
                "or 'sap-rag index FILES... --index DIR'"
            )
        try:
            data = json.loads(_read_small(path))
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{path} is unreadable or not valid JSON ({exc}); the index is damaged") from exc
        if not isinstance(data, dict):
            raise IndexFormatError(f"{path} does not hold a JSON object; the index is damaged")
        version = data.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise IndexFormatError(f"{path} has no integer format_version; the index is damaged")
        if version > FORMAT_VERSION:
            raise IndexFormatError(
                f"the index at {directory} has format version {version}, but this sap-rag reads versions up to "
                f"{FORMAT_VERSION}; upgrade sap-rag (pip install -U sap-rag) to open it"
            )
        known = set(cls.__dataclass_fields__)
        try:
            manifest = cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as exc:
            raise IndexFormatError(f"{path} is missing fields ({exc}); the index is damaged") from exc
        problem = manifest.problem()
        if problem:
            raise IndexFormatError(f"{path}: {problem}; the index is damaged or was tampered with")
        manifest._resolve_model()
        return manifest

    @property
    def model(self) -> str | None:
        """The spec of the index's model (a hub id, ``tiny:<family>`` or a local folder's absolute path)."""
        return str(self.encoder["spec"]) if self.encoder else None

    def _resolve_model(self) -> None:
        """A relative model folder, as indexes written before model paths were recorded absolute name it,
        becomes its absolute path when it is a folder from the working directory (where those versions
        looked for it), so that this process checks and loads one path. Nothing is written back."""
        spec = self.model
        if spec is not None:
            from ..model_spec import resolve_spec

            self.encoder = {**self.encoder, "spec": resolve_spec(spec)}  # type: ignore[dict-item]

    def problem(self) -> str | None:
        """What is wrong with the fields (types, names, paths), or None: a manifest is untrusted input."""
        if not _is_int(self.dim) or not 0 < self.dim <= 1 << 16:
            return f"dim must be a positive integer, got {self.dim!r}"
        if self.encoder is not None:
            if not isinstance(self.encoder, dict):
                return "encoder must be an object or null"
            spec = self.encoder.get("spec")
            if not isinstance(spec, str) or not spec.strip() or "\x00" in spec or len(spec) > 4096:
                return f"encoder.spec must be a model name, got {spec!r}"
            window = self.encoder.get("window")
            if window is not None and (not isinstance(window, list) or not all(_is_int(x) for x in window)):
                return f"encoder.window must be a list of layer numbers, got {window!r}"
        if not isinstance(self.pruner, dict) or not isinstance(self.pruner.get("name"), str):
            return "pruner must be an object with a name"
        from .options import StorageType

        if self.storage not in {member.value for member in StorageType}:
            return f"unknown storage {self.storage!r}"
        backend_problem = _backend_problem(self.backend)
        if backend_problem:
            return backend_problem
        if not isinstance(self.two_stage, dict) or not isinstance(self.two_stage.get("mode", "auto"), (str, bool)):
            return "two_stage must be an object with a mode"
        for key in ("threshold", "prefetch", "coarse", "pooled_vectors", "exact_prefetch_max_pages"):
            value = self.two_stage.get(key)
            if value is not None and (not _is_int(value) or value < 0):
                return f"two_stage.{key} must be a non-negative integer, got {value!r}"
        if not isinstance(self.store_images, bool):
            return "store_images must be true or false"
        if not isinstance(self.oversampling, (int, float)) or not math.isfinite(self.oversampling):
            return f"oversampling must be a number, got {self.oversampling!r}"
        if not isinstance(self.created_at, str) or not isinstance(self.sap_rag_version, str):
            return "created_at and sap_rag_version must be strings"
        return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _backend_problem(backend: Any) -> str | None:
    """What is wrong with the manifest's backend entry, or None."""
    if not isinstance(backend, dict) or not isinstance(backend.get("kind"), str):
        return "backend must be an object with a kind"
    if backend["kind"] == "edge":
        # The shard always lives in <index>/shard; any other name would point elsewhere.
        if backend.get("path", "shard") != "shard":
            return f"the embedded shard must be the index's own shard/ folder, not {backend.get('path')!r}"
        return None
    for key in ("url", "host", "path", "location", "collection"):
        if key in backend and not isinstance(backend[key], (str, type(None))):
            return f"backend.{key} must be a string, got {backend[key]!r}"
    collection = backend.get("collection")
    if backend["kind"] == "qdrant" and (not isinstance(collection, str) or not _COLLECTION.fullmatch(collection)):
        return f"backend.collection must be a Qdrant collection name, got {collection!r}"
    if "port" in backend and not (_is_int(backend["port"]) and 0 < backend["port"] < 65536):
        return f"backend.port must be a port number, got {backend['port']!r}"
    return None


def _read_small(path: Path) -> str:
    """The file's text, without following a link and refusing anything larger than a manifest can be."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"larger than {MAX_MANIFEST_BYTES} bytes")
    return data.decode("utf-8")
