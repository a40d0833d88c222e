"""Hand-made and random ``PageEncoding`` objects, for tests and pruner benchmarks without a model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..types import PageEncoding

__all__ = ["page_from_embeddings", "random_page"]


def page_from_embeddings(
    embeddings: torch.Tensor | Sequence[Sequence[float]],
    *,
    indegree: dict[int, Sequence[float]] | None = None,
    indegree_max: dict[int, Sequence[float]] | None = None,
    window: Sequence[int] = (),
    eos_attention: Sequence[float] | None = None,
    columns: int | None = None,
) -> PageEncoding:
    """A page with the given ``(N, dim)`` embeddings (used as given, not normalised).

    Tokens sit on a grid of ``columns`` (default ``ceil(sqrt(N))``) columns in row-major order;
    ``indegree`` / ``indegree_max`` / ``eos_attention`` are ``(N,)`` sequences per layer.

    >>> page = page_from_embeddings([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], indegree={0: [3, 1, 2]}, window=(0,))
    >>> page.num_tokens, page.positions.tolist(), page.sap_scores.tolist()
    (3, [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [3.0, 1.0, 2.0])
    """
    e = torch.as_tensor(embeddings, dtype=torch.float32)
    n = int(e.shape[0])
    cols = columns or max(1, math.ceil(math.sqrt(n)))
    index = torch.arange(n)
    positions = torch.stack([index // cols, index % cols], dim=1).to(torch.float32)
    rows = {int(k): torch.as_tensor(v, dtype=torch.float32) for k, v in (indegree or {}).items()}
    rows_max = {int(k): torch.as_tensor(v, dtype=torch.float32) for k, v in (indegree_max or {}).items()}
    window = tuple(window)
    in_window = bool(window) and all(layer in rows for layer in window)
    return PageEncoding(
        embeddings=e,
        positions=positions,
        grid_shape=((n + cols - 1) // cols, cols),
        extents=torch.ones(n, 2),
        indegree=rows,
        indegree_max=rows_max,
        window=window,
        sap_scores=torch.stack([rows[layer] for layer in window]).mean(dim=0) if in_window else None,
        eos_attention=torch.as_tensor(eos_attention, dtype=torch.float32) if eos_attention is not None else None,
    )


def random_page(num_tokens: int, *, dim: int = 16, layers: int = 4, window: Sequence[int] = (2,), seed: int = 0):
    """A page of ``num_tokens`` random unit vectors with random in-degrees on ``layers`` layers and EOS attention."""
    g = torch.Generator().manual_seed(seed)
    e = torch.nn.functional.normalize(torch.randn(num_tokens, dim, generator=g), dim=-1)
    indegree = {layer: torch.rand(num_tokens, generator=g) * 3 for layer in range(layers)}
    indegree_max = {layer: torch.rand(num_tokens, generator=g) * 3 for layer in range(layers)}
    eos = torch.softmax(torch.randn(num_tokens, generator=g) * 2, dim=0)
    page = page_from_embeddings(
        e, indegree=indegree, indegree_max=indegree_max, window=window, eos_attention=eos.tolist()
    )
    from ..encoders.attention import visual_attenders

    counts = visual_attenders(num_tokens, causal=True)  # as a causal backbone's mask gives them
    page.attenders = {layer: counts for layer in indegree}
    return page
