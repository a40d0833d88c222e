"""EOS-adaptive pruning (DocPruner-style): keep the patches the last real token attends to well above the page mean."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from enum import Enum
from statistics import NormalDist
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import CalibrationError, InvalidInputError
from ..types import PageEncoding, PrunedPage
from .base import Pruner, top_k_rows, validate_keep_ratio

logger = logging.getLogger(__name__)

__all__ = [
    "EOSAdaptivePruner",
    "EOSCalibration",
    "EOSStd",
    "calibrate_eos_k",
    "calibrate_eos_k_pooled",
    "gaussian_k",
    "standardized_eos",
]


class EOSStd(str, Enum):
    """Which standard deviation standardises a page's EOS attention."""

    POPULATION = "population"  # sigma of the page's N scores (default)
    SAMPLE = "sample"  # Bessel-corrected, as torch's .std() in the SAP authors' code


class EOSCalibration(str, Enum):
    """How ``k`` is set from a calibration sample."""

    PAGE_MEAN = "page_mean"  # exact: the mean over pages of each page's kept fraction hits the target (default)
    POOLED_QUANTILE = "pooled_quantile"  # the authors': the (1 - target) quantile of all pages' z pooled


def standardized_eos(page: PageEncoding, std: EOSStd | str = EOSStd.POPULATION) -> torch.Tensor:
    """``(N,)`` float64 ``z_j = (s_j - mu) / sigma`` of the page's EOS attention ``s``.

    ``mu`` is the page's mean, ``sigma`` its population (default) or sample standard deviation;
    a constant page (``sigma = 0``) gives all zeros. Raises if the page was encoded without EOS
    attention.
    """
    if page.eos_attention is None:
        raise InvalidInputError(
            "the page carries no EOS attention; encode it with encoder.encode_pages(..., eos_attention=True)"
        )
    scores = page.eos_attention.detach().to(torch.float64).reshape(-1)
    if scores.numel() != page.num_tokens:
        raise InvalidInputError(
            f"eos_attention has {scores.numel()} values for a page of {page.num_tokens} visual tokens"
        )
    correction = 1 if EOSStd(std) is EOSStd.SAMPLE and scores.numel() > 1 else 0
    sigma = scores.std(correction=correction)
    if not torch.isfinite(sigma) or float(sigma) == 0.0:
        return torch.zeros_like(scores)
    return (scores - scores.mean()) / sigma


def gaussian_k(keep_ratio: float) -> float:
    """The ``k`` that keeps ``keep_ratio`` of normally distributed scores: ``Phi^-1(1 - keep_ratio)``.

    The uncalibrated default; ``-inf`` (keep everything) at ``keep_ratio = 1``.

    >>> round(gaussian_k(0.5), 6), round(gaussian_k(0.1), 4), gaussian_k(1.0)
    (0.0, 1.2816, -inf)
    """
    ratio = validate_keep_ratio(keep_ratio)
    return -math.inf if ratio >= 1.0 else NormalDist().inv_cdf(1.0 - ratio)


def calibrate_eos_k_pooled(
    pages: Sequence[PageEncoding], target_ratio: float, std: EOSStd | str = EOSStd.POPULATION
) -> float:
    """The SAP authors' calibration: ``k`` = the ``1 - target_ratio`` quantile of every page's ``z`` pooled.

    Token-weighted (a page of many tokens counts more) and blind to the at-least-one-token rule;
    linear interpolation between order statistics, as ``torch.quantile``.
    """
    ratio = validate_keep_ratio(target_ratio)
    pages = list(pages)
    if not pages:
        raise CalibrationError("calibrating the EOS-adaptive pruner needs at least one page")
    if ratio >= 1.0:
        return -math.inf
    pooled = torch.cat([standardized_eos(page, std) for page in pages])
    return float(torch.quantile(pooled, 1.0 - ratio))


def calibrate_eos_k(pages: Sequence[PageEncoding], target_ratio: float, std: EOSStd | str = EOSStd.POPULATION) -> float:
    """The ``k`` whose rule ``z_j > k`` (at least one token per page) keeps ``target_ratio`` on average.

    The average keep ratio ``f(k) = mean_p max(1, #{j: z_pj > k}) / N_p`` is a step function of
    ``k``; every step is evaluated exactly (midpoints between consecutive distinct ``z`` values,
    plus ``-inf``) and the ``k`` whose ``f`` is closest to the target wins (ties: the larger ``k``,
    i.e. fewer tokens). The per-page budget cap is not part of ``f``: capping is what the pruner
    does afterwards, so pages above the budget are cut and the realised mean can be lower.
    """
    ratio = validate_keep_ratio(target_ratio)
    pages = list(pages)
    if not pages:
        raise CalibrationError("calibrating the EOS-adaptive pruner needs at least one page")
    if ratio >= 1.0:
        return -math.inf
    zs = [standardized_eos(page, std).numpy() for page in pages]
    num_pages = len(zs)
    weights = np.concatenate([np.full(len(z), 1.0 / (len(z) * num_pages)) for z in zs])
    values = np.concatenate(zs)
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    # suffix[i] = total weight of values[i:]  (tokens with z > t are values[searchsorted(t, "right"):])
    suffix = np.concatenate([np.cumsum(weights[::-1])[::-1], [0.0]])
    top = np.array([z.max() for z in zs])
    top_weight = np.array([1.0 / (len(z) * num_pages) for z in zs])
    top_order = np.argsort(top, kind="stable")
    top, top_weight = top[top_order], top_weight[top_order]
    top_prefix = np.concatenate([[0.0], np.cumsum(top_weight)])

    distinct = np.unique(values)
    candidates = np.concatenate([[-np.inf], (distinct[:-1] + distinct[1:]) / 2.0, [distinct[-1]]])
    kept = suffix[np.searchsorted(values, candidates, side="right")]
    # Pages keeping nothing at threshold t (max z <= t) keep their single best token instead.
    kept = kept + top_prefix[np.searchsorted(top, candidates, side="right")]
    error = np.abs(kept - ratio)
    best = np.flatnonzero(error <= error.min() + 1e-12)[-1]
    k = float(candidates[best])
    logger.debug("EOS-adaptive calibration: k=%.4f keeps %.4f on average (target %.4f)", k, kept[best], ratio)
    return k


class EOSAdaptivePruner(Pruner):
    """DocPruner-style adaptive pruning on the last layer's attention from the last real token.

    Scores ``s_j`` = ``page.eos_attention`` (head mean of the final layer's attention from the
    last real token to patch ``j``). Per page, keep ``s_j > mu + k * sigma`` (page mean and
    population std), i.e. ``z_j > k``; at least one token is kept, and never more than the
    budget ``max(1, int(keep_ratio * N))`` (the highest-scoring ones when the rule keeps more).

    ``k`` is set once for a collection by :meth:`calibrate`, so that the rule keeps
    ``keep_ratio`` of the tokens on average over a sample of pages. Until then (``k=None``) the
    Gaussian quantile :func:`gaussian_k` stands in. ``keep_ratio = 1`` keeps every token.

    Differences from the SAP authors' Adaptive-EOS code (see docs/eval.md): the budget cap (theirs
    keeps every passing token), the population std (theirs: sample std; ``std="sample"``), and
    the page-weighted exact calibration (theirs: a quantile of all tokens' ``z`` pooled;
    ``calibration="pooled_quantile"``).

    Args:
        keep_ratio: the budget and the default calibration target, in (0, 1].
        k: the threshold in standard deviations; None for uncalibrated.
        std: ``"population"`` (default) or ``"sample"`` standard deviation.
        calibration: ``"page_mean"`` (default) or ``"pooled_quantile"``.
    """

    name: ClassVar[str] = "eos_adaptive"

    def __init__(
        self,
        keep_ratio: float = 0.1,
        *,
        k: float | None = None,
        std: EOSStd | str = EOSStd.POPULATION,
        calibration: EOSCalibration | str = EOSCalibration.PAGE_MEAN,
    ) -> None:
        super().__init__(keep_ratio)
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, float)) or math.isnan(k)):
            raise InvalidInputError(f"k must be a number of standard deviations or None, got {k!r}")
        try:
            self.std = EOSStd(std)
        except ValueError:
            raise InvalidInputError(f"std must be 'population' or 'sample', got {std!r}") from None
        try:
            self.calibration = EOSCalibration(calibration)
        except ValueError:
            raise InvalidInputError(
                f"calibration must be 'page_mean' or 'pooled_quantile', got {calibration!r}"
            ) from None
        self.k = float(k) if k is not None else None
        self.calibrated_on = 0

    @property
    def threshold_k(self) -> float:
        """The ``k`` in use: the calibrated or given one, else :func:`gaussian_k` of the keep ratio."""
        return self.k if self.k is not None else gaussian_k(self.keep_ratio)

    def calibrate(self, pages: Sequence[PageEncoding], target_ratio: float | None = None) -> float:
        """Set ``k`` so that the rule keeps ``target_ratio`` (default: ``keep_ratio``) of tokens on average.

        Args:
            pages: a sample of encoded pages (with ``eos_attention``); no queries or labels needed.
            target_ratio: the average keep ratio to hit.

        Returns:
            The calibrated ``k`` (also stored on the pruner).
        """
        pages = list(pages)
        target = self.keep_ratio if target_ratio is None else target_ratio
        calibrate_fn = calibrate_eos_k if self.calibration is EOSCalibration.PAGE_MEAN else calibrate_eos_k_pooled
        self.k = calibrate_fn(pages, target, self.std)
        self.calibrated_on = len(pages)
        return self.k

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        z = standardized_eos(page, self.std)
        passing = int((z > self.threshold_k).sum())
        count = min(max(passing, 1), k)
        return top_k_rows(page, z.to(torch.float32), count, self.name)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.update(k=self.k, calibrated_on=self.calibrated_on, std=self.std.value, calibration=self.calibration.value)
        return cfg
