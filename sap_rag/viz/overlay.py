"""The anchor overlay: a page with its SAP-score heatmap, the kept patches outlined."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage

__all__ = ["anchor_overlay", "save_anchor_overlay"]

_HEAT_ALPHA = 0.45
_OUTLINE = (0, 200, 255)


def _heat_colour(value: float) -> tuple[int, int, int]:
    """A dark-blue -> red -> yellow ramp for a value in [0, 1]."""
    v = min(1.0, max(0.0, value))
    if v < 0.5:
        t = v / 0.5
        return int(40 + 180 * t), int(20 * t), int(120 - 80 * t)
    t = (v - 0.5) / 0.5
    return 220 + int(35 * t), int(20 + 200 * t), int(40 * (1 - t))


def anchor_overlay(
    image: Image.Image,
    page: PageEncoding,
    pruned: PrunedPage | None = None,
    *,
    scores: torch.Tensor | None = None,
    outline_width: int = 2,
) -> Image.Image:
    """Draw the page's per-token scores as a heatmap over ``image`` and outline the kept tokens.

    The patch grid (``page.grid_shape``) is stretched over the whole image, which is how every
    supported processor maps it (Qwen keeps the aspect ratio, SigLIP towers stretch to a square).

    Args:
        image: the page image (any size; the overlay has the same size).
        page: the page's encoding (positions, extents, grid shape).
        pruned: what was kept; its ``indices`` are outlined (merging pruners have none).
        scores: ``(N,)`` values for the heatmap; default ``page.sap_scores``.

    Returns:
        A new RGB image of ``image.size``.
    """
    values = scores if scores is not None else page.sap_scores
    if values is None:
        raise InvalidInputError("the page has no SAP scores; encode it with its window or pass scores=")
    if values.shape[0] != page.num_tokens:
        raise InvalidInputError(f"{values.shape[0]} scores for a page of {page.num_tokens} tokens")
    base = image.convert("RGB")
    width, height = base.size
    rows, cols = page.grid_shape
    cell_h, cell_w = height / rows, width / cols
    low, high = float(values.min()), float(values.max())
    span = high - low or 1.0

    def box(i: int) -> tuple[int, int, int, int]:
        (r, c), (h, w) = page.positions[i].tolist(), page.extents[i].tolist()
        return round(c * cell_w), round(r * cell_h), round((c + w) * cell_w) - 1, round((r + h) * cell_h) - 1

    heat = Image.new("RGB", base.size, (0, 0, 0))
    draw = ImageDraw.Draw(heat)
    # Larger tokens (a global view) first, so the fine grid paints over them.
    order = sorted(range(page.num_tokens), key=lambda i: -float(page.extents[i].prod()))
    for i in order:
        draw.rectangle(box(i), fill=_heat_colour((float(values[i]) - low) / span))
    overlay = Image.blend(base, heat, _HEAT_ALPHA)
    if pruned is not None and pruned.indices is not None:
        outline = ImageDraw.Draw(overlay)
        for i in pruned.indices.tolist():
            outline.rectangle(box(i), outline=_OUTLINE, width=outline_width)
    return overlay


def save_anchor_overlay(
    path: str | os.PathLike, image: Image.Image, page: PageEncoding, pruned: PrunedPage | None = None, **kwargs
) -> Path:
    """:func:`anchor_overlay` written to ``path`` (PNG by extension); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    anchor_overlay(image, page, pruned, **kwargs).save(target)
    return target
