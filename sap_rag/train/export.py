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
    steps = [row["step"] for row in curve]
    ax.plot(steps, [row["train_loss"] for row in curve], color="#C44E52", marker="o", ms=3, label="train loss")
    ax.set_xlabel("training step")
    ax.set_ylabel("in-batch contrastive loss", color="#C44E52")
    right = ax.twinx()
    right.plot(
        steps, [row["heldout_ndcg5"] for row in curve], color="#4C72B0", marker="s", ms=3, label="held-out NDCG@5"
    )
    right.plot(steps, [row["heldout_acc1"] for row in curve], color="#55A868", ls="--", label="held-out accuracy@1")
    right.set_ylim(0, 1)
    right.set_ylabel("held-out score")
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    ax.set_title(title)
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png)
    return out_png
