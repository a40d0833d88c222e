"""The comparison harness: every pruner at every keep ratio, on cached encodings, against the unpruned run.

For each dataset the pages are encoded once (see :mod:`sap_rag.eval.cache`); each pruner is
then applied to the cached encodings at each keep ratio, the queries are scored by brute-force
MaxSim against the pruned pages, and the metrics are compared with the unpruned run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import InvalidInputError
from ..pruning.base import Pruner, validate_keep_ratio
from ..pruning.registry import PRUNERS, make_pruner
from ..types import PageEncoding, PrunedPage
from .cache import encode_dataset
from .datasets import RetrievalDataset
from .metrics import benchmark_score_retention, ndcg_per_query, per_pair_mean_score_retention, recall_per_query

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder

logger = logging.getLogger(__name__)

__all__ = [
    "BYTES_PER_VALUE",
    "DEFAULT_KEEP_RATIOS",
    "EvalResults",
    "EvalSet",
    "PaddedPages",
    "PrunerSpec",
    "ResultRow",
    "evaluate_encoded",
    "evaluate_sets",
    "run_eval",
]

#: Stored vectors are counted as float16: ``2 * dim`` bytes per vector.
BYTES_PER_VALUE = 2
DEFAULT_KEEP_RATIOS = (0.2, 0.1, 0.05)
UNPRUNED = "none"
METRICS = ("ndcg_at_5", "ndcg_at_10", "recall_at_1", "recall_at_5", "recall_at_10")


@dataclass(frozen=True)
class PrunerSpec:
    """A pruner to evaluate: a registered name, its options, and the label used in the tables.

    >>> PrunerSpec.parse("cluster").label
    'cluster'
    >>> PrunerSpec("cluster", {"normalize": True}, label="cluster_norm").label
    'cluster_norm'
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if self.name not in PRUNERS:
            raise InvalidInputError(f"unknown pruner {self.name!r}; choose one of: {', '.join(PRUNERS)}")
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @classmethod
    def parse(cls, value: str | PrunerSpec) -> PrunerSpec:
        """A spec from a registered name (or an existing spec)."""
        if isinstance(value, PrunerSpec):
            return value
        if not isinstance(value, str):
            raise InvalidInputError(f"a pruner is given by its name or a PrunerSpec, got {type(value).__name__}")
        return cls(value.strip().lower())

    @property
    def stochastic(self) -> bool:
        """Whether results depend on a seed (then they are averaged over several)."""
        return bool(getattr(PRUNERS[self.name], "stochastic", False))

    def build(self, keep_ratio: float, seed: int | None = None) -> Pruner:
        options = dict(self.options)
        if self.stochastic and seed is not None:
            options.setdefault("seed", seed)
        return make_pruner(self.name, keep_ratio, **options)


@dataclass
class ResultRow:
    """The metrics of one (dataset, pruner, keep ratio); ``pruner == "none"`` is the unpruned run.

    Retention columns are the metric divided by the unpruned run's (NaN if that is 0).
    ``score_retention`` is the benchmark Score Retention as the SAP authors report it,
    ``mean(pruned MaxSim) / mean(full MaxSim)`` over the relevant (query, page) pairs;
    ``score_retention_per_pair`` is the mean of the per-pair ratios (0 for a pair whose full
    MaxSim is not positive), the quantity the per-layer calibration curve averages.
    ``bytes_per_page`` counts float16 storage, ``2 * dim`` bytes per vector. Search time is
    brute-force MaxSim of one query against every (pruned) page of the dataset
    (median over queries).
    """

    dataset: str
    pruner: str
    keep_ratio: float
    num_pages: int
    num_queries: int
    ndcg_at_5: float
    ndcg_at_10: float
    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    score_retention: float
    vectors_per_page: float
    bytes_per_page: float
    search_ms_per_query: float
    prune_ms_per_page: float
    ndcg_at_5_retention: float = 1.0
    ndcg_at_10_retention: float = 1.0
    recall_at_1_retention: float = 1.0
    recall_at_5_retention: float = 1.0
    recall_at_10_retention: float = 1.0
    search_speedup: float = 1.0
    compression: float = 1.0
    seeds: int = 1
    ndcg_at_5_std: float = 0.0
    score_retention_per_pair: float = 1.0

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class EvalResults:
    """What :func:`run_eval` returns: the rows, the files written, and how each dataset was encoded."""

    rows: list[ResultRow]
    out_dir: Path
    files: dict[str, Path]
    datasets: list[dict[str, Any]]
    config: dict[str, Any]

    def row(self, dataset: str, pruner: str, keep_ratio: float) -> ResultRow:
        """The row of one (dataset, pruner label, keep ratio); raises KeyError if absent."""
        for row in self.rows:
            if row.dataset == dataset and row.pruner == pruner and math.isclose(row.keep_ratio, keep_ratio):
                return row
        raise KeyError((dataset, pruner, keep_ratio))

    def unpruned(self, dataset: str) -> ResultRow:
        return self.row(dataset, UNPRUNED, 1.0)


class PaddedPages:
    """Pages padded once into one ``(D, L, dim)`` tensor, for timed brute-force MaxSim.

    Padding is index building, not search, so it is done once and not timed; ``score`` then
    gives the same numbers as :func:`sap_rag.search.maxsim_matrix`.
    """

    def __init__(self, pages: Sequence[torch.Tensor], *, device: str | torch.device = "cpu", chunk: int = 512):
        if not pages:
            raise InvalidInputError("no pages to search")
        self.device = torch.device(device)
        self.chunk = int(chunk)
        width = max(int(p.shape[0]) for p in pages)
        dim = int(pages[0].shape[1])
        self.data = torch.zeros(len(pages), width, dim, dtype=torch.float32)
        self.valid = torch.zeros(len(pages), width, dtype=torch.bool)
        for j, page in enumerate(pages):
            self.data[j, : page.shape[0]] = page.to(torch.float32)
            self.valid[j, : page.shape[0]] = True
        self.data = self.data.to(self.device)
        self.valid = self.valid.to(self.device)

    @torch.inference_mode()
    def score(self, query: torch.Tensor) -> torch.Tensor:
        """``(D,)`` MaxSim of ``query`` ``(n_q, dim)`` against every page."""
        q = query.to(self.device, torch.float32)
        out = []
        for start in range(0, self.data.shape[0], self.chunk):
            sims = torch.einsum("qd,bnd->bqn", q, self.data[start : start + self.chunk])
            sims = sims.masked_fill(~self.valid[start : start + self.chunk, None, :], float("-inf"))
            out.append(sims.max(dim=2).values.sum(dim=1))
        return torch.cat(out)

    def search(self, queries: Sequence[torch.Tensor], repeats: int = 1) -> tuple[np.ndarray, float]:
        """``((Q, D) scores, seconds per query)``.

        Each query is timed on its own (best of ``repeats``); the time reported is the median
        over queries, which a stray pause of a busy machine does not move.
        """
        per_query = np.full(len(queries), math.inf)
        rows: list[torch.Tensor] = []
        for _ in range(max(1, repeats)):
            rows = []
            for i, query in enumerate(queries):
                start = time.perf_counter()
                row = self.score(query)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                per_query[i] = min(per_query[i], time.perf_counter() - start)
                rows.append(row)
        scores = torch.stack(rows).cpu().numpy().astype(np.float64)
        return scores, float(np.median(per_query))


def _metrics(relevance: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    return {
        "ndcg_at_5": float(ndcg_per_query(relevance, scores, 5).mean()),
        "ndcg_at_10": float(ndcg_per_query(relevance, scores, 10).mean()),
        "recall_at_1": float(recall_per_query(relevance, scores, 1).mean()),
        "recall_at_5": float(recall_per_query(relevance, scores, 5).mean()),
        "recall_at_10": float(recall_per_query(relevance, scores, 10).mean()),
    }


def _score_retention(relevance: np.ndarray, full: np.ndarray, pruned: np.ndarray) -> tuple[float, float]:
    """``(benchmark SR, per-pair mean SR)`` over the relevant (query, page) pairs.

    Benchmark SR is the authors' ``mean(pruned MaxSim) / mean(full MaxSim)``; the per-pair mean
    averages ``pruned / full`` with 0 for a pair whose full MaxSim is not positive (see
    :mod:`sap_rag.eval.metrics`). NaN when there is no relevant pair.
    """
    mask = relevance > 0
    if not mask.any():
        return math.nan, math.nan
    return (
        benchmark_score_retention(full[mask], pruned[mask]),
        per_pair_mean_score_retention(full[mask], pruned[mask]),
    )


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else math.nan


def _calibration_sample(pages: Sequence[PageEncoding], limit: int | None) -> list[PageEncoding]:
    if limit is None or limit >= len(pages):
        return list(pages)
    picks = np.linspace(0, len(pages) - 1, num=max(1, limit)).round().astype(int)
    return [pages[i] for i in sorted(set(picks.tolist()))]


def _prune_all(pruner: Pruner, pages: Sequence[PageEncoding]) -> tuple[list[PrunedPage], float]:
    start = time.perf_counter()
    pruned = [pruner.prune(page) for page in pages]
    return pruned, (time.perf_counter() - start) / len(pages)


@dataclass
class EvalSet:
    """One corpus to evaluate on: encoded pages, encoded queries and their relevance.

    Attributes:
        name: the label of its rows.
        pages: ``(D,)`` page encodings.
        queries: ``(Q,)`` query embeddings, each ``(n_tokens, dim)``.
        relevance: ``(Q, D)`` graded or binary relevance.
    """

    name: str
    pages: Sequence[PageEncoding]
    queries: Sequence[torch.Tensor]
    relevance: np.ndarray

    def __post_init__(self) -> None:
        if not self.pages or not self.queries:
            raise InvalidInputError(f"{self.name}: need at least one page and one query")
        if self.relevance.shape != (len(self.queries), len(self.pages)):
            raise InvalidInputError(
                f"{self.name}: relevance is {self.relevance.shape}, expected ({len(self.queries)}, {len(self.pages)})"
            )


def _union_set(sets: Sequence[EvalSet]) -> EvalSet:
    """All sets as one corpus: every query searches every page; relevance stays within its set."""
    relevance = np.zeros((sum(len(s.queries) for s in sets), sum(len(s.pages) for s in sets)))
    row = col = 0
    for s in sets:
        relevance[row : row + len(s.queries), col : col + len(s.pages)] = s.relevance
        row, col = row + len(s.queries), col + len(s.pages)
    pages = [p for s in sets for p in s.pages]
    return EvalSet("union", pages, [q for s in sets for q in s.queries], relevance)


@dataclass
class _Reference:
    scores: np.ndarray
    metrics: dict[str, float]
    seconds: float
    vectors: float


def _unpruned(target: EvalSet, options: dict[str, Any]) -> tuple[ResultRow, _Reference]:
    index = PaddedPages([p.embeddings for p in target.pages], device=options["search_device"])
    scores, seconds = index.search(target.queries, options["timing_repeats"])
    metrics = _metrics(target.relevance, scores)
    vectors = float(np.mean([p.num_tokens for p in target.pages]))
    # Against itself: benchmark SR 1 by definition; the per-pair mean is the share of relevant
    # pairs whose full MaxSim is positive (the others score 0).
    _, per_pair = _score_retention(target.relevance, scores, scores)
    row = ResultRow(
        dataset=target.name,
        pruner=UNPRUNED,
        keep_ratio=1.0,
        num_pages=len(target.pages),
        num_queries=len(target.queries),
        **metrics,
        score_retention=1.0,
        score_retention_per_pair=per_pair,
        vectors_per_page=vectors,
        bytes_per_page=vectors * target.pages[0].dim * BYTES_PER_VALUE,
        search_ms_per_query=seconds * 1e3,
        prune_ms_per_page=0.0,
    )
    return row, _Reference(scores, metrics, seconds, vectors)


def _measure(target: EvalSet, pruned: Sequence[PrunedPage], ref: _Reference, options: dict[str, Any]) -> dict:
    index = PaddedPages([p.embeddings for p in pruned], device=options["search_device"])
    scores, seconds = index.search(target.queries, options["timing_repeats"])
    benchmark, per_pair = _score_retention(target.relevance, ref.scores, scores)
    return {
        **_metrics(target.relevance, scores),
        "score_retention": benchmark,
        "score_retention_per_pair": per_pair,
        "vectors_per_page": float(np.mean([p.num_kept for p in pruned])),
        "search_ms_per_query": seconds * 1e3,
    }


def _pruned_row(target: EvalSet, label: str, ratio: float, runs: list[dict], ref: _Reference) -> ResultRow:
    mean = {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}
    return ResultRow(
        dataset=target.name,
        pruner=label,
        keep_ratio=ratio,
        num_pages=len(target.pages),
        num_queries=len(target.queries),
        **{key: mean[key] for key in METRICS},
        score_retention=mean["score_retention"],
        score_retention_per_pair=mean["score_retention_per_pair"],
        vectors_per_page=mean["vectors_per_page"],
        bytes_per_page=mean["vectors_per_page"] * target.pages[0].dim * BYTES_PER_VALUE,
        search_ms_per_query=mean["search_ms_per_query"],
        prune_ms_per_page=mean["prune_ms_per_page"],
        **{f"{key}_retention": _ratio(mean[key], ref.metrics[key]) for key in METRICS},
        search_speedup=_ratio(ref.seconds * 1e3, mean["search_ms_per_query"]),
        compression=_ratio(ref.vectors, mean["vectors_per_page"]),
        seeds=len(runs),
        ndcg_at_5_std=float(np.std([run["ndcg_at_5"] for run in runs])),
    )


def evaluate_sets(
    sets: Sequence[EvalSet],
    pruners: Sequence[str | PrunerSpec],
    keep_ratios: Sequence[float],
    *,
    union: bool = False,
    seeds: Sequence[int] = (0, 1, 2),
    calibration_pages: int | None = 256,
    timing_repeats: int = 1,
    search_device: str = "cpu",
    show_progress: bool = False,
    pruner_log: list[dict[str, Any]] | None = None,
    query_prompt: torch.Tensor | None = None,
) -> list[ResultRow]:
    """Rows for each set: its unpruned run, then each pruner at each keep ratio.

    Each (pruner, ratio, seed) prunes every set's pages once; with ``union=True`` the same
    pruned pages are also searched as one corpus (rows named ``"union"``).

    Args:
        sets: the corpora (see :class:`EvalSet`); names must be distinct.
        pruners: names or specs.
        keep_ratios: ratios in (0, 1].
        union: also evaluate the union of the sets.
        seeds: the seeds a stochastic pruner (random) is averaged over.
        calibration_pages: pages per set used to calibrate pruners that have a ``calibrate``
            method (EOS-adaptive), evenly spaced over the set; None = all. Label-free.
        timing_repeats: MaxSim timing is the best of this many passes.
        search_device: where MaxSim runs (``"cpu"`` or ``"cuda"``).
        show_progress: a progress bar over (pruner, ratio) runs.
        pruner_log: if given, each built pruner's ``config()`` is appended (for the manifest).
        query_prompt: ``(M, dim)`` the encoder's query-prompt vectors, handed to pruners that take
            a text side (SPARE's ``use_text``); see :mod:`sap_rag.pruning.spare_inputs`.
    """
    from ..progress import progress

    specs = [PrunerSpec.parse(p) for p in pruners]
    ratios = [validate_keep_ratio(r) for r in keep_ratios]
    options = {"search_device": search_device, "timing_repeats": timing_repeats}
    targets = list(sets) + ([_union_set(sets)] if union else [])
    rows: list[ResultRow] = []
    refs: dict[str, _Reference] = {}
    for target in targets:
        row, refs[target.name] = _unpruned(target, options)
        rows.append(row)
    samples: dict[str, list[PageEncoding]] = {}
    runs = [(spec, ratio) for spec in specs for ratio in ratios]
    with progress(total=len(runs), desc="pruning and searching", unit="run", enabled=show_progress) as bar:
        for spec, ratio in runs:
            measured: dict[str, list[dict]] = {t.name: [] for t in targets}
            for seed in seeds if spec.stochastic else [None]:
                pruned_sets: list[list[PrunedPage]] = []
                seconds: list[float] = []
                for target in sets:
                    pruner = spec.build(ratio, seed)
                    if query_prompt is not None and callable(getattr(pruner, "use_text", None)):
                        pruner.use_text(query_prompt)
                    if callable(getattr(pruner, "calibrate", None)):
                        if target.name not in samples:
                            samples[target.name] = _calibration_sample(target.pages, calibration_pages)
                        pruner.calibrate(samples[target.name])
                    pruned, per_page = _prune_all(pruner, target.pages)
                    pruned_sets.append(pruned)
                    seconds.append(per_page)
                    if pruner_log is not None:
                        stats = pruner.run_stats() if callable(getattr(pruner, "run_stats", None)) else {}
                        pruner_log.append({"dataset": target.name, "label": spec.label, **pruner.config(), **stats})
                    run = _measure(target, pruned, refs[target.name], options)
                    measured[target.name].append({**run, "prune_ms_per_page": per_page * 1e3})
                if union:
                    target = targets[-1]
                    run = _measure(target, [p for pruned in pruned_sets for p in pruned], refs[target.name], options)
                    sizes = [len(t.pages) for t in sets]
                    per_page = float(np.average(seconds, weights=sizes))
                    measured[target.name].append({**run, "prune_ms_per_page": per_page * 1e3})
            for target in targets:
                rows.append(_pruned_row(target, spec.label, ratio, measured[target.name], refs[target.name]))
            bar.update(1)
    return rows


def evaluate_encoded(
    name: str,
    pages: Sequence[PageEncoding],
    queries: Sequence[torch.Tensor],
    relevance: np.ndarray,
    pruners: Sequence[str | PrunerSpec],
    keep_ratios: Sequence[float],
    **options: Any,
) -> list[ResultRow]:
    """:func:`evaluate_sets` for one corpus: its unpruned row, then each pruner at each ratio."""
    return evaluate_sets([EvalSet(name, pages, queries, relevance)], pruners, keep_ratios, **options)


def _mean_rows(rows: Sequence[ResultRow], names: Sequence[str]) -> list[ResultRow]:
    """Macro average over datasets, per (pruner, ratio); retention = mean metric / mean unpruned metric."""
    groups: dict[tuple[str, float], list[ResultRow]] = {}
    for row in rows:
        if row.dataset in names:
            groups.setdefault((row.pruner, row.keep_ratio), []).append(row)
    full = groups.get((UNPRUNED, 1.0), [])
    full_mean = {key: float(np.mean([getattr(r, key) for r in full])) for key in (*METRICS, "search_ms_per_query")}
    full_vectors = float(np.mean([r.vectors_per_page for r in full]))
    out = []
    for (pruner, ratio), members in groups.items():
        if len(members) != len(names):
            continue
        avg = {
            f.name: float(np.mean([getattr(r, f.name) for r in members]))
            for f in fields(ResultRow)
            if f.name not in ("dataset", "pruner", "keep_ratio", "num_pages", "num_queries", "seeds")
        }
        avg.update({f"{key}_retention": _ratio(avg[key], full_mean[key]) for key in METRICS})
        avg["search_speedup"] = _ratio(full_mean["search_ms_per_query"], avg["search_ms_per_query"])
        avg["compression"] = _ratio(full_vectors, avg["vectors_per_page"])
        out.append(
            ResultRow(
                dataset="mean",
                pruner=pruner,
                keep_ratio=ratio,
                num_pages=sum(r.num_pages for r in members),
                num_queries=sum(r.num_queries for r in members),
                seeds=members[0].seeds,
                **avg,
            )
        )
    return out


def _flag_near_chance(info: list[dict[str, Any]], sets: list, rows: list[ResultRow]) -> None:
    """Add each dataset's chance NDCG@5 and whether the unpruned model is near it; warn if so.

    Retention (pruned / unpruned) of a model that ranks little better than at random is noise, not
    a measure of pruning: a pruner can then "keep" more than 100%.
    """
    from .metrics import NEAR_CHANCE_SHARE, chance_ndcg_at_k, near_chance

    for entry, eval_set in zip(info, sets):
        chance = chance_ndcg_at_k(eval_set.relevance, 5)
        unpruned = next((r for r in rows if r.dataset == entry["name"] and r.pruner == "none"), None)
        entry["chance_ndcg_at_5"] = chance
        entry["near_chance"] = bool(unpruned is not None and near_chance(unpruned.ndcg_at_5, chance))
        if entry["near_chance"]:
            logger.warning(
                "%s: the unpruned model's NDCG@5 %.3f is near a random ranking's %.3f (less than %d%% of the "
                "way to 1): retention on this dataset means nothing; use a model that can rank it",
                entry["name"],
                unpruned.ndcg_at_5,
                chance,
                round(100 * NEAR_CHANCE_SHARE),
            )


def run_eval(
    datasets: RetrievalDataset | Sequence[RetrievalDataset],
    encoder: PageEncoder,
    pruners: Sequence[str | PrunerSpec],
    keep_ratios: Sequence[float] = DEFAULT_KEEP_RATIOS,
    out_dir: str | os.PathLike = "eval-out",
    *,
    cache_dir: str | os.PathLike | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    binary_relevance: bool = True,
    union: bool = False,
    calibration_pages: int | None = 256,
    timing_repeats: int = 1,
    search_device: str = "cpu",
    batch_size: int | None = None,
    refresh_cache: bool = False,
    show_progress: bool = False,
    write: bool = True,
) -> EvalResults:
    """Evaluate pruners at keep ratios on datasets, against the unpruned run; write the reports.

    Args:
        datasets: one dataset or several (see :func:`sap_rag.eval.load_dataset`).
        encoder: the page/query encoder (called only for datasets not in the cache).
        pruners: registered names (``"sap"``, ``"random"``, ...) or :class:`PrunerSpec`.
        keep_ratios: keep ratios in (0, 1].
        out_dir: where ``results.md``, ``results.csv``, ``results.json`` and ``retention.png`` go.
        cache_dir: the encoding cache (default ``<out_dir>/cache``).
        seeds: seeds that stochastic pruners are averaged over.
        binary_relevance: gains of 1 for every relevant page (ViDoRe's convention); False
            uses the qrels' grades.
        union: with several datasets, also evaluate them as one corpus (``"union"`` rows).
        calibration_pages: pages (per dataset) used to calibrate EOS-adaptive; None = all.
        timing_repeats: MaxSim timing is the best of this many passes.
        search_device: where the MaxSim search runs.
        batch_size: pages per forward pass when encoding.
        refresh_cache: re-encode even if cached.
        show_progress: progress bars.
        write: write the report files (False: compute only).

    Returns:
        :class:`EvalResults` with one row per (dataset, pruner, ratio) plus each dataset's
        unpruned row (pruner ``"none"``), and ``"mean"`` rows over datasets when there are several.
    """
    from .reports import write_reports

    items = [datasets] if isinstance(datasets, RetrievalDataset) else list(datasets)
    if not items:
        raise InvalidInputError("run_eval needs at least one dataset")
    names = [d.name for d in items]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"dataset names must be distinct (they label the rows), got {names}")
    specs = [PrunerSpec.parse(p) for p in pruners]
    labels = [s.label for s in specs]
    if not specs or len(set(labels)) != len(labels):
        raise InvalidInputError(f"give at least one pruner, each once; got {labels}")
    ratios = sorted({validate_keep_ratio(r) for r in keep_ratios}, reverse=True)
    out = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    options = {
        "seeds": list(seeds),
        "calibration_pages": calibration_pages,
        "timing_repeats": timing_repeats,
        "search_device": search_device,
        "show_progress": show_progress,
    }
    pruner_log: list[dict[str, Any]] = []
    info = []
    sets = []
    wants_spare_inputs = any(getattr(PRUNERS[s.name], "wants_spare_inputs", False) for s in specs)
    for dataset in items:
        encoded = encode_dataset(
            dataset, encoder, cache, batch_size=batch_size, refresh=refresh_cache, show_progress=show_progress
        )
        info.append(
            {
                "name": dataset.name,
                "source": dataset.source,
                "layout": dataset.layout,
                "pages": dataset.num_pages,
                "queries": dataset.num_queries,
                "fingerprint": dataset.fingerprint(),
                "cache": str(encoded.path),
                "from_cache": encoded.from_cache,
                "encode_seconds": encoded.encode_seconds,
            }
        )
        if wants_spare_inputs:
            from ..pruning.spare_inputs import cached_spare_inputs

            # The cache keeps what PageEncoding holds; SPARE's pre-normalisation features and
            # last-token output come from one more forward per page (no attention), kept beside it.
            options["query_prompt"] = cached_spare_inputs(
                encoder,
                encoded.pages,
                lambda d=dataset: [d.image_bytes(j) for j in range(d.num_pages)],
                encoded.path,
                refresh=refresh_cache,
                batch_size=batch_size,
                show_progress=show_progress,
            )
        relevance = dataset.relevance_matrix(binary=binary_relevance)
        sets.append(EvalSet(dataset.name, encoded.pages, encoded.query_embeddings, relevance))
    rows = evaluate_sets(sets, specs, ratios, union=union and len(sets) > 1, pruner_log=pruner_log, **options)
    _flag_near_chance(info, sets, rows)
    if len(items) > 1:
        rows += _mean_rows(rows, names)
    config = {
        "encoder": dict(encoder.describe()),
        "scorable_layers": list(encoder.scorable_layers),
        "pruners": [asdict(s) for s in specs],
        "pruner_configs": pruner_log,
        "keep_ratios": ratios,
        "binary_relevance": binary_relevance,
        "union": union,
        "bytes_per_value": BYTES_PER_VALUE,
        "torch": torch.__version__,
        "python": platform.python_version(),
        **{k: v for k, v in options.items() if k not in ("show_progress", "query_prompt")},
    }
    results = EvalResults(rows=rows, out_dir=out, files={}, datasets=info, config=config)
    if write:
        results.files = write_reports(results)
        (out / "results.json").write_text(
            json.dumps({"config": config, "datasets": info, "rows": [asdict(r) for r in rows]}, indent=2, default=str)
        )
        results.files["json"] = out / "results.json"
    return results
