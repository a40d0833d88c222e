"""Pictures: where the anchors sit on a page, and the Score Retention curve with its window."""

from .overlay import (
    Overlay,
    anchor_overlay,
    colour_levels,
    overlay_caption,
    render_overlay,
    save_anchor_overlay,
    score_legend,
)
from .sr_curve import plot_sr_curve

__all__ = [
    "Overlay",
    "anchor_overlay",
    "colour_levels",
    "overlay_caption",
    "plot_sr_curve",
    "render_overlay",
    "save_anchor_overlay",
    "score_legend",
]
