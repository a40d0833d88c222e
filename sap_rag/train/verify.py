"""Measure a saved toy checkpoint through ``load_encoder`` (the path search uses) on a fixed held-out subset."""

from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["measure_subset", "ndcg5_one_relevant"]


def ndcg5_one_relevant(queries: list[torch.Tensor], docs: list[torch.Tensor]) -> float:
    """Query i's one relevant page is page i: mean of 1/log2(rank + 1) over queries, 0 past rank 5.

    ``queries``: (n_q_tokens, dim) each; ``docs``: (n_tokens, dim) each; MaxSim scores, ties count against.
    """
    total = 0.0
    for i, query in enumerate(queries):
        scores = torch.stack([(query @ doc.T).amax(dim=1).sum() for doc in docs])
        rank = int((scores > scores[i]).sum()) + 1
        total += 1.0 / math.log2(rank + 1) if rank <= 5 else 0.0
    return total / len(queries)


def measure_subset(checkpoint: str | Path, *, seed: int = 9001, pages: int = 32, keep_ratio: float = 0.25) -> dict:
    """Unpruned and SAP-pruned NDCG@5 of the checkpoint on ``pages`` held-out pages of ``seed``."""
    from ..encoders.loading import load_encoder
    from ..pruning import make_pruner
    from .pages import make_pages
    from .render import render_report_page

    encoder = load_encoder(checkpoint, device="cpu")
    subset = make_pages(pages, seed)
    encodings = encoder.encode_pages([render_report_page(p, (252, 364)) for p in subset])
    queries = encoder.encode_queries([p.question(p.index % 6)[0] for p in subset])
    full = ndcg5_one_relevant(queries, [e.embeddings for e in encodings])
    pruner = make_pruner("sap", keep_ratio)
    pruned = ndcg5_one_relevant(queries, [pruner.prune(e).embeddings for e in encodings])
    return {"seed": seed, "pages": pages, "ndcg5": full, f"sap_{keep_ratio}_ndcg5": pruned, "keep_ratio": keep_ratio}


def finalize_checkpoint(out_dir: Path, config: dict, best: dict, *, target: float = 0.80) -> dict:
    """Measure the saved checkpoint on the test subset, set the SAP floor, write heldout_scores.json and README.md.

    The floor the tests hold SAP to is the measured pruned / unpruned ratio less 0.05, rounded down to 0.05.
    """
    import json

    from .export import write_model_card

    subset = measure_subset(out_dir)
    ratio = subset[f"sap_{subset['keep_ratio']}_ndcg5"] / max(subset["ndcg5"], 1e-9)
    subset["sap_floor"] = max(0.0, math.floor((ratio - 0.05) * 20) / 20)
    provisional = best["heldout_ndcg5"] < target
    scores = {"best": best, "subset": subset, "target_ndcg5": target, "provisional": provisional}
    (Path(out_dir) / "heldout_scores.json").write_text(json.dumps(scores, indent=1))
    write_model_card(Path(out_dir), config, best, subset, provisional=provisional)
    return scores
