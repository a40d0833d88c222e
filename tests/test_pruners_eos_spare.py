"""EOS-adaptive (DocPruner-style threshold, calibrated k) and SPARE-style greedy residual selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sap_rag.errors import CalibrationError, InvalidInputError
from sap_rag.eval.fakes import page_from_embeddings, random_page
from sap_rag.pruning import EOSAdaptivePruner, SpareResidualPruner
from sap_rag.pruning.eos_adaptive import calibrate_eos_k, calibrate_eos_k_pooled, gaussian_k, standardized_eos
from sap_rag.pruning.spare import greedy_residual_order

# --- EOS-adaptive ----------------------------------------------------------------------------------


def _eos_page(scores):
    return page_from_embeddings(torch.eye(len(scores)).tolist(), eos_attention=scores)


# s = [1, 1, 1, 1, 6]: mu = 2, sigma = sqrt((4 * 1 + 16) / 5) = 2, z = [-0.5, -0.5, -0.5, -0.5, 2].
PAGE5 = _eos_page([1, 1, 1, 1, 6])


def test_standardised_scores_by_hand():
    assert standardized_eos(PAGE5).tolist() == [-0.5, -0.5, -0.5, -0.5, 2.0]
    assert standardized_eos(_eos_page([3, 3, 3])).tolist() == [0.0, 0.0, 0.0]


def test_threshold_rule_by_hand():
    assert EOSAdaptivePruner(1.0, k=1.0).prune(PAGE5).indices.tolist() == [4]  # only z = 2 > 1
    assert EOSAdaptivePruner(1.0, k=-0.6).prune(PAGE5).num_kept == 5  # everything passes, budget 5
    # Everything passes but the budget is int(0.4 * 5) = 2: the two best, ties to the earlier token.
    assert EOSAdaptivePruner(0.4, k=-0.6).prune(PAGE5).indices.tolist() == [0, 4]
    # Nothing passes: the single best token is kept.
    assert EOSAdaptivePruner(1.0, k=3.0).prune(PAGE5).indices.tolist() == [4]
    # Exactly on the threshold is not above it: z = 2 is not > 2.
    assert EOSAdaptivePruner(1.0, k=2.0).prune(PAGE5).num_kept == 1


def test_uncalibrated_k_is_the_gaussian_quantile():
    assert gaussian_k(1.0) == -math.inf
    assert gaussian_k(0.5) == pytest.approx(0.0, abs=1e-12)
    assert gaussian_k(0.1) == pytest.approx(1.2815516, rel=1e-6)
    assert EOSAdaptivePruner(0.1).threshold_k == pytest.approx(1.2815516, rel=1e-6)
    assert EOSAdaptivePruner(1.0).prune(PAGE5).num_kept == 5


def test_calibration_by_hand():
    # P2: s = [0, 2, 4, 6], mu = 3, sigma = sqrt(5), z = [-3, -1, 1, 3] / sqrt(5).
    p2 = _eos_page([0, 2, 4, 6])
    # With k in [-1/sqrt5, 1/sqrt5): PAGE5 keeps 1 of 5, p2 keeps 2 of 4 -> average 0.35; midpoint k = 0.
    assert calibrate_eos_k([PAGE5, p2], 0.35) == pytest.approx(0.0, abs=1e-12)
    pruner = EOSAdaptivePruner(0.5)
    assert pruner.calibrate([PAGE5, p2], target_ratio=0.35) == pytest.approx(0.0, abs=1e-12)
    assert [pruner.prune(p).num_kept for p in (PAGE5, p2)] == [1, 2]
    assert pruner.config()["calibrated_on"] == 2
    # A target of 1 keeps everything.
    assert calibrate_eos_k([PAGE5, p2], 1.0) == -math.inf


def test_calibration_hits_the_target_on_average():
    pages = [random_page(n, seed=n) for n in range(40, 90)]
    for target in (0.05, 0.1, 0.2):
        k = calibrate_eos_k(pages, target)
        kept = np.mean([max(1, int((standardized_eos(p) > k).sum())) / p.num_tokens for p in pages])
        assert kept == pytest.approx(target, abs=0.01)
        # Capped at the budget, the realised average is at most the target.
        pruner = EOSAdaptivePruner(target, k=k)
        realised = np.mean([pruner.prune(p).num_kept / p.num_tokens for p in pages])
        assert realised <= kept + 1e-12


def test_eos_errors():
    with pytest.raises(InvalidInputError, match="eos_attention=True"):
        EOSAdaptivePruner(0.1).prune(page_from_embeddings(torch.eye(3).tolist()))
    with pytest.raises(CalibrationError):
        EOSAdaptivePruner(0.1).calibrate([])
    with pytest.raises(InvalidInputError):
        EOSAdaptivePruner(0.1, k=float("nan"))


# --- SPARE ------------------------------------------------------------------------------------------


def test_greedy_order_by_hand():
    e = torch.tensor([[3.0, 0, 0], [2, 2, 0], [0, 0, 1], [0, 1, 0]])
    # |e|^2 = 9, 8, 1, 1 -> take 0; residuals [0,2,0] (4), [0,0,1] (1), [0,1,0] (1) -> take 1;
    # then [0,1,0] is spanned (0) and [0,0,1] keeps 1 -> take 2; the last one is spanned -> restart, take 3.
    order, energy = greedy_residual_order(e, 4)
    assert order.tolist() == [0, 1, 2, 3]
    assert energy.tolist() == pytest.approx([9.0, 4.0, 1.0, 1.0])
    result = SpareResidualPruner(0.5).prune(page_from_embeddings(e))
    assert result.indices.tolist() == [0, 1] and result.scores.tolist() == pytest.approx([9.0, 4.0])


def test_greedy_prefers_magnitude_in_a_shared_direction():
    e = torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.0, 2.0]])
    assert greedy_residual_order(e, 3)[0].tolist() == [2, 0, 1]


def _reference_order(e: np.ndarray, k: int, rel_tol: float = 1e-9) -> list[int]:
    """Slow and obvious: classical Gram-Schmidt against the chosen basis, recomputed from scratch."""
    n = len(e)
    tol = rel_tol * max(float(v @ v) for v in e)
    chosen: list[int] = []
    basis: list[np.ndarray] = []
    while len(chosen) < k:
        best, best_energy = None, -1.0
        for j in range(n):
            if j in chosen:
                continue
            r = e[j].copy()
            for b in basis:
                r = r - (e[j] @ b) * b
            energy = float(r @ r)
            if energy > best_energy:
                best, best_energy, best_r = j, energy, r
        if best_energy <= tol:
            basis = []  # the chosen span everything left: start again on the remaining tokens
            continue
        chosen.append(best)
        basis.append(best_r / math.sqrt(best_energy))
    return chosen


@pytest.mark.parametrize("seed", range(4))
def test_greedy_order_matches_the_slow_reference(seed):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(15, 6, generator=g) * torch.rand(15, 1, generator=g)  # unequal lengths
    for k in (1, 3, 6, 7, 12, 15):  # k > dim exercises the restart
        assert greedy_residual_order(e, k)[0].tolist() == _reference_order(e.double().numpy(), k), k


# --- EOS-adaptive: the SAP authors' variants (sample std, pooled-quantile calibration) ---------------


def test_sample_std_by_hand():
    # s = [1, 1, 1, 1, 6]: sample variance 20 / 4 = 5, so z = [-1, -1, -1, -1, 4] / sqrt(5).
    z = standardized_eos(PAGE5, "sample")
    assert z.tolist() == pytest.approx([-1 / math.sqrt(5)] * 4 + [4 / math.sqrt(5)], rel=1e-12)
    # k = -0.46 lies between the two standardisations of the low scores (-0.5 and -0.447).
    assert EOSAdaptivePruner(1.0, k=-0.46, std="sample").prune(PAGE5).num_kept == 5
    assert EOSAdaptivePruner(1.0, k=-0.46).prune(PAGE5).indices.tolist() == [4]


def test_pooled_quantile_calibration_matches_a_slow_reference():
    pages = [random_page(n, seed=n) for n in (20, 35, 80)]
    for std in ("population", "sample"):
        pooled = []
        for page in pages:
            s = page.eos_attention.double().tolist()
            mu = sum(s) / len(s)
            dof = len(s) - (1 if std == "sample" else 0)
            sigma = math.sqrt(sum((v - mu) ** 2 for v in s) / dof)
            pooled += [(v - mu) / sigma for v in s]
        for target in (0.05, 0.1, 0.3):
            expected = float(np.quantile(np.array(pooled), 1 - target))  # linear interpolation
            assert calibrate_eos_k_pooled(pages, target, std) == pytest.approx(expected, rel=1e-9, abs=1e-12)
            pruner = EOSAdaptivePruner(target, std=std, calibration="pooled_quantile")
            assert pruner.calibrate(pages) == pytest.approx(expected, rel=1e-9, abs=1e-12)
            assert pruner.config()["calibration"] == "pooled_quantile" and pruner.config()["std"] == std
    # Token-weighted: the pooled quantile keeps ~target of all tokens, not of each page on average.
    k = calibrate_eos_k_pooled(pages, 0.1)
    kept = sum(int((standardized_eos(p) > k).sum()) for p in pages) / sum(p.num_tokens for p in pages)
    assert kept == pytest.approx(0.1, abs=0.01)
    assert calibrate_eos_k_pooled(pages, 1.0) == -math.inf
    with pytest.raises(CalibrationError):
        calibrate_eos_k_pooled([], 0.1)


def test_eos_option_errors():
    with pytest.raises(InvalidInputError, match="std"):
        EOSAdaptivePruner(0.1, std="robust")
    with pytest.raises(InvalidInputError, match="calibration"):
        EOSAdaptivePruner(0.1, calibration="median")
