"""Structural Anchor Pruning: keep the visual tokens with the highest mean in-degree over a layer window."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any, ClassVar

import torch

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage
from .base import Pruner, top_k_rows

__all__ = ["Debias", "HeadReduce", "SAPDebiasedPruner", "SAPPruner", "debiased_scores"]


class HeadReduce(str, Enum):
    """How a layer's per-head in-degrees become one score per token."""

    MEAN = "mean"  # the method as published
    MAX = "max"  # a variant for the comparison harness


class Debias(str, Enum):
    """Whether SAP's score is corrected for the position bias of causal attention."""

    NONE = "none"  # raw in-degree, the method as published
    # In-degree divided by the number of visual tokens that can attend the token: the mean attention
    # it receives per attender (a causal backbone gives the k-th visual token N - k attenders).
    ATTENDERS = "attenders"


def debiased_scores(scores: torch.Tensor, attenders: torch.Tensor) -> torch.Tensor:
    """``(N,)`` ``scores[j] / attenders[j]``: in-degree per attender.

    Args:
        scores: ``(N,)`` SAP score (mean over the window of the per-layer in-degree).
        attenders: ``(N,)`` how many visual tokens can attend each token (>= 1).

    >>> debiased_scores(torch.tensor([4.0, 3.0, 1.0]), torch.tensor([4.0, 2.0, 1.0])).tolist()
    [1.0, 1.5, 1.0]
    """
    if attenders.shape != scores.shape:
        raise InvalidInputError(
            f"attenders has shape {tuple(attenders.shape)} for {tuple(scores.shape)} scores; re-encode the page"
        )
    if bool((attenders < 1).any()):
        raise InvalidInputError("every visual token has at least one attender (itself); the page's counts are broken")
    return scores.to(torch.float32) / attenders.to(torch.float32)


class SAPPruner(Pruner):
    """Keep ``max(1, int(keep_ratio * N))`` tokens ranked by SAP score.

    SAP score ``s[j] = mean_{l in W} c_l[j]`` with ``c_l[j] = mean_h sum_{i in V} A[l,h][i,j]``
    (see ``sap_rag.encoders.attention``). Query-agnostic: done once per page at index time.

    Args:
        keep_ratio: fraction of visual tokens to keep, in (0, 1].
        window: layers to average; None uses the window the page was encoded with.
        heads: ``"mean"`` (default, the method) or ``"max"`` over heads.
        debias: ``"none"`` (default, the method as published) or ``"attenders"``: rank by
            ``mean_{l in W} c_l[j] / a_l[j]`` with ``a_l[j]`` the number of visual tokens that layer
            l's mask lets attend token j (``PageEncoding.attenders``), the mean attention it receives
            per attender. In a causal backbone the raw in-degree of early tokens sums more terms;
            with bidirectional attention over the image ``a`` is constant and the ranking is SAP's.
        causal: for pages that carry no ``attenders`` (encoded before they were recorded): whether
            the backbone is causal over the image (``FamilySpec.causal_visual``); None raises instead.
    """

    name: ClassVar[str] = "sap"

    def __init__(
        self,
        keep_ratio: float = 0.1,
        *,
        window: Sequence[int] | None = None,
        heads: HeadReduce | str = HeadReduce.MEAN,
        debias: Debias | str = Debias.NONE,
        causal: bool | None = None,
    ) -> None:
        super().__init__(keep_ratio)
        try:
            self.debias = Debias(debias)
        except ValueError:
            raise InvalidInputError(f"debias must be 'none' or 'attenders', got {debias!r}") from None
        if causal is not None and not isinstance(causal, bool):
            raise InvalidInputError(f"causal must be True, False or None, got {causal!r}")
        self.causal = causal
        self.window = tuple(int(layer) for layer in window) if window is not None else None
        if self.window is not None and not self.window:
            raise InvalidInputError("window must name at least one layer, or be None for the page's own window")
        try:
            self.heads = HeadReduce(heads)
        except ValueError:
            raise InvalidInputError(f"heads must be 'mean' or 'max', got {heads!r}") from None

    def scores(self, page: PageEncoding) -> torch.Tensor:
        """``(N,)`` the score this pruner ranks ``page``'s tokens by."""
        if self.debias is Debias.NONE:
            return page.window_scores(self.window, reduce=self.heads.value)
        layers = tuple(self.window) if self.window is not None else tuple(page.window)
        page.window_scores(layers, reduce=self.heads.value)  # the same checks (window given, layers computed)
        rows = page.indegree if self.heads is HeadReduce.MEAN else page.indegree_max
        per_layer = [debiased_scores(rows[layer], self._attenders(page, layer)) for layer in layers]
        return torch.stack(per_layer).mean(dim=0)

    def _attenders(self, page: PageEncoding, layer: int) -> torch.Tensor:
        if layer in page.attenders:
            return page.attenders[layer]
        if self.causal is None:
            raise InvalidInputError(
                f"debias='attenders' needs each token's attender count at layer {layer}: this page carries "
                "none (PageEncoding.attenders); pass causal=True (Qwen-VL, Idefics3) or causal=False "
                "(PaliGemma, Gemma3, ModernVBert), or encode the page with an encoder that records them"
            )
        from ..encoders.attention import visual_attenders

        return visual_attenders(page.num_tokens, self.causal)

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        return top_k_rows(page, self.scores(page), k, self.name)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.update(window=list(self.window) if self.window is not None else None, heads=self.heads.value)
        if self.debias is not Debias.NONE:
            cfg.update(debias=self.debias.value, causal=self.causal)
        return cfg


class SAPDebiasedPruner(SAPPruner):
    """:class:`SAPPruner` with ``debias="attenders"``: rank by in-degree per attender.

    ``s[j] = mean_{l in W} c_l[j] / a_l[j]`` with ``a_l[j]`` the number of visual tokens that can
    attend token j at layer l (``N - k`` for the k-th visual token of a causal backbone). Registered as
    ``"sap_debiased"`` so tables list it beside ``"sap"``. Not in the paper: an option measured by
    Score Retention, not the default.
    """

    name: ClassVar[str] = "sap_debiased"

    def __init__(
        self,
        keep_ratio: float = 0.1,
        *,
        window: Sequence[int] | None = None,
        heads: HeadReduce | str = HeadReduce.MEAN,
        causal: bool | None = None,
    ) -> None:
        super().__init__(keep_ratio, window=window, heads=heads, debias=Debias.ATTENDERS, causal=causal)
