#!/usr/bin/env python
"""Train the toy ColQwen2 (models/sap-rag-toy-colqwen2) from scratch on synthetic report pages.

    .venv/bin/python scripts/train_toy_model.py --out models/sap-rag-toy-colqwen2 --curve-dir docs/toy-model

Writes the checkpoint (config, safetensors, processor and tokenizer files), training_curve.csv/.json
and training_curve.png. See docs/toy-model.md for the recipe and what the model is not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from sap_rag.train.loop import TrainConfig
    from sap_rag.train.model import ModelShape

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--curve-dir", type=Path, help="where the curve CSV/JSON/PNG go (default: --out)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (quick runs)")
    parser.add_argument("--max-minutes", type=float, help="stop at the first step after this many minutes")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--train-seeds", type=int, default=len(defaults.train_seeds), help="number of training corpora")
    parser.add_argument("--pages-per-seed", type=int, default=defaults.pages_per_seed)
    parser.add_argument("--heldout-pages", type=int, default=defaults.heldout_pages)
    parser.add_argument(
        "--facts-corpora",
        type=int,
        default=defaults.facts_corpora,
        help="how many of the training corpora are drawn in the facts style (answers local to one block)",
    )
    parser.add_argument(
        "--heldout-facts-seeds",
        default="",
        help="comma-separated held-out seeds of the facts style, evaluated beside the report style's",
    )
    parser.add_argument("--eval-every", type=int, help="also evaluate every N steps")
    parser.add_argument("--vision-width", type=int, default=defaults.shape.vision_width)
    parser.add_argument("--vision-layers", type=int, default=defaults.shape.vision_layers)
    parser.add_argument(
        "--smooth-max-steps", type=int, help="train with the hard max (what search uses) after this many steps"
    )
    parser.add_argument("--cover-steps", type=int, default=defaults.cover_steps, help="title-only curriculum length")
    parser.add_argument(
        "--same-pages", action="store_true", help="reuse the same training pages every epoch (default: new ones)"
    )
    parser.add_argument("--init-from", help="start from this saved checkpoint's weights (same shape)")
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument(
        "--first-train-seed", type=int, default=defaults.train_seeds[0], help="seed of the first training corpus"
    )
    for flag, name, text in (
        (
            "--company-batches",
            "company_batches",
            "probability that a corpus's batches in an epoch are cut company by company (hard negatives)",
        ),
        ("--token-keep-min", "token_keep_min", "below 1: a page keeps a random share in [this, 1] of its tokens"),
        ("--token-span-share", "token_span_share", "the share of those pages that keep one band of rows instead"),
    ):
        parser.add_argument(flag, type=float, default=getattr(defaults, name), help=text)
    parser.add_argument(
        "--resample",
        default="",
        help="comma-separated scales: draw training pages at one of them and shrink them to the page size",
    )
    parser.add_argument(
        "--select",
        choices=("best", "last"),
        default="best",
        help="the weights to save: the best held-out NDCG@5 seen (default) or the last ones",
    )
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--tiny", action="store_true", help="a very small model and page set (tests)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )

    from sap_rag.train.export import plot_curve, save_checkpoint, write_curve
    from sap_rag.train.loop import train

    shape = (
        ModelShape(layers=2, hidden=32, intermediate=64, vision_width=16, vision_layers=1)
        if args.tiny
        else dataclasses.replace(defaults.shape, vision_width=args.vision_width, vision_layers=args.vision_layers)
    )
    config = dataclasses.replace(
        defaults,
        shape=shape,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        train_seeds=tuple(args.first_train_seed + i for i in range(args.train_seeds)),
        resample=tuple(int(k) for k in args.resample.split(",") if k.strip()),
        company_batches=args.company_batches,
        token_keep_min=args.token_keep_min,
        token_span_share=args.token_span_share,
        pages_per_seed=args.pages_per_seed,
        heldout_pages=args.heldout_pages,
        facts_corpora=args.facts_corpora,
        heldout_facts_seeds=tuple(int(k) for k in args.heldout_facts_seeds.split(",") if k.strip()),
        eval_every_steps=args.eval_every,
        threads=args.threads,
        seed=args.seed,
        smooth_max_steps=args.smooth_max_steps,
        cover_steps=args.cover_steps,
        fresh_pages=not args.same_pages,
        init_from=args.init_from,
        warmup_steps=args.warmup_steps,
    )
    curve_dir = args.curve_dir or args.out
    curve_dir.mkdir(parents=True, exist_ok=True)
    best: dict = {}

    def on_best(model, processor, row: dict) -> None:
        # Keep the best held-out checkpoint on disk as training goes (a cut-off run still leaves one).
        save_checkpoint(model, processor, args.out)
        (args.out / "heldout_scores.json").write_text(json.dumps({"best": row, "provisional": True}, indent=1))
        best.update(row)

    result = train(
        config,
        show_progress=not args.no_progress,
        curve_path=curve_dir / "training_curve.json",
        on_best=on_best if args.select == "best" else None,
    )
    if args.select == "last" and result.curve:
        save_checkpoint(result.model, result.processor, args.out)
        best.update(result.curve[-1])
    write_curve(result.curve, config.to_json(), curve_dir)
    plot_curve(result.curve, curve_dir / "training_curve.png")
    if best:
        from sap_rag.train.verify import finalize_checkpoint

        finalize_checkpoint(args.out, config.to_json(), dict(best))
    logging.getLogger("train_toy_model").info(
        "final held-out NDCG@5 %.3f; saved (%s) %.3f (step %s) in %s",
        result.final_ndcg5,
        args.select,
        best.get("heldout_ndcg5", float("nan")),
        best.get("step"),
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
