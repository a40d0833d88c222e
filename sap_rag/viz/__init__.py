"""Pictures: where the anchors sit on a page, and the Score Retention curve with its window."""

from .overlay import anchor_overlay, save_anchor_overlay
from .sr_curve import plot_sr_curve

__all__ = ["anchor_overlay", "plot_sr_curve", "save_anchor_overlay"]
