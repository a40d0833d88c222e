"""Every registered pruner: the shared contract (budget, shapes, keep_ratio=1, determinism) and the registry."""

from __future__ import annotations

import json

import pytest
import torch

from sap_rag.errors import InvalidInputError
from sap_rag.eval.fakes import random_page
from sap_rag.pruning import PRUNERS, Pruner, budget, make_pruner, pruner_names

NAMES = pruner_names()
SIZES = (1, 2, 3, 7, 16, 33, 100)
RATIOS = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.01)


def test_registry_lists_every_method_once():
    assert NAMES == [
        "sap",
        "sap_max",
        "sap_debiased",
        "sap_anchor_pool",
        "final_layer",
        "random",
        "cluster",
        "hierarchical",
        "eos_adaptive",
        "spare",
        "spare_lasttoken",
    ]
    for name, cls in PRUNERS.items():
        assert issubclass(cls, Pruner) and cls.name == name


def test_make_pruner_errors_name_the_choices():
    with pytest.raises(InvalidInputError, match="choose one of: sap, sap_max"):
        make_pruner("nope", 0.1)
    with pytest.raises(InvalidInputError, match="its options are: seed"):
        make_pruner("random", 0.1, sed=1)
    with pytest.raises(InvalidInputError, match="keep_ratio"):
        make_pruner("spare", 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_budget_and_shapes_on_pages_of_many_sizes(name):
    for n in SIZES:
        page = random_page(n, seed=n)
        for ratio in RATIOS:
            result = make_pruner(name, ratio).prune(page)
            k = budget(ratio, n)
            assert 1 <= result.num_kept <= k, (name, n, ratio)
            assert result.embeddings.shape == (result.num_kept, page.dim)
            assert result.positions.shape == (result.num_kept, 2)
            assert result.num_tokens == n and result.method == name
            assert torch.isfinite(result.embeddings).all()
            if result.indices is not None:
                assert torch.equal(result.indices, torch.unique(result.indices))  # ascending, distinct
                assert torch.equal(result.embeddings, page.embeddings[result.indices])
                assert torch.equal(result.positions, page.positions[result.indices])


@pytest.mark.parametrize("name", NAMES)
def test_keep_ratio_one_returns_every_token(name):
    page = random_page(37, seed=5)
    result = make_pruner(name, 1.0).prune(page)
    assert result.num_kept == page.num_tokens
    assert torch.equal(result.embeddings, page.embeddings)
    assert torch.equal(result.positions, page.positions)


@pytest.mark.parametrize("name", NAMES)
def test_same_page_same_result_and_json_config(name):
    page = random_page(40, seed=11)
    pruner = make_pruner(name, 0.2)
    first, second = pruner.prune(page), pruner.prune(page)
    assert torch.equal(first.embeddings, second.embeddings)
    config = pruner.config()
    assert config["name"] == name and config["keep_ratio"] == 0.2
    json.dumps(config)
    assert repr(pruner).startswith(type(pruner).__name__)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_non_pages(name):
    with pytest.raises(InvalidInputError, match="PageEncoding"):
        make_pruner(name, 0.5).prune(torch.zeros(3, 4))
