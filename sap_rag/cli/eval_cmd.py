"""``sap-rag eval``: compare pruners at several keep ratios on ViDoRe-format datasets.

Wire it into a ``sap-rag`` parser with :func:`add_eval_parser` (it sets ``func=run``), or run it
alone with :func:`eval_main` / ``python -m sap_rag.eval``. Building the parser imports nothing
heavy (the pruner names are listed here, and a test keeps them equal to the registry's).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import InvalidInputError, SapRagError
from ._common import DEFAULT_MODEL, positive_int

logger = logging.getLogger(__name__)

__all__ = ["add_eval_parser", "build_parser", "eval_main", "run"]

PRUNER_NAMES = (
    "sap",
    "sap_max",
    "sap_debiased",
    "sap_anchor_pool",
    "final_layer",
    "random",
    "cluster",
    "hierarchical",
    "eos_adaptive",
    "spare",
    "spare_lasttoken",
)
"""The registered pruners (``sap_rag.pruning.registry.PRUNERS``), without importing torch to list them."""

DESCRIPTION = """\
Evaluate page pruning against the unpruned model: every pruner at every keep ratio, on
datasets in the ViDoRe layouts (v2 BEIR-style corpus/queries/qrels, or v1 rows). Pages are
encoded once and cached; pruners and ratios are applied to the cache. Writes results.md,
results.csv, results.json and retention.png (NDCG@5 retention against keep ratio) to --out.
"""

EPILOG = f"""\
pruners: {", ".join(PRUNER_NAMES)} (or "all")

examples:
  # offline demo: a synthetic dataset and a tiny random-weight model (numbers mean nothing)
  sap-rag eval --dataset synthetic --model tiny:colqwen2 --out out/demo

  # ViDoRe v2 downloaded under data/vidore_v2/<subset>/ (see docs/eval.md), GPU machine
  sap-rag eval --dataset data/vidore_v2 --model vidore/colqwen2-v1.0 \\
      --pruners all --keep-ratios 0.2,0.1,0.05 --union --out out/colqwen2-vidore-v2

  # a quick look: 50 queries and at most 300 pages of one subset, two pruners
  sap-rag eval --dataset data/vidore_v2/esg_reports_v2 --model vidore/colpali-v1.2 \\
      --pruners sap,random --keep-ratios 0.1 --max-queries 50 --max-pages 300 --out out/quick
"""


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _ratios(value: str) -> list[float]:
    try:
        return [float(item) for item in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"keep ratios are comma-separated numbers, got {value!r}") from None


def _add_arguments(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        action="append",
        required=True,
        metavar="PATH",
        help="dataset directory, or a folder of dataset directories (repeat or comma-separate for several); "
        "'synthetic' or 'synthetic:PAGES' generates a small synthetic dataset under --out",
    )
    data.add_argument("--layout", choices=["auto", "v2", "v1"], default="auto", help="dataset layout (default: detect)")
    data.add_argument("--split", default="test", help="split to read when shards are named by split (default: test)")
    data.add_argument("--language", help="keep only queries in this language (v2 'language' column), e.g. english")
    data.add_argument("--max-queries", type=int, help="use at most this many queries per dataset (quick runs)")
    data.add_argument("--max-pages", type=int, help="use at most this many pages per dataset (relevant pages kept)")
    data.add_argument("--graded", action="store_true", help="use the qrels' graded relevance (default: binary)")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="SPEC",
        help=f"hub id, local checkpoint, or tiny:<family> (default {DEFAULT_MODEL})",
    )
    model.add_argument("--window", help="SAP layer window: comma-separated layers or a calibration .json")
    model.add_argument("--device", help="cuda, cpu, ... (default: cuda when available)")
    model.add_argument("--dtype", help="float32, bfloat16, float16 (default: bfloat16 on CUDA, float32 on CPU)")
    model.add_argument(
        "--batch-size", type=positive_int("--batch-size"), default=4, help="pages per forward pass (default: 4)"
    )

    run_group = parser.add_argument_group("evaluation")
    run_group.add_argument(
        "--pruners", type=_csv, default=["all"], help="comma-separated pruner names, or 'all' (default: all)"
    )
    run_group.add_argument(
        "--keep-ratios", type=_ratios, default=[0.2, 0.1, 0.05], help="comma-separated (default: 0.2,0.1,0.05)"
    )
    run_group.add_argument("--seeds", type=int, default=3, help="seeds the random pruner is averaged over (default 3)")
    run_group.add_argument("--union", action="store_true", help="also evaluate all datasets as one corpus")
    run_group.add_argument(
        "--calibration-pages", type=int, default=256, help="pages that calibrate eos_adaptive (default 256; 0 = all)"
    )
    run_group.add_argument("--timing-repeats", type=int, default=1, help="MaxSim timing: best of N passes")
    run_group.add_argument("--search-device", default="cpu", help="device of the timed MaxSim search (default cpu)")

    output = parser.add_argument_group("output")
    output.add_argument("--out", default="eval-out", metavar="DIR", help="output directory (default: eval-out)")
    output.add_argument("--cache-dir", metavar="DIR", help="encoding cache (default: <out>/cache)")
    output.add_argument("--refresh-cache", action="store_true", help="re-encode even if the cache has the pages")
    output.add_argument("--no-progress", action="store_true", help="no progress bars")
    # As a subcommand, -v must not reset a 'sap-rag -v eval' given before it.
    output.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS if subcommand else False, help="log details"
    )


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``eval`` subcommand on a ``sap-rag`` parser's subparsers; it sets ``func=run``."""
    parser = subparsers.add_parser(
        "eval",
        help="compare pruners and keep ratios on ViDoRe-format datasets",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser, subcommand=True)
    parser.set_defaults(func=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser for ``sap-rag eval`` (used by :func:`eval_main`)."""
    parser = argparse.ArgumentParser(
        prog="sap-rag eval",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(parser)
    return parser


def _datasets(args: argparse.Namespace) -> list:
    from ..eval.datasets import discover_datasets
    from ..eval.synthetic import make_synthetic_dataset

    found = []
    for entry in [item for value in args.dataset for item in _csv(value)]:
        if entry == "synthetic" or entry.startswith("synthetic:"):
            pages = int(entry.split(":", 1)[1]) if ":" in entry else 12
            path = make_synthetic_dataset(Path(args.out) / f"synthetic-{pages}", num_pages=pages)
            found += discover_datasets(path, layout="v2")
        else:
            found += discover_datasets(entry, layout=args.layout, split=args.split, language=args.language)
    if args.max_queries is not None or args.max_pages is not None:
        found = [d.limit(max_queries=args.max_queries, max_pages=args.max_pages) for d in found]
    return found


def _window(value: str | None):
    if value is None or value.endswith(".json"):
        return value
    try:
        return [int(layer) for layer in _csv(value)]
    except ValueError:
        raise InvalidInputError(
            f"--window takes comma-separated layer indices or a calibration .json, got {value!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Run ``sap-rag eval`` from parsed arguments; prints the summary and returns the exit code."""
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from ..encoders.loading import load_encoder
        from ..eval.harness import PrunerSpec, run_eval
        from ..eval.reports import retention_table
        from ..pruning.base import validate_keep_ratio
        from ..pruning.registry import PRUNERS

        # Check the cheap arguments before loading data or a model.
        names = list(PRUNERS) if args.pruners == ["all"] else args.pruners
        pruners = [PrunerSpec.parse(name) for name in names]
        for ratio in args.keep_ratios:
            validate_keep_ratio(ratio)
        datasets = _datasets(args)
        encoder = load_encoder(
            args.model, device=args.device, dtype=args.dtype, window=_window(args.window), batch_size=args.batch_size
        )
        if args.model.startswith("tiny:"):
            print("note: a tiny random-weight model; the numbers show that the harness runs, not pruning quality")
        results = run_eval(
            datasets,
            encoder,
            pruners,
            args.keep_ratios,
            args.out,
            cache_dir=args.cache_dir,
            seeds=tuple(range(max(1, args.seeds))),
            binary_relevance=not args.graded,
            union=args.union,
            calibration_pages=args.calibration_pages or None,
            timing_repeats=args.timing_repeats,
            search_device=args.search_device,
            batch_size=args.batch_size,
            refresh_cache=args.refresh_cache,
            show_progress=not args.no_progress,
        )
    except SapRagError as exc:
        print(f"sap-rag eval: error: {exc}", file=sys.stderr)
        return 2
    groups = [d["name"] for d in results.datasets]
    if len(groups) > 1:
        groups.append("mean")
        if args.union:
            groups.append("union")
    flagged = {d["name"]: d for d in results.datasets if d.get("near_chance")}
    for group in groups:
        print(f"\n{group}: NDCG@5 kept (% of unpruned)\n")
        print(retention_table(results.rows, group))
        if group in flagged:
            unpruned = results.unpruned(group).ndcg_at_5
            print(
                f"warning: unpruned NDCG@5 {unpruned:.3f} is near a random ranking's "
                f"{flagged[group]['chance_ndcg_at_5']:.3f} on {group}: the model barely ranks this dataset, "
                "so the retention above is meaningless (noise, not what pruning keeps)"
            )
    print()
    for kind, path in results.files.items():
        print(f"{kind:9s} {path}")
    return 0


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` (default ``sys.argv[1:]``) and run; returns the exit code."""
    return run(build_parser().parse_args(argv))
