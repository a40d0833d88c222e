"""The anchor overlay: a page with its SAP-score heatmap, the kept anchors outlined, a colour bar and a caption.

The picture has the page image's own size; the page is scaled down (a few percent on a real page)
and sits at the top left, with the colour bar to its right and the caption under it::

    +-----------------+---+
    |  page + heatmap | c |   c: colour bar of the score, low (bottom) to high (top), with values
    |  kept outlined  | b |
    +-----------------+---+
    | caption: document | page | keep ratio | kept of total; what the colour means; outline legend |
    +---------------------+

Colours are the patches' percentiles on the page, not their raw scores: in-degree is heavy-tailed
(a causal backbone's first patches and attention sinks collect many times the median), so a
min-max scale would paint almost every patch the lowest colour. The ramp is viridis (perceptually
uniform, readable in greyscale and by colour-blind readers); the bar's ticks give the scores at
the minimum, median and maximum.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage

__all__ = [
    "Overlay",
    "anchor_overlay",
    "colour_levels",
    "overlay_caption",
    "render_overlay",
    "save_anchor_overlay",
    "score_legend",
]

_HEAT_ALPHA = 0.45
_OUTLINE = (240, 0, 100)  # crimson: on no part of the viridis ramp
_PANEL = (255, 255, 255)
_INK = (20, 20, 20)

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), inclusive pixel corners


@dataclass
class Overlay:
    """A rendered overlay and what it shows.

    Attributes:
        image: the RGB picture, of the page image's size (page, colour bar to its right, caption below).
        caption: the caption text drawn under the page.
        page_box: where the (scaled) page sits in ``image``, at the top left.
        kept_boxes: token index -> its outlined box in ``image`` pixels, for each kept anchor.
        colorbar_box: where the colour bar's ramp sits in ``image``.
        score_range: ``(low, high)`` scores at the bottom and top of the colour bar.
        levels: ``(N,)`` each token's place on the colour ramp, in [0, 1] (its percentile on the page).
        legend: what the colour means (drawn under the caption).
    """

    image: Image.Image
    caption: str
    page_box: Box
    kept_boxes: dict[int, Box] = field(default_factory=dict)
    colorbar_box: Box = (0, 0, 0, 0)
    score_range: tuple[float, float] = (0.0, 0.0)
    levels: torch.Tensor | None = None
    legend: str = ""


# viridis (matplotlib's default colormap) at 9 evenly spaced points; linear in between.
_VIRIDIS = (
    (68, 1, 84),
    (71, 44, 122),
    (59, 81, 139),
    (44, 113, 142),
    (33, 144, 141),
    (39, 173, 129),
    (92, 200, 99),
    (170, 220, 50),
    (253, 231, 37),
)


def _heat_colour(value: float) -> tuple[int, int, int]:
    """The viridis ramp (dark purple -> teal -> yellow) at a value in [0, 1]."""
    v = min(1.0, max(0.0, value)) * (len(_VIRIDIS) - 1)
    i = min(int(v), len(_VIRIDIS) - 2)
    t = v - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def colour_levels(values: torch.Tensor) -> torch.Tensor:
    """``(N,)`` scores -> ``(N,)`` levels in [0, 1]: each score's percentile among the page's scores.

    Equal scores share a level (their mean rank); the lowest score is 0 and the highest 1.

    >>> colour_levels(torch.tensor([100.0, 0.1, 0.2, 0.2, 0.3])).tolist()
    [1.0, 0.0, 0.375, 0.375, 0.75]
    """
    flat = values.detach().to(torch.float64).flatten()
    if flat.numel() < 2:
        return torch.ones_like(flat)
    ordered = torch.sort(flat).values
    first = torch.searchsorted(ordered, flat, right=False)
    last = torch.searchsorted(ordered, flat, right=True) - 1
    return (first + last).to(torch.float64) / (2 * (flat.numel() - 1))


def _layers(window: tuple[int, ...]) -> str:
    """``(18, 19, 20)`` -> ``"layers 18-20"``; ``(1,)`` -> ``"layer 1"``; others listed."""
    if len(window) == 1:
        return f"layer {window[0]}"
    if list(window) == list(range(window[0], window[0] + len(window))):
        return f"layers {window[0]}-{window[-1]}"
    return "layers " + ",".join(map(str, window))


def score_legend(window: tuple[int, ...] = (), score_label: str = "SAP score") -> str:
    """What the heatmap's colour means, for the legend under the page; ``window``: the layers whose
    mean in-degree the score is (empty: scores of another kind, named by ``score_label`` alone).

    >>> score_legend((18, 19, 20))
    'colour: SAP score (mean attention in-degree over layers 18-20) as a percentile on this page'
    """
    what = f" (mean attention in-degree over {_layers(tuple(window))})" if window else ""
    return f"colour: {score_label}{what} as a percentile on this page"


def _on_white(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """The heat colour as it looks blended over a white page (what the colour bar must show), by the
    same blend as the page, so that a white cell and the bar agree to the unit."""
    white = Image.new("RGB", (1, 1), (255, 255, 255))
    return Image.blend(white, Image.new("RGB", (1, 1), colour), _HEAT_ALPHA).getpixel((0, 0))  # type: ignore[return-value]


def overlay_caption(
    page: PageEncoding,
    pruned: PrunedPage | None,
    *,
    document: str | None = None,
    page_number: int | None = None,
    keep_ratio: float | None = None,
) -> str:
    """The caption: document, page, keep ratio, kept of total (the parts that are known).

    ``keep_ratio`` defaults to the realised ``kept / total``.

    >>> from sap_rag.eval.fakes import page_from_embeddings
    >>> page = page_from_embeddings([[1.0, 0.0]] * 10)
    >>> overlay_caption(page, None, document="report.pdf", page_number=3, keep_ratio=0.1)
    'report.pdf | page 3 | keep ratio 0.1 | 10 of 10 patches (nothing pruned)'
    """
    parts = []
    if document:
        parts.append(str(document))
    if page_number is not None:
        parts.append(f"page {page_number}")
    total = page.num_tokens
    if pruned is None:
        if keep_ratio is not None:
            parts.append(f"keep ratio {keep_ratio:g}")
        parts.append(f"{total} of {total} patches (nothing pruned)")
        return " | ".join(parts)
    ratio = keep_ratio if keep_ratio is not None else pruned.num_kept / max(1, total)
    parts.append(f"keep ratio {ratio:.3g}")
    what = "anchors kept" if pruned.indices is not None else "merged vectors"
    parts.append(f"{pruned.num_kept} of {total} patches ({what})")
    return " | ".join(parts)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib, which sap_rag's plots use) for legible small text; else Pillow's own."""
    try:
        import matplotlib

        return ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """Split ``text`` at ``' | '`` and spaces into lines no wider than ``width`` pixels (when possible)."""
    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        trial = f"{current} {word}" if current else word
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def render_overlay(
    image: Image.Image,
    page: PageEncoding,
    pruned: PrunedPage | None = None,
    *,
    scores: torch.Tensor | None = None,
    document: str | None = None,
    page_number: int | None = None,
    keep_ratio: float | None = None,
    score_label: str = "SAP score",
    outline_width: int | None = None,
) -> Overlay:
    """Heatmap of the page's per-token scores over ``image``, kept anchors outlined, a colour bar and a caption.

    The patch grid (``page.grid_shape``) is stretched over the whole page image, which is how
    every supported processor maps it (Qwen keeps the aspect ratio, SigLIP towers stretch to a
    square).

    Args:
        image: the page image (any size; the overlay has the same size).
        page: the page's encoding (positions, extents, grid shape).
        pruned: what was kept; its ``indices`` are outlined (merging pruners have none).
        scores: ``(N,)`` values for the heatmap; default ``page.sap_scores``.
        document / page_number / keep_ratio: for the caption (see :func:`overlay_caption`).
        score_label: the colour bar's title and the legend's name of the score.
        outline_width: pixels; default scales with the cell size (at least 2).

    Returns:
        An :class:`Overlay`.
    """
    values = scores if scores is not None else page.sap_scores
    if values is None:
        raise InvalidInputError("the page has no SAP scores; encode it with its window or pass scores=")
    if values.shape[0] != page.num_tokens:
        raise InvalidInputError(f"{values.shape[0]} scores for a page of {page.num_tokens} tokens")
    source = image.convert("RGB")
    width, height = source.size
    low, high = float(values.min()), float(values.max())
    levels = colour_levels(values)
    caption = overlay_caption(page, pruned, document=document, page_number=page_number, keep_ratio=keep_ratio)
    # Only the page's own SAP scores are known to be a window's mean in-degree.
    legend = score_legend(tuple(page.window) if scores is None else (), score_label)
    has_outlines = pruned is not None and pruned.indices is not None

    # Panels sized from the page so that text stays legible on small and large pages alike.
    font_size = min(30, max(9, round(min(width, height) / 30)))
    font, small = _font(font_size), _font(max(8, round(font_size * 0.85)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # The bar's ticks: the scores at the top, middle and bottom of the ramp (percentiles 100, 50, 0).
    labels = [f"max {high:.3g}", f"median {float(values.median()):.3g}", f"min {low:.3g}"]
    label_w = max(int(measure.textlength(text, font=small)) for text in labels)
    pad = max(4, font_size // 2)
    bar_w = font_size
    side_w = pad + bar_w + pad + label_w + pad
    caption_lines = _wrap(measure, caption, font, width - 2 * pad)
    legend_lines = _wrap(measure, legend, small, width - 2 * pad)
    line_h = font_size + pad // 2
    small_h = small.size + pad // 2 if hasattr(small, "size") else line_h
    caption_h = pad + line_h * len(caption_lines) + small_h * (len(legend_lines) + (1 if has_outlines else 0)) + pad
    # The picture keeps the page image's size: the page is scaled down to leave room for the bar
    # and the caption (by a few percent on a real page).
    scale = max(0.25, min((width - side_w) / width, (height - caption_h) / height))
    page_w, page_h = max(1, round(width * scale)), max(1, round(height * scale))
    base = source.resize((page_w, page_h), Image.Resampling.LANCZOS) if scale < 1 else source
    rows, cols = page.grid_shape
    cell_h, cell_w = page_h / rows, page_w / cols
    line = outline_width if outline_width is not None else max(2, round(min(cell_w, cell_h) / 20))

    def box(i: int) -> Box:
        (r, c), (h, w) = page.positions[i].tolist(), page.extents[i].tolist()
        return round(c * cell_w), round(r * cell_h), round((c + w) * cell_w) - 1, round((r + h) * cell_h) - 1

    heat = Image.new("RGB", base.size, (0, 0, 0))
    draw = ImageDraw.Draw(heat)
    # Larger tokens (a global view) first, so the fine grid paints over them.
    order = sorted(range(page.num_tokens), key=lambda i: -float(page.extents[i].prod()))
    for i in order:
        draw.rectangle(box(i), fill=_heat_colour(float(levels[i])))
    painted = Image.blend(base, heat, _HEAT_ALPHA)
    kept_boxes: dict[int, Box] = {}
    if pruned is not None and pruned.indices is not None:
        outline = ImageDraw.Draw(painted)
        for i in pruned.indices.tolist():
            kept_boxes[i] = box(i)
            outline.rectangle(kept_boxes[i], outline=_OUTLINE, width=line)

    canvas = Image.new("RGB", (width, height), _PANEL)
    canvas.paste(painted, (0, 0))
    ink = ImageDraw.Draw(canvas)
    # Colour bar right of the page: the ramp as it looks on a white page, high at the top.
    x0, x1 = page_w + pad, page_w + pad + bar_w - 1
    y0, y1 = font_size + 2 * pad, max(font_size + 2 * pad + 10, page_h - pad)
    title = score_label if measure.textlength(score_label, font=small) <= width - page_w - pad else "score"
    ink.text((page_w + pad, pad // 2), title, fill=_INK, font=small)
    for y in range(y0, y1 + 1):
        fraction = (y1 - y) / max(1, y1 - y0)
        ink.line([(x0, y), (x1, y)], fill=_on_white(_heat_colour(fraction)))
    ink.rectangle((x0, y0, x1, y1), outline=_INK, width=1)
    for text, y in zip(labels, (y0, (y0 + y1) // 2, y1)):
        ink.line([(x1 + 1, y), (x1 + pad // 2, y)], fill=_INK)
        ink.text((x1 + pad, y), text, fill=_INK, font=small, anchor="lm")
    # Caption under the page, then what the colour means, then the outline legend with a swatch.
    y = page_h + pad
    for text in caption_lines:
        ink.text((pad, y), text, fill=_INK, font=font)
        y += line_h
    for text in legend_lines:
        ink.text((pad, y), text, fill=_INK, font=small)
        y += small_h
    if has_outlines:
        swatch = max(2, min(line, font_size // 5))
        ink.rectangle((pad, y + 2, pad + font_size - 2, y + font_size - 2), outline=_OUTLINE, width=swatch)
        ink.text((pad + font_size + pad // 2, y), "outlined: kept anchors", fill=_INK, font=small)
    return Overlay(
        image=canvas,
        caption=caption,
        page_box=(0, 0, page_w - 1, page_h - 1),
        kept_boxes=kept_boxes,
        colorbar_box=(x0, y0, x1, y1),
        score_range=(low, high),
        levels=levels,
        legend=legend,
    )


def anchor_overlay(image: Image.Image, page: PageEncoding, pruned: PrunedPage | None = None, **kwargs) -> Image.Image:
    """The picture of :func:`render_overlay` (same arguments)."""
    return render_overlay(image, page, pruned, **kwargs).image


def save_anchor_overlay(
    path: str | os.PathLike, image: Image.Image, page: PageEncoding, pruned: PrunedPage | None = None, **kwargs
) -> Path:
    """:func:`render_overlay` written to ``path`` (PNG: caption and legend also in text chunks); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    overlay = render_overlay(image, page, pruned, **kwargs)
    if target.suffix.lower() == ".png":
        info = PngInfo()
        info.add_text("Caption", overlay.caption)
        info.add_text("Legend", overlay.legend)
        overlay.image.save(target, pnginfo=info)
    else:
        overlay.image.save(target)
    return target
