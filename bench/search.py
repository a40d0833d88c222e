"""Search benchmark: full vs SAP-pruned pages in the same engine, brute force, local mode, two stages.

Synthetic pages of real ColPali shape: 1,030 L2-normalised vectors of dim 128 per page, with
structure rather than noise (see :class:`SyntheticCorpus`), and their SAP-sized version (the 103
vectors with the highest anchor score, kept by sap-rag's own ``SAPPruner(0.1)``).

Part 1 (``--pages``, default 10,000): bytes on disk per page and query latency p50/p90 of
  - the full index and the pruned index, both ``SAPIndex`` on Qdrant Edge (float16, exact MaxSim);
  - colpali-engine's ``score_multi_vector`` brute force over the same vectors (float32, in RAM);
  - ``SAPIndex`` on qdrant-client's local mode (the pruned pages; the full pages on a
    ``--local-full-pages`` subset, since local mode needs ~14 s per query per 1,000 full pages).
Part 2 (``--big-pages``, default 100,000 pruned pages): exact p50, staged-search p50 and
  staged recall@10 against exact, for each ``--stages`` setting (``coarse:prefetch``: candidates
  of the first stage's pooled probe, and candidates the exact MaxSim stage reranks; the first is
  the index's default).

Part 3 (``--growth``, e.g. ``10000,100000``): one embedded index grown to each size in turn, with
  per step the add throughput (pages/s), the process's peak and anonymous (not file-backed) memory,
  the optimize time, and staged-search p50 and recall@10 against exact at that size: the cost
  curve as the index grows. The peak is reset before each step, so it is that step's own (its
  adding plus its optimize), not the process's lifetime peak.

Run ``python bench/search.py --pages 500 --big-pages 2000`` for a quick check. Not a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sap_rag.index import SAPIndex  # noqa: E402
from sap_rag.index.options import DEFAULT_COARSE, DEFAULT_PREFETCH  # noqa: E402
from sap_rag.types import PageEncoding, PrunedPage  # noqa: E402

DIM = 128
FULL_TOKENS = 1030
KEEP_RATIO = 0.1


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class SyntheticCorpus:
    """Deterministic ColPali-shaped pages with document structure (page ``i`` is always the same).

    Model (all directions random unit vectors in R^128):
    - every token shares a common direction (embedding anisotropy) and one of 64 "layout"
      directions (background, text lines, table borders...);
    - pages come in documents of ``pages_per_doc`` (50) pages; a document has a topic direction
      present in all its tokens and a vocabulary of 24 concepts drawn (Zipf-like popularity) from
      4,096 shared concepts;
    - a page is about 6 concepts of its document's vocabulary (strength 0.4-1.0) and 2 concepts of
      its own (strength 1.0); 30% of its tokens carry one of these concepts, the rest are layout;
      Gaussian noise on every token; rows L2-normalised;
    - a page's anchor score (what SAP ranks by) is its concept strength: the 103 kept vectors are
      content tokens;
    - a query (20 tokens) is about one page: 14 tokens about one of the page's own concepts and 2
      of its document's, with the document topic, and 6 near-common "filler" tokens (like
      ColPali's query augmentation tokens).

    ``flat=True`` removes the document structure (no topic; each page draws 8 concepts straight
    from the shared pool): a harder case for a mean-vector prefetch.
    """

    def __init__(self, seed: int = 0, pages_per_doc: int = 50, flat: bool = False) -> None:
        rng = np.random.default_rng(seed)
        self.seed, self.pages_per_doc, self.flat = seed, pages_per_doc, flat
        self.common = _unit(rng.standard_normal(DIM))
        self.layout = _unit(rng.standard_normal((64, DIM)))
        self.concepts = _unit(rng.standard_normal((4096, DIM)))
        popularity = 1.0 / (np.arange(4096) + 20.0)
        self.popularity = popularity / popularity.sum()

    def _page_concepts(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(topic (dim,), concepts (8, dim), strengths (8,))`` of page ``i``."""
        rng = np.random.default_rng((self.seed, 0, i))
        if self.flat:
            picked = self.concepts[rng.choice(4096, 8, replace=False, p=self.popularity)]
            return np.zeros(DIM), picked, rng.uniform(0.4, 1.0, 8)
        doc = np.random.default_rng((self.seed, 5, i // self.pages_per_doc))
        topic = _unit(doc.standard_normal(DIM))
        vocab = doc.choice(4096, 24, replace=False, p=self.popularity)
        shared = self.concepts[rng.choice(vocab, 6, replace=False)]
        own = _unit(rng.standard_normal((2, DIM)))
        return topic, np.concatenate([shared, own]), np.concatenate([rng.uniform(0.4, 1.0, 6), np.ones(2)])

    def page(self, i: int, full: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, anchor scores)``: ``(1030, 128)`` and ``(1030,)`` if ``full``, else the
        ``(103, 128)`` kept rows (identical to the full page's) and their scores."""
        topic, concepts, strength = self._page_concepts(i)
        rng = np.random.default_rng((self.seed, 1, i))
        n = FULL_TOKENS
        content = rng.random(n) < 0.3
        which = rng.integers(0, len(concepts), n)
        gamma = np.where(content, strength[which] * rng.uniform(0.9, 1.1, n), 0.0)
        layout = rng.integers(0, len(self.layout), n)
        score = gamma + 1e-3 * rng.random(n)
        kept = np.sort(np.argsort(-score, kind="stable")[: int(KEEP_RATIO * n)])
        rows = np.arange(n) if full else kept
        is_kept = np.zeros(n, bool)
        is_kept[kept] = True
        mask = is_kept[rows]
        noise = np.empty((len(rows), DIM))
        noise[mask] = np.random.default_rng((self.seed, 2, i)).standard_normal((int(mask.sum()), DIM))
        if (~mask).any():
            noise[~mask] = np.random.default_rng((self.seed, 3, i)).standard_normal((int((~mask).sum()), DIM))
        x = (
            0.45 * self.common
            + 0.35 * self.layout[layout[rows]]
            + 0.35 * topic
            + gamma[rows, None] * concepts[which[rows]]
            + 0.075 * noise
        )
        return _unit(x).astype(np.float32), score[rows].astype(np.float32)

    def query(self, i: int, tokens: int = 20, filler: int = 6) -> np.ndarray:
        """``(tokens, 128)`` query about page ``i``."""
        topic, concepts, _ = self._page_concepts(i)
        rng = np.random.default_rng((self.seed, 4, i))
        about = np.concatenate([concepts[6 + rng.integers(2)][None], concepts[rng.choice(6, 2, replace=False)]])
        n = tokens - filler
        content = 0.3 * self.common + 0.4 * topic + about[rng.integers(0, 3, n)] + 0.06 * rng.standard_normal((n, DIM))
        fill = self.common + 0.05 * rng.standard_normal((filler, DIM))
        return _unit(np.concatenate([content, fill])).astype(np.float32)


def _encoding(x: np.ndarray, score: np.ndarray) -> PageEncoding:
    n = x.shape[0]
    return PageEncoding(
        embeddings=torch.from_numpy(x),
        positions=torch.zeros(n, 2),
        grid_shape=(1, n),
        extents=torch.ones(n, 2),
        indegree={0: torch.from_numpy(score)},
        window=(0,),
        sap_scores=torch.from_numpy(score),
    )


def _pruned(x: np.ndarray, score: np.ndarray) -> PrunedPage:
    k = x.shape[0]
    return PrunedPage(torch.from_numpy(x), torch.zeros(k, 2), torch.arange(k), torch.from_numpy(score), 1030, "sap")


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 90))


def _row(part: int, system: str, times: list[float], **fields) -> dict:
    """A result row: ``fields`` plus p50/p90 in ms and the number of timed queries in ``times``."""
    p50, p90 = _percentiles(times)
    return dict(part=part, system=system, **fields, p50=p50, p90=p90, queries=len(times))


def _time_search(index: SAPIndex, queries: list[np.ndarray], **options) -> tuple[list[float], list[list]]:
    """Search ``queries[0]`` once untimed (warm-up), then time each of ``queries[1:]``."""
    index.search(queries[0], k=10, **options)
    times, results = [], []
    for q in queries[1:]:
        start = time.perf_counter()
        hits = index.search(q, k=10, **options)
        times.append(time.perf_counter() - start)
        results.append([(h.doc_id, h.page_number) for h in hits])
    return times, results


def _log(msg: str) -> None:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"[{time.strftime('%H:%M:%S')}] {msg} (peak RSS {rss:.1f} GB)", flush=True)


def _build(path: Path, corpus: SyntheticCorpus, pages: int, *, keep_ratio: float, full_store=None, pruned_store=None):
    """Index ``pages`` synthetic pages (PageEncodings pruned by SAPPruner(keep_ratio)) in docs of 50."""
    index = SAPIndex.create(path, dim=DIM, keep_ratio=keep_ratio)
    started = time.perf_counter()
    per_doc = corpus.pages_per_doc
    for d in range(0, pages, per_doc):
        batch = []
        for i in range(d, min(d + per_doc, pages)):
            x, score = corpus.page(i, full=True)
            batch.append(_encoding(x, score))
            if full_store is not None:
                full_store[i] = torch.from_numpy(x)
            if pruned_store is not None:
                kept = np.sort(np.argsort(-score, kind="stable")[: int(KEEP_RATIO * len(score))])
                pruned_store[i] = torch.from_numpy(x[kept])
        index.add_pages(batch, doc_id=f"doc-{d // per_doc}")
    add_s = time.perf_counter() - started
    index.optimize()
    return index, add_s, time.perf_counter() - started


def part_one(args, corpus: SyntheticCorpus, workdir: Path, rows: list[dict]) -> None:
    n = args.pages
    rng = np.random.default_rng(1)
    targets = rng.integers(0, n, args.queries + 1)
    queries = [corpus.query(int(t), tokens=args.query_tokens) for t in targets]
    slow = queries[: args.slow_queries + 1]

    full_store = torch.empty((n, FULL_TOKENS, DIM), dtype=torch.float32) if not args.skip_colpali else None
    pruned_store = torch.empty((n, int(KEEP_RATIO * FULL_TOKENS), DIM), dtype=torch.float32)

    _log(f"building the full index ({n} pages x {FULL_TOKENS} vectors)")
    full, _, build_s = _build(
        workdir / "full", corpus, n, keep_ratio=1.0, full_store=full_store, pruned_store=pruned_store
    )
    full_stats = full.stats()
    _log(f"full index built in {build_s:.0f} s; timing {args.queries} queries")
    t_full, r_full = _time_search(full, queries)
    full.close()
    rows.append(
        _row(
            1,
            "Qdrant Edge (SAPIndex), full",
            t_full,
            pages=n,
            vectors=full_stats.vectors_per_page,
            bytes_per_page=full_stats.bytes_per_page,
            build_s=build_s,
        )
    )

    _log("building the pruned index (SAPPruner(0.1) on the same pages)")
    pruned, _, build_s = _build(workdir / "pruned", corpus, n, keep_ratio=KEEP_RATIO)
    pruned_stats = pruned.stats()
    t_pruned, r_pruned = _time_search(pruned, queries)
    pruned.close()
    rows.append(
        _row(
            1,
            "Qdrant Edge (SAPIndex), SAP-pruned",
            t_pruned,
            pages=n,
            vectors=pruned_stats.vectors_per_page,
            bytes_per_page=pruned_stats.bytes_per_page,
            build_s=build_s,
        )
    )

    if not args.skip_colpali:
        from sap_rag._compat import import_colpali_engine

        import_colpali_engine()  # applies the torchvision guard first
        from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor as P

        for label, store, results in (("full", full_store, r_full), ("SAP-pruned", pruned_store, r_pruned)):
            _log(f"colpali-engine score_multi_vector, {label}")
            qs = slow if label == "full" else queries
            P.score_multi_vector([torch.from_numpy(qs[0])], store, device="cpu")  # warm-up
            times, agree = [], []
            for qi, q in enumerate(qs[1:]):
                start = time.perf_counter()
                scores = P.score_multi_vector([torch.from_numpy(q)], store, device="cpu")[0]
                top = torch.topk(scores, 10).indices.tolist()
                times.append(time.perf_counter() - start)
                agree.append(len({(f"doc-{i // 50}", i % 50 + 1) for i in top} & set(results[qi])) / 10)
            rows.append(
                _row(
                    1,
                    f"colpali-engine score_multi_vector (float32, RAM), {label}",
                    times,
                    pages=n,
                    vectors=store.shape[1],
                    bytes_per_page=None,
                    top10_agreement=float(np.mean(agree)),
                )
            )
        del full_store
        gc.collect()

    if not args.skip_local:
        from qdrant_client import QdrantClient

        for label, pages_, keep in (("SAP-pruned", n, KEEP_RATIO), ("full", min(n, args.local_full_pages), 1.0)):
            if pages_ <= 0:
                continue
            _log(f"qdrant-client local mode, {label}, {pages_} pages")
            client = QdrantClient(":memory:")
            index = SAPIndex.create(workdir / f"local-{label}", dim=DIM, keep_ratio=keep, client=client)
            started = time.perf_counter()
            for d in range(0, pages_, corpus.pages_per_doc):
                index.add_pages(
                    [_encoding(*corpus.page(i)) for i in range(d, min(d + corpus.pages_per_doc, pages_))],
                    doc_id=f"doc-{d // corpus.pages_per_doc}",
                )
            build_s = time.perf_counter() - started
            qs = queries if label == "SAP-pruned" else slow
            times, res = _time_search(index, qs[: args.slow_queries + 1])
            index.close()
            client.close()
            row = _row(
                1,
                f"qdrant-client local mode (SAPIndex), {label}",
                times,
                pages=pages_,
                vectors=FULL_TOKENS * keep // 1,
                bytes_per_page=None,
                build_s=build_s,
            )
            if label == "SAP-pruned":
                row["top10_agreement"] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res, r_pruned)]))
            rows.append(row)
            gc.collect()
    shutil.rmtree(workdir / "full", ignore_errors=True)


def part_two(args, corpus: SyntheticCorpus, workdir: Path, rows: list[dict]) -> None:
    n = args.big_pages
    _log(f"building the big pruned index ({n} pages x {int(KEEP_RATIO * FULL_TOKENS)} vectors)")
    path = workdir / "big"
    index = SAPIndex.create(path, dim=DIM, keep_ratio=KEEP_RATIO, two_stage=False)
    started = time.perf_counter()
    per_doc = corpus.pages_per_doc
    for d in range(0, n, per_doc):
        index.add_pages(
            [_pruned(*corpus.page(i, full=False)) for i in range(d, min(d + per_doc, n))], doc_id=f"doc-{d // per_doc}"
        )
        if d % 10_000 == 0:
            _log(f"  {d} pages added")
    add_s = time.perf_counter() - started
    index.optimize()
    build_s = time.perf_counter() - started
    stats = index.stats()
    _log(f"big index built: add {add_s:.0f} s, optimize {build_s - add_s:.0f} s")
    rng = np.random.default_rng(2)
    queries = [corpus.query(int(t), tokens=args.query_tokens) for t in rng.integers(0, n, args.big_queries + 1)]
    t_exact, r_exact = _time_search(index, queries, two_stage=False)
    size = dict(pages=n, vectors=stats.vectors_per_page, bytes_per_page=stats.bytes_per_page)
    rows.append(_row(2, "exact (one stage)", t_exact, **size, recall10=1.0, build_s=build_s))
    _log(f"  exact: p50 {rows[-1]['p50']:.1f} ms")
    for coarse, depth in args.stages:
        times, res = _time_search(index, queries, two_stage=True, prefetch=depth, coarse=coarse)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res, r_exact)]))
        default = " (default)" if (coarse, depth) == (DEFAULT_COARSE, DEFAULT_PREFETCH) else ""
        rows.append(_row(2, f"staged, coarse {coarse}, prefetch {depth}{default}", times, **size, recall10=recall))
        _log(f"  coarse {coarse}, prefetch {depth}: p50 {rows[-1]['p50']:.1f} ms, recall@10 {recall:.3f}")
    index.close()
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)


def _memory() -> dict[str, float]:
    """Current, peak, anonymous and file-backed resident memory of this process, GB (Linux)."""
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1e6
    return out


def _reset_peak() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM), so each step reports its own peak (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:  # not Linux, or not allowed: the peak is then the process's lifetime peak
        pass


class _PeakSampler:
    """Samples this process's anonymous and total resident memory every 0.1 s; keeps the peaks, GB."""

    def __init__(self) -> None:
        import threading

        self.anon = self.total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            m = _memory()
            self.anon, self.total = max(self.anon, m["RssAnon"]), max(self.total, m["VmRSS"])

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


GROWTH_VARIANTS = {
    # name: (on-disk anchors and pooled vectors, largest merged segment in KB)
    "in-ram": (False, None),
    "on-disk": (True, None),
    "bounded": (True, 64_000),
}


def part_three(args, corpus: SyntheticCorpus, workdir: Path, rows: list[dict]) -> None:
    """Grow one index per variant through ``args.growth`` sizes; measure adding, memory and search."""
    from sap_rag.index.backends import edge

    defaults = (edge.ON_DISK_VECTORS, edge.MAX_SEGMENT_KB)
    for variant in args.growth_variants:
        edge.ON_DISK_VECTORS, edge.MAX_SEGMENT_KB = GROWTH_VARIANTS[variant]
        try:
            _grow(args, corpus, workdir / f"growth-{variant}", variant, rows)
        finally:
            edge.ON_DISK_VECTORS, edge.MAX_SEGMENT_KB = defaults


def _grow(args, corpus: SyntheticCorpus, path: Path, variant: str, rows: list[dict]) -> None:
    gc.collect()
    start = _memory()  # before the index exists: the peaks below are what adding costs above it
    index = SAPIndex.create(path, dim=DIM, keep_ratio=KEEP_RATIO)
    per_doc = corpus.pages_per_doc
    done = 0
    for size in args.growth:
        _log(f"{variant}: growing the index to {size} pages")
        gc.collect()
        _reset_peak()
        started = time.perf_counter()
        with _PeakSampler() as add_peak:
            for d in range(done, size, per_doc):
                pages = [_pruned(*corpus.page(i, full=False)) for i in range(d, min(d + per_doc, size))]
                index.add_pages(pages, doc_id=f"doc-{d // per_doc}")
        add_s = time.perf_counter() - started
        added = size - done
        during = _memory()
        started = time.perf_counter()
        with _PeakSampler() as optimize_peak:
            index.optimize()
        optimize_s = time.perf_counter() - started
        after = _memory()
        done = size
        rng = np.random.default_rng(3)
        targets = rng.integers(0, size, args.growth_queries + 1)
        queries = [corpus.query(int(t), tokens=args.query_tokens) for t in targets]
        t_exact, r_exact = _time_search(index, queries, two_stage=False)
        times, res = _time_search(index, queries, two_stage=True)
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(res, r_exact)]))
        stats = index.stats()
        rows.append(
            _row(
                3,
                f"{variant}, {size} pages",
                times,
                variant=variant,
                pages=size,
                added=added,
                add_pages_per_s=added / add_s,
                optimize_s=optimize_s,
                anon_after_add_gb=during["RssAnon"],
                anon_after_optimize_gb=after["RssAnon"],
                peak_anon_above_start_gb=max(add_peak.anon, optimize_peak.anon) - start["RssAnon"],
                peak_rss_above_start_gb=max(add_peak.total, optimize_peak.total, after["VmHWM"]) - start["VmRSS"],
                exact_p50=_percentiles(t_exact)[0],
                recall10=recall,
                bytes_per_page=stats.bytes_per_page,
            )
        )
        r = rows[-1]
        _log(
            f"  {variant} {size} pages: add {r['add_pages_per_s']:.0f} pages/s, optimize {optimize_s:.0f} s, "
            f"peak anon +{r['peak_anon_above_start_gb']:.2f} GB, peak RSS +{r['peak_rss_above_start_gb']:.2f} GB; "
            f"staged p50 {r['p50']:.0f} ms (exact {r['exact_p50']:.0f} ms), recall@10 {recall:.3f}"
        )
    index.close()
    if not args.keep:
        shutil.rmtree(path, ignore_errors=True)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.1f}x"


def report(rows: list[dict], args) -> str:
    lines = []
    part1 = [r for r in rows if r["part"] == 1]
    if part1:
        base = next(r for r in part1 if r["system"].endswith(", full") and "Edge" in r["system"])
        lines += [
            f"### {args.pages:,} pages, {args.query_tokens}-token queries, k=10",
            "",
            "| system | pages | vectors/page | bytes on disk/page | p50 ms | p90 ms | smaller than full | "
            "p50 speed-up vs full |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in part1:
            size = base["bytes_per_page"] / r["bytes_per_page"] if r["bytes_per_page"] else None
            lines.append(
                f"| {r['system']} | {r['pages']:,} | {r['vectors']:.0f} | {_fmt(r['bytes_per_page'], ',.0f')} | "
                f"{r['p50']:.1f} | {r['p90']:.1f} | {_ratio(size)} | "
                f"{_ratio(base['p50'] / r['p50'] if r['pages'] == base['pages'] else None)} |"
            )
        agree = [r for r in part1 if "top10_agreement" in r]
        if agree:
            lines += [
                "",
                "Top-10 agreement with the Edge index of the same pages: "
                + ", ".join(f"{r['system']}: {r['top10_agreement']:.2f}" for r in agree),
            ]
        lines.append("")
    part2 = [r for r in rows if r["part"] == 2]
    if part2:
        exact = part2[0]
        lines += [
            f"### {args.big_pages:,} SAP-pruned pages ({exact['vectors']:.0f} vectors/page, "
            f"{exact['bytes_per_page']:,.0f} bytes on disk/page)",
            "",
            "| search | p50 ms | p90 ms | speed-up vs exact | recall@10 vs exact |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in part2:
            lines.append(
                f"| {r['system']} | {r['p50']:.1f} | {r['p90']:.1f} | {exact['p50'] / r['p50']:.0f}x | "
                f"{r['recall10']:.3f} |"
            )
        lines.append("")
    part3 = [r for r in rows if r["part"] == 3]
    if part3:
        lines += [
            "### Growing one embedded index (SAP-pruned pages)",
            "",
            "Peaks are above the process's memory before the index was created (anonymous: what the OS "
            "cannot drop; RSS: also the memory-mapped vector files). Ratios are against the first variant "
            "at the same size.",
            "",
            "| variant | pages | add pages/s | optimize s | peak anon GB | peak RSS GB | bytes/page | "
            "staged p50 ms | exact p50 ms | staged recall@10 | staged p50 vs first | exact p50 vs first |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        first = {r["pages"]: r for r in part3 if r["variant"] == part3[0]["variant"]}
        for r in part3:
            base = first.get(r["pages"])
            lines.append(
                f"| {r['variant']} | {r['pages']:,} | {r['add_pages_per_s']:.0f} | {r['optimize_s']:.0f} | "
                f"{r['peak_anon_above_start_gb']:.2f} | {r['peak_rss_above_start_gb']:.2f} | "
                f"{_fmt(r['bytes_per_page'], ',.0f')} | {r['p50']:.0f} | {r['exact_p50']:.0f} | {r['recall10']:.3f} | "
                f"{_ratio(r['p50'] / base['p50'] if base else None)} | "
                f"{_ratio(r['exact_p50'] / base['exact_p50'] if base else None)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=10_000, help="pages of part 1 (0 skips it)")
    parser.add_argument("--big-pages", type=int, default=100_000, help="pruned pages of part 2 (0 skips it)")
    parser.add_argument("--queries", type=int, default=20, help="timed queries per fast system")
    parser.add_argument("--slow-queries", type=int, default=5, help="timed queries for the slowest systems")
    parser.add_argument("--big-queries", type=int, default=100, help="timed queries in part 2 (recall is over them)")
    parser.add_argument("--query-tokens", type=int, default=20)
    parser.add_argument(
        "--stages",
        type=lambda s: [tuple(int(v) for v in x.split(":")) for x in s.split(",")],
        default=[(DEFAULT_COARSE, DEFAULT_PREFETCH), (1000, 100), (2000, 200)],
        help="comma-separated coarse:prefetch settings of staged search (default: %(default)s)",
    )
    parser.add_argument(
        "--growth",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        default=[],
        help="part 3: comma-separated index sizes to grow one index through, e.g. 10000,100000 (default: skip)",
    )
    parser.add_argument("--growth-queries", type=int, default=20, help="timed queries per size in part 3")
    parser.add_argument(
        "--growth-variants",
        type=lambda s: [v.strip() for v in s.split(",") if v.strip()],
        default=["in-ram", "bounded"],
        help=f"part 3: Edge storage variants, the first is the baseline ({', '.join(GROWTH_VARIANTS)}; "
        "default: %(default)s)",
    )
    parser.add_argument("--local-full-pages", type=int, default=1000, help="full pages for local mode (slow)")
    parser.add_argument("--flat", action="store_true", help="pages without document structure (harder prefetch)")
    parser.add_argument("--skip-colpali", action="store_true")
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="where indexes are built (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the big index")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="sap-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = SyntheticCorpus(flat=args.flat)
    rows: list[dict] = []
    _log(f"sap-rag search benchmark on {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    try:
        if args.pages > 0:
            part_one(args, corpus, workdir, rows)
        if args.big_pages > 0:
            part_two(args, corpus, workdir, rows)
        if args.growth:
            part_three(args, corpus, workdir, rows)
    finally:
        if args.out:
            args.out.write_text(
                json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2)
            )
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("command: python bench/search.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print()
    print(report(rows, args))


if __name__ == "__main__":
    main()
