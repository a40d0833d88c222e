"""PageEncoder: pages -> PageEncoding (visual-token embeddings + in-degrees), queries -> multi-vectors."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from ..ingest.images import load_image
from ..model_spec import resolve_spec
from ..types import PageEncoding
from .attention import AttentionCapture, indegree_from_attention
from .families import FamilySpec

logger = logging.getLogger(__name__)

__all__ = ["PageEncoder"]


class PageEncoder:
    """A colpali-engine model and processor, with SAP's attention statistics computed on the fly.

    Build one with :func:`sap_rag.load_encoder`. Attributes: ``model``, ``processor``,
    ``family`` (e.g. ``"colqwen2"``), ``num_layers`` (language-model decoder layers),
    ``window`` (layers whose mean in-degree is the SAP score), ``dim``, ``spec`` (what it was
    loaded from: a hub id, ``tiny:<family>``, or a local folder's absolute path), ``scorable_layers``
    (layers that return attention weights).
    """

    def __init__(
        self,
        model: nn.Module,
        processor: Any,
        family: FamilySpec,
        *,
        spec: str,
        window: Sequence[int],
        batch_size: int = 4,
        window_source: str = "default",
    ) -> None:
        self.model = model.eval()
        self.processor = processor
        self.family_spec = family
        self.spec = resolve_spec(spec)  # an index records it: a relative folder would not open elsewhere
        self.batch_size = int(batch_size)
        self._attention_modules = family.attention_modules(model)
        self._text_model = family.text_model(model)
        self._capture = AttentionCapture(self._text_model.config, self._attention_modules)
        self.num_layers = len(self._text_model.layers)
        self.image_token_id = family.image_token_id(model.config)
        from ..calibration.window import validate_window

        self.window = validate_window(window, self.num_layers, self.scorable_layers)
        self.window_source = window_source
        # Page forwards switch the text model's attention implementation and install sinks for
        # their duration, so forwards from several threads (a framework's batch()) must not overlap.
        self._forward_lock = threading.RLock()

    # --- descriptive properties -----------------------------------------------------------

    @property
    def family(self) -> str:
        return self.family_spec.name

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    @property
    def scorable_layers(self) -> tuple[int, ...]:
        return tuple(sorted(self._attention_modules))

    @property
    def dim(self) -> int:
        return int(getattr(self.model, "dim", 128))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of this encoder (stored in index manifests).

        ``spec`` is a hub id, a ``tiny:<family>`` spec or a local checkpoint folder's absolute path,
        so that an index opens its model from any working directory.
        """
        return {
            "spec": self.spec,
            "family": self.family,
            "model_type": self.model_type,
            "num_layers": self.num_layers,
            "dim": self.dim,
            "window": list(self.window),
            "window_source": self.window_source,
        }

    def __repr__(self) -> str:
        return (
            f"PageEncoder(spec={self.spec!r}, family={self.family!r}, layers={self.num_layers}, "
            f"window={list(self.window)}, device={self.device})"
        )

    # --- pages ------------------------------------------------------------------------------

    def _resolve_layers(self, indegree_layers: str | Iterable[int] | None) -> tuple[int, ...]:
        if indegree_layers is None or indegree_layers == "none":
            return ()
        if indegree_layers == "window":
            return self.window
        if indegree_layers == "all":
            return self.scorable_layers
        if isinstance(indegree_layers, str):
            raise InvalidInputError(
                f"indegree_layers must be 'window', 'all', 'none' or a list of layers, got {indegree_layers!r}"
            )
        from ..calibration.window import validate_window

        return validate_window(list(indegree_layers), self.num_layers, self.scorable_layers)

    def _to_device(self, batch: dict) -> dict:
        moved = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            moved[key] = value
        return moved

    def encode_pages(
        self,
        images: Sequence[Any],
        *,
        batch_size: int | None = None,
        indegree_layers: str | Iterable[int] | None = "window",
        eos_attention: bool = False,
        show_progress: bool = False,
    ) -> list[PageEncoding]:
        """Encode page images.

        Args:
            images: PIL images, image file paths, or image bytes.
            batch_size: pages per forward (default: the encoder's).
            indegree_layers: ``"window"`` (what SAP needs), ``"all"`` (every scorable layer, for
                calibration), ``"none"``, or a list of layer indices.
            eos_attention: also record the last layer's attention from the last real token
                (the signal of DocPruner-style pruning).
            show_progress: show a progress bar.

        Returns:
            One :class:`PageEncoding` per image, in order.
        """
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            raise InvalidInputError(
                f"encode_pages takes a list of images, got {type(images).__name__}; wrap a single page in a list"
            )
        if len(images) == 0:
            raise InvalidInputError("encode_pages got an empty list of images; pass at least one page")
        pages = [load_image(image, name=f"image #{i}") for i, image in enumerate(images)]
        layers = self._resolve_layers(indegree_layers)
        eos_layer = (self.scorable_layers[-1] if self.scorable_layers else None) if eos_attention else None
        size = batch_size or self.batch_size
        results: list[PageEncoding] = []
        from ..progress import progress

        with progress(total=len(pages), desc="encoding pages", unit="page", enabled=show_progress) as bar:
            for start in range(0, len(pages), size):
                chunk = pages[start : start + size]
                results.extend(self._encode_chunk(chunk, layers, eos_layer))
                bar.update(len(chunk))
        return results

    def _encode_chunk(self, images: list, layers: tuple[int, ...], eos_layer: int | None) -> list[PageEncoding]:
        batch = self.preprocess(images)
        return self._encode_batch(batch, [image.size for image in images], layers, eos_layer)

    def preprocess(self, images: Sequence[Any]) -> dict[str, Any]:
        """Run the processor on page images: the model inputs of one batch, on the CPU.

        Split from :meth:`encode_processed` so the processor can run elsewhere (DataLoader
        workers) and so benchmarks can time the model alone. Images as in :meth:`encode_pages`.
        """
        pages = [load_image(image, name=f"image #{i}") for i, image in enumerate(images)]
        batch = self.family_spec.prepare_inputs(dict(self.processor.process_images(pages)))
        batch["_image_sizes"] = [page.size for page in pages]
        return batch

    def encode_processed(
        self,
        batch: dict[str, Any],
        *,
        indegree_layers: str | Iterable[int] | None = "window",
        eos_attention: bool = False,
    ) -> list[PageEncoding]:
        """:meth:`encode_pages` for a batch made by :meth:`preprocess` (one forward pass)."""
        batch = dict(batch)
        sizes = batch.pop("_image_sizes", None) or [(0, 0)] * len(batch["input_ids"])
        layers = self._resolve_layers(indegree_layers)
        eos_layer = (self.scorable_layers[-1] if self.scorable_layers else None) if eos_attention else None
        return self._encode_batch(batch, sizes, layers, eos_layer)

    @torch.no_grad()
    def _encode_batch(
        self, batch: dict[str, Any], sizes: list[tuple[int, int]], layers: tuple[int, ...], eos_layer: int | None
    ) -> list[PageEncoding]:
        batch = self._to_device({key: value for key, value in batch.items() if key != "_image_sizes"})
        input_ids = batch["input_ids"]
        visual_mask = input_ids == self.image_token_id
        visual = [row.nonzero().flatten() for row in visual_mask]
        last_token = [int(row.nonzero().max()) for row in batch["attention_mask"]]
        with self._forward_lock:
            if layers or eos_layer is not None:
                with self._capture.capture(layers, visual, last_token, eos_layer) as request:
                    output = self.model(**batch)
            else:
                request = None
                output = self.model(**batch)
        if request is not None:
            means = {layer: request.indegree(layer, "mean") for layer in layers}
            maxes = {layer: request.indegree(layer, "max") for layer in layers}
            counts = {layer: request.attenders(layer) for layer in layers}  # for the debiased SAP score
        pages = []
        for b, size in enumerate(sizes):
            embeddings = output[b, visual[b]].to(torch.float32).cpu()
            positions, extents, grid_shape = self.family_spec.grid(
                batch, b, int(visual[b].numel()), self.model, self.processor
            )
            indegree = {layer: means[layer][b] for layer in layers} if request else {}
            indegree_max = {layer: maxes[layer][b] for layer in layers} if request else {}
            attenders = {layer: counts[layer][b] for layer in layers} if request else {}
            in_window = all(layer in indegree for layer in self.window)
            sap_scores = torch.stack([indegree[layer] for layer in self.window]).mean(dim=0) if in_window else None
            pages.append(
                PageEncoding(
                    embeddings=embeddings,
                    positions=positions,
                    grid_shape=grid_shape,
                    extents=extents,
                    indegree=indegree,
                    indegree_max=indegree_max,
                    attenders=attenders,
                    window=self.window,
                    sap_scores=sap_scores,
                    eos_attention=request.eos[b] if request is not None and eos_layer is not None else None,
                    image_size=tuple(size),
                )
            )
        return pages

    # --- queries ----------------------------------------------------------------------------

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> list[torch.Tensor]:
        """Encode query strings to ``(n_tokens, dim)`` float32 tensors (padding removed)."""
        from .compiled import check_query_strings

        check_query_strings(queries)
        size = batch_size or max(self.batch_size, 16)
        out: list[torch.Tensor] = []
        from ..progress import progress

        with progress(total=len(queries), desc="encoding queries", unit="query", enabled=show_progress) as bar:
            for start in range(0, len(queries), size):
                chunk = list(queries[start : start + size])
                processed = dict(self.processor.process_queries(chunk))
                batch = self._to_device(self.family_spec.prepare_inputs(processed))
                with torch.no_grad(), self._forward_lock:
                    output = self.model(**batch)
                mask = batch["attention_mask"].bool()
                out.extend(output[b, mask[b]].to(torch.float32).cpu() for b in range(len(chunk)))
                bar.update(len(chunk))
        return out

    # --- the slow reference ----------------------------------------------------------------

    @torch.no_grad()
    def naive_indegree(self, images: Sequence[Any] | dict[str, Any]) -> list[dict[int, torch.Tensor]]:
        """The naive way: eager attention with ``output_attentions=True`` on every layer.

        ``images`` may also be a batch from :meth:`preprocess`. Returns, per page, layer ->
        ``(N,)`` head-mean in-degree. Materialises every layer's
        full attention maps; kept as the reference the fast path is checked and benchmarked
        against, not for production use.
        """
        batch = images if isinstance(images, dict) else self.preprocess(images)
        batch = self._to_device({key: value for key, value in batch.items() if key != "_image_sizes"})
        visual_mask = batch["input_ids"] == self.image_token_id
        with self._forward_lock:
            attentions = self.family_spec.reference_attentions(self.model, batch)
        results = []
        for b in range(len(batch["input_ids"])):
            visual = visual_mask[b].nonzero().flatten()
            results.append(
                {
                    layer: indegree_from_attention(attn[b], visual).mean(dim=0).cpu()
                    for layer, attn in attentions.items()
                }
            )
        return results
