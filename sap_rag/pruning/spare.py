"""SPARE (arXiv 2606.18681): column-subset selection by projection residuals, plus anti-relevance.

Two parts, as the paper describes them:

1. Reconstruction: choose the tokens whose features best reconstruct the page's full feature
   matrix. Greedy: residuals start at ``r_j = ||x_j||^2``; take the largest, orthogonalise every
   other residual against it (Gram-Schmidt), repeat. This is column-pivoted QR of ``X^T``.
   Magnitude matters, so it runs on features that still carry it: the projected outputs *before*
   the L2 normalisation (``page.features``, see :mod:`sap_rag.pruning.spare_inputs`).
2. Anti-relevance: tokens less aligned with the text side are favoured. Each token's relevance
   ``rel_j = mean_m cos(x_j, t_m)`` to the text vectors ``t_m`` is min-max normalised over the
   page to ``rho_j`` in [0, 1]; the greedy step takes ``argmax_j w_j * r_j`` with
   ``w_j = exp(-strength * rho_j)``. Because scaling a picked column does not change the span,
   this is exactly column-pivoted QR on the re-weighted features ``sqrt(w_j) * x_j`` (a weighted
   column-subset selection), and ``strength = 0`` is plain SPARE reconstruction.

At index time there is no query, so the text side is a choice (documented in docs/eval.md):
``spare`` uses the model's own query prompt (the query template with no words, encoded by the
query path), ``spare_lasttoken`` uses the page's last-token output (the end of the page prompt).
"""

from __future__ import annotations

import logging
import math
from enum import Enum
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage
from .base import Pruner, select_rows

logger = logging.getLogger(__name__)

__all__ = [
    "SpareLastTokenPruner",
    "SparePruner",
    "SpareResidualPruner",
    "TextSide",
    "anti_relevance_weights",
    "greedy_residual_order",
    "relevance",
]


class TextSide(str, Enum):
    """Where the text side of SPARE's image-text relevance comes from at index time."""

    QUERY_PROMPT = "query_prompt"  # the model's query template with no words (same for every page)
    LAST_TOKEN = "last_token"  # the page's own last-token output (the end of its prompt)
    NONE = "none"  # no anti-relevance term: reconstruction only


def greedy_residual_order(
    features: torch.Tensor, k: int, *, weights: torch.Tensor | None = None, rel_tol: float = 1e-9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy column-subset selection: the first ``k`` picks and their (weighted) residual energies.

    Start with residuals ``r_j = ||x_j||^2``; repeatedly pick ``argmax_j w_j * r_j`` (the first
    one on ties), orthogonalise every residual vector against the picked one (Gram-Schmidt)
    and update ``r_j = ||residual_j||^2``. Magnitudes matter, not only angles: a long vector
    is preferred over a short one in the same direction. With ``weights=None`` (all 1) the
    order is that of column-pivoted QR of ``features.T``.

    Once the picks span every remaining vector (all residuals ``<= rel_tol * max_j ||x_j||^2``,
    which happens when ``k`` exceeds the rank, e.g. ``k > dim``), the selection restarts on the
    remaining tokens with their full vectors: a second, disjoint greedy basis, and so on.

    Args:
        features: ``(N, dim)``.
        k: number of picks, ``1 <= k <= N``.
        weights: ``(N,)`` positive per-token weights ``w_j`` of the criterion, or None.

    Returns:
        ``(order, energy)``: ``(k,)`` int64 token indices in pick order and ``(k,)`` float32
        criterion ``w_j * r_j`` of each token when it was picked.

    >>> e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 0.5]])
    >>> order, energy = greedy_residual_order(e, 2)
    >>> order.tolist()  # [0.9, 0.1] is longer, but after [1, 0] only 0.1 of it is new; [0, 0.5] keeps 0.5
    [0, 2]
    >>> [round(x, 4) for x in energy.tolist()]
    [1.0, 0.25]
    """
    original = features.detach().to(torch.float64).cpu().numpy()
    n = original.shape[0]
    w = np.ones(n) if weights is None else weights.detach().to(torch.float64).cpu().numpy().reshape(-1)
    if w.shape[0] != n or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise InvalidInputError(f"weights must be {n} positive finite numbers, one per token")
    residual = original.copy()
    energy = np.einsum("ij,ij->i", residual, residual)
    tol = rel_tol * float(energy.max()) if n else 0.0
    available = np.ones(n, dtype=bool)
    order: list[int] = []
    picked: list[float] = []
    for _ in range(min(k, n)):
        if not np.any(energy[available] > tol):
            # The picks span the rest: start a fresh greedy pass on the remaining tokens.
            residual[available] = original[available]
            energy = np.einsum("ij,ij->i", residual, residual)
        criterion = np.where(available, w * energy, -1.0)
        j = int(np.argmax(criterion))  # first index on ties
        order.append(j)
        picked.append(float(criterion[j]))
        available[j] = False
        norm = math.sqrt(float(energy[j]))
        if norm > 0.0:
            direction = residual[j] / norm
            residual -= np.outer(residual @ direction, direction)
        residual[j] = 0.0
        energy = np.einsum("ij,ij->i", residual, residual)
    return torch.tensor(order, dtype=torch.int64), torch.tensor(picked, dtype=torch.float32)


def relevance(features: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``(N,)`` image-text relevance: mean over text vectors of the cosine to each token.

    Args:
        features: ``(N, dim)`` token features (any lengths; only directions count).
        text: ``(M, dim)`` or ``(dim,)`` text-side vectors.
    """
    x = torch.nn.functional.normalize(features.detach().to(torch.float64), dim=-1)
    t = torch.nn.functional.normalize(text.detach().to(torch.float64).reshape(-1, x.shape[1]), dim=-1)
    return (x @ t.T).mean(dim=1)


def anti_relevance_weights(rel: torch.Tensor, strength: float) -> torch.Tensor:
    """``(N,)`` ``w_j = exp(-strength * rho_j)``, ``rho`` = ``rel`` min-max normalised over the page.

    The least relevant token gets weight 1, the most relevant ``exp(-strength)``; a page whose
    tokens are all equally relevant gets all 1.

    >>> anti_relevance_weights(torch.tensor([0.2, 0.6, 1.0]), 1.0).tolist()  # doctest: +ELLIPSIS
    [1.0, 0.606..., 0.367...]
    """
    rel = rel.detach().to(torch.float64)
    span = float(rel.max() - rel.min()) if rel.numel() else 0.0
    if not math.isfinite(span) or span <= 0.0:
        return torch.ones_like(rel)
    rho = (rel - rel.min()) / span
    return torch.exp(-float(strength) * rho)


class SparePruner(Pruner):
    """SPARE: greedy column-subset selection on magnitude features with an anti-relevance weight.

    Features: ``page.features`` (``(N, dim)`` projected outputs before L2 normalisation) when the
    page carries them, else ``page.embeddings`` (normalised: no magnitude signal; logged once and
    counted in :meth:`config` as ``pages_without_features``).

    Text side (``text_side``): ``"query_prompt"`` uses the vectors given by :meth:`use_text`
    (e.g. :func:`sap_rag.pruning.spare_inputs.query_prompt_embedding`); ``"last_token"`` uses
    ``page.last_token_embedding``; ``"none"`` drops the anti-relevance term. A page without its
    text side is pruned by reconstruction alone (counted as ``pages_without_text``).

    ``scores`` of the kept tokens are their criterion ``w_j * r_j`` when picked. Deterministic.

    Args:
        keep_ratio: fraction of visual tokens to keep, in (0, 1].
        text_side: ``"query_prompt"``, ``"last_token"`` or ``"none"``.
        strength: anti-relevance strength ``>= 0`` (0 = reconstruction only).
    """

    name: ClassVar[str] = "spare"
    default_text_side: ClassVar[TextSide] = TextSide.QUERY_PROMPT
    #: The evaluation harness attaches ``features`` / ``last_token_embedding`` to pages for these.
    wants_spare_inputs: ClassVar[bool] = True

    def __init__(
        self, keep_ratio: float = 0.1, *, text_side: TextSide | str | None = None, strength: float = 1.0
    ) -> None:
        super().__init__(keep_ratio)
        try:
            self.text_side = TextSide(text_side if text_side is not None else self.default_text_side)
        except ValueError:
            raise InvalidInputError(
                f"text_side must be one of {[s.value for s in TextSide]}, got {text_side!r}"
            ) from None
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
            raise InvalidInputError(f"strength must be a finite number >= 0, got {strength!r}")
        if strength < 0:
            raise InvalidInputError(f"strength must be >= 0 (0 turns anti-relevance off), got {strength!r}")
        self.strength = float(strength)
        self.text: torch.Tensor | None = None
        self.pages_without_features = 0
        self.pages_without_text = 0

    def use_text(self, text: torch.Tensor) -> SparePruner:
        """Set the ``(M, dim)`` query-prompt vectors (used when ``text_side="query_prompt"``)."""
        text = torch.as_tensor(text, dtype=torch.float32)
        if text.ndim == 1:
            text = text[None]
        if text.ndim != 2 or text.shape[0] == 0 or not torch.isfinite(text).all():
            raise InvalidInputError(f"text must be a finite (M, dim) tensor with M >= 1, got {tuple(text.shape)}")
        self.text = text
        return self

    def _features(self, page: PageEncoding) -> torch.Tensor:
        features = getattr(page, "features", None)
        if features is not None and tuple(features.shape) == (page.num_tokens, page.dim):
            return features
        if self.pages_without_features == 0:
            logger.warning(
                "%s: the page carries no pre-normalisation features, so SPARE runs on the L2-normalised "
                "embeddings (no magnitude signal); attach them with sap_rag.pruning.spare_inputs",
                self.name,
            )
        self.pages_without_features += 1
        return page.embeddings

    def _text(self, page: PageEncoding) -> torch.Tensor | None:
        if self.text_side is TextSide.NONE or self.strength == 0.0:
            return None
        text = self.text if self.text_side is TextSide.QUERY_PROMPT else getattr(page, "last_token_embedding", None)
        if text is not None and text.shape[-1] == page.dim:
            return text
        if self.pages_without_text == 0:
            logger.warning(
                "%s: no %s text side for this page; pruning by reconstruction alone (see sap_rag.pruning.spare_inputs)",
                self.name,
                self.text_side.value,
            )
        self.pages_without_text += 1
        return None

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        features = self._features(page)
        text = self._text(page)
        weights = anti_relevance_weights(relevance(page.embeddings, text), self.strength) if text is not None else None
        order, criterion = greedy_residual_order(features, k, weights=weights)
        scores = torch.zeros(page.num_tokens, dtype=torch.float32)
        scores[order] = criterion
        return select_rows(page, order, scores, k, self.name)

    def config(self) -> dict[str, Any]:
        """The pruner's identity (stored in index manifests and compared on reopening)."""
        cfg = super().config()
        cfg.update(text_side=self.text_side.value, strength=self.strength)
        return cfg

    def run_stats(self) -> dict[str, int]:
        """What this pruner has seen so far (not part of its identity): pages pruned without inputs."""
        return {
            "text_vectors": int(self.text.shape[0]) if self.text is not None else 0,
            "pages_without_features": self.pages_without_features,
            "pages_without_text": self.pages_without_text,
        }


class SpareLastTokenPruner(SparePruner):
    """:class:`SparePruner` whose text side is the page's own last-token output (``page.last_token_embedding``)."""

    name: ClassVar[str] = "spare_lasttoken"
    default_text_side: ClassVar[TextSide] = TextSide.LAST_TOKEN


#: The former name (reconstruction-only SPARE); kept for imports.
SpareResidualPruner = SparePruner
