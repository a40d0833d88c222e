"""FamilySpec: what the encoder must know to drive one colpali-engine model family."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["FamilySpec", "Grid", "raster", "square_grid", "unpad_qwen_pixels"]

# positions (N, 2), extents (N, 2), grid_shape (rows, cols)
Grid = tuple[torch.Tensor, torch.Tensor, tuple[int, int]]


def _identity(batch: dict[str, Any]) -> dict[str, Any]:
    return batch


@dataclass(frozen=True)
class FamilySpec:
    """How to drive one colpali-engine model family.

    Attributes:
        name: short id used in ``tiny:<name>`` specs and manifests (``"colqwen2"``).
        display: the colpali-engine class name (``"ColQwen2"``).
        model_types: ``config.model_type`` values that select this family.
        model_class / processor_class: attributes of ``colpali_engine.models``.
        text_model: model -> the language model, whose ``.layers`` are the decoder layers and whose
            ``.config`` is the text config.
        image_token_id: model config -> id of the image-patch token in ``input_ids``.
        grid: (batch, page index, N, model, processor) -> positions, extents and grid shape of the
            page's N visual tokens, in sequence order.
        backbone_forward: (model, batch) -> the backbone's output when called with
            ``output_attentions=True`` (its ``.attentions`` hold one map per scorable layer).
        attention_attr: name of a decoder layer's attention submodule.
        prepare_inputs: processor output -> model kwargs (drops what the forward does not need).
        tiny: builder of a tiny random-weight ``(model, processor)``: (TinySize, seed) -> pair.
        architectures: ``config.architectures`` names that select this family before model_type.
        causal_visual: whether a visual token can be attended only by the tokens after it (a causal
            language model over the image: Qwen-VL, Idefics3/SmolVLM) rather than by every token of
            the image (PaliGemma's prefix-LM, Gemma3's bidirectional image blocks, ModernVBert's
            encoder). It fixes how many visual tokens can attend each one
            (:func:`sap_rag.encoders.attention.visual_attenders`), which SAP's debiased score divides by.
            Exact for every layer whose attention spans the image; a sliding-window layer with a
            window shorter than the image (Gemma3's are 512-1024 tokens, an image 256) has fewer.
    """

    name: str
    display: str
    model_types: tuple[str, ...]
    model_class: str
    processor_class: str
    text_model: Callable[[nn.Module], nn.Module]
    image_token_id: Callable[[Any], int]
    grid: Callable[[dict, int, int, nn.Module, Any], Grid]
    backbone_forward: Callable[[nn.Module, dict], Any]
    attention_attr: str = "self_attn"
    prepare_inputs: Callable[[dict[str, Any]], dict[str, Any]] = _identity
    tiny: Callable[..., tuple[nn.Module, Any]] | None = None
    architectures: tuple[str, ...] = field(default=())
    causal_visual: bool = True

    def attention_modules(self, model: nn.Module) -> dict[int, nn.Module]:
        """Layer index -> attention module, for the layers that return attention weights.

        Linear-attention layers of hybrid models (Qwen3.5) have no such module and are skipped.
        """
        text = self.text_model(model)
        layer_types = getattr(text.config, "layer_types", None)
        modules = {}
        for index, layer in enumerate(text.layers):
            module = getattr(layer, self.attention_attr, None)
            if module is None or (layer_types is not None and layer_types[index] == "linear_attention"):
                continue
            modules[index] = module
        return modules

    def reference_attentions(self, model: nn.Module, batch: dict[str, Any]) -> dict[int, torch.Tensor]:
        """The slow way: eager attention with ``output_attentions=True`` on every layer.

        Returns layer index -> ``(B, H, S, S)`` post-softmax attention, for every scorable layer.
        Materialises all of them at once: a reference for tests and benchmarks, not for indexing.
        """
        text_config = self.text_model(model).config
        previous = text_config._attn_implementation
        text_config._attn_implementation = "eager"
        try:
            with torch.no_grad():
                output = self.backbone_forward(model, self.prepare_inputs(dict(batch)))
        finally:
            text_config._attn_implementation = previous
        layers = sorted(self.attention_modules(model))
        attentions = [a for a in output.attentions if a is not None]
        if len(attentions) != len(layers):
            raise RuntimeError(f"backbone returned {len(attentions)} attention maps for scorable layers {layers}")
        return dict(zip(layers, attentions))


def raster(rows: int, cols: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and unit extents of ``n`` tokens laid out row-major on a grid ``cols`` wide."""
    k = torch.arange(n)
    positions = torch.stack([(k // cols).float(), (k % cols).float()], dim=1)
    return positions, torch.ones(n, 2)


def square_grid(n: int) -> Grid:
    """One square patch grid, row-major (SigLIP-style towers; the page is stretched to a square)."""
    side = math.isqrt(n)
    if side * side != n:
        raise RuntimeError(f"expected a square number of image tokens, found {n}")
    positions, extents = raster(side, side, n)
    return positions, extents, (side, side)


def unpad_qwen_pixels(batch: dict[str, Any]) -> dict[str, Any]:
    """ColQwen processors pad ``pixel_values`` per batch; the backbone wants them concatenated."""
    kwargs = dict(batch)
    if "pixel_values" in kwargs:
        offsets = kwargs["image_grid_thw"][:, 1] * kwargs["image_grid_thw"][:, 2]
        kwargs["pixel_values"] = torch.cat([p[:o] for p, o in zip(kwargs["pixel_values"], offsets)], dim=0)
    return kwargs
