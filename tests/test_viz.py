"""Pictures: the anchor overlay marks exactly the kept patches; the SR curve plot is written."""

from __future__ import annotations

import pytest
import torch
from conftest import make_page
from PIL import Image

from sap_rag import Calibration, InvalidInputError, SAPPruner
from sap_rag.viz import anchor_overlay, plot_sr_curve, save_anchor_overlay
from sap_rag.viz.overlay import _OUTLINE


@pytest.mark.parametrize("family", ["colqwen2", "colidefics3"])
def test_overlay_outlines_the_kept_patches_and_colours_by_score(tiny_encoders, family, tmp_path):
    encoder = tiny_encoders(family)
    image = make_page(5, (300, 420))
    (page,) = encoder.encode_pages([image])
    pruned = SAPPruner(keep_ratio=0.1).prune(page)
    path = save_anchor_overlay(tmp_path / "overlay.png", image, page, pruned)
    overlay = Image.open(path).convert("RGB")
    assert overlay.size == image.size
    rows, cols = page.grid_shape
    cell_w, cell_h = image.size[0] / cols, image.size[1] / rows

    def top_left_pixel(i):
        r, c = page.positions[i].tolist()
        return overlay.getpixel((round(c * cell_w), round(r * cell_h)))

    kept = set(pruned.indices.tolist())
    assert all(top_left_pixel(i) == _OUTLINE for i in kept)
    fine = [i for i in range(page.num_tokens) if float(page.extents[i].prod()) == 1.0 and i not in kept]
    assert fine and not any(top_left_pixel(i) == _OUTLINE for i in fine)
    # the heatmap differs between the highest- and lowest-scoring fine patches
    plain = anchor_overlay(image, page)  # no outlines
    scores = page.sap_scores
    hi = max(fine, key=lambda i: float(scores[i]))
    lo = min(fine, key=lambda i: float(scores[i]))

    def centre(i):
        r, c = (page.positions[i] + 0.5).tolist()
        return plain.getpixel((int(c * cell_w), int(r * cell_h)))

    assert centre(hi) != centre(lo)


def test_overlay_rejects_mismatched_scores(tiny_encoder):
    (page,) = tiny_encoder.encode_pages([make_page(0)])
    with pytest.raises(InvalidInputError, match="scores for a page"):
        anchor_overlay(make_page(0), page, scores=torch.zeros(page.num_tokens + 1))


def test_sr_curve_plot_is_a_png(tmp_path):
    calibration = Calibration(
        spec="tiny:colqwen2",
        family="colqwen2",
        model_type="qwen2_vl",
        num_layers=6,
        keep_ratio=0.1,
        rho=0.2,
        num_pairs=3,
        layers=list(range(6)),
        sr_mean=[0.5, 0.7, 0.9, 0.8, 0.4, 0.3],
        sr_std=[0.1] * 6,
        window=[2, 3],
    )
    path = plot_sr_curve(calibration, tmp_path / "plots" / "sr.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] > 300
