"""SAPPruner on hand-made pages: the budget, the ranking, ties, and its errors."""

from __future__ import annotations

import pytest
import torch

from sap_rag import InvalidInputError, PageEncoding, SAPPruner, WindowError
from sap_rag.pruning import budget


def hand_page(n: int, indegree: dict[int, list[float]], window: tuple[int, ...], dim: int = 4) -> PageEncoding:
    g = torch.Generator().manual_seed(n)
    emb = torch.randn(n, dim, generator=g)
    rows = {layer: torch.tensor(v, dtype=torch.float32) for layer, v in indegree.items()}
    return PageEncoding(
        embeddings=emb / emb.norm(dim=1, keepdim=True),
        positions=torch.stack([torch.arange(n).float() // 4, torch.arange(n).float() % 4], dim=1),
        grid_shape=((n + 3) // 4, 4),
        extents=torch.ones(n, 2),
        indegree=rows,
        indegree_max={layer: 2 * r.flip(0) for layer, r in rows.items()},
        window=window,
        sap_scores=torch.stack([rows[layer] for layer in window]).mean(0),
    )


@pytest.mark.parametrize(("ratio", "n", "k"), [(0.1, 1024, 102), (0.1, 768, 76), (0.1, 9, 1), (0.5, 7, 3), (1.0, 5, 5)])
def test_budget_is_max_one_int_ratio_n(ratio, n, k):
    assert budget(ratio, n) == k


def test_keeps_the_highest_window_mean_in_page_order():
    # layer 1 and 2 form the window; layer 0 would pick differently.
    page = hand_page(
        10,
        {
            0: [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
            1: [0, 1, 5, 0, 0, 9, 0, 0, 2, 0],
            2: [0, 1, 5, 0, 0, 1, 0, 0, 8, 0],
        },
        window=(1, 2),
    )
    # window means: token 2 -> 5, token 5 -> 5, token 8 -> 5, token 1 -> 1; k = int(0.3*10) = 3
    pruned = SAPPruner(keep_ratio=0.3).prune(page)
    assert pruned.indices.tolist() == [2, 5, 8]
    assert torch.equal(pruned.embeddings, page.embeddings[[2, 5, 8]])
    assert torch.equal(pruned.positions, page.positions[[2, 5, 8]])
    assert pruned.num_tokens == 10 and pruned.method == "sap"
    # an explicit window overrides the page's
    assert SAPPruner(keep_ratio=0.2, window=[0]).prune(page).indices.tolist() == [0, 1]


def test_ties_go_to_the_earlier_token():
    page = hand_page(6, {0: [1, 3, 3, 3, 0, 3]}, window=(0,))
    assert SAPPruner(keep_ratio=0.5).prune(page).indices.tolist() == [1, 2, 3]


def test_head_max_uses_the_max_rows():
    page = hand_page(5, {0: [5, 4, 3, 2, 1]}, window=(0,))  # indegree_max is the reverse
    assert SAPPruner(keep_ratio=0.2).prune(page).indices.tolist() == [0]
    assert SAPPruner(keep_ratio=0.2, heads="max").prune(page).indices.tolist() == [4]


def test_keep_ratio_one_keeps_every_token():
    page = hand_page(7, {0: [1, 2, 3, 4, 5, 6, 7]}, window=(0,))
    pruned = SAPPruner(keep_ratio=1.0).prune(page)
    assert pruned.indices.tolist() == list(range(7))
    assert torch.equal(pruned.embeddings, page.embeddings)


@pytest.mark.parametrize("ratio", [0, 0.0, -0.1, 1.01, 2, float("nan"), "0.1", None, True])
def test_keep_ratio_outside_zero_one_is_rejected(ratio):
    with pytest.raises(InvalidInputError, match="keep_ratio"):
        SAPPruner(keep_ratio=ratio)


def test_missing_window_layers_and_wrong_inputs_are_clear_errors():
    page = hand_page(5, {0: [1, 2, 3, 4, 5]}, window=(0,))
    with pytest.raises(WindowError, match=r"layers \[3\] were not computed"):
        SAPPruner(window=[3]).prune(page)
    with pytest.raises(InvalidInputError, match="expects a PageEncoding"):
        SAPPruner().prune(torch.zeros(3, 4))
    with pytest.raises(InvalidInputError):
        SAPPruner(heads="median")
