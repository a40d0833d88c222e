"""Training and held-out data: rendered report pages held as uint8 arrays, cut into in-batch contrastive batches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..progress import progress
from .pages import FactsPage, ReportPage, make_fact_pages, make_pages, max_pages
from .render import render_page

logger = logging.getLogger(__name__)

__all__ = ["PageSet", "patchify", "render_pages", "resampled"]


@dataclass
class PageSet:
    """Pages of one or more corpora (each corpus: distinct (company, metric) pairs) and their images.

    ``images``: (N, H, W, 3) uint8; ``corpus``: (N,) corpus number of each page.
    """

    pages: list[ReportPage | FactsPage]
    images: np.ndarray
    corpus: np.ndarray

    def __len__(self) -> int:
        return len(self.pages)


def resampled(page: ReportPage | FactsPage, size: tuple[int, int], scale: int, upscale: int) -> Image.Image:
    """``page`` at ``size`` the way a PDF page reaches the model: drawn at ``scale`` x ``size``,
    enlarged ``upscale`` times (bilinear: a rasteriser drawing an embedded picture at a higher DPI),
    then shrunk to ``size`` with bicubic resampling (what the Qwen2-VL image processor does).

    ``scale=1, upscale=1`` is the page drawn directly at ``size``.
    """
    width, height = size
    image = render_page(page, (width * scale, height * scale))
    if upscale > 1:
        image = image.resize((width * scale * upscale, height * scale * upscale), Image.BILINEAR)
    if image.size != size:
        image = image.resize(size, Image.BICUBIC)
    return image


def render_pages(
    seeds: list[int],
    pages_per_seed: int,
    size: tuple[int, int],
    *,
    show_progress: bool = True,
    cover: bool = False,
    resample: tuple[int, ...] = (),
    styles: Sequence[str] | None = None,
) -> PageSet:
    """Render ``pages_per_seed`` pages for each seed (one corpus per seed) at ``size`` (width, height).

    ``cover``: draw only each page's title (same fonts, sizes and places): the curriculum's first stage.
    ``resample``: draw each page at a scale drawn from these (and, half the time, enlarged 2x more)
    and shrink it to ``size`` (:func:`resampled`), so that the model also reads pages that went
    through a PDF rasteriser and the image processor's resize; empty: every page drawn at ``size``.
    The choices follow from ``seeds``, so a page set is the same on every run.
    ``styles``: per seed, ``"report"`` (:func:`make_pages`) or ``"facts"`` (:func:`make_fact_pages`,
    at most 60 pages a corpus, so ``min(pages_per_seed, 60)``); None: every corpus in the report style.
    """
    if styles is not None and len(styles) != len(seeds):
        raise ValueError(f"styles has {len(styles)} entries for {len(seeds)} seeds")
    for style in styles or ():
        if style not in ("report", "facts"):
            raise ValueError(f"unknown page style {style!r}; use 'report' or 'facts'")
    pages: list[ReportPage | FactsPage] = []
    corpus: list[int] = []
    for number, seed in enumerate(seeds):
        if styles is not None and styles[number] == "facts":
            batch = make_fact_pages(min(pages_per_seed, max_pages("facts")), seed, start=len(pages))
        else:
            batch = make_pages(pages_per_seed, seed, start=len(pages))
        if cover:
            batch = [dataclasses.replace(page, kind="cover") for page in batch]
        pages += batch
        corpus += [number] * len(batch)
    width, height = size
    images = np.empty((len(pages), height, width, 3), dtype=np.uint8)
    rng = np.random.default_rng([*seeds, 7919])
    with progress(total=len(pages), desc="rendering pages", unit="page", enabled=show_progress) as bar:
        for i, page in enumerate(pages):
            scale, upscale = (int(rng.choice(resample)), int(rng.choice((1, 2)))) if resample else (1, 1)
            images[i] = np.asarray(resampled(page, size, scale, upscale))
            bar.update(1)
    return PageSet(pages, images, np.asarray(corpus))


def patchify(images: np.ndarray, mean: list[float], std: list[float], patch: int = 14, merge: int = 2) -> dict:
    """Qwen2-VL image-processor output for pages already at a 28-px multiple size, without its resize pass.

    ``images``: (B, H, W, 3) uint8 -> ``pixel_values`` (B, P, 3 * 2 * patch * patch) with P = (H/14)(W/14)
    patches in the processor's order (2 x 2 merge blocks, row-major), and ``image_grid_thw`` (B, 3).
    Equal to ``Qwen2VLImageProcessor`` output to float rounding (checked in tests).
    """
    x = torch.from_numpy(images).float() / 255.0
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    b, h, w, c = x.shape
    gh, gw = h // patch, w // patch
    x = x.permute(0, 3, 1, 2).unsqueeze(1).repeat(1, 2, 1, 1, 1)  # (B, T=2, C, H, W): one frame doubled
    x = x.reshape(b, 1, 2, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9).reshape(b, gh * gw, c * 2 * patch * patch)
    grid = torch.tensor([[1, gh, gw]] * b)
    return {"pixel_values": x.contiguous(), "image_grid_thw": grid}


def page_batch(processor, images: np.ndarray) -> dict:
    """Model inputs of a batch of pages: the processor's prompt ids plus fast-path pixel values."""
    b, h, w, _ = images.shape
    tokens = (h // 28) * (w // 28)
    ip = processor.image_processor
    pixels = patchify(images, ip.image_mean, ip.image_std)
    text = processor.visual_prompt_prefix.replace("<|image_pad|>", "<|image_pad|>" * tokens)
    encoded = processor.tokenizer([text] * b, return_tensors="pt", padding="longest")
    ids = encoded["input_ids"]
    image_token_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    return {
        "input_ids": ids,
        "attention_mask": encoded["attention_mask"],
        "mm_token_type_ids": (ids == image_token_id).long(),
        **pixels,
    }
