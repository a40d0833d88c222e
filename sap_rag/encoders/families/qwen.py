"""Qwen-VL backbones: ColQwen2, ColQwen2.5, ColQwen3 (320-d), ColQwen3.5 (hybrid attention).

Visual tokens are the ``<|image_pad|>`` tokens after ``<|vision_start|>``: one LLM token per
``merge x merge`` block of patches, row-major over the merged grid given by ``image_grid_thw``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..._compat import import_colpali_engine
from .base import FamilySpec, Grid, raster, unpad_qwen_pixels

SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]


def _text_model(model: nn.Module) -> nn.Module:
    return model.language_model


def _image_token_id(config: Any) -> int:
    return int(config.image_token_id)


def _grid(batch: dict, b: int, n: int, model: nn.Module, processor: Any) -> Grid:
    t, h, w = (int(v) for v in batch["image_grid_thw"][b])
    merge = int(model.config.vision_config.spatial_merge_size)
    rows, cols = h // merge, w // merge
    if t * rows * cols != n:
        raise RuntimeError(f"image_grid_thw {t, h, w} implies {t * rows * cols} visual tokens, found {n}")
    positions, extents = raster(rows, cols, n)
    return positions, extents, (rows, cols)


def _backbone_forward(model: nn.Module, batch: dict) -> Any:
    base = type(model).__mro__[1]  # Qwen2VLModel, Qwen2_5_VLModel, ...: the Col* class's parent
    return base.forward(model, **unpad_qwen_pixels(batch), output_attentions=True, return_dict=True, use_cache=False)


def _ids(tokenizer) -> dict[str, int]:
    get = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": get("<|image_pad|>"),
        "video_token_id": get("<|video_pad|>"),
        "vision_start_token_id": get("<|vision_start|>"),
        "vision_end_token_id": get("<|vision_end|>"),
    }


def qwen_image_processor(max_visual_tokens: int, patch: int = 14, **normalisation: Any) -> Any:
    """A Qwen2-VL image processor whose pages get at most ``max_visual_tokens`` LLM tokens
    (one per ``2 patch x 2 patch`` pixels); ``normalisation``: ``image_mean``/``image_std``."""
    from transformers.models.qwen2_vl import Qwen2VLImageProcessor

    unit = 2 * patch
    return Qwen2VLImageProcessor(
        min_pixels=4 * unit * unit,
        max_pixels=max_visual_tokens * unit * unit,
        patch_size=patch,
        merge_size=2,
        temporal_patch_size=2,
        **normalisation,
    )


def qwen_text_config(vocab_size: int, shape: Any, eos: int) -> dict[str, Any]:
    """The text part of a small Qwen2-VL config: ``shape`` has ``hidden``, ``intermediate``,
    ``layers``, ``heads`` and ``kv_heads``; ``eos`` is also the BOS and padding token."""
    # mrope splits head_dim/2 rotary frequencies over (time, height, width).
    half = shape.hidden // shape.heads // 2
    return dict(
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=4096,
        rope_parameters={
            "rope_type": "default",
            "mrope_section": [half - 2 * (half // 3), half // 3, half // 3],
            "rope_theta": 10000.0,
        },
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )


def _build(family: str, size, seed: int):
    from ..tiny import init_weights, train_tokenizer

    cem = import_colpali_engine()
    tokenizer = train_tokenizer(SPECIALS, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    head_dim = size.hidden // size.heads
    qwen3 = family in ("colqwen3", "colqwen3_5")
    patch = 16 if qwen3 else 14
    unit = 2 * patch  # one LLM token per (2 patch) x (2 patch) pixels
    image_processor = qwen_image_processor(
        size.max_visual_tokens, patch, **({"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if qwen3 else {})
    )
    text = qwen_text_config(len(tokenizer), size, eos)
    vision = dict(depth=size.vision_layers, num_heads=2, patch_size=patch, spatial_merge_size=2, temporal_patch_size=2)
    vision["in_channels"] = 3
    if family == "colqwen2":
        from transformers import Qwen2VLConfig as Config
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor as Video

        model_cls, processor_cls = cem.ColQwen2, cem.ColQwen2Processor
        # Qwen2-VL's vision hidden_size is the merger's output width: the text hidden size.
        vision.update(embed_dim=size.vision_hidden, hidden_size=size.hidden, mlp_ratio=2)
    elif family == "colqwen2_5":
        from transformers import Qwen2_5_VLConfig as Config
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor as Video

        model_cls, processor_cls = cem.ColQwen2_5, cem.ColQwen2_5_Processor
        vision.update(
            hidden_size=size.vision_hidden,
            intermediate_size=2 * size.vision_hidden,
            out_hidden_size=size.hidden,
            window_size=2 * unit,
            fullatt_block_indexes=[size.vision_layers - 1],
        )
    else:
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor as Video

        text.update(head_dim=head_dim)
        text["rope_parameters"]["mrope_interleaved"] = True
        vision.update(
            hidden_size=size.vision_hidden,
            intermediate_size=2 * size.vision_hidden,
            out_hidden_size=size.hidden,
            num_position_embeddings=64,
        )
        if family == "colqwen3":
            from transformers.models.qwen3_vl import Qwen3VLConfig as Config

            model_cls, processor_cls = cem.ColQwen3, cem.ColQwen3Processor
            vision.update(deepstack_visual_indexes=[0])
        else:
            from transformers.models.qwen3_5 import Qwen3_5Config as Config

            model_cls, processor_cls = cem.ColQwen3_5, cem.ColQwen3_5Processor
            # Real Qwen3.5 has one full-attention layer in four; alternate here so two are scorable.
            text.update(
                layer_types=["linear_attention", "full_attention"] * (size.layers // 2),
                linear_conv_kernel_dim=4,
                linear_key_head_dim=head_dim,
                linear_value_head_dim=head_dim,
                linear_num_key_heads=size.kv_heads,
                linear_num_value_heads=size.heads,
            )
            text["rope_parameters"].update(mrope_section=[2, 1, 1], partial_rotary_factor=0.5)
    video = Video(patch_size=patch, merge_size=2, temporal_patch_size=2) if qwen3 else Video()
    processor = processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video)
    config = Config(text_config=text, vision_config=vision, **_ids(tokenizer))
    return init_weights(model_cls(config), seed), processor


def _spec(name: str, display: str, model_type: str, processor: str) -> FamilySpec:
    return FamilySpec(
        name=name,
        display=display,
        model_types=(model_type,),
        model_class=display,
        processor_class=processor,
        text_model=_text_model,
        image_token_id=_image_token_id,
        grid=_grid,
        backbone_forward=_backbone_forward,
        tiny=lambda size, seed: _build(name, size, seed),
        architectures=(display,),
    )


SPECS = (
    _spec("colqwen2", "ColQwen2", "qwen2_vl", "ColQwen2Processor"),
    _spec("colqwen2_5", "ColQwen2_5", "qwen2_5_vl", "ColQwen2_5_Processor"),
    _spec("colqwen3", "ColQwen3", "qwen3_vl", "ColQwen3Processor"),
    _spec("colqwen3_5", "ColQwen3_5", "qwen3_5", "ColQwen3_5Processor"),
)
