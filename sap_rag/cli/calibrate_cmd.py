"""``sap-rag calibrate``: per-layer Score Retention and the window, from (query, page) pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CalibrationError
from ._common import DEFAULT_MODEL, ratio, verbose_parent

EXAMPLES = """pairs.jsonl holds one JSON object per line: {"query": "...", "image": "pages/p1.png"}
(relative image paths are relative to the pairs file).

examples:
  sap-rag calibrate --model tiny:colqwen2 --pairs pairs.jsonl --out calib.json
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
    parser.add_argument("--pairs", required=True, type=Path, help="JSONL file of {query, image} pairs")
    parser.add_argument("--out", required=True, type=Path, help="where to write the calibration JSON")
    parser.add_argument(
        "--keep-ratio", type=ratio("--keep-ratio"), default=0.1, help="budget SR is measured at (default 0.1)"
    )
    parser.add_argument("--rho", type=float, default=0.2, help="window width as a fraction of depth (default 0.2)")
    parser.add_argument("--plot", type=Path, help="also write the SR curve as a PNG")
    parser.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    parser.set_defaults(func=run)


def read_pairs(path: Path) -> list[tuple[str, Path]]:
    """(query, image path) pairs from a JSONL file; relative paths resolve against its folder."""
    if not path.is_file():
        raise CalibrationError(f"{path}: no such pairs file")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query, image = row["query"], row["image"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CalibrationError(
                f'{path}:{number}: expected a JSON object with "query" and "image", got {line[:80]!r}'
            ) from exc
        image_path = Path(image)
        pairs.append((str(query), image_path if image_path.is_absolute() else path.parent / image_path))
    if not pairs:
        raise CalibrationError(f"{path}: no pairs found")
    return pairs


def run(args: argparse.Namespace) -> int:
    from ..calibration.calibrate import calibrate
    from ..encoders.loading import load_encoder

    pairs = read_pairs(args.pairs)
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
