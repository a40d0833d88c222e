"""Random baseline: keep ``k`` visual tokens drawn uniformly without replacement (seeded)."""

from __future__ import annotations

import zlib
from typing import Any, ClassVar

import torch

from ..errors import InvalidInputError
from ..types import PageEncoding, PrunedPage
from .base import Pruner, select_rows

__all__ = ["RandomPruner"]


class RandomPruner(Pruner):
    """Keep ``k`` tokens chosen uniformly at random.

    The draw is a pure function of ``(seed, page)``: the generator of each page is seeded with
    ``seed`` and a CRC of the page's embeddings, so pruning the same page twice gives the same
    tokens whatever else was pruned in between, and different pages get independent draws.
    Average several seeds to estimate the expected quality (the harness does).

    Args:
        keep_ratio: fraction of visual tokens to keep, in (0, 1].
        seed: non-negative integer.
    """

    name: ClassVar[str] = "random"
    #: The harness averages pruners marked stochastic over several seeds.
    stochastic: ClassVar[bool] = True

    def __init__(self, keep_ratio: float = 0.1, *, seed: int = 0) -> None:
        super().__init__(keep_ratio)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = seed

    def _generator(self, page: PageEncoding) -> torch.Generator:
        content = page.embeddings.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
        mixed = (self.seed * 0x9E3779B1 + zlib.crc32(content) + page.num_tokens) % (2**63 - 1)
        return torch.Generator().manual_seed(mixed)

    def _impl(self, page: PageEncoding, k: int) -> PrunedPage:
        order = torch.randperm(page.num_tokens, generator=self._generator(page))
        result = select_rows(page, order, torch.zeros(page.num_tokens), k, self.name)
        result.scores = None
        return result

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg.update(seed=self.seed)
        return cfg
