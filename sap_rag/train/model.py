"""Build a small ColQwen2 (colpali-engine's class) from scratch: word-level tokenizer, config, deliberate init."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from .._compat import import_colpali_engine
from .pages import vocabulary_text

logger = logging.getLogger(__name__)

__all__ = ["ModelShape", "build_toy_colqwen2", "fast_patch_embed", "init_for_training", "word_tokenizer"]

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "[UNK]",
]
# Words of ColQwen2's prompts and of common English questions, so that a user's question keeps its
# content words and maps the rest to known tokens instead of [UNK].
_EXTRA = (
    "query user describe the image a an and or of in on at to for from by with about which what who when where "
    "how why is are was were be been has have had do does did this that these those it its their our your "
    "highest lowest largest smallest most least more less than total share growth change changed between during "
    "year years page pages report reports figure figures table tables chart charts value values number show tell "
    "me find give per all each region regions sector sectors company companies group annual rise rose fell drop "
    "increase decrease compared reported expanded operations million thousand billion percent eur usd kt co2 m3 gwh "
    "twh beds hospital hospitals survey energy outlook consumption electricity renewable wind solar hydro biomass "
    "industry transport homes services north south east west europe asia americas africa staff logistics costs "
    "operating revenue profit research spending emissions employees water use customers"
)


def word_tokenizer(vocab_size_hint: int = 0):
    """A lower-casing word-level tokenizer over the pages' vocabulary (digits split one by one).

    Byte-level BPE trained on a few lines splits most words into several pieces; one token per
    word gives every company and metric its own embedding, which is what a small model can learn.
    """
    import re

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words: list[str] = []
    for line in [*vocabulary_text(), _EXTRA]:
        for word in re.findall(r"[a-z]+|[^\w\s]", line.lower()):
            if word not in words:
                words.append(word)
    words += [str(d) for d in range(10)] + [p for p in ".,:;?!()%$-+&/'\"" if p not in words]
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tokenizer.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="[UNK]"
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIALS[1:7]})
    return fast


@dataclass(frozen=True)
class ModelShape:
    """Shape of the toy ColQwen2. Defaults: ~2.6M parameters, 117 visual tokens per A4 page."""

    layers: int = 4
    hidden: int = 128
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 384
    vision_layers: int = 2
    vision_width: int = 96
    vision_heads: int = 4
    max_visual_tokens: int = 117  # 9 x 13 tokens of 28 px: a 252 x 364 page
    # Pixel normalisation: (x - mean) / std. Mean 1 makes white paper 0, so a blank patch embeds to
    # nothing and ink carries the signal; with CLIP's mean (~0.48) white is +1.9 on every channel
    # and dominates every patch (tokens of one page start with cosine ~0.8 to each other).
    pixel_mean: float = 1.0
    pixel_std: float = 0.5


def init_for_training(model: nn.Module, seed: int, num_layers: int) -> nn.Module:
    """Scaled init: weights N(0, 1/fan_in), residual-output projections shrunk by sqrt(2 * layers).

    Every parameter is redrawn (the class's own init leaves some unset at this size, see
    docs/toy-model.md); norms start at 1 and biases at 0.
    """
    generator = torch.Generator().manual_seed(seed)
    residual_out = ("o_proj", "down_proj", "attn.proj", "mlp.fc2")
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
            if param.ndim >= 2:
                fan_in = math.prod(param.shape[1:])
                std = 1.0 if "embed_tokens" in name else fan_in**-0.5
                if any(key in name for key in residual_out):
                    std /= math.sqrt(2 * num_layers)
                param.copy_(torch.randn(param.shape, generator=generator) * std)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.fill_(1.0)
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise RuntimeError(f"parameter {name} is not finite after init")
    return model


def build_toy_colqwen2(shape: ModelShape, seed: int) -> tuple[nn.Module, object]:
    """``(ColQwen2 model in train mode, ColQwen2Processor)`` of ``shape``, deterministic per ``seed``."""
    cem = import_colpali_engine()  # first: it repairs a broken torchvision import the processors need
    from transformers import Qwen2VLConfig
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from ..encoders.families.qwen import qwen_image_processor, qwen_text_config

    tokenizer = word_tokenizer()
    get = tokenizer.convert_tokens_to_ids
    eos = get("<|endoftext|>")
    image_processor = qwen_image_processor(
        shape.max_visual_tokens, 14, image_mean=[shape.pixel_mean] * 3, image_std=[shape.pixel_std] * 3
    )
    text = qwen_text_config(len(tokenizer), shape, eos)
    vision = dict(
        depth=shape.vision_layers,
        num_heads=shape.vision_heads,
        embed_dim=shape.vision_width,
        hidden_size=shape.hidden,
        mlp_ratio=4,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        in_channels=3,
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=get("<|image_pad|>"),
        video_token_id=get("<|video_pad|>"),
        vision_start_token_id=get("<|vision_start|>"),
        vision_end_token_id=get("<|vision_end|>"),
    )
    model = cem.ColQwen2(config)
    init_for_training(model, seed, shape.layers)
    processor = cem.ColQwen2Processor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor()
    )
    logger.info("built a toy ColQwen2: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    return model.train(), processor


def fast_patch_embed(model: nn.Module) -> None:
    """Run the vision tower's patch embedding as one matmul instead of a Conv3d (same maths, same weights).

    The Conv3d's kernel equals its stride, so it is a linear map of each flattened (3, 2, 14, 14)
    patch; on CPU the mkldnn Conv3d and its backward cost ~15% of a training step. Only this model
    instance changes; the saved checkpoint is the standard class.
    """
    import types

    embed = model.visual.patch_embed

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight = self.proj.weight.view(self.embed_dim, -1)  # (embed_dim, 3 * 2 * 14 * 14)
        return hidden_states.view(-1, weight.shape[1]).to(weight.dtype) @ weight.T

    embed.forward = types.MethodType(forward, embed)
