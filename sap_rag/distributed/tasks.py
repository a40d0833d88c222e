"""What runs on the Ray workers: probing and rendering files (CPU tasks) and encoding + pruning
pages (an actor pool, one model per actor). Nothing here imports Ray: these are plain functions
and a plain class that Ray Data schedules."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["EncodeActor", "encoder_loader", "probe_file", "render_pages"]

logger = logging.getLogger(__name__)


def probe_file(row: dict[str, Any], *, dpi: int, password: str | None) -> dict[str, Any]:
    """Read and render one file to check it (pass 1): its content id and page count, or its error."""
    from ..errors import UnreadableInputError
    from ..ingest.documents import load_document

    out = {"order": row["order"], "path": row["path"], "doc_id": "", "num_pages": 0, "error": ""}
    try:
        document = load_document(row["path"], dpi=dpi, password=password)
    except UnreadableInputError as exc:
        out["error"] = str(exc)
        return out
    out["doc_id"], out["num_pages"] = document.doc_id, document.num_pages
    return out


def render_pages(row: dict[str, Any], *, dpi: int, password: str | None) -> list[dict[str, Any]]:
    """One document's pages as PNG bytes (pass 2), one row per page.

    PNG is what the index stores for a rendered page, so these bytes are stored as they are
    (the same file, the same content-addressed name, as the single-process path).
    """
    from ..ingest.documents import load_document
    from ..ingest.text import is_pdf, pdf_page_texts

    document = load_document(row["path"], doc_id=row["doc_id"], dpi=dpi, password=password)
    # The text layer, read here as the single-process path reads it, so both store the same page text.
    texts = pdf_page_texts(row["path"], password=password) if is_pdf(row["path"]) else [None] * document.num_pages
    if document.num_pages != row["num_pages"] or len(texts) != document.num_pages:
        from ..errors import UnreadableInputError

        raise UnreadableInputError(f"{row['path']} changed while it was being indexed; run the command again")
    rows = []
    for number, page in enumerate(document.pages, start=1):
        buffer = io.BytesIO()
        page.save(buffer, format="PNG")
        rows.append(
            {
                "order": row["order"],
                "doc_id": row["doc_id"],
                "page_number": number,
                "num_pages": document.num_pages,
                "png": buffer.getvalue(),
                "text": texts[number - 1],
            }
        )
    return rows


def encoder_loader(spec: str, window: list[int] | None, device: str | None, batch_size: int) -> Callable[[], Any]:
    """A picklable callable loading the index's encoder (what an actor runs once)."""
    return _Loader(spec, window, device, batch_size)


class _Loader:
    def __init__(self, spec: str, window: list[int] | None, device: str | None, batch_size: int) -> None:
        self.spec, self.window, self.device, self.batch_size = spec, window, device, batch_size

    def __call__(self) -> Any:
        from ..encoders.loading import load_encoder

        return load_encoder(self.spec, window=self.window, device=self.device, batch_size=self.batch_size)


class EncodeActor:
    """Encodes and prunes batches of pages; the model is loaded once, when the actor starts.

    A batch is a dict of columns (``png`` bytes plus pass-through keys); the output adds
    ``anchors`` (``(k, dim)`` float32), ``positions`` (``(k, 2)`` float32), ``num_tokens`` and
    ``method`` per page.
    """

    def __init__(self, load: Callable[[], Any], pruner: Any, batch_size: int, fault: Callable[[], None] | None = None):
        self.encoder = load()
        self.pruner = pruner
        self.batch_size = batch_size
        window = getattr(pruner, "window", None)
        self.layers: Any = list(window) if window else "window"
        self.fault = fault  # tests only: a hook that can kill this worker mid-job
        logger.info("encoder actor %d ready", os.getpid())

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image

        if self.fault is not None:
            self.fault()
        images = [Image.open(io.BytesIO(bytes(data))).convert("RGB") for data in batch["png"]]
        encodings = self.encoder.encode_pages(images, batch_size=self.batch_size, indegree_layers=self.layers)
        pruned = [self.pruner.prune(encoding) for encoding in encodings]
        out = {key: list(value) for key, value in batch.items()}
        out["anchors"] = [p.embeddings.detach().to("cpu").float().numpy() for p in pruned]
        out["positions"] = [
            (p.positions.detach().to("cpu").float().numpy() if p.positions is not None else np.zeros((0, 2), "f4"))
            for p in pruned
        ]
        out["num_tokens"] = [int(p.num_tokens) for p in pruned]
        out["method"] = [p.method for p in pruned]
        return out
