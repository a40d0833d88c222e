"""Scale benchmark: SAP-pruned indexes of growing size, exact scans (engine, anchor copy, torch
floor) and staged search, one query at a time and in batches of 32.

Pages are :class:`bench.search.SyntheticCorpus`'s SAP-sized pages (103 kept vectors of dim 128,
precomputed, added with ``add_pages`` in documents of 50). For each ``--sizes`` entry, in stages
that each save a JSON file under ``--work/<size>/`` and are skipped when it exists (so a stopped
run resumes where it was):

1. ``build``: create the index and add every page (build time, pages/s, bytes per page on disk).
2. ``search``: 50 queries of 20 tokens, k=10:
   - exact through the engine (``scan="engine"``), one at a time: p50, and the exact top-10;
   - the anchor copy: its build time, exact one at a time (p50 of 10 queries), and whether all
     50 batched give the engine's top-10;
   - staged (``two_stage=True``): p50/p90 and recall@10 against exact;
   - ``search_batch`` of 32 for the engine, the copy and staged: queries/s against one at a time;
   - the floor: one bf16 and one float32 torch matmul of a query against every anchor in RAM;
   - the process's RSS after searching (and its peak).

Every stage prints its wall time. Run ``nice -n 5 python bench/scale.py --sizes 2000`` for a quick
check. Not a test. On a shared machine compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "bench"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from search import DIM, SyntheticCorpus, _pruned  # noqa: E402

from sap_rag.index import SAPIndex  # noqa: E402

QUERIES = 50
TOKENS = 20
K = 10
BATCH = 32
PER_DOC = 50
COPY_ONE_AT_A_TIME = 10


def _log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def _rss() -> dict[str, float]:
    status = Path("/proc/self/status").read_text().splitlines()
    kb = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mb": kb.get("VmRSS", 0) / 1024, "peak_rss_mb": kb.get("VmHWM", 0) / 1024}


def _pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.array(times) * 1000, q))


def build(size: int, work: Path, corpus: SyntheticCorpus) -> dict:
    path = work / "index"
    if path.exists():
        import shutil

        shutil.rmtree(path)  # a build stopped half-way: start over (the stage is one unit)
    t0 = time.perf_counter()
    index = SAPIndex.create(path, dim=DIM, keep_ratio=0.1)
    for d in range(0, size, PER_DOC):
        pages = [_pruned(*corpus.page(i, full=False)) for i in range(d, min(size, d + PER_DOC))]
        index.add_pages(pages, doc_id=f"doc-{d // PER_DOC}")
        if (d // PER_DOC) % 20 == 0:
            _log(f"  {d + len(pages)} / {size} pages")
    add_s = time.perf_counter() - t0
    index.optimize()
    total_s = time.perf_counter() - t0
    stats = index.stats()
    index.close()
    return {
        "pages": size,
        "add_s": add_s,
        "build_s": total_s,
        "pages_per_s": size / total_s,
        "bytes_per_page": stats.bytes_per_page,
        "vectors_per_page": stats.vectors_per_page,
    }


def _one_at_a_time(index: SAPIndex, queries: list[np.ndarray], **options) -> tuple[list[float], list[list]]:
    times, results = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, K, **options)
        times.append(time.perf_counter() - t)
        results.append([h.page_id for h in hits])
    return times, results


def _batched(index: SAPIndex, queries: list[np.ndarray], **options) -> float:
    """Queries per second of ``search_batch`` in batches of ``BATCH``."""
    t = time.perf_counter()
    done = 0
    for start in range(0, len(queries), BATCH):
        part = queries[start : start + BATCH]
        if len(part) < BATCH:
            break
        index.search_batch(part, K, **options)
        done += len(part)
    return done / (time.perf_counter() - t)


def _recall(got: list[list], truth: list[list]) -> float:
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, truth, strict=True)]))


def search(size: int, work: Path, corpus: SyntheticCorpus) -> dict:
    rng = np.random.default_rng(size)
    targets = rng.choice(size, QUERIES, replace=False)
    queries = [corpus.query(int(i), TOKENS) for i in targets]
    batch_queries = (queries * 2)[: max(BATCH, (QUERIES // BATCH) * BATCH)]
    index = SAPIndex.open(work / "index")
    out: dict = {"pages": size, "threads": torch.get_num_threads()}
    try:
        index.search(queries[0], K, two_stage=False, scan="engine")  # warm the engine's files
        times, exact = _one_at_a_time(index, queries, two_stage=False, scan="engine")
        out["engine_exact_p50_ms"] = _pct(times, 50)
        _log(f"  engine exact p50 {out['engine_exact_p50_ms']:.0f} ms")
        t = time.perf_counter()
        index.search(queries[0], K, two_stage=False, scan="copy")  # builds the anchor copy
        out["copy_build_s"] = time.perf_counter() - t
        # fewer queries: one at a time is the copy's slow case, and its results are compared below
        times, _ = _one_at_a_time(index, queries[:COPY_ONE_AT_A_TIME], two_stage=False, scan="copy")
        out["copy_exact_p50_ms"] = _pct(times, 50)
        via_batch = [[h.page_id for h in hits] for hits in index.search_batch(queries, K, two_stage=False, scan="copy")]
        out["copy_same_top10"] = _recall(via_batch, exact)
        _log(f"  copy built in {out['copy_build_s']:.1f} s; exact p50 {out['copy_exact_p50_ms']:.0f} ms")
        times, staged = _one_at_a_time(index, queries, two_stage=True)
        out["staged_p50_ms"], out["staged_p90_ms"] = _pct(times, 50), _pct(times, 90)
        out["staged_recall10"] = _recall(staged, exact)
        _log(f"  staged p50 {out['staged_p50_ms']:.0f} ms recall@10 {out['staged_recall10']:.3f}")
        out["engine_exact_qps_1"] = 1000 / out["engine_exact_p50_ms"]
        out["copy_exact_qps_1"] = 1000 / out["copy_exact_p50_ms"]
        out["staged_qps_1"] = 1000 / out["staged_p50_ms"]
        out["engine_exact_qps_32"] = _batched(index, batch_queries, two_stage=False, scan="engine")
        out["copy_exact_qps_32"] = _batched(index, batch_queries, two_stage=False, scan="copy")
        out["staged_qps_32"] = _batched(index, batch_queries, two_stage=True)
        _log(
            f"  batch of 32: engine {out['engine_exact_qps_32']:.1f} q/s, copy {out['copy_exact_qps_32']:.1f} q/s, "
            f"staged {out['staged_qps_32']:.1f} q/s"
        )
        out.update(_rss())
        out["copy_bytes"] = index._anchor_copy.nbytes if index._anchor_copy is not None else None
        anchors = np.asarray(index._anchor_copy.anchors) if index._anchor_copy is not None else None
    finally:
        index.close()
    if anchors is not None:  # the floor: one matmul over every anchor held in RAM
        for name, dtype in (("bf16", torch.bfloat16), ("f32", torch.float32)):
            a = torch.from_numpy(anchors.astype(np.float32)).to(dtype)
            times = []
            for q in queries[:5]:
                qt = torch.from_numpy(q).to(dtype)
                t = time.perf_counter()
                (a @ qt.T).max()
                times.append(time.perf_counter() - t)
            out[f"floor_{name}_ms"] = _pct(times, 50)
            del a
        _log(f"  floor: bf16 matmul {out['floor_bf16_ms']:.0f} ms, float32 {out['floor_f32_ms']:.0f} ms")
    return out


STAGES = {"build": build, "search": search}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000", help="comma-separated page counts")
    parser.add_argument("--work", type=Path, default=Path("bench-work/scale"))
    parser.add_argument("--out", type=Path, default=None, help="write all results as JSON here")
    args = parser.parse_args(argv)
    corpus = SyntheticCorpus(seed=0)
    results = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        work = args.work / str(size)
        work.mkdir(parents=True, exist_ok=True)
        results[size] = {}
        for name, stage in STAGES.items():
            saved = work / f"{name}.json"
            if saved.exists():
                _log(f"{size}: {name} done before, skipped")
                results[size][name] = json.loads(saved.read_text())
                continue
            _log(f"{size}: {name}")
            t = time.perf_counter()
            data = stage(size, work, corpus)
            data["stage_s"] = time.perf_counter() - t
            saved.write_text(json.dumps(data, indent=1))
            results[size][name] = data
            _log(f"{size}: {name} took {data['stage_s']:.0f} s")
    print(json.dumps(results, indent=1))
    print("peak RSS of the whole run (MB):", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
