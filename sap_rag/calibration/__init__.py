"""Calibration: per-layer Score Retention and the window rule."""

from .calibrate import CHECKPOINT_CALIBRATION, Calibration, calibrate, layer_score_retention
from .pairs import dataset_pairs, read_pairs
from .window import KNOWN_WINDOWS, default_window, select_window, validate_window

__all__ = [
    "CHECKPOINT_CALIBRATION",
    "KNOWN_WINDOWS",
    "Calibration",
    "calibrate",
    "dataset_pairs",
    "default_window",
    "layer_score_retention",
    "read_pairs",
    "select_window",
    "validate_window",
]
