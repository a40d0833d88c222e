"""Tiny random-weight models of every supported family, built entirely offline.

They exist so that tests, demos and benchmarks run with no hub access: the tokenizer is trained
in-process, processors are constructed from their classes, weights are random (seeded). Their
retrieval quality means nothing; they exercise the plumbing and the exact maths only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnknownFamilyError

logger = logging.getLogger(__name__)

__all__ = ["TinySize", "build_tiny", "init_weights", "tiny_families", "train_tokenizer"]

_CORPUS = (
    "What was the revenue in 2023? Describe the image. Query: total assets by region and year.",
    "Annual report table chart figure page section energy government healthcare artificial intelligence.",
    "the quick brown fox jumps over the lazy dog 0123456789 , . ; : ? ! ( ) % $ - +",
)


@dataclass(frozen=True)
class TinySize:
    """Shape knobs of a tiny model. The defaults give ~0.3M parameters and under 100 visual tokens.

    ``max_visual_tokens`` caps the visual tokens of a page where the family allows it.
    """

    layers: int = 4
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vision_layers: int = 2
    vision_hidden: int = 32
    max_visual_tokens: int = 64


def train_tokenizer(special_tokens: list[str], vocab_size: int = 400, **named_specials: str):
    """A byte-level BPE tokenizer trained in-process on a few lines, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(_CORPUS) * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **named_specials)


def init_weights(model: nn.Module, seed: int) -> nn.Module:
    """Redraw every parameter from a generator seeded with ``seed``; returns the model in eval mode."""
    # Re-draw every parameter from one generator so a seed fixes the model on any machine.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.copy_(1.0 + 0.05 * torch.randn(param.shape, generator=generator))
    return model.eval()


def tiny_families() -> list[str]:
    """Names of the families that have a tiny builder."""
    from .families import FAMILIES

    return sorted(name for name, spec in FAMILIES.items() if spec.tiny is not None)


def build_tiny(family: str, *, seed: int = 0, size: TinySize | None = None) -> tuple[nn.Module, object]:
    """Build ``(model, processor)`` of a tiny random-weight model of ``family``, deterministic per seed."""
    from .families import get_family

    spec = get_family(family)
    if spec.tiny is None:
        raise UnknownFamilyError(
            f"no tiny builder for family {spec.name!r}; tiny models exist for: {', '.join(tiny_families())}"
        )
    logger.info("building a tiny random-weight %s (plumbing only: its retrieval quality means nothing)", spec.display)
    return spec.tiny(size or TinySize(), seed)
