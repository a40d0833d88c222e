"""Dataclasses passed between the pipeline stages (encode -> prune -> index -> search)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["PageEncoding", "PrunedPage"]


@dataclass(repr=False)
class PageEncoding:
    """One page as the encoder sees it: its visual tokens and the attention statistics SAP needs.

    Attributes:
        embeddings: ``(N, dim)`` float32, the model's final projected, L2-normalised output at the
            page's N visual (image-patch) tokens. Prompt and special tokens are never included.
        positions: ``(N, 2)`` float32, each token's ``(row, col)`` top-left corner on the page's
            patch grid, in grid cells.
        grid_shape: ``(rows, cols)`` of the patch grid that covers the whole page.
        extents: ``(N, 2)`` float32, each token's ``(height, width)`` in grid cells (1 for an
            ordinary patch; larger for tokens of a downscaled global view, as in Idefics3).
        indegree: layer index (0-based language-model decoder layer, as in
            ``outputs.attentions[l]``) -> ``(N,)`` in-degree of each visual token at that layer,
            averaged over heads. Holds exactly the layers that were computed.
        indegree_max: same layers -> ``(N,)`` in-degree maximised over heads instead of averaged.
        window: the layers whose mean in-degree gives ``sap_scores``.
        sap_scores: ``(N,)`` mean of ``indegree`` over ``window``; None if no window layer was
            computed.
        eos_attention: ``(N,)`` attention from the last real token to each visual token at the
            last layer, averaged over heads (DocPruner's signal); None unless requested.
        image_size: ``(width, height)`` in pixels of the page image that was encoded.
        attenders: same layers as ``indegree`` -> ``(N,)`` float32, how many of the page's visual
            tokens the layer's attention mask lets attend each visual token (``N - k`` for the k-th
            visual token of a causal backbone, ``N`` with bidirectional attention over the image,
            fewer under a sliding window); what the debiased SAP score divides the in-degree by.
            Empty when not recorded.
    """

    embeddings: torch.Tensor
    positions: torch.Tensor
    grid_shape: tuple[int, int]
    extents: torch.Tensor
    indegree: dict[int, torch.Tensor] = field(default_factory=dict)
    indegree_max: dict[int, torch.Tensor] = field(default_factory=dict)
    window: tuple[int, ...] = ()
    sap_scores: torch.Tensor | None = None
    eos_attention: torch.Tensor | None = None
    image_size: tuple[int, int] = (0, 0)
    attenders: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        """N, the number of visual tokens."""
        return int(self.embeddings.shape[0])

    def __repr__(self) -> str:  # shapes, not tensors: a page printed in a notebook stays one line
        return (
            f"PageEncoding(tokens={self.num_tokens}, dim={self.dim}, grid={tuple(self.grid_shape)}, "
            f"window={tuple(self.window)}, indegree_layers={sorted(self.indegree)}, "
            f"image_size={tuple(self.image_size)})"
        )

    @property
    def dim(self) -> int:
        """Embedding dimension (128 for most families, 320 for ColQwen3)."""
        return int(self.embeddings.shape[1])

    def window_scores(self, window: tuple[int, ...] | None = None, reduce: str = "mean") -> torch.Tensor:
        """``(N,)`` SAP score: mean over ``window`` of the per-layer in-degree.

        ``reduce`` picks the head reduction the per-layer rows were made with: ``"mean"`` (the
        method) or ``"max"``. Raises if a window layer was not computed for this page.
        """
        from .errors import WindowError

        layers = tuple(window) if window is not None else self.window
        if not layers:
            raise WindowError("no window given and the page carries none; encode it with a window")
        rows = self.indegree if reduce == "mean" else self.indegree_max
        missing = [layer for layer in layers if layer not in rows]
        if missing:
            raise WindowError(
                f"layers {missing} were not computed for this page (computed: {sorted(rows)}); "
                "encode the pages with indegree_layers='all' or with that window"
            )
        if window is None and reduce == "mean" and self.sap_scores is not None:
            return self.sap_scores
        return torch.stack([rows[layer] for layer in layers]).mean(dim=0)


@dataclass(repr=False)
class PrunedPage:
    """What a pruner keeps of a page: the vectors to index.

    Attributes:
        embeddings: ``(k, dim)`` float32, the vectors to store.
        positions: ``(k, 2)`` float32 grid positions (for merged vectors, the mean of their
            members' positions).
        indices: ``(k,)`` int64 indices into the page's N visual tokens, ascending (so in page
            order), when every kept vector is a row of the page's embeddings; None for pruners
            that merge tokens into new vectors.
        scores: ``(k,)`` the pruner's score of each kept vector, when it has one.
        num_tokens: N, the number of visual tokens of the unpruned page.
        method: the pruner's name.
    """

    embeddings: torch.Tensor
    positions: torch.Tensor
    indices: torch.Tensor | None
    scores: torch.Tensor | None
    num_tokens: int
    method: str

    @property
    def num_kept(self) -> int:
        """k, the number of stored vectors."""
        return int(self.embeddings.shape[0])

    def __repr__(self) -> str:  # shapes, not tensors
        dim = int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else None
        return (
            f"PrunedPage(method={self.method!r}, kept={self.num_kept} of {self.num_tokens} tokens, dim={dim}, "
            f"indices={self.indices is not None}, scores={self.scores is not None})"
        )

    @property
    def kept_ratio(self) -> float:
        """k / N."""
        return self.num_kept / max(1, self.num_tokens)
