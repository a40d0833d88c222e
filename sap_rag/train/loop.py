"""The training loop: in-batch late-interaction contrastive loss (colpali-engine's ColbertLoss), held-out NDCG@5."""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._compat import import_colpali_engine
from ..progress import progress
from .data import PageSet, page_batch, render_pages
from .model import ModelShape, build_toy_colqwen2, fast_patch_embed

logger = logging.getLogger(__name__)

__all__ = ["TrainConfig", "TrainResult", "evaluate", "train"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that fixes a training run (seeds included)."""

    shape: ModelShape = field(default_factory=lambda: ModelShape(vision_width=64))
    page_size: tuple[int, int] = (252, 364)  # (width, height), multiples of 28
    train_seeds: tuple[int, ...] = tuple(range(100, 108))
    pages_per_seed: int = 160
    heldout_seeds: tuple[int, ...] = (9001,)
    heldout_pages: int = 96
    batch_size: int = 24
    epochs: int = 20
    lr: float = 8e-4
    warmup_steps: int = 50
    weight_decay: float = 0.01
    temperature: float = 0.05
    smooth_max: bool = True  # ColbertLoss(use_smooth_max=True): log-sum-exp over a page's tokens
    smooth_max_steps: int | None = None  # switch to the hard max (what search uses) after this many steps
    tau: float = 0.1
    # Curriculum: a batch is title-only pages (same pairs, fonts, places) with probability 1 - step / cover_steps.
    cover_steps: int = 400
    queries_per_page: int = 3  # query batches per page batch (queries are cheap, pages are not)
    clip: float = 1.0
    seed: int = 0
    threads: int = 1  # on a shared 2-core machine one thread ran 3x faster per step than two
    # Render new training corpora every epoch (seeds move on by len(train_seeds)): a model that sees
    # each page once cannot learn a page by its table values or layout, only by what its title says.
    fresh_pages: bool = True
    # Start from these weights (a checkpoint this script saved, same shape) instead of the scaled init.
    init_from: str | None = None
    # Draw training pages at these scales and shrink them to page_size (empty: draw at page_size):
    # the demo's PDF pages reach the model through a rasteriser and a bicubic resize, which a model
    # that only saw pages drawn at its own size read worse (docs/toy-model.md).
    resample: tuple[int, ...] = ()
    # Probability that a corpus's batches in an epoch are cut company by company (24 pages = 3
    # companies x 8 metrics): every query then meets its company's 7 other metrics as negatives,
    # the confusion left after phase 2 (same company, other metric).
    company_batches: float = 0.0
    # Below 1: every training page keeps a random share u ~ U(token_keep_min, 1) of its visual tokens
    # in the loss (the rest are zeroed, as a pruned index drops them), so what identifies a page is
    # not left to one or two tokens that a pruner may drop (docs/toy-model.md, phase 5).
    token_keep_min: float = 1.0
    # The share of those pages that keep one contiguous band of rows instead of scattered tokens:
    # every region of a page, not only the title's, must then say what the page is about.
    token_span_share: float = 0.0
    # Draw the next epoch's pages in a background thread while this epoch trains (False: between
    # epochs, holding one epoch of pages instead of two; bench/train_render.py compares the two).
    prefetch_pages: bool = True
    # How many of the training corpora (the last ones of train_seeds) are drawn in the ``facts``
    # style (sap_rag.train.pages: a page holds 2-3 facts under a company title its distractors
    # share), so the model learns to find a page by one local block, not only by its title.
    facts_corpora: int = 0
    # Held-out corpora in the facts style, evaluated beside heldout_seeds (reported, never selecting).
    heldout_facts_seeds: tuple[int, ...] = ()
    max_steps: int | None = None  # stop early (tests, probes)
    # Stop at the first step after this many minutes of training (a shared machine's deadline); the
    # learning-rate schedule still runs over max_steps, so a run cut short ends above its floor.
    max_minutes: float | None = None
    eval_every_steps: int | None = None  # besides the end of every epoch

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a run produced: the model, its processor and the curve (one row per evaluation)."""

    model: torch.nn.Module
    processor: object
    curve: list[dict] = field(default_factory=list)

    @property
    def final_ndcg5(self) -> float:
        return float(self.curve[-1]["heldout_ndcg5"]) if self.curve else float("nan")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _visual_only(embeddings: torch.Tensor, input_ids: torch.Tensor, image_token_id: int) -> torch.Tensor:
    """Zero every non-visual row: the index keeps visual tokens only, so training scores those alone.

    The prompt's text tokens are the same on every page; left in, they take the max for many query
    tokens and every page scores alike (see docs/toy-model.md).
    """
    return embeddings * (input_ids == image_token_id).unsqueeze(-1)


def _drop_tokens(
    docs: torch.Tensor,
    visual: torch.Tensor,
    keep_min: float,
    generator: torch.Generator,
    span_share: float = 0.0,
) -> torch.Tensor:
    """``docs`` (pages, tokens, dim) with each page's visual tokens kept at random; dropped rows are zeroed.

    ``visual`` (pages, tokens) marks the visual tokens (assumed one contiguous run per page, as the
    image's tokens are). Each page draws a share ``u ~ U(keep_min, 1)``; with probability
    ``span_share`` it keeps one contiguous run of ``ceil(u * N)`` of its N visual tokens (a band of
    rows, placed at random), otherwise each visual token independently with probability ``u``. At
    least one visual token of each page stays.
    """
    pages, tokens = visual.shape
    share = keep_min + (1.0 - keep_min) * torch.rand(pages, 1, generator=generator)
    draw = torch.rand(pages, tokens, generator=generator)
    keep = (draw < share) & visual
    # The visual token with the smallest draw always stays: a page with no token would score 0 everywhere.
    first = torch.where(visual, draw, torch.full_like(draw, 2.0)).argmin(dim=1)
    keep[torch.arange(pages), first] = True
    spans = torch.rand(pages, generator=generator) < span_share
    for page in spans.nonzero().flatten().tolist():
        where = visual[page].nonzero().flatten()
        n = len(where)
        length = max(1, math.ceil(float(share[page]) * n))
        start = int(torch.randint(0, n - length + 1, (1,), generator=generator))
        keep[page] = False
        keep[page, where[start : start + length]] = True
    return docs * keep.unsqueeze(-1)


def _by_company(members: np.ndarray, pages, rng: np.random.Generator) -> np.ndarray:
    """``members`` (page indices of one corpus) reordered so each company's pages are together, companies shuffled."""
    groups: dict[str, list[int]] = {}
    for i in members:
        groups.setdefault(pages[i].company, []).append(int(i))
    names = list(groups)
    rng.shuffle(names)
    return np.concatenate([rng.permutation(groups[name]) for name in names])


def _epoch_seeds(config: TrainConfig, epoch: int) -> list[int]:
    """The training corpora's seeds in ``epoch`` (new ones every epoch with ``fresh_pages``); never a held-out seed."""
    shift = epoch * len(config.train_seeds) if config.fresh_pages else 0
    seeds = [seed + shift for seed in config.train_seeds]
    heldout = set(config.heldout_seeds) | set(config.heldout_facts_seeds)
    if set(seeds) & heldout:
        raise ValueError(f"training seeds {seeds} overlap the held-out seeds {sorted(heldout)}")
    return seeds


def _epoch_styles(config: TrainConfig) -> list[str] | None:
    """Per training corpus, its page style: the last ``facts_corpora`` in the facts style."""
    n = len(config.train_seeds)
    if not 0 <= config.facts_corpora <= n:
        raise ValueError(f"facts_corpora must be between 0 and the {n} training corpora, got {config.facts_corpora}")
    return ["report"] * (n - config.facts_corpora) + ["facts"] * config.facts_corpora if config.facts_corpora else None


def _queries(pages, rng: np.random.Generator) -> list[str]:
    return [page.question(int(rng.integers(1_000)))[0] for page in pages]


@torch.no_grad()
def evaluate(model, processor, heldout: PageSet, batch_size: int = 32) -> dict[str, float]:
    """Held-out NDCG@5 and accuracy@1 (one query per page, variant 0..5 by page) over each corpus."""
    was_training = model.training
    model.eval()
    image_token_id = int(model.config.image_token_id)
    docs = []
    for start in range(0, len(heldout), batch_size):
        batch = page_batch(processor, heldout.images[start : start + batch_size])
        out = model(**batch)
        mask = batch["input_ids"] == image_token_id
        docs += [out[b, mask[b]] for b in range(out.shape[0])]
    texts = [page.question(page.index % 6)[0] for page in heldout.pages]
    queries = []
    for start in range(0, len(texts), batch_size):
        batch = processor.process_queries(texts[start : start + batch_size])
        out = model(**batch)
        queries += [out[b, batch["attention_mask"][b].bool()] for b in range(out.shape[0])]
    ndcg, top1 = [], []
    for corpus in np.unique(heldout.corpus):
        members = np.flatnonzero(heldout.corpus == corpus)
        for i in members:
            scores = torch.stack([(queries[i] @ docs[j].T).amax(dim=1).sum() for j in members])
            rank = int((scores > scores[list(members).index(i)]).sum()) + 1
            ndcg.append(1.0 / math.log2(rank + 1) if rank <= 5 else 0.0)
            top1.append(float(rank == 1))
    model.train(was_training)
    return {"heldout_ndcg5": float(np.mean(ndcg)), "heldout_acc1": float(np.mean(top1))}


@contextmanager
def _render_thread() -> Iterator[ThreadPoolExecutor]:
    """One background thread for drawing pages; on the way out nothing waits for a draw in progress
    (an error or Ctrl-C in training surfaces at once, not after the next epoch's pages)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sap-rag-render")
    try:
        yield pool
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_))) * 0.9 + 0.1


def train(
    config: TrainConfig,
    *,
    show_progress: bool = True,
    curve_path: Path | None = None,
    on_best: Callable[[torch.nn.Module, object, dict], None] | None = None,
) -> TrainResult:
    """Train a toy ColQwen2 from scratch on synthetic report pages; evaluate on held-out seeds every epoch.

    ``on_best(model, processor, row)`` is called whenever held-out NDCG@5 improves (to save a checkpoint).
    """
    import_colpali_engine()  # repairs a broken torchvision import before colpali_engine loads
    from colpali_engine.loss import ColbertLoss

    first_seeds = _epoch_seeds(config, 0)  # checked before anything is built: --first-train-seed is the user's
    styles = _epoch_styles(config)
    torch.set_num_threads(config.threads)
    _seed_everything(config.seed)
    model, processor = build_toy_colqwen2(config.shape, config.seed)
    if config.init_from:
        start = type(model).from_pretrained(config.init_from, dtype=torch.float32)
        model.load_state_dict(start.state_dict())  # same class and shape: the same keys
        logger.info("starting from the weights in %s", config.init_from)
    fast_patch_embed(model)
    image_token_id = int(model.config.image_token_id)

    def render_epoch(epoch: int, show: bool = False) -> PageSet:
        return render_pages(
            _epoch_seeds(config, epoch),
            config.pages_per_seed,
            config.page_size,
            show_progress=show,
            resample=config.resample,
            styles=styles,
        )

    train_set = render_epoch(0, show_progress)
    covers = (
        render_pages(
            first_seeds, config.pages_per_seed, config.page_size, show_progress=show_progress, cover=True, styles=styles
        )
        if config.cover_steps
        else None
    )
    heldout = render_pages(
        list(config.heldout_seeds), config.heldout_pages, config.page_size, show_progress=show_progress
    )
    heldout_facts = (
        render_pages(
            list(config.heldout_facts_seeds),
            config.heldout_pages,
            config.page_size,
            show_progress=show_progress,
            styles=["facts"] * len(config.heldout_facts_seeds),
        )
        if config.heldout_facts_seeds
        else None
    )
    # Hard max sends gradient to one token per page and query token; at init that is mostly blank
    # background, the same on every page, and the loss collapses to ln(batch). The smooth max (a
    # log-sum-exp over the page's tokens) reaches the tokens with text on them too.
    smooth = ColbertLoss(
        temperature=config.temperature, normalize_scores=True, use_smooth_max=True, tau=config.tau, norm_tol=10.0
    )
    hard = ColbertLoss(temperature=config.temperature, normalize_scores=True)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed_tokens" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embed_tokens" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    rng = np.random.default_rng(config.seed)
    dropper = torch.Generator().manual_seed(config.seed)
    # Batches stay inside one corpus: its (company, metric) pairs are distinct, so each query has one positive.
    corpora = [np.flatnonzero(train_set.corpus == c) for c in np.unique(train_set.corpus)]
    steps_per_epoch = sum(len(c) // config.batch_size for c in corpora)
    total = (
        steps_per_epoch * config.epochs
        if config.max_steps is None
        else min(config.max_steps, steps_per_epoch * config.epochs)
    )
    curve: list[dict] = []
    step, started, recent = 0, time.time(), []

    def record(epoch: float) -> None:
        scores = evaluate(model, processor, heldout, config.batch_size)
        if heldout_facts is not None:
            facts = evaluate(model, processor, heldout_facts, config.batch_size)
            scores.update(heldout_facts_ndcg5=facts["heldout_ndcg5"], heldout_facts_acc1=facts["heldout_acc1"])
        row = {
            "epoch": round(epoch, 3),
            "step": step,
            "train_loss": float(np.mean(recent)) if recent else float("nan"),
            "elapsed_s": round(time.time() - started, 1),
            **scores,
        }
        curve.append(row)
        logger.info(
            "epoch %.2f step %d loss %.4f held-out NDCG@5 %.3f acc@1 %.3f%s (%.0f s)",
            row["epoch"],
            step,
            row["train_loss"],
            row["heldout_ndcg5"],
            row["heldout_acc1"],
            f"; facts NDCG@5 {row['heldout_facts_ndcg5']:.3f}" if "heldout_facts_ndcg5" in row else "",
            row["elapsed_s"],
        )
        recent.clear()
        if on_best is not None and row["heldout_ndcg5"] >= max(r["heldout_ndcg5"] for r in curve):
            on_best(model, processor, row)
            model.train()
        if curve_path is not None:
            curve_path.write_text(json.dumps({"config": config.to_json(), "curve": curve}, indent=1))

    # The next epoch's pages are drawn in a background thread while this epoch trains (PIL releases
    # the GIL while it resizes), so a one-thread run keeps the other core busy; bench/train_render.py
    # measures it. The pages depend only on their seeds, so the run is the same either way; the cost
    # is a second epoch of pages in memory (1,280 pages of 252 x 364: ~350 MB).
    upcoming: Future[PageSet] | None = None
    model.train()
    with (
        _render_thread() as renderer,
        progress(total=total, desc="training", unit="step", enabled=show_progress) as bar,
    ):
        for epoch in range(config.epochs):
            if epoch and config.fresh_pages and step < total:
                seeds = _epoch_seeds(config, epoch)
                train_set = upcoming.result() if upcoming is not None else render_epoch(epoch)
                upcoming = None
                if covers is not None and step < config.cover_steps:
                    covers = render_pages(
                        seeds, config.pages_per_seed, config.page_size, show_progress=False, cover=True, styles=styles
                    )
            batches = []
            for members in corpora:
                if config.company_batches and rng.random() < config.company_batches:
                    order = _by_company(members, train_set.pages, rng)
                else:
                    order = np.roll(members, -int(rng.integers(len(members))))
                batches += [
                    order[i : i + config.batch_size]
                    for i in range(0, len(order) - config.batch_size + 1, config.batch_size)
                ]
            rng.shuffle(batches)
            if (
                config.prefetch_pages
                and config.fresh_pages
                and epoch + 1 < config.epochs
                and step + len(batches) < total
            ):
                upcoming = renderer.submit(render_epoch, epoch + 1)
            for indices in batches:
                if step >= total:
                    break
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * _lr_factor(step, total, config.warmup_steps)
                use_covers = covers is not None and rng.random() < 1.0 - step / config.cover_steps
                source = covers if use_covers else train_set
                docs_in = page_batch(processor, source.images[indices])
                docs = _visual_only(model(**docs_in), docs_in["input_ids"], image_token_id)
                if config.token_keep_min < 1.0:
                    visual = docs_in["input_ids"] == image_token_id
                    docs = _drop_tokens(docs, visual, config.token_keep_min, dropper, config.token_span_share)
                use_smooth = config.smooth_max and (config.smooth_max_steps is None or step < config.smooth_max_steps)
                loss_fn = smooth if use_smooth else hard
                loss = 0.0
                for _ in range(config.queries_per_page):
                    queries_in = processor.process_queries(_queries([train_set.pages[i] for i in indices], rng))
                    loss = loss + loss_fn(model(**queries_in), docs) / config.queries_per_page
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                optimizer.step()
                recent.append(float(loss.detach()))
                if step % 10 == 0:
                    logger.debug("step %d loss %.4f", step, recent[-1])
                step += 1
                bar.update(1)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{np.mean(recent[-20:]):.3f}")
                if config.eval_every_steps and step % config.eval_every_steps == 0:
                    record(step / steps_per_epoch)  # an eval on an epoch boundary is that epoch's end
                if config.max_minutes is not None and time.time() - started > 60.0 * config.max_minutes:
                    logger.warning("stopping at step %d of %d: the %.0f-minute limit", step, total, config.max_minutes)
                    total = step
            if step >= total:
                break
            if not curve or curve[-1]["step"] != step:
                record(epoch + 1.0)
    if not curve or curve[-1]["step"] != step:
        record(step / max(1, steps_per_epoch))
    model.eval()
    return TrainResult(model, processor, curve)
