"""Evaluation harness: pruning quality against the baselines, on ViDoRe-format data.

- :func:`load_dataset` / :func:`discover_datasets`: ViDoRe v2 (BEIR) and v1 layouts from disk.
- :func:`make_synthetic_dataset`: a small rendered dataset for tests and offline demos.
- :func:`encode_dataset`: encode once, cache embeddings, in-degrees and EOS attention on disk.
- :func:`run_eval`: every pruner at every keep ratio against the unpruned run; writes the reports.
- :func:`ndcg_at_k`, :func:`recall_at_k`: the metrics.
- :func:`eval_main`, :func:`add_eval_parser`: the ``sap-rag eval`` command.
"""

from .cache import EncodedDataset, encode_dataset
from .cli import add_eval_parser, eval_main
from .datasets import DatasetLayout, RetrievalDataset, discover_datasets, load_dataset
from .errors import DatasetError
from .harness import EvalResults, EvalSet, PrunerSpec, ResultRow, evaluate_encoded, evaluate_sets, run_eval
from .metrics import ndcg_at_k, ndcg_per_query, recall_at_k, recall_per_query
from .synthetic import make_synthetic_dataset

__all__ = [
    "DatasetError",
    "DatasetLayout",
    "EncodedDataset",
    "EvalResults",
    "EvalSet",
    "PrunerSpec",
    "ResultRow",
    "RetrievalDataset",
    "add_eval_parser",
    "discover_datasets",
    "encode_dataset",
    "eval_main",
    "evaluate_encoded",
    "evaluate_sets",
    "load_dataset",
    "make_synthetic_dataset",
    "ndcg_at_k",
    "ndcg_per_query",
    "recall_at_k",
    "recall_per_query",
    "run_eval",
]
