"""Pictures: the anchor overlay marks exactly the kept patches, with a colour bar and a caption; the SR curve plot."""

from __future__ import annotations

import itertools

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


def test_overlay_colours_spread_over_a_heavy_tailed_page_and_its_legend_says_what_the_score_is(tiny_encoder, tmp_path):
    """In-degree is heavy-tailed (one attention-sink patch holds most of it): the colours still tell
    the other patches apart, and the legend names the score, its layers and the scale."""
    import dataclasses

    from sap_rag.viz import colour_levels

    image = make_page(3, (300, 420))
    (page,) = tiny_encoder.encode_pages([image])
    generator = torch.Generator().manual_seed(0)
    heavy = torch.rand(page.num_tokens, generator=generator) * 0.05
    heavy[0] = 30.0  # a sink, as the toy model's first patch (29.2 against a median of 0.07)
    page = dataclasses.replace(page, sap_scores=heavy, window=(1, 2, 3))
    white = Image.new("RGB", image.size, "white")
    rendered = render_overlay(white, page)
    rows, cols = page.grid_shape
    px1, py1 = rendered.page_box[2:]
    cell_w, cell_h = (px1 + 1) / cols, (py1 + 1) / rows
    fine = [i for i in range(page.num_tokens) if page.extents[i].tolist() == [1.0, 1.0]]

    def luminance(i):
        r, c = (page.positions[i] + 0.5).tolist()
        red, green, blue = rendered.image.getpixel((int(c * cell_w), int(r * cell_h)))
        return 0.299 * red + 0.587 * green + 0.114 * blue

    def ramp(level):
        red, green, blue = _on_white(_heat_colour(level))
        return 0.299 * red + 0.587 * green + 0.114 * blue

    seen = torch.tensor([luminance(i) for i in fine])
    low, high = torch.quantile(seen, 0.1), torch.quantile(seen, 0.9)
    assert high - low > 0.6 * (ramp(1.0) - ramp(0.0))  # the middle 80% of patches span most of the ramp
    # Colour follows rank: a higher score never gets a darker (lower) colour than a lower score.
    order = sorted(fine, key=lambda i: float(heavy[i]))
    assert all(luminance(a) <= luminance(b) + 1 for a, b in itertools.pairwise(order))
    assert rendered.score_range == (float(heavy.min()), 30.0)
    assert rendered.levels is not None and torch.equal(rendered.levels, colour_levels(heavy))
    assert rendered.legend == (
        "colour: SAP score (mean attention in-degree over layers 1-3) as a percentile on this page"
    )
    path = save_anchor_overlay(tmp_path / "o.png", white, page)
    with Image.open(path) as png:
        assert png.text["Legend"] == rendered.legend
    # Scores of another kind are named by their label alone.
    assert render_overlay(white, page, scores=heavy, score_label="my score").legend == (
        "colour: my score as a percentile on this page"
    )


def test_colour_levels_are_percentiles_with_ties_sharing_a_level():
    from sap_rag.viz import colour_levels

    values = torch.tensor([5.0, 1.0, 3.0, 3.0, 1000.0, -2.0, 3.0])
    levels = colour_levels(values)
    n = len(values)
    for i, v in enumerate(values.tolist()):
        below = sum(1 for w in values.tolist() if w < v)
        equal = sum(1 for w in values.tolist() if w == v)
        assert levels[i].item() == pytest.approx((below + (equal - 1) / 2) / (n - 1), abs=1e-12)
    assert colour_levels(torch.tensor([2.0])).tolist() == [1.0]
    assert colour_levels(torch.tensor([2.0, 2.0])).tolist() == [0.5, 0.5]


def _rows(datasets=("esg_reports_v2", "economics_reports_v2", "mean")):
    from sap_rag.eval.harness import ResultRow

    rows = []
    for d, dataset in enumerate(datasets):
        unpruned = 0.5 + 0.1 * d
        rows.append(ResultRow(dataset, "none", 1.0, 10, 10, unpruned, 0.6, 0.4, 0.7, 0.8, 1.0, 100, 25600, 1.0, 0.0))
        for p, pruner in enumerate(("sap", "random", "cluster", "spare", "eos_adaptive")):
            for keep in (0.2, 0.1, 0.05):
                kept = unpruned * (0.7 + 0.05 * p + keep)
                rows.append(
                    ResultRow(
                        dataset,
                        pruner,
                        keep,
                        10,
                        10,
                        kept,
                        0.6,
                        0.4,
                        0.7,
                        0.8,
                        0.9,
                        100 * keep,
                        2560,
                        0.1,
                        0.1,
                        ndcg_at_5_retention=kept / unpruned,
                    )
                )
    return rows


def test_the_retention_plot_names_model_and_datasets_draws_the_unpruned_level_and_keeps_its_legend_off_the_lines(
    tmp_path,
):
    from sap_rag.eval.reports import model_label, plot_retention, retention_figure

    rows = _rows()
    model = model_label({"spec": "/somewhere/models/sap-rag-toy-colqwen2", "family": "colqwen2", "window": [1]})
    assert model == "sap-rag-toy-colqwen2 (colqwen2, SAP window [1])"
    figure = retention_figure(rows, model=model)
    figure.canvas.draw()
    title = figure.get_suptitle()
    assert model in title and "esg_reports_v2" in title and "economics_reports_v2" in title
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert len(axes) == 3
    for ax, (dataset, unpruned) in zip(axes, [("esg_reports_v2", 0.5), ("economics_reports_v2", 0.6), ("mean", 0.7)]):
        assert ax.get_title() == f"{dataset}: unpruned NDCG@5 {unpruned:.3f}"
        # the unpruned level: a horizontal line at 100% across the panel
        assert any(list(line.get_ydata()) == [100.0, 100.0] for line in ax.get_lines())
    (legend,) = figure.legends
    assert "unpruned (100%)" in [text.get_text() for text in legend.get_texts()]
    assert {"sap", "random", "cluster", "spare", "eos_adaptive"} <= {text.get_text() for text in legend.get_texts()}
    # Off the lines: the legend's box overlaps no panel, and the title's none either.
    renderer = figure.canvas.get_renderer()
    boxes = [legend.get_window_extent(renderer), figure._suptitle.get_window_extent(renderer)]
    for ax in axes:
        panel = ax.get_window_extent(renderer)
        assert not any(box.overlaps(panel) for box in boxes)
    path = plot_retention(rows, tmp_path / "retention.png", model=model)
    with Image.open(path) as png:
        assert png.format == "PNG"
