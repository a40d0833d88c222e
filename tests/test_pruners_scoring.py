"""Score-based baselines on hand-made pages: sap_max, final_layer, random."""

from __future__ import annotations

import pytest
import torch

from sap_rag.errors import InvalidInputError, WindowError
from sap_rag.eval.fakes import page_from_embeddings, random_page
from sap_rag.pruning import FinalLayerPruner, RandomPruner, SAPMaxPruner, SAPPruner

EYE5 = torch.eye(5).tolist()


def test_sap_max_ranks_by_head_max_not_head_mean():
    page = page_from_embeddings(
        EYE5,
        indegree={1: [5, 4, 3, 2, 1], 2: [5, 4, 3, 2, 1]},
        indegree_max={1: [1, 2, 9, 2, 8], 2: [1, 2, 7, 3, 8]},
        window=(1, 2),
    )
    # Head max, window mean: [1, 2, 8, 2.5, 8] -> tokens 2 and 4 (tie broken towards the earlier one first).
    kept = SAPMaxPruner(0.4).prune(page)
    assert kept.indices.tolist() == [2, 4]
    assert kept.scores.tolist() == [8.0, 8.0]
    assert SAPPruner(0.4).prune(page).indices.tolist() == [0, 1]
    assert SAPMaxPruner(0.4).config()["heads"] == "max"


def test_final_layer_uses_only_the_last_computed_layer():
    page = page_from_embeddings(
        EYE5,
        indegree={0: [9, 9, 0, 0, 0], 1: [0, 0, 9, 9, 0], 3: [0, 1, 0, 2, 3]},
        window=(0, 1),
    )
    assert FinalLayerPruner(0.4).prune(page).indices.tolist() == [3, 4]
    assert FinalLayerPruner(0.4, layer=1).prune(page).indices.tolist() == [2, 3]
    with pytest.raises(WindowError, match=r"layers \[2\] were not computed"):
        FinalLayerPruner(0.4, layer=2).prune(page)


def test_final_layer_needs_in_degrees_and_warns_about_window_only_pages(caplog):
    with pytest.raises(WindowError, match="indegree_layers='all'"):
        FinalLayerPruner(0.4).prune(page_from_embeddings(EYE5))
    window_only = page_from_embeddings(EYE5, indegree={2: [1, 2, 3, 4, 5]}, window=(2,))
    with caplog.at_level("WARNING"):
        assert FinalLayerPruner(0.4).prune(window_only).indices.tolist() == [3, 4]
    assert "window's last layer" in caplog.text
    with pytest.raises(InvalidInputError):
        FinalLayerPruner(0.4, layer=-1)


def test_random_is_a_function_of_seed_and_page():
    page = random_page(200, seed=1)
    a = RandomPruner(0.1, seed=7).prune(page).indices
    # Pruning another page in between does not change the draw for this one.
    pruner = RandomPruner(0.1, seed=7)
    pruner.prune(random_page(200, seed=2))
    assert torch.equal(pruner.prune(page).indices, a)
    assert not torch.equal(RandomPruner(0.1, seed=8).prune(page).indices, a)
    assert not torch.equal(RandomPruner(0.1, seed=7).prune(random_page(200, seed=3)).indices, a)
    assert RandomPruner(0.1, seed=7).prune(page).scores is None


def test_random_is_uniform_over_tokens():
    page = random_page(20, seed=4)
    counts = torch.zeros(20)
    for seed in range(400):
        counts[RandomPruner(0.25, seed=seed).prune(page).indices] += 1
    # Each token is kept with probability 5/20: expected 100 of 400, sd ~8.7.
    assert counts.sum() == 400 * 5
    assert counts.min() > 65 and counts.max() < 135


def test_random_rejects_bad_seeds():
    for seed in (-1, 1.5, True):
        with pytest.raises(InvalidInputError, match="seed"):
            RandomPruner(0.1, seed=seed)
