"""MaxSim and Score Retention against slow, obvious loops on random tensors."""

from __future__ import annotations

import pytest
import torch

from sap_rag import DimensionMismatchError, InvalidInputError, maxsim, maxsim_matrix, score_retention


def slow_maxsim(query: torch.Tensor, doc: torch.Tensor) -> float:
    total = 0.0
    for q in query.double():
        total += max(float(q @ d) for d in doc.double())
    return total


def random_unit(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    x = torch.randn(n, dim, generator=generator)
    return x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("seed", range(5))
def test_maxsim_matches_loop(seed):
    g = torch.Generator().manual_seed(seed)
    q = random_unit(int(torch.randint(1, 20, (1,), generator=g)), 16, g)
    d = random_unit(int(torch.randint(1, 50, (1,), generator=g)), 16, g)
    assert maxsim(q, d) == pytest.approx(slow_maxsim(q, d), abs=1e-5)


def test_maxsim_matrix_matches_loop_with_ragged_pages():
    g = torch.Generator().manual_seed(7)
    queries = [random_unit(n, 8, g) for n in (1, 5, 12)]
    # Ragged pages across two padded batches; negative vectors make padding mistakes visible.
    docs = [-random_unit(n, 8, g) if n % 2 else random_unit(n, 8, g) for n in (3, 40, 1, 17, 9)]
    got = maxsim_matrix(queries, docs, batch_size=2)
    want = torch.tensor([[slow_maxsim(q, d) for d in docs] for q in queries], dtype=torch.float64)
    assert torch.allclose(got.double(), want, atol=1e-5)


def test_score_retention_is_one_for_the_full_page_and_bounded():
    g = torch.Generator().manual_seed(3)
    q, d = random_unit(6, 16, g), random_unit(30, 16, g)
    assert score_retention(q, d, d) == pytest.approx(1.0)
    kept = d[:5]
    assert score_retention(q, d, kept) == pytest.approx(slow_maxsim(q, kept) / slow_maxsim(q, d), rel=1e-5)
    assert score_retention(q, d, kept) <= 1.0 + 1e-6


def test_dimension_mismatch_and_empty_inputs_are_clear_errors():
    with pytest.raises(DimensionMismatchError, match="dim 4 but page vectors have dim 8"):
        maxsim(torch.ones(2, 4), torch.ones(3, 8))
    with pytest.raises(DimensionMismatchError):
        maxsim_matrix([torch.ones(2, 4)], [torch.ones(3, 8)])
    with pytest.raises(InvalidInputError):
        maxsim(torch.ones(0, 4), torch.ones(3, 4))
    with pytest.raises(InvalidInputError):
        maxsim_matrix([], [torch.ones(3, 4)])
