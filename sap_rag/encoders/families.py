"""What the encoder must know about each ColPali-family model: classes, visual tokens, layers, grid.

A family is detected from the checkpoint's ``config.model_type`` (never from its name).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UnknownFamilyError

__all__ = ["FAMILIES", "FamilySpec", "family_for_model_type", "get_family"]

Grid = tuple[torch.Tensor, torch.Tensor, tuple[int, int]]  # positions (N,2), extents (N,2), grid_shape


@dataclass(frozen=True)
class FamilySpec:
    """How to drive one colpali-engine model family.

    Attributes:
        name: short id used in ``tiny:<name>`` specs and manifests (``"colqwen2"``).
        display: the colpali-engine class name (``"ColQwen2"``).
        model_types: ``config.model_type`` values that select this family.
        model_class: attribute of ``colpali_engine.models`` holding the model class.
        processor_class: attribute of ``colpali_engine.models`` holding the processor class.
        text_model: model -> the language model, whose ``.layers`` are the decoder layers and
            whose ``.config`` is the text config.
        image_token_id: model config -> id of the image-patch token in ``input_ids``.
        grid: (batch, page index, N, model) -> positions, extents and grid shape of the page's
            N visual tokens, in sequence order.
        backbone_attentions: (model, batch) -> per-layer ``(B, H, S, S)`` attentions from the
            backbone called with ``output_attentions=True`` (the slow reference; the model must
            be in eager mode).
        attention_attr: name of the attention submodule of a decoder layer.
    """

    name: str
    display: str
    model_types: tuple[str, ...]
    model_class: str
    processor_class: str
    text_model: Callable[[nn.Module], nn.Module]
    image_token_id: Callable[[object], int]
    grid: Callable[[dict, int, int, nn.Module], Grid]
    backbone_attentions: Callable[[nn.Module, dict], tuple[torch.Tensor, ...]]
    attention_attr: str = "self_attn"

    def attention_modules(self, model: nn.Module) -> dict[int, nn.Module]:
        """Layer index -> attention module, for the layers that return attention weights."""
        modules = {}
        for index, layer in enumerate(self.text_model(model).layers):
            module = getattr(layer, self.attention_attr, None)
            if module is not None:
                modules[index] = module
        return modules


def _raster(
    rows: int, cols: int, n: int, row0: float = 0.0, col0: float = 0.0, scale: tuple[float, float] = (1, 1)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and extents of ``n`` tokens laid out row-major on a ``rows x cols`` grid."""
    k = torch.arange(n)
    positions = torch.stack([(k // cols).float() * scale[0] + row0, (k % cols).float() * scale[1] + col0], dim=1)
    extents = torch.tensor([scale], dtype=torch.float32).expand(n, 2).clone()
    return positions, extents


def _square_grid(batch: dict, b: int, n: int, model: nn.Module) -> Grid:
    """Tokens of one square patch grid, row-major (SigLIP-style towers)."""
    side = math.isqrt(n)
    if side * side != n:
        side = max(1, side)
        cols = math.ceil(n / side)
        positions, extents = _raster(side, cols, n)
        return positions, extents, (math.ceil(n / cols), cols)
    positions, extents = _raster(side, side, n)
    return positions, extents, (side, side)


# --- Qwen2-VL family -------------------------------------------------------------------------


def _qwen_text_model(model: nn.Module) -> nn.Module:
    return model.language_model


def _qwen_image_token_id(config) -> int:
    return int(config.image_token_id)


def _qwen_grid(batch: dict, b: int, n: int, model: nn.Module) -> Grid:
    # One LLM token per merge x merge block of patches, in row-major order of the merged grid.
    t, h, w = (int(v) for v in batch["image_grid_thw"][b])
    merge = int(model.config.vision_config.spatial_merge_size)
    rows, cols = h // merge, w // merge
    if t * rows * cols != n:
        raise RuntimeError(f"image_grid_thw {t, h, w} implies {t * rows * cols} tokens, found {n}")
    positions, extents = _raster(rows, cols, n)
    return positions, extents, (rows, cols)


def _qwen_backbone_attentions(model: nn.Module, batch: dict) -> tuple[torch.Tensor, ...]:
    kwargs = dict(batch)
    if "pixel_values" in kwargs:
        # ColQwen processors pad pixel_values per batch; the backbone wants them concatenated.
        offsets = kwargs["image_grid_thw"][:, 1] * kwargs["image_grid_thw"][:, 2]
        kwargs["pixel_values"] = torch.cat([p[:o] for p, o in zip(kwargs["pixel_values"], offsets)], dim=0)
    base = type(model).__mro__[1]  # Qwen2VLModel / Qwen2_5_VLModel: the Col* class's parent
    out = base.forward(model, **kwargs, output_attentions=True, return_dict=True, use_cache=False)
    return tuple(out.attentions)


FAMILIES: dict[str, FamilySpec] = {
    "colqwen2": FamilySpec(
        name="colqwen2",
        display="ColQwen2",
        model_types=("qwen2_vl",),
        model_class="ColQwen2",
        processor_class="ColQwen2Processor",
        text_model=_qwen_text_model,
        image_token_id=_qwen_image_token_id,
        grid=_qwen_grid,
        backbone_attentions=_qwen_backbone_attentions,
    ),
    "colqwen2_5": FamilySpec(
        name="colqwen2_5",
        display="ColQwen2_5",
        model_types=("qwen2_5_vl",),
        model_class="ColQwen2_5",
        processor_class="ColQwen2_5_Processor",
        text_model=_qwen_text_model,
        image_token_id=_qwen_image_token_id,
        grid=_qwen_grid,
        backbone_attentions=_qwen_backbone_attentions,
    ),
}

ALIASES = {"colsmol": "colidefics3", "colqwen2.5": "colqwen2_5", "colqwen3.5": "colqwen3_5"}


def get_family(name: str) -> FamilySpec:
    """The family registered as ``name`` (case-insensitive; ``colsmol`` = ``colidefics3``)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in FAMILIES:
        raise UnknownFamilyError(f"unknown model family {name!r}; supported: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[key]


def family_for_model_type(model_type: str, source: str = "the checkpoint") -> FamilySpec:
    """The family whose backbone has ``config.model_type == model_type``."""
    for spec in FAMILIES.values():
        if model_type in spec.model_types:
            return spec
    known = sorted(t for spec in FAMILIES.values() for t in spec.model_types)
    raise UnknownFamilyError(
        f"{source} has model_type {model_type!r}, which is not a supported ColPali-family backbone "
        f"(supported: {', '.join(known)}); pass a ColPali/ColQwen/ColSmol checkpoint"
    )
