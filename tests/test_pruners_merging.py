"""Merging baselines: cluster-merge (agglomerative, cosine, average linkage) and hierarchical pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sap_rag.eval.fakes import page_from_embeddings, random_page
from sap_rag.pruning import ClusterMergePruner, HierarchicalPoolingPruner, budget
from sap_rag.pruning.cluster import agglomerative_labels, cut_linkage
from sap_rag.pruning.hierarchical import pool_factor_for_budget

# Three well-separated directions, two tokens each, interleaved in page order.
SEPARATED = [
    [1.0, 0.1, 0.0],  # a
    [0.0, 2.0, 0.1],  # b
    [1.0, -0.1, 0.0],  # a
    [0.1, 0.0, 1.0],  # c
    [0.0, 1.0, -0.1],  # b
    [-0.1, 0.0, 1.0],  # c
]


def _partition(labels) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for i, label in enumerate(np.asarray(labels).tolist()):
        groups.setdefault(label, set()).add(i)
    return {frozenset(g) for g in groups.values()}


def test_cluster_merge_on_separated_clusters_stores_plain_means():
    page = page_from_embeddings(SEPARATED, columns=3)
    result = ClusterMergePruner(0.5).prune(page)  # budget 3
    assert result.indices is None and result.scores is None
    e = torch.tensor(SEPARATED)
    # Clusters ordered by first member: {0, 2}, {1, 4}, {3, 5}. Cosine ignores length: [0, 2, 0.1] joins [0, 1, -0.1].
    expected = torch.stack([e[[0, 2]].mean(0), e[[1, 4]].mean(0), e[[3, 5]].mean(0)])
    assert torch.allclose(result.embeddings, expected)
    pos = page.positions
    assert torch.allclose(
        result.positions, torch.stack([pos[[0, 2]].mean(0), pos[[1, 4]].mean(0), pos[[3, 5]].mean(0)])
    )
    normalized = ClusterMergePruner(0.5, normalize=True).prune(page).embeddings
    assert torch.allclose(normalized, torch.nn.functional.normalize(expected, dim=-1))
    assert torch.allclose(normalized.norm(dim=-1), torch.ones(3))


def test_cluster_merge_into_one_or_two_clusters():
    page = page_from_embeddings(SEPARATED)
    e = torch.tensor(SEPARATED)
    assert torch.allclose(ClusterMergePruner(1 / 6).prune(page).embeddings, e.mean(0, keepdim=True))
    assert ClusterMergePruner(2 / 6).prune(page).num_kept == 2


def test_cut_linkage_gives_exactly_k_clusters_even_with_tied_heights():
    # Four points merged in pairs at the same height: fcluster(maxclust=3) would return 2 clusters.
    z = np.array([[0, 1, 0.5, 2], [2, 3, 0.5, 2], [4, 5, 1.0, 4]])
    for k in (1, 2, 3, 4):
        labels = cut_linkage(z, 4, k)
        assert len(set(labels.tolist())) == k
    assert cut_linkage(z, 4, 3).tolist() == [0, 0, 1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cluster_labels_match_sklearn_agglomerative(seed):
    from sklearn.cluster import AgglomerativeClustering

    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(seed))
    for k in (1, 2, 5, 12, 29, 30):
        ours = agglomerative_labels(x, k)
        theirs = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(x.numpy())
        assert _partition(ours) == _partition(theirs), k


def test_pool_factor_is_the_smallest_that_honours_the_budget():
    for n in range(2, 120):
        for k in range(1, n):
            factor = pool_factor_for_budget(n, k)
            assert max(n // factor, 1) <= k
            assert factor == 1 or max(n // (factor - 1), 1) > k
    # For keep_ratio = 1/m it is m, the nominal pool factor.
    assert [pool_factor_for_budget(768, budget(1 / m, 768)) for m in (2, 3, 4, 10, 20)] == [2, 3, 4, 10, 20]


def test_hierarchical_equals_colpali_engine_for_integer_pool_factors():
    from sap_rag._compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from colpali_engine.compression.token_pooling import HierarchicalTokenPooler

    page = random_page(60, seed=3)
    result = HierarchicalPoolingPruner(1 / 3).prune(page)
    output = HierarchicalTokenPooler().pool_embeddings([page.embeddings], pool_factor=3, return_dict=True)
    assert torch.equal(result.embeddings, output.pooled_embeddings[0])
    members = [idx for _, (idx,) in sorted(output.cluster_id_to_indices[0].items()) if idx.numel()]
    assert torch.allclose(result.positions, torch.stack([page.positions[m].mean(0) for m in members]))
    assert result.num_kept <= 20 and result.indices is None


def test_hierarchical_honours_budgets_where_the_nominal_factor_would_not():
    page = random_page(100, seed=8)
    # keep 0.3: nominal factor int(1 / 0.3) = 3 allows 33 clusters > budget 30.
    assert HierarchicalPoolingPruner(0.3).prune(page).num_kept <= 30
    assert torch.allclose(HierarchicalPoolingPruner(0.3).prune(page).embeddings.norm(dim=-1), torch.ones(1))
