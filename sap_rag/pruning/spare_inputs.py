"""What SPARE needs from the encoder that a ``PageEncoding`` does not carry yet.

* ``page.features``: ``(N, dim)`` the projected outputs at the visual tokens *before* the L2
  normalisation (colpali-engine models compute ``proj = custom_text_proj(h)`` and then divide by
  its norm; the stored embeddings differ in norm only by rounding, so they carry no magnitude).
* ``page.last_token_embedding``: ``(dim,)`` the normalised projected output at the page input's
  last real token (the end of the page prompt): the ``spare_lasttoken`` text side.
* :func:`query_prompt_embedding`: ``(M, dim)`` the model's query template with no words, encoded
  by the query path: the ``spare`` text side.

The encoder (``sap_rag.encoders``) does not expose the first two; :func:`attach_spare_inputs`
captures them with forward hooks on the model and its projection layer during an ordinary
``encoder.encode_pages`` call and sets them as attributes of the returned pages. When the encoder
records them itself (fields of the same names on ``PageEncoding``), this module is not needed.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import InvalidInputError
from ..types import PageEncoding

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder

logger = logging.getLogger(__name__)

__all__ = [
    "attach_spare_inputs",
    "cached_spare_inputs",
    "capture_projection",
    "projection_module",
    "query_prompt_embedding",
]

SIDECAR = "spare_inputs.pt"
PROMPT_FILE = "spare_query_prompt.pt"

# colpali-engine's name for the final projection: ColPali/ColQwen*/ColGemma3 and ColIdefics3.
_PROJECTION_NAMES = ("custom_text_proj", "linear")


def projection_module(model: nn.Module) -> nn.Module:
    """The model's final projection layer (hidden size -> dim), whose output is normalised afterwards."""
    for name in _PROJECTION_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Linear):
            return module
    raise InvalidInputError(
        f"{type(model).__name__} has no projection layer named one of {_PROJECTION_NAMES}; "
        "SPARE's pre-normalisation features cannot be captured for this model"
    )


@contextmanager
def capture_projection(model: nn.Module) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Record, per forward of ``model``, its ``input_ids``, ``attention_mask`` and projection output.

    Yields a list that receives one ``{"input_ids", "attention_mask", "proj"}`` dict per forward
    (``proj``: ``(B, S, dim)`` float32 on the CPU). The hooks are removed on exit.
    """
    records: list[dict[str, torch.Tensor]] = []
    pending: dict[str, torch.Tensor] = {}

    def before(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        pending.clear()
        pending["input_ids"] = kwargs["input_ids"].detach().cpu()
        pending["attention_mask"] = kwargs["attention_mask"].detach().cpu()

    def after(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        if "input_ids" in pending:
            records.append({**pending, "proj": output.detach().to(torch.float32).cpu()})
            pending.clear()

    handles = [
        model.register_forward_pre_hook(before, with_kwargs=True),
        projection_module(model).register_forward_hook(after),
    ]
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def attach_spare_inputs(
    encoder: PageEncoder, images: Sequence[Any], pages: Sequence[PageEncoding] | None = None, **encode_options: Any
) -> list[PageEncoding]:
    """Encode ``images`` and set ``features`` and ``last_token_embedding`` on each page.

    Args:
        encoder: the page encoder.
        images: page images, as for ``encoder.encode_pages``.
        pages: already encoded pages of the same images (e.g. from the evaluation cache) to
            attach the inputs to instead of the fresh encodings; their embeddings must match.
        encode_options: passed to ``encoder.encode_pages`` (default ``indegree_layers="none"``).

    Returns:
        The pages (``pages`` if given, else the fresh encodings), with the two attributes set.
    """
    options = {"indegree_layers": "none", **encode_options}
    with capture_projection(encoder.model) as records:
        fresh = encoder.encode_pages(list(images), **options)
    targets = list(pages) if pages is not None else fresh
    if len(targets) != len(fresh):
        raise InvalidInputError(f"got {len(targets)} pages for {len(fresh)} images; give one page per image")
    rows = [(record, b) for record in records for b in range(record["proj"].shape[0])]
    if len(rows) != len(fresh):
        raise RuntimeError(f"captured {len(rows)} page forwards for {len(fresh)} pages")
    for page, new, (record, b) in zip(targets, fresh, rows, strict=True):
        visual = record["input_ids"][b] == encoder.image_token_id
        features = record["proj"][b, visual]
        if features.shape != page.embeddings.shape:
            raise InvalidInputError(
                f"captured features {tuple(features.shape)} do not fit a page of {tuple(page.embeddings.shape)}"
            )
        normalised = torch.nn.functional.normalize(features, dim=-1)
        if not torch.allclose(normalised, page.embeddings, atol=1e-3) and page is not new:
            logger.warning("SPARE inputs: re-encoded embeddings differ from the given page's; attaching anyway")
        last = int(record["attention_mask"][b].nonzero().max())
        page.features = features  # type: ignore[attr-defined]
        page.last_token_embedding = torch.nn.functional.normalize(record["proj"][b, last], dim=-1)  # type: ignore[attr-defined]
    return targets


@torch.no_grad()
def query_prompt_embedding(encoder: PageEncoder) -> torch.Tensor:
    """``(M, dim)`` the model's query template with no words (prefix and augmentation tokens), encoded.

    The processor's ``process_queries([""])`` gives the prompt every query is wrapped in; its
    normalised outputs over the real tokens are what the model maps "a query" to before any word.
    """
    processed = dict(encoder.processor.process_queries([""]))
    batch = encoder.family_spec.prepare_inputs(processed)
    device, dtype = encoder.device, encoder.dtype
    batch = {
        key: (value.to(device, dtype) if value.is_floating_point() else value.to(device))
        if isinstance(value, torch.Tensor)
        else value
        for key, value in batch.items()
    }
    output = encoder.model(**batch)
    mask = batch["attention_mask"][0].bool()
    return output[0, mask].to(torch.float32).cpu()


def cached_spare_inputs(
    encoder: PageEncoder,
    pages: Sequence[PageEncoding],
    images: Callable[[], Sequence[Any]],
    cache_dir: str | os.PathLike,
    *,
    refresh: bool = False,
    **encode_options: Any,
) -> torch.Tensor:
    """Attach SPARE's inputs to ``pages`` from ``<cache_dir>/spare_inputs.pt``, computing them once.

    Pages that already carry ``features`` and ``last_token_embedding`` (an encoder that records
    them) are used as they are. The query prompt is kept in ``<cache_dir>/spare_query_prompt.pt``.

    Args:
        encoder: the page encoder (called only when the file is missing, stale or ``refresh``).
        pages: the encoded pages (e.g. an evaluation-cache entry's), in image order.
        images: returns the page images, in the same order (only called when encoding).
        cache_dir: the directory of the pages' cache entry; the file is written there atomically.
        refresh: recompute even if the file exists.
        encode_options: passed to :func:`attach_spare_inputs`.

    Returns:
        The query-prompt vectors ``(M, dim)`` (:func:`query_prompt_embedding`), cached alongside.
    """
    directory = Path(cache_dir)
    pages = list(pages)
    recorded = all(
        getattr(p, "features", None) is not None and getattr(p, "last_token_embedding", None) is not None for p in pages
    )
    if not recorded:  # the encoder did not record them: read them from the side file, or capture them once
        path = directory / SIDECAR
        data = _load(path) if not refresh else None
        fits = data is not None and "last_token" in data and len(data.get("features", [])) == len(pages)
        fits = fits and all(f.shape == p.embeddings.shape for f, p in zip(data["features"], pages, strict=True))
        if fits:
            for page, features, last in zip(pages, data["features"], data["last_token"], strict=True):
                page.features = features  # type: ignore[attr-defined]
                page.last_token_embedding = last  # type: ignore[attr-defined]
        else:
            attach_spare_inputs(encoder, images(), pages, **encode_options)
            _save(
                {
                    "features": [p.features for p in pages],  # type: ignore[attr-defined]
                    "last_token": [p.last_token_embedding for p in pages],  # type: ignore[attr-defined]
                },
                path,
            )
    prompt_path = directory / PROMPT_FILE
    data = _load(prompt_path) if not refresh else None
    if data is not None and isinstance(data.get("query_prompt"), torch.Tensor):
        return data["query_prompt"]
    prompt = query_prompt_embedding(encoder)
    _save({"query_prompt": prompt}, prompt_path)
    return prompt


def _load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        logger.warning("SPARE inputs: ignoring unreadable %s (%s)", path, exc)
        return None
    return data if isinstance(data, dict) else None


def _save(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)
