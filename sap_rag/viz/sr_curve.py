"""The Score Retention curve per layer, mean with a std band, the chosen window shaded."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import MissingDependencyError

if TYPE_CHECKING:
    from ..calibration.calibrate import Calibration

__all__ = ["plot_sr_curve"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError(
            "plotting needs matplotlib: pip install 'sap-rag[viz]' (or pip install matplotlib)"
        ) from exc
    return plt


def plot_sr_curve(calibration: Calibration, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Save a PNG of ``calibration``'s per-layer SR (mean +- std) with its window shaded."""
    plt = _pyplot()
    layers = calibration.layers
    mean = calibration.sr_mean
    std = calibration.sr_std
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    try:
        window = calibration.window
        ax.axvspan(min(window) - 0.5, max(window) + 0.5, color="tab:orange", alpha=0.2, label=f"window {window}")
        ax.fill_between(
            layers, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.25, label="± std"
        )
        ax.plot(layers, mean, marker="o", markersize=3, label="mean SR")
        ax.axhline(statistics.median(mean), color="grey", linestyle=":", linewidth=1, label="median")
        ax.set_xlabel("decoder layer")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(f"Score Retention at keep {calibration.keep_ratio:g}")
        ax.set_title(title or f"{calibration.spec}: {calibration.num_pairs} pairs")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target)
    finally:
        plt.close(fig)
    return target
