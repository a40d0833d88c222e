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

__all__ = ["ATTN_IMPLEMENTATION", "AttentionCapture", "indegree_from_attention", "visual_attenders"]

ATTN_IMPLEMENTATION = "sap_rag"
_SINK_ATTR = "_sap_rag_sink"
_CHUNK_ELEMENTS = 4_000_000  # attention weights held at once by a scored layer (16 MB in float32)
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


def _row_chunk(batch: int, heads: int, kv_len: int) -> int:
    """Query rows per eager call, so one chunk's weights stay near ``_CHUNK_ELEMENTS`` floats."""
    return max(1, _CHUNK_ELEMENTS // max(1, batch * heads * kv_len))


def _dispatch(module: nn.Module, query, key, value, attention_mask, **kwargs):
    sink = getattr(module, _SINK_ATTR, None)
    if sink is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", _generic_eager)
    mask = _additive_mask(module, query, key, attention_mask)
    q_len = query.shape[2]
    step = _row_chunk(query.shape[0], query.shape[1], key.shape[2])
    output = None
    # Softmax is row-wise, so running the family's own eager attention over blocks of query rows
    # gives exactly its output and weights while holding only one block's (rows x seq) maps.
    for start in range(0, q_len, step):
        stop = min(q_len, start + step)
        rows_mask = mask[:, :, start:stop] if mask is not None and mask.shape[2] == q_len else mask
        out, weights = eager(module, query[:, :, start:stop], key, value, rows_mask, **kwargs)
        sink(weights, start, rows_mask)
        if step >= q_len:
            output = out
        else:
            if output is None:  # (batch, q_len, heads, head_dim), filled block by block
                output = out.new_empty((out.shape[0], q_len, *out.shape[2:]))
            output[:, start:stop] = out
    # Returning no weights lets the maps be freed as soon as they are reduced.
    return output, None


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


def visual_attenders(num_tokens: int, causal: bool) -> torch.Tensor:
    """``(N,)`` float32: how many of a page's N visual tokens can attend each visual token.

    The in-degree ``c[j] = sum_{i in V} A[i, j]`` is a sum over those attenders, so in a causal
    backbone (token j attended only by ``i >= j``; visual tokens in sequence order) the first
    visual token has N terms and the last one 1: raw in-degree favours early tokens. Dividing by
    this count gives the mean attention a token receives per attender. Bidirectional attention over
    the image (prefix-LM, encoders): N for every token, so the division changes no ranking.

    >>> visual_attenders(4, causal=True).tolist(), visual_attenders(3, causal=False).tolist()
    ([4.0, 3.0, 2.0, 1.0], [3.0, 3.0, 3.0])
    """
    n = int(num_tokens)
    if causal:
        return torch.arange(n, 0, -1, dtype=torch.float32)
    return torch.full((n,), float(n), dtype=torch.float32)


def _attenders_in_rows(
    mask: torch.Tensor | None, b: int, rows: torch.Tensor, visual: torch.Tensor, chunk_rows: int
) -> torch.Tensor:
    """``(N,)`` float32: for each visual column, how many of the query ``rows`` (chunk-local indices
    of visual tokens) the additive ``mask`` lets attend it (None: every row attends everywhere)."""
    n = int(visual.numel())
    if mask is None:
        return torch.full((n,), float(rows.numel()), dtype=torch.float32)
    page_mask = mask[b if mask.shape[0] > 1 else 0]  # (heads or 1, rows, seq)
    if page_mask.shape[1] == 1 and chunk_rows > 1:  # one mask row broadcast over the chunk
        page_mask = page_mask.expand(-1, chunk_rows, -1)
    block = page_mask.index_select(1, rows.to(page_mask.device)).index_select(2, visual.to(page_mask.device))
    # A masked entry is finfo.min (or -inf); an allowed one 0 (or a finite bias).
    allowed = (block > torch.finfo(block.dtype).min / 2).any(dim=0)  # (rows, N): any head may attend
    return allowed.sum(dim=0).to(torch.float32).cpu()


@dataclass
class _Request:
    visual: list[torch.Tensor]  # per page: (N_b,) positions of its visual tokens
    last_token: list[int]  # per page: position of the last real (non-pad) token
    eos_layer: int | None
    # layer -> per page: (heads, N_b) in-degree summed over the query rows seen so far
    head_sums: dict[int, list[torch.Tensor]] = field(default_factory=dict)
    eos: list[torch.Tensor | None] = field(default_factory=list)  # per page, filled by the last layer
    # layer -> per page: (N_b,) how many visual rows the mask lets attend each visual column
    attender_counts: dict[int, list[torch.Tensor]] = field(default_factory=dict)

    def indegree(self, layer: int, reduce: str) -> list[torch.Tensor]:
        """Per page, ``(N_b,)`` in-degree at ``layer`` reduced over heads by ``"mean"`` or ``"max"``."""
        sums = self.head_sums[layer]
        return [s.mean(dim=0) if reduce == "mean" else s.max(dim=0).values for s in sums]

    def attenders(self, layer: int) -> list[torch.Tensor]:
        """Per page, ``(N_b,)`` float32: how many of its visual tokens the attention mask of ``layer``
        lets attend each visual token (causal, prefix-LM, sliding windows and padding as the model
        masks them); what ``PageEncoding.attenders`` holds and SAP's debiased score divides by."""
        return list(self.attender_counts[layer])


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
        request = _Request(visual=visual, last_token=last_token, eos_layer=eos_layer, eos=[None] * len(visual))
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
        def sink(weights: torch.Tensor, start: int, mask: torch.Tensor | None = None) -> None:
            # weights: (batch, heads, rows, seq) for query rows start .. start + rows; mask: the
            # additive mask these rows were computed with ((batch or 1, heads or 1, rows, seq)), or None
            rows = weights.shape[2]
            with torch.no_grad():
                if want_indegree:
                    sums = request.head_sums.setdefault(layer, [None] * len(request.visual))
                    counts = request.attender_counts.setdefault(layer, [None] * len(request.visual))
                    for b, visual in enumerate(request.visual):
                        # Sum the visual rows with a matrix-vector product: one read of the map, no copy.
                        rows_visual = torch.zeros(rows, dtype=torch.float32, device=weights.device)
                        local = visual[(visual >= start) & (visual < start + rows)] - start
                        rows_visual[local] = 1.0
                        block = weights[b] if weights.dtype == torch.float32 else weights[b].float()
                        column_sums = torch.matmul(rows_visual, block)  # (heads, seq)
                        partial = column_sums.index_select(1, visual).cpu()  # (heads, N_b)
                        sums[b] = partial if sums[b] is None else sums[b] + partial
                        allowed = _attenders_in_rows(mask, b, local, visual, rows)
                        counts[b] = allowed if counts[b] is None else counts[b] + allowed
                if layer == request.eos_layer:
                    for b, visual in enumerate(request.visual):
                        last = request.last_token[b]
                        if start <= last < start + rows:
                            row = weights[b][:, last - start].index_select(1, visual)
                            request.eos[b] = row.to(torch.float32).mean(dim=0).cpu()

        return sink
