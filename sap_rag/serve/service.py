"""``IndexService``: the one object that owns an index and its encoder inside the server.

The HTTP routes and the MCP tools both call it. Searches from any number of request threads go
through a :class:`~sap_rag.serve.batching.MicroBatcher` (one forward pass and one engine call per
batch); uploads go to a :class:`~sap_rag.serve.jobs.JobQueue`, whose single writer thread indexes
them while searches keep answering (the index serialises its own engine calls; a document's pages
are committed at once, so a search sees all of them or none).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, SapRagError, UnreadableInputError
from .batching import MicroBatcher
from .config import ServeConfig
from .errors import ForbiddenPathError, LimitExceededError, NotFoundError, ServerBusyError
from .joblog import JobLog
from .jobs import Job, JobQueue
from .searching import SearchRequest, run_search_batch
from .uploads import Uploads

logger = logging.getLogger(__name__)

__all__ = ["IndexService"]

MAX_PAGE_IDS = 1_000
"""Most page ids in one ``get_pages`` / ``delete_pages`` call."""

_OVERLAY_CACHE = 32


class IndexService:
    """Search, read, upload and delete over one open ``SAPIndex`` (see the module docstring).

    Args:
        index: an open ``SAPIndex`` (writable for uploads and deletes).
        encoder: the encoder for queries (default: the index's own, loaded on first use).
        config: limits and batching.
        owns_index: close the index in :meth:`close`.
    """

    def __init__(
        self, index: Any, *, encoder: Any = None, config: ServeConfig | None = None, owns_index: bool = False
    ) -> None:
        self.index = index
        self.config = config or ServeConfig()
        self._encoder = encoder
        self._owns_index = owns_index
        self._overlays: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._overlay_lock = threading.Lock()
        where = getattr(index, "path", None)
        if self.config.state_dir is not None and isinstance(where, (str, os.PathLike)):
            state, root = Path(self.config.state_dir).resolve(), Path(where).resolve()
            if state == root or root in state.parents:
                raise InvalidInputError(f"the server state folder {state} is inside the index; choose one outside it")
        state_dir = self.config.state_dir
        log = JobLog(state_dir, self.config.keep_jobs) if state_dir is not None else None  # before any thread starts
        self.batcher: MicroBatcher[SearchRequest] = MicroBatcher(
            lambda requests: run_search_batch(self.index, self.encoder, requests),
            max_batch=self.config.max_batch,
            max_wait_s=self.config.max_wait_ms / 1000.0,
            name="sap-rag-batcher",
        )
        self.jobs = JobQueue(
            index,
            max_queued=self.config.max_queued_jobs,
            keep=self.config.keep_jobs,
            batch_size=self.config.ingest_batch_size,
            log=log,
        )
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def encoder(self) -> Any:
        """The query and page encoder (the index's own unless one was given)."""
        if self._encoder is None:
            self._encoder = self.index.encoder  # loads the recorded model on first use
        return self._encoder

    def close(self) -> None:
        """Stop the batcher and the writer (the running job finishes), then close the index if owned."""
        if self._closed:
            return
        self._closed = True
        self.batcher.close()
        self.jobs.close()
        if self._owns_index:
            self.index.close()

    # --- search ----------------------------------------------------------------------------------

    def search(
        self,
        query: Any,
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        *,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
    ) -> list[Any]:
        """The ``k`` best pages for a text or ``PIL.Image`` query (through the micro-batcher)."""
        return self.search_batch([query], k, filter, two_stage=two_stage, prefetch=prefetch, coarse=coarse)[0]

    def search_batch(
        self,
        queries: Sequence[Any],
        k: int = 5,
        filter: Mapping[str, Any] | None = None,
        *,
        two_stage: bool | str | None = None,
        prefetch: int | None = None,
        coarse: int | None = None,
    ) -> list[list[Any]]:
        """:meth:`search` for several queries (each goes through the batcher, so they batch with others)."""
        from ..index.checks import positive_int
        from ..index.filters import parse_filter

        if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence) or not queries:
            raise InvalidInputError("queries must be a non-empty list of query strings")
        if len(queries) > self.config.max_batch_queries:
            raise LimitExceededError(
                f"{len(queries)} queries; this server takes at most {self.config.max_batch_queries} per batch"
            )
        k = positive_int(k, "k")
        if k > self.config.max_k:
            raise LimitExceededError(f"k={k} is more than this server returns ({self.config.max_k})")
        parse_filter(filter)  # a bad filter is this request's error, never its batch's
        for name, value in (("prefetch", prefetch), ("coarse", coarse)):
            if value is not None:
                positive_int(value, name)
        checked = [self._check_query(q, i if len(queries) > 1 else None) for i, q in enumerate(queries)]
        requests = [SearchRequest(q, k, filter, two_stage, prefetch, coarse) for q in checked]
        futures = [self.batcher.submit(r) for r in requests]
        try:
            return [f.result(timeout=self.config.search_timeout_s) for f in futures]
        except FutureTimeout:
            for f in futures:
                f.cancel()
            raise ServerBusyError(
                f"the search did not finish within {self.config.search_timeout_s:g} s; the server is busy, retry"
            ) from None

    def _check_query(self, query: Any, position: int | None) -> Any:
        from PIL import Image

        what = "the query" if position is None else f"query #{position}"
        if isinstance(query, Image.Image):
            pixels = query.size[0] * query.size[1]
            if pixels > self.config.max_image_pixels:
                raise LimitExceededError(
                    f"{what} is a {query.size[0]} x {query.size[1]} image; this server takes at most "
                    f"{self.config.max_image_pixels:,} pixels: scale it down"
                )
            return query
        if not isinstance(query, str):
            raise InvalidInputError(f"{what} must be text (or an image), got {type(query).__name__}")
        if len(query) > self.config.max_query_chars:
            raise LimitExceededError(
                f"{what} has {len(query):,} characters; this server takes at most {self.config.max_query_chars:,}"
            )
        if not query.strip():
            raise InvalidInputError(f"{what} is empty; a query needs some text to search with")
        from ..index.checks import check_text

        check_text(query, what)
        tokens = self._count_tokens(query)
        if tokens is not None and tokens > self.config.max_query_tokens:
            raise LimitExceededError(
                f"{what} has {tokens:,} tokens; this server takes at most {self.config.max_query_tokens:,}"
            )
        return query

    def _count_tokens(self, text: str) -> int | None:
        tokenizer = getattr(getattr(self.encoder, "processor", None), "tokenizer", None)
        if tokenizer is None:
            return None
        return len(tokenizer(text, add_special_tokens=True)["input_ids"])

    # --- pages and documents ---------------------------------------------------------------------

    def get_pages(self, page_ids: Sequence[str]) -> list[Any]:
        """The pages with these ids (None for one the index does not hold)."""
        if isinstance(page_ids, str):
            page_ids = [page_ids]
        if len(page_ids) > MAX_PAGE_IDS:
            raise LimitExceededError(f"{len(page_ids)} page ids; ask for at most {MAX_PAGE_IDS} at once")
        return self.index.get_pages(list(page_ids))

    def _page(self, page_id: str) -> Any:
        (hit,) = self.get_pages([page_id])
        if hit is None:
            raise NotFoundError(f"the index holds no page {page_id!r}")
        return hit

    def _page_image(self, page_id: str) -> tuple[Any, Any]:
        from ..ingest.images import load_image

        hit = self._page(page_id)
        if hit.image_path is None:
            raise NotFoundError(f"the index keeps no image of page {page_id!r} (it was added without one)")
        return hit, load_image(hit.image_path, name=f"page {page_id}")

    def _side(self, max_side: int | None) -> int:
        limit = self.config.max_page_image_side
        if max_side is None:
            return limit
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
            raise InvalidInputError(f"max_side must be a whole number of at least 1, got {max_side!r}")
        return min(max_side, limit)

    def page_image(self, page_id: str, max_side: int | None = None, fmt: str = "jpeg", quality: int = 85) -> bytes:
        """The page's stored image, scaled so its longer side is at most ``max_side``, as JPEG or PNG bytes."""
        fmt = _image_format(fmt)
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
            raise InvalidInputError(f"quality takes a whole number from 1 to 95, got {quality!r}")
        side = self._side(max_side)
        _, image = self._page_image(page_id)
        image.thumbnail((side, side))
        out = io.BytesIO()
        if fmt == "jpeg":
            image.convert("RGB").save(out, format="JPEG", quality=quality)
        else:
            image.save(out, format="PNG")
        return out.getvalue()

    def overlay_png(self, page_id: str, max_side: int | None = None) -> bytes:
        """The page with its SAP-score heatmap and kept anchors outlined (as ``sap-rag show`` draws it), PNG."""
        side = self._side(max_side)
        hit, image = self._page_image(page_id)
        key = (page_id, hit.point_id, side)
        with self._overlay_lock:
            if key in self._overlays:
                self._overlays.move_to_end(key)
                return self._overlays[key]
        from ..viz import render_overlay

        (page,) = self.encoder.encode_pages([image])
        pruned = self.index.pruner.prune(page)
        name = hit.metadata.get("filename") if isinstance(hit.metadata.get("filename"), str) else hit.doc_id
        keep = self.index.manifest.keep_ratio
        picture = render_overlay(image, page, pruned, document=name, page_number=hit.page_number, keep_ratio=keep)
        drawn = picture.image
        drawn.thumbnail((side, side))
        out = io.BytesIO()
        drawn.save(out, format="PNG")
        data = out.getvalue()
        with self._overlay_lock:
            self._overlays[key] = data
            while len(self._overlays) > _OVERLAY_CACHE:
                self._overlays.popitem(last=False)
        return data

    def documents(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Every document (or a slice of them, in id order) as JSON data."""
        if offset < 0 or (limit is not None and limit < 0):
            raise InvalidInputError("offset and limit must be at least 0")
        ids = self.index.documents()
        chosen = ids[offset:] if limit is None else ids[offset : offset + limit]
        out = []
        for doc_id in chosen:
            try:
                info = self.index.document(doc_id)
            except SapRagError:  # deleted since the list was read
                continue
            out.append(document_json(info))
        return out

    def document(self, doc_id: str) -> dict[str, Any]:
        """One document as JSON data (``DocumentNotFoundError``, 404, when there is none)."""
        return document_json(self.index.document(doc_id))

    def stats(self) -> dict[str, Any]:
        """The index's stats (as ``SAPIndex.stats``) with the model and the pending uploads."""
        data = dataclasses.asdict(self.index.stats())
        encoder = getattr(self.index.manifest, "encoder", None) or {}
        data["model"] = encoder.get("spec")
        data["jobs_pending"] = self.jobs.pending
        return data

    def info(self) -> dict[str, Any]:
        """Stats, limits and the batcher's counters."""
        stats = self.batcher.stats
        batching = {
            "max_batch": self.batcher.max_batch,
            "max_wait_ms": self.config.max_wait_ms,
            "batches": stats.batches,
            "requests": stats.requests,
            "mean_batch": round(stats.mean, 3),
            "largest_batch": stats.largest,
        }
        from .. import __version__

        return {"version": __version__, "stats": self.stats(), "limits": self.config.limits(), "batching": batching}

    # --- changes ---------------------------------------------------------------------------------

    def add_uploads(self, uploads: Uploads, metadata: Mapping[str, Any] | None = None) -> Job:
        """Queue uploaded files for indexing (their folder is removed when the job ends, or now on error)."""
        try:
            self._check_writable()
            if not uploads.files:
                raise InvalidInputError("no files in the upload; send PDFs or images in the form field 'files'")
            from ..index.filters import validate_metadata

            meta = validate_metadata(metadata)
            for name in ("source", "filename"):
                if name in meta:
                    raise InvalidInputError(f"metadata {name!r} is set by the server (the uploaded file's name)")
            for item in uploads.files:
                _check_type(item.path, item.name)
            return self.jobs.submit(
                [f.path for f in uploads.files], [f.name for f in uploads.files], meta, uploads.folder
            )
        except BaseException:
            uploads.remove()
            raise

    def add_paths(self, paths: Sequence[str], metadata: Mapping[str, Any] | None = None) -> Job:
        """Queue server-side files and folders for indexing; each must be inside an allowed folder."""
        from ..index.filters import validate_metadata
        from ..ingest.documents import discover

        self._check_writable()
        if not self.config.allowed_folders:
            raise ForbiddenPathError(
                "this server reads no server-side paths; upload the files, or start it with --allow-folder DIR"
            )
        if isinstance(paths, str) or not isinstance(paths, Sequence) or not paths:
            raise InvalidInputError("paths must be a non-empty list of server-side paths")
        if len(paths) > self.config.max_files:
            raise LimitExceededError(f"{len(paths)} paths; this server takes at most {self.config.max_files}")
        meta = validate_metadata(metadata)
        checked = [self._allowed_path(p) for p in paths]
        files = discover(checked)
        if len(files) > self.config.max_files * 100:
            raise LimitExceededError(f"{len(files):,} files under those paths; add the folders in smaller parts")
        allowed = [f for f in files if self._inside(Path(os.path.realpath(f)))]
        return self.jobs.submit(allowed, [os.fsdecode(f) for f in allowed], meta, None)

    def _check_writable(self) -> None:
        """Refuse an upload at once (409) when the served index was opened read-only."""
        if getattr(self.index, "read_only", False):
            from ..index.errors import IndexReadOnlyError

            raise IndexReadOnlyError("this server serves its index read-only: it takes no uploads or deletes")

    def _inside(self, real: Path) -> bool:
        return any(real == folder or real.is_relative_to(folder) for folder in self.config.allowed_folders)

    def _allowed_path(self, raw: Any) -> Path:
        if not isinstance(raw, str) or not raw or "\x00" in raw:
            raise InvalidInputError(f"a path must be a non-empty string, got {raw!r}")
        path = Path(raw)
        if not path.is_absolute():
            raise InvalidInputError(f"{raw!r}: give an absolute server-side path")
        # Where the path really leads (links resolved) decides, before anything is said about it.
        real = Path(os.path.realpath(path))
        if not self._inside(real):
            raise ForbiddenPathError(f"{raw!r} is not inside a folder this server allows (--allow-folder)")
        if not real.exists():
            raise InvalidInputError(f"{raw!r}: no such file or folder")
        return real

    def delete(self, doc_id: str) -> int:
        """Delete a document; returns its page count (``DocumentNotFoundError``, 404, when there is none)."""
        removed = self.index.delete(doc_id)
        self._drop_overlays()
        return removed

    def delete_pages(self, page_ids: Sequence[str]) -> int:
        """Delete pages by id, each document's all or nothing; returns how many went."""
        if isinstance(page_ids, Sequence) and not isinstance(page_ids, str) and len(page_ids) > MAX_PAGE_IDS:
            raise LimitExceededError(f"{len(page_ids)} page ids; delete at most {MAX_PAGE_IDS} at once")
        removed = self.index.delete_pages(page_ids)
        self._drop_overlays()
        return removed

    def _drop_overlays(self) -> None:
        with self._overlay_lock:
            self._overlays.clear()


def _image_format(fmt: str) -> str:
    value = str(fmt).lower()
    value = "jpeg" if value == "jpg" else value
    if value not in ("jpeg", "png"):
        raise InvalidInputError(f"format takes 'jpeg' or 'png', got {fmt!r}")
    return value


def _check_type(path: Path, name: str) -> None:
    """Refuse a file that is neither a PDF nor an image type at once, before it is queued."""
    from ..ingest.documents import DEFAULT_INCLUDE, SUPPORTED_TYPES

    with open(path, "rb") as handle:
        head = handle.read(5)
    if head == b"%PDF-" or any(Path(name.lower()).match(p) for p in DEFAULT_INCLUDE):
        return
    raise UnreadableInputError(f"{name}: not a PDF or an image; supported types are {SUPPORTED_TYPES}")


def document_json(info: Any) -> dict[str, Any]:
    """A ``DocumentInfo`` as JSON data (no server-side image paths)."""
    meta = info.metadata or {}
    return {
        "doc_id": info.doc_id,
        "pages": info.num_pages,
        "vectors": info.num_vectors,
        "page_ids": list(info.page_ids),
        "page_numbers": list(info.page_numbers),
        "source": meta.get("source"),
        "filename": meta.get("filename"),
        "metadata": meta,
    }
