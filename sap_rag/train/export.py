"""Write a trained toy model out: checkpoint directory (safetensors, processor, tokenizer), curve CSV/JSON/PNG."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

__all__ = ["plot_curve", "save_checkpoint", "write_curve"]


def save_checkpoint(model: torch.nn.Module, processor, out_dir: Path, *, half: bool = True) -> Path:
    """Save ``model`` and ``processor`` with ``save_pretrained`` (safetensors), loadable by ``load_encoder``.

    ``half`` stores the weights in float16 (half the size); ``load_encoder`` casts to its dtype.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if half:
        # A copy in float16: the trained model in memory stays float32.
        import copy

        model = copy.deepcopy(model).to(torch.float16)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    logger.info("saved the checkpoint to %s (%.1f MB)", out_dir, size / 1e6)
    return out_dir


def write_curve(curve: list[dict], config: dict, out_dir: Path) -> tuple[Path, Path]:
    """``training_curve.csv`` (one row per evaluation) and ``training_curve.json`` (with the config)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "training_curve.csv", out_dir / "training_curve.json"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    json_path.write_text(json.dumps({"config": config, "curve": curve}, indent=1))
    return csv_path, json_path


def plot_curve(curve: list[dict], out_png: Path, title: str = "toy ColQwen2 training") -> Path:
    """Training loss (left axis) and held-out NDCG@5 / accuracy@1 (right axis) against steps."""
    from ..eval.reports import require_matplotlib

    FigureCanvasAgg, Figure = require_matplotlib("plotting the training curve")
    figure = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    right = ax.twinx()
    # One line per phase (a phase starts from an earlier phase's best step, so their steps can overlap).
    phases = sorted({row.get("phase", 1) for row in curve})
    for number in phases:
        rows = [row for row in curve if row.get("phase", 1) == number]
        steps = [row["step"] for row in rows]
        first = number == phases[0]
        for axis, key, style, label in (
            (ax, "train_loss", {"color": "#C44E52", "marker": "o", "ms": 3}, "train loss"),
            (right, "heldout_ndcg5", {"color": "#4C72B0", "marker": "s", "ms": 3}, "held-out NDCG@5"),
            (right, "heldout_acc1", {"color": "#55A868", "ls": "--"}, "held-out accuracy@1"),
        ):
            axis.plot(steps, [row[key] for row in rows], label=label if first else None, **style)
        if not first:
            ax.axvline(steps[0], color="#999999", lw=0.8, ls=":")
            # Short phases start close together: alternate the labels' heights so they do not overlap.
            height = 0.02 + 0.05 * (number % 2)
            ax.text(
                steps[0], height, f" phase {number}", fontsize=7, color="#666666", transform=ax.get_xaxis_transform()
            )
    ax.set_xlabel("training step")
    ax.set_ylabel("in-batch contrastive loss", color="#C44E52")
    right.set_ylim(0, 1)
    right.set_ylabel("held-out score")
    lines = [line for line in ax.get_lines() + right.get_lines() if not line.get_label().startswith("_")]
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title(title)
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    return out_png


def write_model_card(out_dir: Path, config: dict, best: dict, subset: dict, *, provisional: bool) -> Path:
    """The checkpoint's README.md: what it was trained on, how, its held-out scores, and what it is not."""
    status = (
        "**PROVISIONAL: this checkpoint did not reach the project's target (held-out NDCG@5 >= 0.80).** "
        "It is the best one a 2-core training run reached in the time it had; see docs/toy-model.md.\n\n"
        if provisional
        else ""
    )
    shape = config["shape"]
    seeds = f"{config['train_seeds'][0]}-{config['train_seeds'][-1]}"
    pruned = subset[f"sap_{subset['keep_ratio']}_ndcg5"]
    text = f"""---
license: apache-2.0
tags: [colpali, colqwen2, toy, synthetic, not-for-production]
---
# sap-rag-toy-colqwen2: a toy ColQwen2 trained from scratch on synthetic report pages

{status}**This is a toy, not a production model.** It exists so that sap-rag's demo, tests and evaluation
can run offline with a model that was trained for retrieval at all. It has read nothing but synthetic
report pages about 20 invented companies and 8 metrics, 2019-2023; it knows ~270 lowercase words; it
cannot read real documents, other languages, handwriting, photos or anything outside that vocabulary.
For real use load a real checkpoint, e.g. `vidore/colqwen2-v1.0`.

## Model
- Architecture: colpali-engine `ColQwen2` (Qwen2-VL backbone, 128-d multi-vector output), built from
  a config, every weight trained from scratch: {shape["layers"]} text layers of width {shape["hidden"]},
  vision tower of {shape["vision_layers"]} layers of width {shape["vision_width"]},
  {shape["max_visual_tokens"]} visual tokens per page (252 x 364 px, 28 px per token). Weights stored in float16.
- Tokenizer: word level, lower-cased, digits split one by one, over the pages' vocabulary ([UNK] for anything else).
- Image processor: Qwen2-VL with pixel mean 1.0 / std 0.5 (white paper is 0).

## Training
- Data: `sap_rag.train` report pages (titles, paragraphs, tables, bar charts, mixed layouts, 4 font
  families, several title sizes, optional title bands), {len(config["train_seeds"])} corpora of
  {config["pages_per_seed"]} pages (seeds {seeds}), each question naming a company and a metric so that
  exactly one page of its corpus answers it.
- Loss: colpali-engine `ColbertLoss` (in-batch, normalised scores, temperature {config["temperature"]},
  smooth max tau {config["tau"]}), batch {config["batch_size"]} pages x {config["queries_per_page"]} question sets,
  AdamW lr {config["lr"]} (warm-up {config["warmup_steps"]} steps, cosine), curriculum: title-only pages
  first, phased out over {config["cover_steps"]} steps. Seed {config["seed"]}, one CPU thread.
- Script: `scripts/train_toy_model.py` (curve in docs/toy-model/).

## Held-out scores (pages and questions of seeds never trained on)
- During training (seed {config["heldout_seeds"][0]}, {config["heldout_pages"]} pages, one question each): best NDCG@5
  {best["heldout_ndcg5"]:.3f}, accuracy@1 {best["heldout_acc1"]:.3f} (step {best["step"]}).
- Through `sap_rag.load_encoder` on the fixed test subset (seed {subset["seed"]}, {subset["pages"]} pages):
  NDCG@5 {subset["ndcg5"]:.3f}; with SAP at keep ratio {subset["keep_ratio"]}: {pruned:.3f}.
"""
    path = out_dir / "README.md"
    path.write_text(text)
    return path
