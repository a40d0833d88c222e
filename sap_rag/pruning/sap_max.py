"""SAP with the per-layer in-degree maximised over heads instead of averaged (a comparison variant)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from .sap import HeadReduce, SAPPruner

__all__ = ["SAPMaxPruner"]


class SAPMaxPruner(SAPPruner):
    """:class:`SAPPruner` with ``heads="max"``: ``s[j] = mean_{l in W} max_h sum_{i in V} A[l,h][i,j]``.

    A registered name of its own (``"sap_max"``) so the harness and the CLI can list it beside
    ``"sap"``. Needs ``PageEncoding.indegree_max`` for the window layers (the encoder records it
    with every in-degree it computes).
    """

    name: ClassVar[str] = "sap_max"

    def __init__(self, keep_ratio: float = 0.1, *, window: Sequence[int] | None = None) -> None:
        super().__init__(keep_ratio, window=window, heads=HeadReduce.MAX)
