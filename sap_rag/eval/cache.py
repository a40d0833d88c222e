"""Encode a dataset once and keep everything the pruners need on disk.

A cache entry holds, per page, the visual-token embeddings, positions, extents, grid, the
in-degree of *every* scorable layer (head mean and head max) and the last layer's EOS attention,
plus the query embeddings. Any pruner, ratio or SAP window is then applied to the cache without
running the model again. Entries are keyed by the encoder's identity (its ``describe()`` minus
the window, which the cache does not depend on), its dtype and scorable layers, its weights (a
local checkpoint's weight files by name, size and modification time; a hub checkpoint's commit),
and the dataset's content fingerprint; pages are written in shards so an interrupted run resumes.

Layout: ``<cache_dir>/<dataset name>-<key[:16]>/`` with ``pages-00000.pt``, ...,
``queries.pt`` and ``manifest.json`` (written last: an entry without it is incomplete).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..encoders.compiled import WEIGHT_SUFFIXES
from ..types import PageEncoding
from .datasets import RetrievalDataset

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder

logger = logging.getLogger(__name__)

__all__ = ["CACHE_FORMAT", "EncodedDataset", "cache_key", "encode_dataset"]

CACHE_FORMAT = 1
_PAGE_FIELDS = ("embeddings", "positions", "grid_shape", "extents", "indegree", "indegree_max", "eos_attention")


@dataclass
class EncodedDataset:
    """A dataset's pages and queries as the model encodes them (from the cache or fresh).

    Attributes:
        dataset: the dataset.
        pages: ``(D,)`` encodings; ``indegree`` holds every scorable layer, ``window`` and
            ``sap_scores`` follow the encoder that loaded the cache.
        query_embeddings: ``(Q,)`` tensors ``(n_tokens, dim)``.
        encoder: the encoder's ``describe()`` plus ``scorable_layers``.
        key: the cache key.
        path: the cache entry's directory.
        from_cache: True when nothing was encoded in this call.
        encode_seconds: time spent encoding in this call (0 when read from the cache).
    """

    dataset: RetrievalDataset
    pages: list[PageEncoding]
    query_embeddings: list[torch.Tensor]
    encoder: dict[str, Any]
    key: str
    path: Path
    from_cache: bool
    encode_seconds: float = 0.0


def _weights(encoder: PageEncoder) -> Any:
    """What identifies the weights behind ``encoder.spec``: retraining a checkpoint in place changes it."""
    folder = Path(str(encoder.spec)).expanduser()
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
        return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return getattr(getattr(encoder.model, "config", None), "_commit_hash", None)


def _identity(encoder: PageEncoder) -> dict[str, Any]:
    described = dict(encoder.describe())
    described.pop("window", None)
    described.pop("window_source", None)
    described["scorable_layers"] = list(encoder.scorable_layers)
    described["dtype"] = str(getattr(encoder, "dtype", "unknown"))
    described["weights"] = _weights(encoder)
    return described


def cache_key(encoder: PageEncoder, dataset: RetrievalDataset) -> str:
    """Hex key of the encodings of ``dataset`` by ``encoder`` (all layers' in-degree, EOS attention)."""
    payload = {
        "format": CACHE_FORMAT,
        "encoder": _identity(encoder),
        "dataset": dataset.fingerprint(),
        "indegree_layers": "all",
        "eos_attention": True,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _entry_dir(cache_dir: Path, dataset: RetrievalDataset, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.name).strip("_") or "dataset"
    return cache_dir / f"{safe}-{key[:16]}"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _page_record(page: PageEncoding) -> dict[str, Any]:
    record = {name: getattr(page, name) for name in _PAGE_FIELDS}
    record["attenders"] = dict(page.attenders)
    record["grid_shape"] = list(page.grid_shape)
    record["image_size"] = list(page.image_size)
    return record


def _page_from_record(record: dict[str, Any], window: tuple[int, ...], causal: bool | None = None) -> PageEncoding:
    """A cached page; ``causal`` (the family's ``causal_visual``) fills attender counts that an
    encoder which does not record them (or an older cache entry) left out: exact for every layer
    whose attention spans the image (see :func:`sap_rag.encoders.attention.visual_attenders`)."""
    indegree = {int(layer): value for layer, value in record["indegree"].items()}
    attenders = {int(layer): value for layer, value in record.get("attenders", {}).items()}
    if causal is not None and indegree and not attenders:
        from ..encoders.attention import visual_attenders

        counts = visual_attenders(int(record["embeddings"].shape[0]), causal)
        attenders = {layer: counts for layer in indegree}
    in_window = bool(window) and all(layer in indegree for layer in window)
    return PageEncoding(
        embeddings=record["embeddings"],
        positions=record["positions"],
        grid_shape=tuple(record["grid_shape"]),
        extents=record["extents"],
        indegree=indegree,
        indegree_max={int(layer): value for layer, value in record["indegree_max"].items()},
        window=tuple(window),
        sap_scores=torch.stack([indegree[layer] for layer in window]).mean(dim=0) if in_window else None,
        eos_attention=record["eos_attention"],
        image_size=tuple(record["image_size"]),
        attenders=attenders,
    )


def _load(path: Path, key: str) -> dict[str, Any] | None:
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        logger.warning("ignoring the unreadable cache manifest %s (%s); re-encoding", manifest_path, exc)
        return None
    if manifest.get("key") != key or manifest.get("format") != CACHE_FORMAT:
        logger.warning("the cache entry %s belongs to other inputs; re-encoding", path)
        return None
    return manifest


def _shard_name(index: int) -> str:
    return f"pages-{index:05d}.pt"


def encode_dataset(
    dataset: RetrievalDataset,
    encoder: PageEncoder,
    cache_dir: str | os.PathLike,
    *,
    shard_size: int = 64,
    batch_size: int | None = None,
    refresh: bool = False,
    show_progress: bool = False,
) -> EncodedDataset:
    """Encode ``dataset`` with ``encoder`` unless the cache already holds it; return the encodings.

    Pages are encoded with ``indegree_layers="all"`` and ``eos_attention=True`` so that every
    pruner (and any SAP window) can be evaluated from the cache.

    Args:
        dataset: the dataset.
        encoder: the encoder (only called on a cache miss).
        cache_dir: where cache entries live.
        shard_size: pages per shard file (an interrupted run resumes at shard granularity).
        batch_size: pages per forward pass (default: the encoder's).
        refresh: ignore and overwrite an existing entry.
        show_progress: progress bars while encoding.
    """
    from ..ingest.images import load_image
    from ..progress import progress

    key = cache_key(encoder, dataset)
    path = _entry_dir(Path(cache_dir), dataset, key)
    window = tuple(encoder.window)
    causal = getattr(getattr(encoder, "family_spec", None), "causal_visual", None)
    manifest = None if refresh else _load(path, key)
    if manifest is not None:
        pages: list[PageEncoding] = []
        for index in range(manifest["num_shards"]):
            shard = torch.load(path / _shard_name(index), weights_only=True)
            pages.extend(_page_from_record(record, window, causal) for record in shard["pages"])
        queries = torch.load(path / "queries.pt", weights_only=True)["embeddings"]
        if len(pages) != dataset.num_pages or len(queries) != dataset.num_queries:
            logger.warning("the cache entry %s is inconsistent with the dataset; re-encoding", path)
        else:
            logger.info(
                "%s: read %d pages and %d queries from the cache %s", dataset.name, len(pages), len(queries), path
            )
            return EncodedDataset(dataset, pages, queries, manifest["encoder"], key, path, from_cache=True)

    path.mkdir(parents=True, exist_ok=True)
    identity = _identity(encoder)
    num_shards = (dataset.num_pages + shard_size - 1) // shard_size
    pages = []
    start_time = time.perf_counter()
    with progress(total=dataset.num_pages, desc=f"encoding {dataset.name}", unit="page", enabled=show_progress) as bar:
        for index in range(num_shards):
            lo, hi = index * shard_size, min((index + 1) * shard_size, dataset.num_pages)
            shard_path = path / _shard_name(index)
            shard = None
            if shard_path.is_file() and not refresh:
                try:
                    shard = torch.load(shard_path, weights_only=True)
                except Exception as exc:  # a partial write from an interrupted run
                    logger.warning("re-encoding the unreadable shard %s (%s)", shard_path, exc)
                if shard is not None and (shard.get("key") != key or shard.get("range") != [lo, hi]):
                    shard = None
            if shard is None:
                images = [
                    load_image(dataset.image_bytes(j), name=f"{dataset.name} page {dataset.corpus_ids[j]!r}")
                    for j in range(lo, hi)
                ]
                encoded = encoder.encode_pages(images, batch_size=batch_size, indegree_layers="all", eos_attention=True)
                shard = {"key": key, "range": [lo, hi], "pages": [_page_record(page) for page in encoded]}
                _atomic_save(shard, shard_path)
            pages.extend(_page_from_record(record, window, causal) for record in shard["pages"])
            bar.update(hi - lo)
    queries = encoder.encode_queries(dataset.queries, show_progress=show_progress)
    _atomic_save({"key": key, "embeddings": queries}, path / "queries.pt")
    seconds = time.perf_counter() - start_time
    manifest = {
        "format": CACHE_FORMAT,
        "key": key,
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "fingerprint": dataset.fingerprint(),
            "pages": dataset.num_pages,
            "queries": dataset.num_queries,
        },
        "encoder": identity,
        "num_shards": num_shards,
        "shard_size": shard_size,
        "encode_seconds": seconds,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    logger.info(
        "%s: encoded %d pages and %d queries in %.1fs into %s", dataset.name, len(pages), len(queries), seconds, path
    )
    return EncodedDataset(dataset, pages, queries, identity, key, path, from_cache=False, encode_seconds=seconds)
