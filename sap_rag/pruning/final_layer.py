"""Final-layer in-degree: SAP's scorer on one layer only, by default the last (the "why the end fails" contrast)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from ..errors import InvalidInputError, WindowError
from ..types import PageEncoding, PrunedPage
from .base import Pruner, top_k_rows
from .sap import HeadReduce

logger = logging.getLogger(__name__)

__all__ = ["FinalLayerPruner"]


class FinalLayerPruner(Pruner):
    """Keep the ``k`` tokens with the highest in-degree ``c_l[j]`` at a single layer ``l``.

    Args:
        keep_ratio: fraction of visual tokens to keep, in (0, 1].
        layer: the decoder layer to score with. None (default) takes the last layer whose
            in-degree the page carries; encode with ``indegree_layers="all"`` so that this is the
            model's last scorable layer (the evaluation harness does).
        heads: ``"mean"`` (default) or ``"max"`` over heads.

    Raises ``WindowError`` at prune time if the page carries no in-degree for the layer.
    """

    name: ClassVar[str] = "final_layer"

    def __init__(
        self, keep_ratio: float = 0.1, *, layer: int | None = None, heads: HeadReduce | str = HeadReduce.MEAN
    ) -> None:
        super().__init__(keep_ratio)
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
            raise InvalidInputError(f"layer must be a non-negative decoder layer index or None, got {layer!r}")
        self.layer = layer
        try:
            self.heads = HeadReduce(heads)
        except ValueError:
            raise InvalidInputError(f"heads must be 'mean' or 'max', got {heads!r}") from None
        self._warned = False

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        rows = page.indegree if self.heads is HeadReduce.MEAN else page.indegree_max
        if self.layer is not None:
            layer = self.layer
        else:
            if not rows:
                raise WindowError(
                    "the page carries no per-layer in-degree; encode it with indegree_layers='all' "
                    "to prune by the final layer"
                )
            layer = max(rows)
            if not self._warned and page.window and set(rows) == set(page.window):
                logger.warning(
                    "final_layer: the page only carries its window's in-degrees %s, so layer %d is the "
                    "window's last layer, not necessarily the model's; encode with indegree_layers='all'",
                    sorted(rows),
                    layer,
                )
                self._warned = True
        scores = page.window_scores((layer,), reduce=self.heads.value)
        return top_k_rows(page, scores, k, self.name)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.update(layer=self.layer, heads=self.heads.value)
        return cfg
