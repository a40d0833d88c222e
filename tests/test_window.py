"""The window rule on hand-made SR curves, the known windows and the fallback."""

from __future__ import annotations

import math

import pytest

from sap_rag import WindowError, select_window
from sap_rag.calibration.window import KNOWN_WINDOWS, default_window, validate_window


def test_plateau_then_drop_picks_the_layers_before_the_low_suffix():
    # 10 layers: rises to a plateau at layers 2-4, then drops for good from layer 5.
    curve = [0.5, 0.6, 0.9, 0.95, 0.8, 0.4, 0.3, 0.2, 0.1, 0.1]
    # median 0.45, low suffix starts at l*=5, w=ceil(0.2*10)=2 -> [3, 5)
    assert select_window(curve) == (3, 4)


def test_monotone_decreasing_curve_gives_the_window_before_the_lower_half():
    curve = [1.0 - 0.05 * i for i in range(20)]
    # median between layers 9 and 10: layers 10..19 are below it, so l*=10, w=4 -> 6..9
    assert select_window(curve) == (6, 7, 8, 9)


def test_monotone_increasing_curve_gives_the_last_layers():
    # the last layer is not below the median: l* = L, window = last w layers
    curve = [0.1 * i for i in range(12)]
    assert select_window(curve) == tuple(range(12 - math.ceil(0.2 * 12), 12))


def test_last_layer_at_the_median_is_not_low():
    curve = [0.2, 0.9, 0.5, 0.1, 0.5]  # median 0.5; last value equals it -> not below
    assert select_window(curve) == (4,)


def test_rho_sets_the_width_and_layers_map_positions_to_ids():
    curve = [0.5, 0.6, 0.9, 0.95, 0.8, 0.4, 0.3, 0.2, 0.1, 0.1]
    assert select_window(curve, rho=0.3) == (2, 3, 4)
    ids = [3, 7, 11, 15, 19, 23, 27, 31, 35, 39]  # e.g. the full-attention layers of a hybrid model
    assert select_window(curve, layers=ids) == (15, 19)


def test_window_never_starts_before_layer_zero():
    curve = [0.9, 0.5, 0.3, 0.2, 0.1]  # median 0.3: low suffix from l* = 3
    assert select_window(curve) == (2,)
    assert select_window(curve, rho=0.8) == (0, 1, 2)  # w = 4 would start at -1


@pytest.mark.parametrize("bad", [[], [float("nan"), 0.2]])
def test_bad_curves_are_rejected(bad):
    with pytest.raises(ValueError):
        select_window(bad)


def test_known_windows_follow_the_rule_width():
    for (model_type, layers), window in KNOWN_WINDOWS.items():
        assert len(window) == math.ceil(0.2 * layers)
        assert default_window(model_type, layers) == window
    assert default_window("paligemma", 18) == (11, 12, 13, 14)
    assert default_window("qwen2_vl", 28) == tuple(range(18, 24))


def test_fallback_window_is_depth_proportional_and_inside_the_model():
    for layers in (1, 2, 4, 12, 24, 40):
        window = default_window("unknown_backbone", layers)
        assert len(window) == math.ceil(0.2 * layers)
        assert all(0 <= layer < layers for layer in window)
        assert list(window) == list(range(window[0], window[0] + len(window)))
    assert default_window("unknown_backbone", 20) == (13, 14, 15, 16)
    # hybrid model: only scorable layers are eligible
    assert set(default_window("unknown_backbone", 16, scorable=[3, 7, 11, 15])) <= {3, 7, 11, 15}


@pytest.mark.parametrize("window", [[], [4], [-1], [0, 9]])
def test_windows_outside_the_model_are_clear_errors(window):
    with pytest.raises(WindowError):
        validate_window(window, num_layers=4)


def test_windows_on_layers_without_attention_are_rejected():
    with pytest.raises(WindowError, match="linear-attention"):
        validate_window([1], num_layers=4, scorable=[0, 3])
    assert validate_window([3, 0], num_layers=4, scorable=[0, 3]) == (0, 3)
