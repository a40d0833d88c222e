"""Idefics3-style backbones: ColIdefics3 (ColSmol, Llama text) and ColModernVBert (ModernBERT text).

The page is split into tiles of ``image_seq_len`` tokens each, announced by ``<row_i_col_j>``
markers, followed by a global (whole-page, downscaled) tile announced by ``<global-img>``. Only
the ``<image>`` tokens are visual; the markers are not.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..._compat import import_colpali_engine
from .base import FamilySpec, Grid

_MAX_TILES = 6
ROW_COL = [f"<row_{r}_col_{c}>" for r in range(1, _MAX_TILES + 1) for c in range(1, _MAX_TILES + 1)]


def _text_model(model: nn.Module) -> nn.Module:
    return model.model.text_model


def _image_token_id(config: Any) -> int:
    return int(config.image_token_id)


def _token_tiles(processor: Any, input_ids: list[int]) -> list[tuple[int, int] | None]:
    """Per visual token, in sequence order: its tile ``(row, col)``, or None for the global tile."""
    tokenizer = processor.tokenizer
    image = tokenizer.convert_tokens_to_ids(processor.image_token)
    global_tag = tokenizer.convert_tokens_to_ids(processor.global_image_tag)
    markers = {}
    for r in range(1, _MAX_TILES + 1):
        for c in range(1, _MAX_TILES + 1):
            token_id = tokenizer.convert_tokens_to_ids(f"<row_{r}_col_{c}>")
            if token_id is not None and token_id != tokenizer.unk_token_id:
                markers[token_id] = (r - 1, c - 1)
    current: tuple[int, int] | None = None
    tiles = []
    for token in input_ids:
        if token in markers:
            current = markers[token]
        elif token == global_tag:
            current = None
        elif token == image:
            tiles.append(current)
    return tiles


def _grid(batch: dict, b: int, n: int, model: nn.Module, processor: Any) -> Grid:
    tiles = _token_tiles(processor, batch["input_ids"][b].tolist())
    if len(tiles) != n:
        raise RuntimeError(f"found {len(tiles)} image tokens after tile markers, expected {n}")
    side = math.isqrt(int(processor.image_seq_len))  # a tile is side x side tokens
    split = [t for t in tiles if t is not None]
    rows = 1 + max(t[0] for t in split) if split else 1
    cols = 1 + max(t[1] for t in split) if split else 1
    positions, extents, seen = [], [], {}
    for tile in tiles:
        k = seen.get(tile, 0)
        seen[tile] = k + 1
        a, c = divmod(k, side)
        if tile is not None:
            positions.append((tile[0] * side + a, tile[1] * side + c))
            extents.append((1.0, 1.0))
        elif split:
            # A global-tile token covers a rows x cols block of the fine grid of the split tiles.
            positions.append((a * rows, c * cols))
            extents.append((float(rows), float(cols)))
        else:  # an unsplit page: the global tile is the grid
            positions.append((a, c))
            extents.append((1.0, 1.0))
    grid_shape = (rows * side, cols * side)
    return torch.tensor(positions, dtype=torch.float32), torch.tensor(extents, dtype=torch.float32), grid_shape


def _idefics_backbone_forward(model: nn.Module, batch: dict) -> Any:
    from transformers import Idefics3Model

    return Idefics3Model.forward(model.model, **batch, output_attentions=True, return_dict=True, use_cache=False)


def _modernvbert_backbone_forward(model: nn.Module, batch: dict) -> Any:
    from transformers.models.modernvbert import ModernVBertModel

    return ModernVBertModel.forward(model.model, **batch, output_attentions=True, return_dict=True)


def _build(family: str, size, seed: int):
    from transformers import Idefics3ImageProcessor

    from ..tiny import init_weights, train_tokenizer

    cem = import_colpali_engine()
    tile, patch, shuffle = 64, 8, 2
    image_seq_len = (tile // patch) ** 2 // shuffle**2  # tokens per tile (real ColSmol: 64)
    image_processor = Idefics3ImageProcessor(
        size={"longest_edge": 2 * tile}, max_image_size={"longest_edge": tile}, do_image_splitting=True
    )
    vision = dict(
        hidden_size=size.vision_hidden,
        intermediate_size=2 * size.vision_hidden,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=2,
        image_size=tile,
        patch_size=patch,
    )
    text = dict(
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        max_position_embeddings=4096,
    )
    if family == "colidefics3":
        from transformers import Idefics3Config

        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<end_of_utterance>"]
        specials += ["<fake_token_around_image>", "<image>", "<global-img>", *ROW_COL]
        tokenizer = train_tokenizer(
            specials,
            bos_token="<|im_start|>",
            eos_token="<end_of_utterance>",
            pad_token="<|im_end|>",
            unk_token="<|endoftext|>",
        )
        processor = cem.ColIdefics3Processor(
            image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len
        )
        text.update(
            model_type="llama",
            vocab_size=len(processor.tokenizer),
            num_key_value_heads=size.kv_heads,
            head_dim=size.hidden // size.heads,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        config = Idefics3Config(
            text_config=text,
            vision_config=vision,
            scale_factor=shuffle,
            image_token_id=processor.image_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return init_weights(cem.ColIdefics3(config), seed), processor

    from transformers import ModernVBertConfig

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "<|begin_of_text|>", "<end_of_utterance>"]
    specials += ["<fake_token_around_image>", "<image>", "<global-img>", *ROW_COL]
    tokenizer = train_tokenizer(
        specials,
        bos_token="[CLS]",
        eos_token="[SEP]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        unk_token="[UNK]",
        mask_token="[MASK]",
    )
    processor = cem.ColModernVBertProcessor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=image_seq_len
    )
    text.update(
        model_type="modernbert",
        vocab_size=len(processor.tokenizer),
        # Bidirectional, with sliding-window layers (real window 128; 32 here so it clips).
        layer_types=["full_attention", "sliding_attention"] * (size.layers // 2),
        local_attention=32,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    vision["model_type"] = "siglip_vision_model"
    config = ModernVBertConfig(
        text_config=text, vision_config=vision, pixel_shuffle_factor=shuffle, image_token_id=processor.image_token_id
    )
    return init_weights(cem.ColModernVBert(config), seed), processor


SPECS = (
    FamilySpec(
        name="colidefics3",
        display="ColIdefics3",
        model_types=("idefics3",),
        model_class="ColIdefics3",
        processor_class="ColIdefics3Processor",
        text_model=_text_model,
        image_token_id=_image_token_id,
        grid=_grid,
        backbone_forward=_idefics_backbone_forward,
        tiny=lambda size, seed: _build("colidefics3", size, seed),
        architectures=("ColIdefics3",),
    ),
    FamilySpec(
        name="colmodernvbert",
        display="ColModernVBert",
        model_types=("modernvbert",),
        model_class="ColModernVBert",
        processor_class="ColModernVBertProcessor",
        text_model=_text_model,
        image_token_id=_image_token_id,
        grid=_grid,
        backbone_forward=_modernvbert_backbone_forward,
        attention_attr="attn",
        tiny=lambda size, seed: _build("colmodernvbert", size, seed),
        architectures=("ColModernVBert",),
        causal_visual=False,  # an encoder: every token attends every token
    ),
)
