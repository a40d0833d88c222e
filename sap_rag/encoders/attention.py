"""In-degree capture: eager attention on the requested layers only, reduced to N-vectors as it is produced.

We register an attention implementation named ``sap_rag`` with transformers. Attention modules
that carry a ``_sap_rag_sink`` attribute run their family's own eager attention (so the weights
are exactly those ``output_attentions=True`` would return) and hand the post-softmax weights to
the sink, which reduces them to per-token in-degrees at once; every other module runs SDPA. The
text model is switched to ``sap_rag`` only for the duration of a page forward, so no layer ever
keeps a seq x seq map beyond its own call.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["ATTN_IMPLEMENTATION", "AttentionCapture", "indegree_from_attention"]

ATTN_IMPLEMENTATION = "sap_rag"
_SINK_ATTR = "_sap_rag_sink"
_registered = False


def _generic_eager(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention for modules whose modeling file has no ``eager_attention_forward``."""
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scale
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key.shape[-2]]
    weights = torch.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


def _additive_mask(module: nn.Module, query: torch.Tensor, key: torch.Tensor, attention_mask):
    """The SDPA-style mask as the additive float mask eager attention expects.

    SDPA masks are boolean (True = attend) or None, where None means "causal" for a causal module
    with more than one query (SDPA's ``is_causal`` fast path) and "attend everywhere" otherwise.
    """
    q_len, kv_len = query.shape[2], key.shape[2]
    if attention_mask is None:
        if q_len > 1 and getattr(module, "is_causal", True):
            attention_mask = torch.ones(q_len, kv_len, dtype=torch.bool, device=query.device).tril(kv_len - q_len)
            attention_mask = attention_mask[None, None]
        else:
            return None
    if attention_mask.dtype == torch.bool:
        additive = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device)
        return additive.masked_fill(~attention_mask, torch.finfo(query.dtype).min)
    return attention_mask


def _dispatch(module: nn.Module, query, key, value, attention_mask, **kwargs):
    sink = getattr(module, _SINK_ATTR, None)
    if sink is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", _generic_eager)
    out, weights = eager(module, query, key, value, _additive_mask(module, query, key, attention_mask), **kwargs)
    sink(weights)
    # Returning no weights lets the map be freed as soon as this layer is done.
    return out, None


def register_attention() -> None:
    """Register the ``sap_rag`` attention and mask implementations with transformers (idempotent)."""
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_IMPLEMENTATION, _dispatch)
    # SDPA's own masks (None when plain causal) keep its fast path on the layers we do not score;
    # the scored layers turn them into eager's additive form themselves.
    AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)
    _registered = True


def indegree_from_attention(weights: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
    """Per-head in-degree of each visual token from one page's post-softmax attention.

    Args:
        weights: ``(heads, seq, seq)``, rows attend to columns.
        visual: ``(N,)`` int64 sequence positions of the visual tokens.

    Returns:
        ``(heads, N)``: ``sum_{i in V} A[h][i, j]`` for each visual j. The visual-to-visual block is
        not renormalised.
    """
    block = weights.index_select(1, visual).index_select(2, visual)
    return block.to(torch.float32).sum(dim=1)


@dataclass
class _Request:
    visual: list[torch.Tensor]  # per page: (N_b,) positions of its visual tokens
    last_token: list[int]  # per page: position of the last real (non-pad) token
    eos_layer: int | None
    indegree_mean: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    indegree_max: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    eos: list[torch.Tensor] = field(default_factory=list)


class AttentionCapture:
    """Installs sinks on chosen decoder layers' attention modules for one forward at a time.

    Args:
        text_config: the language model's config (switched to ``sap_rag`` during capture).
        attention_modules: layer index -> attention module, for every layer that can be scored.
    """

    def __init__(self, text_config, attention_modules: dict[int, nn.Module]) -> None:
        self.text_config = text_config
        self.attention_modules = attention_modules

    @contextmanager
    def capture(
        self,
        layers: Sequence[int],
        visual: list[torch.Tensor],
        last_token: list[int],
        eos_layer: int | None = None,
    ) -> Iterator[_Request]:
        """Within the block, a forward fills the yielded request's per-layer, per-page results."""
        register_attention()
        request = _Request(visual=visual, last_token=last_token, eos_layer=eos_layer)
        wanted = set(layers) | ({eos_layer} if eos_layer is not None else set())
        previous = self.text_config._attn_implementation
        try:
            for layer in wanted:
                setattr(self.attention_modules[layer], _SINK_ATTR, self._sink(layer, layer in set(layers), request))
            self.text_config._attn_implementation = ATTN_IMPLEMENTATION
            yield request
        finally:
            self.text_config._attn_implementation = previous
            for layer in wanted:
                if hasattr(self.attention_modules[layer], _SINK_ATTR):
                    delattr(self.attention_modules[layer], _SINK_ATTR)

    @staticmethod
    def _sink(layer: int, want_indegree: bool, request: _Request):
        def sink(weights: torch.Tensor) -> None:
            # weights: (batch, heads, seq, seq)
            with torch.no_grad():
                if want_indegree:
                    means, maxes = [], []
                    for b, visual in enumerate(request.visual):
                        per_head = indegree_from_attention(weights[b], visual)  # (heads, N_b)
                        means.append(per_head.mean(dim=0).cpu())
                        maxes.append(per_head.max(dim=0).values.cpu())
                    request.indegree_mean[layer] = means
                    request.indegree_max[layer] = maxes
                if layer == request.eos_layer:
                    request.eos = [
                        weights[b][:, request.last_token[b], visual].to(torch.float32).mean(dim=0).cpu()
                        for b, visual in enumerate(request.visual)
                    ]

        return sink
