"""Layer windows: the self-calibrating rule, the table of known windows and the fallback."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ..errors import InvalidInputError, WindowError

__all__ = ["KNOWN_WINDOWS", "default_window", "select_window", "validate_window"]

# Windows the paper's rule gave for three backbones (model_type, decoder layers) -> layers.
KNOWN_WINDOWS: dict[tuple[str, int], tuple[int, ...]] = {
    ("paligemma", 18): tuple(range(11, 15)),  # ColPali (PaliGemma-3B)
    ("qwen2_vl", 28): tuple(range(18, 24)),  # ColQwen2 (Qwen2-VL-2B)
    ("qwen2_5_vl", 36): tuple(range(26, 34)),  # Qwen2.5-VL-3B (jina-embeddings-v4)
}

# The three calibrated windows start at 61%, 64% and 72% of depth; an uncalibrated backbone
# gets a window of the rule's width starting near the same relative depth.
FALLBACK_START_FRACTION = 0.65
DEFAULT_RHO = 0.2


def select_window(
    sr_curve: Sequence[float], rho: float = DEFAULT_RHO, *, layers: Sequence[int] | None = None
) -> tuple[int, ...]:
    """The window rule: the ``ceil(rho * L)`` layers just before the longest low-SR suffix.

    With ``m`` the median of the curve, ``l*`` is the start of the longest suffix of layers whose
    SR is below ``m`` (``l* = L`` when the last layer is not below ``m``), ``w = ceil(rho * L)``,
    and the window is ``[max(0, l* - w), l*)``, or the last ``w`` layers when ``l* = L``.

    Args:
        sr_curve: mean Score Retention of each layer, in layer order.
        rho: window width as a fraction of depth.
        layers: the layer index of each curve entry (default ``0..L-1``); lets a curve cover
            only the layers that can be scored (hybrid models).

    >>> select_window([0.5, 0.6, 0.9, 0.95, 0.8, 0.4, 0.3, 0.2, 0.1, 0.1])
    (3, 4)
    """
    values = [float(v) for v in sr_curve]
    if not values or any(math.isnan(v) for v in values):
        raise InvalidInputError(f"the SR curve must be a non-empty list of numbers, got {list(sr_curve)!r}")
    if not 0.0 < rho <= 1.0:
        raise InvalidInputError(f"rho must be in (0, 1], got {rho!r}")
    ids = list(range(len(values))) if layers is None else [int(i) for i in layers]
    if len(ids) != len(values):
        raise InvalidInputError(f"{len(values)} SR values but {len(ids)} layer ids")
    num = len(values)
    median = statistics.median(values)
    start_low = num
    while start_low > 0 and values[start_low - 1] < median:
        start_low -= 1
    width = math.ceil(rho * num)
    if start_low == num:
        positions = range(num - width, num)
    else:
        positions = range(max(0, start_low - width), start_low)
    return tuple(ids[p] for p in positions)


def default_window(model_type: str, num_layers: int, scorable: Sequence[int] | None = None) -> tuple[int, ...]:
    """The window to use without a calibration: a known one, else depth-proportional.

    Args:
        model_type: the backbone's ``config.model_type``.
        num_layers: number of language-model decoder layers.
        scorable: layers that produce attention weights (all when None).

    >>> default_window("qwen2_vl", 28)
    (18, 19, 20, 21, 22, 23)
    >>> default_window("llama", 10)
    (6, 7)
    """
    known = KNOWN_WINDOWS.get((model_type, num_layers))
    candidates = list(range(num_layers)) if scorable is None else sorted(int(i) for i in scorable)
    if known is not None and all(layer in candidates for layer in known):
        return known
    if not candidates:
        raise WindowError(f"a {model_type} model with {num_layers} layers has no layer that returns attention")
    width = math.ceil(DEFAULT_RHO * len(candidates))
    start = min(int(FALLBACK_START_FRACTION * len(candidates)), len(candidates) - width)
    return tuple(candidates[start : start + width])


def validate_window(window: Sequence[int], num_layers: int, scorable: Sequence[int] | None = None) -> tuple[int, ...]:
    """Check a user-given window against the model and return it as a sorted tuple."""
    try:
        layers = tuple(sorted({int(layer) for layer in window}))
    except (TypeError, ValueError):
        raise WindowError(f"a window is a list of layer indices, got {window!r}") from None
    if not layers:
        raise WindowError("the window is empty; give at least one layer index")
    outside = [layer for layer in layers if not 0 <= layer < num_layers]
    if outside:
        raise WindowError(
            f"window layers {outside} are outside the model's {num_layers} decoder layers "
            f"(valid indices 0..{num_layers - 1})"
        )
    if scorable is not None:
        unscorable = [layer for layer in layers if layer not in set(scorable)]
        if unscorable:
            raise WindowError(
                f"window layers {unscorable} return no attention weights (linear-attention layers); "
                f"choose among {sorted(scorable)}"
            )
    return layers
