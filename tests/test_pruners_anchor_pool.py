"""Anchor pooling against a slow reference: SAP's anchors, every other token merged into its nearest anchor."""

from __future__ import annotations

import math

import pytest
import torch

from sap_rag import InvalidInputError
from sap_rag.eval.fakes import random_page
from sap_rag.pruning import AnchorPoolPruner, SAPPruner, budget, make_pruner


def _slow_anchor_pool(page, keep_ratio: float, assign: str) -> list[tuple[list[float], list[float]]]:
    """Loops: top-k SAP anchors, each token to its nearest anchor, one normalised mean per anchor."""
    n = page.num_tokens
    scores = page.window_scores()
    k = budget(keep_ratio, n)
    anchors = sorted(sorted(range(n), key=lambda j: (-float(scores[j]), j))[:k])
    members = {a: [] for a in anchors}
    for j in range(n):
        if j in members:
            members[j].append(j)
            continue
        best, best_value = None, None
        for a in anchors:  # ascending: a strict improvement is needed, so ties stay with the earlier anchor
            if assign == "cosine":
                value = sum(float(x) * float(y) for x, y in zip(page.embeddings[j], page.embeddings[a]))
            else:
                value = -math.dist(page.positions[j].tolist(), page.positions[a].tolist())
            if best_value is None or value > best_value:
                best, best_value = a, value
        members[best].append(j)
    out = []
    for a in sorted(anchors, key=lambda a: min(members[a])):
        mean = [sum(float(page.embeddings[j][d]) for j in members[a]) / len(members[a]) for d in range(page.dim)]
        norm = math.sqrt(sum(v * v for v in mean))
        position = [sum(float(page.positions[j][c]) for j in members[a]) / len(members[a]) for c in range(2)]
        out.append(([v / norm for v in mean], position))
    return out


@pytest.mark.parametrize("assign", ["cosine", "grid"])
def test_anchor_pool_matches_the_slow_reference(assign):
    for seed, (n, ratio) in enumerate([(37, 0.1), (60, 0.2), (23, 0.05), (50, 0.5)]):
        page = random_page(n, seed=seed, window=(1, 2))
        result = AnchorPoolPruner(ratio, assign=assign).prune(page)
        reference = _slow_anchor_pool(page, ratio, assign)
        assert result.num_kept == budget(ratio, n) == len(reference)
        assert result.indices is None
        for got, (vector, _) in zip(result.embeddings, reference):
            assert torch.allclose(got, torch.tensor(vector), atol=1e-5)
        assert torch.allclose(result.positions, torch.tensor([p for _, p in reference]), atol=1e-5)


def test_anchors_are_sap_and_pooling_loses_less_of_the_page():
    """Each pooled vector is the merge of one SAP anchor's cluster; MaxSim of a query built from dropped
    tokens is higher against the pooled page than against SAP's kept rows."""
    page = random_page(80, seed=7, dim=16, window=(1,))
    sap = SAPPruner(0.1).prune(page)
    pooled = AnchorPoolPruner(0.1).prune(page)
    assert pooled.num_kept == sap.num_kept
    dropped = [j for j in range(80) if j not in set(sap.indices.tolist())]
    query = page.embeddings[dropped]
    assert float((query @ pooled.embeddings.T).amax(1).sum()) > float((query @ sap.embeddings.T).amax(1).sum())
    # keep ratio 1: every token its own anchor, the page unchanged
    full = AnchorPoolPruner(1.0).prune(page)
    assert torch.equal(full.embeddings, page.embeddings)


def test_anchor_pool_options_and_errors():
    pruner = make_pruner("sap_anchor_pool", 0.2, assign="grid", debias="attenders")
    assert pruner.config()["assign"] == "grid" and pruner.config()["debias"] == "attenders"
    assert pruner.config()["name"] == "sap_anchor_pool"
    with pytest.raises(InvalidInputError, match="assign"):
        AnchorPoolPruner(0.1, assign="nearest")
