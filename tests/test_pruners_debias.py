"""SAP without the causal position bias: in-degree per attender, against slow references."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_FAMILIES

from sap_rag import InvalidInputError
from sap_rag.encoders.attention import visual_attenders
from sap_rag.pruning import Debias, SAPDebiasedPruner, SAPPruner, budget, make_pruner
from sap_rag.types import PageEncoding


def _page(n: int, seed: int, layers=(0, 1, 2), attenders: torch.Tensor | dict | None = None) -> PageEncoding:
    g = torch.Generator().manual_seed(seed)
    side = int(n**0.5) + 1
    positions = torch.stack([torch.arange(n) // side, torch.arange(n) % side], dim=1).float()
    return PageEncoding(
        embeddings=torch.nn.functional.normalize(torch.randn(n, 8, generator=g), dim=-1),
        positions=positions,
        grid_shape=(side, side),
        extents=torch.ones(n, 2),
        indegree={layer: torch.rand(n, generator=g) * 5 for layer in layers},
        indegree_max={layer: torch.rand(n, generator=g) * 5 for layer in layers},
        window=(1, 2),
        attenders=attenders
        if isinstance(attenders, dict)
        else {layer: attenders for layer in layers}
        if attenders is not None
        else {},
    )


def _slow_attender_counts(attention: torch.Tensor, visual: list[int]) -> list[float]:
    """Per visual column j: how many visual rows i give it a non-zero weight in any head (a masked entry is 0)."""
    heads = attention.shape[0]
    return [float(sum(1 for i in visual if any(float(attention[h, i, j]) > 0.0 for h in range(heads)))) for j in visual]


def _captured_attenders(encoder, images):
    """What the encoder's capture records: per page, layer -> (N,) attender counts from the masks."""
    batch = encoder.preprocess(images)
    batch = encoder._to_device({k: v for k, v in batch.items() if k != "_image_sizes"})
    visual = [row.nonzero().flatten() for row in batch["input_ids"] == encoder.image_token_id]
    last = [int(row.nonzero().max()) for row in batch["attention_mask"]]
    with encoder._capture.capture(encoder.scorable_layers, visual, last) as request, torch.no_grad():
        encoder.model(**batch)
    return batch, [
        {layer: request.attenders(layer)[b] for layer in encoder.scorable_layers} for b in range(len(images))
    ]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_captured_attender_counts_match_the_real_attention_and_the_family_flag(family, tiny_encoders, pages):
    """At every scorable layer, the counts the capture reads off the mask equal the number of visual
    tokens whose post-softmax attention reaches each visual token (masked entries are exactly 0),
    page by page in a padded batch; the family flag gives the same counts wherever the layer's
    attention spans the image."""
    encoder = tiny_encoders(family)
    # a padded batch of two pages where pages differ in length, one page elsewhere (test time)
    images = [pages[0], pages[1]] if family in ("colqwen2", "colidefics3") else [pages[0]]
    batch, captured = _captured_attenders(encoder, images)
    attentions = encoder.family_spec.reference_attentions(encoder.model, dict(encoder.preprocess(images)))
    text_config = encoder.family_spec.text_model(encoder.model).config
    layer_types = getattr(text_config, "layer_types", None) or ["full_attention"] * (max(attentions) + 1)
    flagged = 0
    for b in range(len(images)):
        ids = batch["input_ids"][b].tolist()
        visual = [i for i, t in enumerate(ids) if t == encoder.image_token_id]
        structural = visual_attenders(len(visual), encoder.family_spec.causal_visual).tolist()
        for layer, attention in attentions.items():
            slow = _slow_attender_counts(attention[b].double(), visual)
            assert captured[b][layer].tolist() == slow, (family, b, layer)
            if layer_types[layer] != "sliding_attention":
                assert slow == structural, (family, b, layer)
                flagged += 1
            elif slow != structural:
                # the tiny models' windows (16-32 tokens) are shorter than their images
                assert family in ("colgemma3", "colmodernvbert")
    assert flagged >= 2


def test_debiased_score_is_in_degree_per_attender_against_a_loop():
    for seed in range(5):
        n = 23 + seed * 7
        g = torch.Generator().manual_seed(100 + seed)
        # per-layer counts that differ (as under a sliding window): each layer divides by its own
        counts = {layer: torch.randint(1, n + 1, (n,), generator=g).float() for layer in (0, 1, 2)}
        page = _page(n, seed, attenders=counts)
        scores = SAPDebiasedPruner(0.2).scores(page)
        for j in range(n):
            expected = sum(float(page.indegree[layer][j]) / float(counts[layer][j]) for layer in (1, 2)) / 2
            assert float(scores[j]) == pytest.approx(expected, rel=1e-6)
        heads_max = SAPDebiasedPruner(0.2, heads="max").scores(page)
        for j in range(n):
            expected = sum(float(page.indegree_max[layer][j]) / float(counts[layer][j]) for layer in (1, 2)) / 2
            assert float(heads_max[j]) == pytest.approx(expected, rel=1e-6)
        window0 = SAPDebiasedPruner(0.2, window=[0]).scores(page)
        assert torch.allclose(window0, page.indegree[0] / counts[0])
        # the kept set is the top k of that score, ties to the earlier token
        k = budget(0.2, n)
        order = sorted(range(n), key=lambda j: (-float(scores[j]), j))
        assert SAPDebiasedPruner(0.2).prune(page).indices.tolist() == sorted(order[:k])


def test_uncorrected_sap_keeps_the_same_sets_as_before():
    """debias='none' (the default) ranks by the raw window score, whatever attender counts the page carries."""
    for seed in range(5):
        n = 40
        bare = _page(n, seed)
        counted = _page(n, seed, attenders=visual_attenders(n, causal=True))
        for ratio in (0.05, 0.1, 0.3):
            raw = bare.window_scores()
            k = budget(ratio, n)
            reference = sorted(sorted(range(n), key=lambda j: (-float(raw[j]), j))[:k])
            assert SAPPruner(ratio).prune(bare).indices.tolist() == reference
            assert SAPPruner(ratio).prune(counted).indices.tolist() == reference
            assert SAPPruner(ratio, debias="none").prune(counted).indices.tolist() == reference
    assert SAPPruner(0.1).config() == {"name": "sap", "keep_ratio": 0.1, "window": None, "heads": "mean"}


def test_bidirectional_counts_change_no_ranking_and_causal_counts_move_anchors_later():
    n = 60
    page = _page(n, 3, attenders=visual_attenders(n, causal=False))
    assert SAPDebiasedPruner(0.1).prune(page).indices.tolist() == SAPPruner(0.1).prune(page).indices.tolist()
    # a page whose raw in-degree is exactly what uniform causal attention gives (sum over its attenders
    # of a constant): raw SAP keeps the first tokens, the debiased score sees no preference at all
    flat = _page(n, 4, attenders=visual_attenders(n, causal=True))
    for layer in flat.indegree:
        flat.indegree[layer] = visual_attenders(n, causal=True) * 0.01
    assert SAPPruner(0.1).prune(flat).indices.tolist() == list(range(6))
    debiased = SAPDebiasedPruner(0.1).scores(flat)
    assert torch.allclose(debiased, torch.full((n,), 0.01))


def test_pages_without_counts_need_the_causal_option():
    n = 30
    page = _page(n, 1)
    with pytest.raises(InvalidInputError, match="causal=True"):
        SAPDebiasedPruner(0.1).prune(page)
    with_counts = _page(n, 1, attenders=visual_attenders(n, causal=True))
    assert (
        SAPDebiasedPruner(0.1, causal=True).prune(page).indices.tolist()
        == SAPDebiasedPruner(0.1).prune(with_counts).indices.tolist()
    )
    broken = _page(n, 1, attenders=torch.zeros(n))
    partial = _page(n, 1, attenders={1: visual_attenders(n, causal=True)})  # layer 2 of the window missing
    with pytest.raises(InvalidInputError, match="layer 2"):
        SAPDebiasedPruner(0.1).prune(partial)
    with pytest.raises(InvalidInputError, match="attender"):
        SAPDebiasedPruner(0.1).prune(broken)
    with pytest.raises(InvalidInputError, match="debias"):
        SAPPruner(0.1, debias="position")
    with pytest.raises(InvalidInputError, match="causal"):
        SAPPruner(0.1, debias="attenders", causal="yes")
    pruner = make_pruner("sap_debiased", 0.2, causal=True)
    assert pruner.debias is Debias.ATTENDERS and pruner.config()["debias"] == "attenders"
    assert make_pruner("sap", 0.2, debias="attenders").scores(with_counts).tolist() == pruner.scores(page).tolist()


def test_encoded_pages_carry_their_counts_so_debiased_sap_needs_no_option(tiny_encoder, pages):
    """``encode_pages`` stores the capture's counts for every computed layer, so an index with the
    debiased pruner works on freshly encoded pages without ``causal=``."""
    encoded = tiny_encoder.encode_pages([pages[0]])[0]
    _, captured = _captured_attenders(tiny_encoder, [pages[0]])
    assert set(encoded.attenders) == set(encoded.indegree) and encoded.attenders
    for layer, counts in encoded.attenders.items():
        assert torch.equal(counts, captured[0][layer])
    kept = make_pruner("sap_debiased", keep_ratio=0.1).prune(encoded)
    assert kept.embeddings.shape[0] == budget(0.1, encoded.embeddings.shape[0])
