"""Helpers shared by the index tests: random pages, a float64 brute-force MaxSim, snapshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sap_rag.types import PrunedPage


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``(n, dim)`` random unit vectors (float32)."""
    x = rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def random_page(rng: np.random.Generator, dim: int, k: int | None = None, method: str = "sap") -> PrunedPage:
    """A PrunedPage of ``k`` (default: random 3..20) random unit anchors."""
    k = int(rng.integers(3, 21)) if k is None else k
    emb = torch.from_numpy(unit_rows(rng, k, dim))
    return PrunedPage(
        embeddings=emb,
        positions=torch.from_numpy(rng.integers(0, 30, (k, 2)).astype(np.float32)),
        indices=torch.arange(k),
        scores=None,
        num_tokens=10 * k,
        method=method,
    )


def random_corpus(seed: int, dim: int, docs: int, pages: tuple[int, int] = (1, 6)) -> dict[str, list[PrunedPage]]:
    """``docs`` documents of random pages."""
    rng = np.random.default_rng(seed)
    return {f"doc-{d}": [random_page(rng, dim) for _ in range(int(rng.integers(*pages)))] for d in range(docs)}


def stored(x: torch.Tensor | np.ndarray, storage: str) -> np.ndarray:
    """The float64 values the engine stores for ``x`` under ``storage``."""
    a = np.asarray(x, dtype=np.float32)
    if storage in ("float16", "int8"):
        a = a.astype(np.float16)
    return a.astype(np.float64)


def brute_force(
    query: np.ndarray, corpus: dict[str, list[PrunedPage]], storage: str, keep=lambda doc, page: True
) -> list[tuple[str, int, float]]:
    """Every (doc_id, page_number, MaxSim) in float64, best first: a plain loop, the reference."""
    q = stored(query, storage)
    out = []
    for doc_id, pages in corpus.items():
        for number, page in enumerate(pages, start=1):
            if not keep(doc_id, number):
                continue
            d = stored(page.embeddings, storage)
            total = 0.0
            for row in q:
                total += float(np.max(d @ row))
            out.append((doc_id, number, total))
    out.sort(key=lambda t: -t[2])
    return out


def hit_keys(hits) -> list[tuple[str, int]]:
    return [(h.doc_id, h.page_number) for h in hits]


def assert_matches_brute_force(hits, reference, k: int, tol: float = 1e-4) -> None:
    """Same top-k set and order as the reference, scores within ``tol``."""
    expected = reference[:k]
    assert hit_keys(hits) == [(d, p) for d, p, _ in expected]
    for hit, (_, _, score) in zip(hits, expected):
        assert abs(hit.score - score) < tol, (hit, score)


def tree_listing(root: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``root`` except the engine's own files and the lock."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and "shard" not in p.parts and p.name != ".lock"
    }
