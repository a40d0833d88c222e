"""``PagePipeline``: one index's encoder and pruner, turning documents and queries into vectors."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInputError, SapRagError
from .arrays import as_matrix

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder
    from ..pruning.base import Pruner
    from ..types import PrunedPage

logger = logging.getLogger(__name__)

__all__ = ["PagePipeline", "PreparedPage", "load_images", "pruned_page"]


@dataclass
class PreparedPage:
    """One page out of the pipeline, ready for the store.

    Attributes:
        pruned: its kept anchors, ``(k, dim)`` embeddings with their grid positions.
        text: its text (never empty).
        source: the image as given (path, bytes or PIL image), kept by the image store; or None.
        image: the decoded RGB image of ``source``, or None.
    """

    pruned: PrunedPage
    text: str
    source: Any = None
    image: Any = None


class PagePipeline:
    """Encode and prune pages, and encode queries, for an index of ``dim``-dimensional vectors.

    Args:
        dim: the index's embedding dimension (every vector in and out is checked against it).
        encoder: the encoder, or None to load it with ``load_encoder`` on first use (None there
            too: an index without an encoder, which takes only precomputed vectors).
        pruner: the pruner for new ``PageEncoding``s, or None (then ``missing_pruner`` explains).
        pruner_name: the name every ``PrunedPage`` given as is must carry.
        load_encoder: ``() -> PageEncoder``, called once when the encoder is first needed.
        missing_pruner: the error message when pages must be pruned but there is no pruner.
    """

    def __init__(
        self,
        dim: int,
        encoder: PageEncoder | None,
        pruner: Pruner | None,
        *,
        pruner_name: str | None,
        load_encoder: Callable[[], PageEncoder] | None = None,
        missing_pruner: str = "this index has no pruner for new pages",
    ) -> None:
        self.dim = int(dim)
        self._encoder = encoder
        self._pruner = pruner
        self._pruner_name = pruner_name
        self._load_encoder = load_encoder
        self._missing_pruner = missing_pruner

    @property
    def encoder(self) -> PageEncoder:
        """The encoder (loaded on first use)."""
        if self._encoder is None:
            if self._load_encoder is None:
                raise InvalidInputError(
                    "this index was built without an encoder, so it cannot encode pages or query strings; "
                    "pass precomputed query embeddings, or add pages with add_pages"
                )
            self._encoder = self._load_encoder()
        return self._encoder

    @property
    def pruner(self) -> Pruner:
        """The pruner applied to new ``PageEncoding``s."""
        if self._pruner is None:
            raise InvalidInputError(self._missing_pruner)
        return self._pruner

    # --- documents ----------------------------------------------------------------------------

    def prepare_images(
        self,
        images: list[Any],
        doc_id: str,
        texts: list[str],
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> list[PreparedPage]:
        """Load, encode and prune one document's page images (all before anything is stored)."""
        decoded = load_images(images, doc_id)
        window = getattr(self.pruner, "window", None)
        encodings = self.encoder.encode_pages(
            decoded,
            batch_size=batch_size,
            indegree_layers=list(window) if window else "window",
            show_progress=show_progress,
        )
        pruned = [self.pruner.prune(page) for page in encodings]
        return _pages(doc_id, pruned, texts, images, decoded)

    def prepare_pages(
        self, pages: list[Any], doc_id: str, texts: list[str], images: list[Any] | None = None
    ) -> list[PreparedPage]:
        """Precomputed pages: ``PageEncoding``s are pruned here, ``PrunedPage``s kept as they are."""
        pruned = [self.as_pruned(page, i) for i, page in enumerate(pages)]
        decoded = None
        if images is not None:
            if len(images) != len(pruned):
                raise InvalidInputError(f"got {len(pruned)} pages but {len(images)} images; give one image per page")
            decoded = load_images(images, doc_id)
        return _pages(doc_id, pruned, texts, images, decoded)

    def as_pruned(self, page: Any, i: int) -> PrunedPage:
        """``page`` as a ``PrunedPage`` of this index's pruner (``i``: its 0-based position)."""
        from ..types import PageEncoding, PrunedPage

        if isinstance(page, PrunedPage):
            if page.method != self._pruner_name:
                raise InvalidInputError(
                    f"page {i + 1} was pruned with {page.method!r}, but this index stores {self._pruner_name!r} "
                    "pages; pass PageEncodings to have the index prune them, or create an index for that pruner"
                )
            return page
        if isinstance(page, PageEncoding):
            return self.pruner.prune(page)
        raise InvalidInputError(
            f"page {i + 1} is a {type(page).__name__}; add_pages takes PageEncoding or PrunedPage objects "
            "(use add_images for images)"
        )

    # --- queries ------------------------------------------------------------------------------

    def query_vectors(self, items: list[Any], show_progress: bool = False) -> list[np.ndarray]:
        """Per query, its ``(n_tokens, dim)`` float32 vectors: strings through the encoder's query
        side, ``PIL.Image``s through its page side (every visual token), arrays as given."""
        from PIL import Image

        texts = [(i, q) for i, q in enumerate(items) if isinstance(q, str)]
        images = [(i, q) for i, q in enumerate(items) if isinstance(q, Image.Image)]
        for i, text in texts:
            if not text.strip():
                raise InvalidInputError(f"query #{i} is empty; a query needs some text to search with")
        vectors: list[np.ndarray | None] = [None] * len(items)
        if texts:
            encoded = self.encoder.encode_queries([t for _, t in texts], show_progress=show_progress)
            for (i, _), tensor in zip(texts, encoded):
                vectors[i] = as_matrix(tensor, self.dim, f"query #{i}")
        if images:
            pages = self.encoder.encode_pages([q for _, q in images], indegree_layers=None, show_progress=show_progress)
            if len(pages) != len(images):
                raise SapRagError(f"internal error: {len(images)} image queries but {len(pages)} were encoded")
            for (i, _), page in zip(images, pages):
                vectors[i] = as_matrix(page.embeddings, self.dim, f"image query #{i}")
        return [v if v is not None else as_matrix(items[i], self.dim, f"query #{i}") for i, v in enumerate(vectors)]


def _pages(
    doc_id: str, pruned: list[PrunedPage], texts: list[str], sources: list[Any] | None, decoded: list[Any] | None
) -> list[PreparedPage]:
    if len(pruned) != len(texts) or (sources is not None and len(sources) != len(texts)):
        # Never hand on a document with fewer pages than it has (an encoder that dropped pages).
        raise SapRagError(
            f"internal error: {doc_id!r} has {len(texts)} pages but {len(pruned)} were encoded; nothing was written"
        )
    return [
        PreparedPage(
            page,
            texts[i],
            source=sources[i] if sources is not None else None,
            image=decoded[i] if decoded is not None else None,
        )
        for i, page in enumerate(pruned)
    ]


def load_images(sources: Sequence[Any], doc_id: str) -> list[Any]:
    """Every page image decoded (an unreadable one raises ``UnreadableInputError`` naming the page)."""
    from ..ingest.images import load_image

    return [load_image(src, name=f"{doc_id!r} page {i + 1}") for i, src in enumerate(sources)]


def pruned_page(embeddings: Any, method: str = "sap") -> PrunedPage:
    """A :class:`~sap_rag.PrunedPage` holding exactly ``embeddings`` ``(k, dim)`` (for tests and examples)."""
    import torch

    from ..types import PrunedPage

    tensor = torch.as_tensor(embeddings, dtype=torch.float32)
    k = int(tensor.shape[0])
    return PrunedPage(
        embeddings=tensor,
        positions=torch.zeros(k, 2),
        indices=torch.arange(k),
        scores=None,
        num_tokens=k,
        method=method,
    )
