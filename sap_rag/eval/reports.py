"""Reports of an evaluation: a markdown summary, a CSV of every row, and a PNG of NDCG@5 retention."""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from ..errors import MissingDependencyError

if TYPE_CHECKING:
    from .harness import EvalResults, ResultRow

TINY_NOTE = (
    "**A tiny random-weight model: these numbers show that the harness runs, not how well any "
    "pruner keeps retrieval quality.**"
)

__all__ = [
    "markdown_report",
    "model_label",
    "plot_retention",
    "require_matplotlib",
    "retention_figure",
    "retention_table",
    "write_csv",
    "write_reports",
]


def require_matplotlib(purpose: str):
    """``(FigureCanvasAgg, Figure)``: matplotlib's Agg canvas (no display, no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs matplotlib: pip install matplotlib  (or pip install 'sap-rag[eval]')"
        ) from exc
    return FigureCanvasAgg, Figure


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _groups(rows: Sequence[ResultRow]) -> list[str]:
    """Dataset names in order of appearance, then the "mean" and "union" summaries."""
    seen: list[str] = []
    for row in rows:
        if row.dataset not in seen:
            seen.append(row.dataset)
    summaries = [name for name in ("mean", "union") if name in seen]
    return [name for name in seen if name not in summaries] + summaries


def write_csv(rows: Sequence[ResultRow], path: str | Path) -> Path:
    """Every row, every column (see :class:`~sap_rag.eval.harness.ResultRow`)."""
    from .harness import ResultRow

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ResultRow.columns())
        writer.writeheader()
        for row in rows:
            writer.writerow(asdict(row))
    return target


def retention_table(rows: Sequence[ResultRow], dataset: str, metric: str = "ndcg_at_5") -> str:
    """Markdown pivot: one line per pruner, one column per keep ratio, cells = % of the unpruned metric."""
    chosen = [r for r in rows if r.dataset == dataset and r.pruner != "none"]
    ratios = sorted({r.keep_ratio for r in chosen}, reverse=True)
    pruners: list[str] = []
    for row in chosen:
        if row.pruner not in pruners:
            pruners.append(row.pruner)
    cells = {(r.pruner, r.keep_ratio): getattr(r, f"{metric}_retention") for r in chosen}
    header = "| pruner | " + " | ".join(f"keep {ratio:g}" for ratio in ratios) + " |"
    lines = [header, "|---|" + "---:|" * len(ratios)]
    for pruner in pruners:
        lines.append(f"| {pruner} | " + " | ".join(_pct(cells.get((pruner, r), math.nan)) for r in ratios) + " |")
    return "\n".join(lines)


def _detail_table(rows: Sequence[ResultRow], dataset: str) -> str:
    header = (
        "| pruner | keep | vectors/page | KiB/page | NDCG@5 | NDCG@10 | R@1 | R@5 | R@10 | SR | SR per-pair mean | "
        "NDCG@5 kept % | search ms/query | speed-up | prune ms/page |"
    )
    lines = [header, "|---|" + "---:|" * 14]
    for r in (r for r in rows if r.dataset == dataset):
        seeds = f" (mean of {r.seeds} seeds)" if r.seeds > 1 else ""
        lines.append(
            f"| {r.pruner}{seeds} | {r.keep_ratio:g} | {r.vectors_per_page:.1f} | {r.bytes_per_page / 1024:.1f} | "
            f"{_fmt(r.ndcg_at_5)} | {_fmt(r.ndcg_at_10)} | {_fmt(r.recall_at_1)} | {_fmt(r.recall_at_5)} | "
            f"{_fmt(r.recall_at_10)} | {_fmt(r.score_retention)} | {_fmt(r.score_retention_per_pair)} | "
            f"{_pct(r.ndcg_at_5_retention)} | "
            f"{r.search_ms_per_query:.2f} | {_fmt(r.search_speedup, 1)}x | {r.prune_ms_per_page:.2f} |"
        )
    return "\n".join(lines)


def markdown_report(results: EvalResults) -> str:
    """The summary: setup, the NDCG@5 retention pivot per dataset, then every metric per dataset."""
    encoder = results.config.get("encoder", {})
    lines = [
        "# Pruning evaluation",
        "",
        f"Model: `{encoder.get('spec', '?')}` ({encoder.get('family', '?')}, {encoder.get('num_layers', '?')} layers, "
        f"SAP window {encoder.get('window', '?')}, {encoder.get('window_source', '?')}).",
        "",
    ]
    if str(encoder.get("spec", "")).startswith("tiny:"):
        lines += [TINY_NOTE, ""]
    lines.append("Datasets:")
    for info in results.datasets:
        how = "read from the cache" if info.get("from_cache") else f"encoded in {info.get('encode_seconds', 0):.1f}s"
        lines.append(f"- {info['name']}: {info['pages']} pages, {info['queries']} queries ({how}).")
    lines += [
        "",
        "NDCG retention = pruned NDCG / unpruned NDCG. SR = benchmark Score Retention as the SAP authors report "
        "it: mean(pruned MaxSim) / mean(full MaxSim) over the relevant (query, page) pairs. SR per-pair mean = "
        "the mean of pruned / full per pair, a pair whose full MaxSim is not positive scoring 0 (what the "
        "calibration curve averages; below 1 even unpruned when such pairs exist). "
        "Bytes count float16 storage (2 x dim bytes per vector). Search time: "
        "brute-force MaxSim of one query against every page of the dataset (median over queries). "
        f"Stochastic pruners are averaged over seeds {results.config.get('seeds')}. "
        "'mean' rows average the datasets (retention = mean / mean); 'union' rows search all datasets as one.",
    ]
    for group in _groups(results.rows):
        lines += ["", f"## {group}", "", "NDCG@5 kept (% of unpruned):", "", retention_table(results.rows, group)]
        lines += ["", _detail_table(results.rows, group)]
    return "\n".join(lines) + "\n"


def model_label(encoder: dict) -> str:
    """A short name of the encoder a report describes: a local checkpoint by its folder's name, with
    its family and SAP window.

    >>> model_label({"spec": "/work/models/sap-rag-toy-colqwen2", "family": "colqwen2", "window": [1]})
    'sap-rag-toy-colqwen2 (colqwen2, SAP window [1])'
    >>> model_label({"spec": "tiny:colqwen2"})
    'tiny:colqwen2 (random weights)'
    """
    spec = str(encoder.get("spec") or "unknown model")
    name = PurePath(spec).name if PurePath(spec).is_absolute() else spec
    if spec.startswith("tiny:"):
        return f"{name} (random weights)"
    details = [str(encoder["family"])] if encoder.get("family") else []
    if encoder.get("window") is not None:
        details.append(f"SAP window {list(encoder['window'])}")
    return f"{name} ({', '.join(details)})" if details else name


def retention_figure(rows: Sequence[ResultRow], metric: str = "ndcg_at_5", *, model: str | None = None):
    """The retention plot as a matplotlib ``Figure`` (see :func:`plot_retention`)."""
    FigureCanvasAgg, Figure = require_matplotlib("the retention plot")
    groups = _groups(rows)
    label = metric.replace("_at_", "@").upper()
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    # Constrained layout keeps the legend (under the panels) and the two-line title off the axes.
    figure = Figure(figsize=(5.2 * ncols, 4.0 * nrows + 1.2), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    handles: dict[str, object] = {}
    for ax, group in zip(axes, groups):
        chosen = [r for r in rows if r.dataset == group and r.pruner != "none"]
        pruners: list[str] = []
        for row in chosen:
            if row.pruner not in pruners:
                pruners.append(row.pruner)
        for pruner in pruners:
            points = sorted((r.keep_ratio, getattr(r, f"{metric}_retention")) for r in chosen if r.pruner == pruner)
            xs, ys = zip(*points)
            style = {"linewidth": 2.4} if pruner.startswith("sap") else {"linewidth": 1.4}
            (line,) = ax.plot(xs, [100 * y for y in ys], marker="o", label=pruner, **style)
            handles.setdefault(pruner, line)
        # The unpruned model is the 100% level; its own score (in the panel's title) says what 100% is.
        unpruned = next((r for r in rows if r.dataset == group and r.pruner == "none"), None)
        level = getattr(unpruned, metric, None) if unpruned is not None else None
        handles.setdefault("unpruned (100%)", ax.axhline(100.0, color="black", linestyle="--", linewidth=1.2, zorder=1))
        ax.set_xscale("log")
        ratios = sorted({r.keep_ratio for r in chosen})
        ax.set_xticks(ratios)
        ax.set_xticklabels([f"{r:g}" for r in ratios])
        ax.minorticks_off()
        ax.set_xlabel("keep ratio (fraction of visual tokens kept)")
        ax.set_ylabel(f"{label} kept (% of unpruned)")
        ax.set_title(f"{group}: unpruned {label} {_fmt(level)}" if level is not None else group, fontsize=10)
        ax.grid(alpha=0.3)
    if handles:
        figure.legend(
            list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(handles)), fontsize=8
        )
    datasets = ", ".join(g for g in groups if g not in ("mean", "union"))
    lines = [
        f"{label} kept after pruning, by pruner and keep ratio",
        *([f"model: {model}"] if model else []),
        f"dataset{'s' if ',' in datasets else ''}: {datasets}",
    ]
    width = int(figure.get_figwidth() * 13)  # characters of 10-point text that fit across the figure
    figure.suptitle("\n".join(textwrap.fill(line, width) for line in lines), fontsize=10)
    return figure


def plot_retention(
    rows: Sequence[ResultRow], path: str | Path, metric: str = "ndcg_at_5", *, model: str | None = None
) -> Path:
    """PNG: ``metric`` retention against keep ratio, one line per pruner, one panel per dataset.

    The title names the model (``model``, e.g. :func:`model_label`) and the datasets; each panel
    draws the unpruned level (100%) and names the unpruned model's own score; the legend sits outside
    the panels (under them), off the lines.
    """
    figure = retention_figure(rows, metric, model=model)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target)
    return target


def write_reports(results: EvalResults) -> dict[str, Path]:
    """Write ``results.md``, ``results.csv`` and ``retention.png`` into ``results.out_dir``."""
    out = Path(results.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "results.md"
    markdown.write_text(markdown_report(results))
    return {
        "markdown": markdown,
        "csv": write_csv(results.rows, out / "results.csv"),
        "plot": plot_retention(
            results.rows, out / "retention.png", model=model_label(results.config.get("encoder", {}))
        ),
    }
