"""``sap-rag calibrate``: per-layer Score Retention and the window, from (query, page) pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import DEFAULT_MODEL, positive_int, ratio, verbose_parent

EXAMPLES = """The pairs come from --pairs, a JSONL file with one object per line:
{"query": "...", "image": "pages/p1.png"} (relative image paths are relative to the file),
or from --dataset, a ViDoRe v1/v2 (BEIR-style) dataset folder: each query with each page
judged relevant to it.

examples:
  sap-rag calibrate --model tiny:colqwen2 --pairs pairs.jsonl --out calib.json
  sap-rag calibrate --model my-checkpoint --dataset data/vidore_v2/esg_reports_v2 --max-pairs 100 --out calib.json
  sap-rag calibrate --model vidore/colqwen2-v1.0 --pairs pairs.jsonl --out calib.json --plot sr.png
  sap-rag index docs/ --index ./idx --model vidore/colqwen2-v1.0 --window calib.json"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="measure per-layer Score Retention and choose the SAP window",
        description="Measure per-layer Score Retention on (query, page) pairs and choose the window by the rule.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[verbose_parent()],
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"hub id, local checkpoint or tiny:<family> (default {DEFAULT_MODEL})"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pairs", type=Path, help="JSONL file of {query, image} pairs")
    source.add_argument("--dataset", type=Path, help="a ViDoRe v1/v2 dataset folder: its (query, relevant page) pairs")
    parser.add_argument(
        "--max-pairs",
        type=positive_int("--max-pairs"),
        help="use the first N pairs (default: all; 50 already give stable windows)",
    )
    parser.add_argument("--split", help="--dataset: split to read when shards are named by split (default: test)")
    parser.add_argument("--language", help="--dataset: keep only queries in this language, e.g. english")
    parser.add_argument("--out", required=True, type=Path, help="where to write the calibration JSON")
    parser.add_argument(
        "--keep-ratio", type=ratio("--keep-ratio"), default=0.1, help="budget SR is measured at (default 0.1)"
    )
    parser.add_argument("--rho", type=float, default=0.2, help="window width as a fraction of depth (default 0.2)")
    parser.add_argument("--plot", type=Path, help="also write the SR curve as a PNG")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..calibration.calibrate import calibrate
    from ..calibration.pairs import dataset_pairs, read_pairs
    from ..encoders.loading import load_encoder
    from ..errors import InvalidInputError

    for option, value in (("--language", args.language), ("--split", args.split)):
        if value is not None and args.dataset is None:
            raise InvalidInputError(f"{option} applies to a dataset folder; use it with --dataset, not --pairs")
    if args.dataset is not None:
        from ..eval.datasets import dataset_folders, detect_layout, load_dataset

        split = args.split or "test"
        if args.dataset.is_dir() and detect_layout(args.dataset, split) is None:
            subsets = [folder.name for folder in dataset_folders(args.dataset, split)]
            if subsets:
                raise InvalidInputError(
                    f"{args.dataset} is a folder of {len(subsets)} datasets ({', '.join(subsets[:5])}); "
                    f"calibrate on one of them, e.g. --dataset {args.dataset / subsets[0]}"
                )
        dataset = load_dataset(args.dataset, split=split, language=args.language)
        pairs = dataset_pairs(dataset, args.max_pairs)
    else:
        pairs = read_pairs(args.pairs)[: args.max_pairs]
    encoder = load_encoder(args.model, device=args.device)
    if args.model.startswith("tiny:"):
        print("note: a tiny random-weight model; its SR curve shows plumbing, not a real window")
    calibration = calibrate(encoder, pairs, keep_ratio=args.keep_ratio, rho=args.rho, show_progress=True)
    calibration.save(args.out)
    print(calibration.table())
    print(f"window: {calibration.window}  ({calibration.num_pairs} pairs, keep ratio {calibration.keep_ratio:g})")
    print(f"calibration written to {args.out}")
    if Path(args.model).is_dir():
        from ..calibration.calibrate import CHECKPOINT_CALIBRATION

        installed = Path(args.model) / CHECKPOINT_CALIBRATION
        if Path(args.out).resolve() == installed.resolve():
            print("it is this checkpoint's default window from now on (load_encoder reads it)")
        else:
            print(f"to make it this checkpoint's default window: cp {args.out} {installed}")
    if args.plot:
        from ..viz import plot_sr_curve

        plot_sr_curve(calibration, args.plot)
        print(f"SR curve written to {args.plot}")
    return 0
