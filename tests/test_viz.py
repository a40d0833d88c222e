"""Pictures: the anchor overlay marks exactly the kept patches, with a colour bar and a caption; the SR curve plot."""

from __future__ import annotations

import pytest
import torch
from conftest import make_page
from PIL import Image

from sap_rag import Calibration, InvalidInputError, SAPPruner
from sap_rag.pruning import make_pruner
from sap_rag.viz import anchor_overlay, plot_sr_curve, render_overlay, save_anchor_overlay
from sap_rag.viz.overlay import _OUTLINE, _heat_colour, _on_white


@pytest.mark.parametrize("family", ["colqwen2", "colidefics3"])
def test_overlay_outlines_the_kept_patches_and_colours_by_score(tiny_encoders, family, tmp_path):
    encoder = tiny_encoders(family)
    image = make_page(5, (300, 420))
    (page,) = encoder.encode_pages([image])
    pruned = SAPPruner(keep_ratio=0.1).prune(page)
    path = save_anchor_overlay(
        tmp_path / "overlay.png", image, page, pruned, document="report.pdf", page_number=3, keep_ratio=0.1
    )
    overlay = Image.open(path).convert("RGB")
    rendered = render_overlay(image, page, pruned, document="report.pdf", page_number=3, keep_ratio=0.1)
    # The picture has the page image's size; the page, scaled down a little and keeping its aspect
    # ratio, sits at the top left, the colour bar to its right, the caption below.
    assert overlay.size == rendered.image.size == image.size
    px0, py0, px1, py1 = rendered.page_box
    page_w, page_h = px1 + 1, py1 + 1
    assert (px0, py0) == (0, 0) and 0.6 * image.size[0] < page_w < image.size[0] and page_h < image.size[1]
    assert page_w / page_h == pytest.approx(image.size[0] / image.size[1], rel=0.02)
    x0, y0, x1, y1 = rendered.colorbar_box
    assert page_w <= x0 < x1 < image.size[0] and 0 < y0 < y1 <= page_h
    rows, cols = page.grid_shape
    cell_w, cell_h = page_w / cols, page_h / rows

    def top_left(i):
        r, c = page.positions[i].tolist()
        return round(c * cell_w), round(r * cell_h)

    kept = set(pruned.indices.tolist())
    assert set(rendered.kept_boxes) == kept
    for i in kept:
        assert rendered.kept_boxes[i][:2] == top_left(i)
        assert overlay.getpixel(top_left(i)) == _OUTLINE
    fine = [i for i in range(page.num_tokens) if float(page.extents[i].prod()) == 1.0 and i not in kept]
    assert fine and not any(overlay.getpixel(top_left(i)) == _OUTLINE for i in fine)
    # the heatmap differs between the highest- and lowest-scoring fine patches
    plain = anchor_overlay(image, page)  # no outlines
    scores = page.sap_scores
    hi = max(fine, key=lambda i: float(scores[i]))
    lo = min(fine, key=lambda i: float(scores[i]))

    def centre(i):
        r, c = (page.positions[i] + 0.5).tolist()
        return plain.getpixel((int(c * cell_w), int(r * cell_h)))

    assert centre(hi) != centre(lo)
    # The colour bar runs from the lowest score's colour (bottom) to the highest's (top), as seen on white.
    assert rendered.score_range == (float(scores.min()), float(scores.max()))
    mid_x = (x0 + x1) // 2
    assert overlay.getpixel((mid_x, y0 + 1)) == _on_white(_heat_colour(1.0 - 1 / (y1 - y0)))
    assert overlay.getpixel((mid_x, y1 - 1)) == _on_white(_heat_colour(1 / (y1 - y0)))
    # A pure-white page cell painted with the top score looks like the top of the bar.
    white = Image.new("RGB", image.size, "white")
    top = max(range(page.num_tokens), key=lambda i: (float(scores[i]), -float(page.extents[i].prod())))
    if page.extents[top].tolist() == [1.0, 1.0]:
        r, c = (page.positions[top] + 0.5).tolist()
        assert anchor_overlay(white, page).getpixel((int(c * cell_w), int(r * cell_h))) == _on_white(_heat_colour(1.0))
    # The caption: in the result, in the PNG's text chunk, and drawn (dark pixels under the page).
    k = max(1, int(0.1 * page.num_tokens))
    assert rendered.caption == f"report.pdf | page 3 | keep ratio 0.1 | {k} of {page.num_tokens} patches (anchors kept)"
    with Image.open(path) as png:
        assert png.text["Caption"] == rendered.caption
    strip = overlay.crop((0, page_h, overlay.size[0], overlay.size[1])).convert("L")
    assert min(strip.getdata()) < 80


def test_overlay_caption_for_a_merging_pruner_and_without_names(tiny_encoder):
    image = make_page(1, (240, 180))
    (page,) = tiny_encoder.encode_pages([image])
    merged = make_pruner("cluster", 0.2).prune(page)
    rendered = render_overlay(image, page, merged)
    assert rendered.kept_boxes == {}
    ratio = merged.num_kept / page.num_tokens
    assert (
        rendered.caption == f"keep ratio {ratio:.3g} | {merged.num_kept} of {page.num_tokens} patches (merged vectors)"
    )
    assert render_overlay(image, page).caption == f"{page.num_tokens} of {page.num_tokens} patches (nothing pruned)"
    # A very small page still gets a readable (wrapped) caption inside the picture.
    tiny = Image.new("RGB", (60, 90), "white")
    (small,) = tiny_encoder.encode_pages([tiny])
    out = render_overlay(
        tiny, small, SAPPruner(0.5).prune(small), document="a_rather_long_file_name.pdf", page_number=12
    )
    assert out.image.size == (60, 90) and out.page_box[2] < 59
    assert "a_rather_long_file_name.pdf" in out.caption


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
