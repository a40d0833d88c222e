"""Tiny random-weight models of every supported family, built entirely offline.

They exist so that tests, demos and benchmarks run with no hub access: the tokenizer is trained
in-process, processors are constructed from their classes, weights are random (seeded). Their
retrieval quality means nothing; they exercise the plumbing and the exact maths only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .._compat import import_colpali_engine
from ..errors import UnknownFamilyError

logger = logging.getLogger(__name__)

__all__ = ["TINY_BUILDERS", "TinySize", "build_tiny", "train_tokenizer"]

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


def _init_weights(model: nn.Module, seed: int) -> nn.Module:
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


# --- Qwen2-VL / Qwen2.5-VL ---------------------------------------------------------------------

_QWEN_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _build_qwen(family: str, size: TinySize, seed: int):
    from transformers.models.qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    cem = import_colpali_engine()
    tokenizer = train_tokenizer(_QWEN_SPECIALS, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    image_processor = Qwen2VLImageProcessor(
        min_pixels=4 * 28 * 28,
        max_pixels=size.max_visual_tokens * 28 * 28,
        patch_size=14,
        merge_size=2,
        temporal_patch_size=2,
    )
    if family == "colqwen2":
        from transformers import Qwen2VLConfig as Config

        model_cls, processor_cls = cem.ColQwen2, cem.ColQwen2Processor
        # Qwen2-VL's vision hidden_size is the merger's output width: the text hidden size.
        vision = dict(embed_dim=size.vision_hidden, hidden_size=size.hidden, mlp_ratio=2)
    else:
        from transformers import Qwen2_5_VLConfig as Config

        model_cls, processor_cls = cem.ColQwen2_5, cem.ColQwen2_5_Processor
        vision = dict(
            hidden_size=size.vision_hidden,
            intermediate_size=2 * size.vision_hidden,
            out_hidden_size=size.hidden,
            window_size=56,
            fullatt_block_indexes=[size.vision_layers - 1],
        )
    processor = processor_cls(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor()
    )
    ids = {
        name: tokenizer.convert_tokens_to_ids(tok)
        for name, tok in [
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        ]
    }
    head_dim = size.hidden // size.heads
    # mrope sections split head_dim/2 rotary frequencies over (time, height, width).
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Config(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=size.hidden,
            intermediate_size=size.intermediate,
            num_hidden_layers=size.layers,
            num_attention_heads=size.heads,
            num_key_value_heads=size.kv_heads,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "mrope_section": mrope, "rope_theta": 10000.0},
            bos_token_id=eos,
            eos_token_id=eos,
            pad_token_id=eos,
        ),
        vision_config=dict(
            depth=size.vision_layers,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            in_channels=3,
            **vision,
        ),
        **ids,
    )
    config.text_config.bos_token_id = eos
    config.text_config.eos_token_id = eos
    torch.manual_seed(seed)
    model = model_cls(config)
    return _init_weights(model, seed), processor


TINY_BUILDERS: dict[str, Callable[[TinySize, int], tuple[nn.Module, object]]] = {
    "colqwen2": lambda size, seed: _build_qwen("colqwen2", size, seed),
    "colqwen2_5": lambda size, seed: _build_qwen("colqwen2_5", size, seed),
}


def build_tiny(family: str, *, seed: int = 0, size: TinySize | None = None) -> tuple[nn.Module, object]:
    """Build ``(model, processor)`` of a tiny random-weight model of ``family``, deterministic per seed."""
    from .families import get_family

    spec = get_family(family)
    builder = TINY_BUILDERS.get(spec.name)
    if builder is None:
        raise UnknownFamilyError(
            f"no tiny builder for family {spec.name!r}; tiny models exist for: {', '.join(sorted(TINY_BUILDERS))}"
        )
    logger.info("building a tiny random-weight %s (plumbing only: its retrieval quality means nothing)", spec.display)
    return builder(size or TinySize(), seed)
