"""sap-rag: compressed visual-document retrieval with Structural Anchor Pruning (SAP).

Pipeline stages and where they live:

- ``sap_rag.encoders``: load a ColPali-family model, encode pages and queries, capture in-degrees.
- ``sap_rag.pruning``: choose the vectors to keep per page (SAP and baselines).
- ``sap_rag.calibration``: Score Retention per layer and the window rule.
- ``sap_rag.search``: MaxSim scoring.

Heavy modules (torch, transformers, colpali-engine) load on first use of a name, not on import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CalibrationError,
    DimensionMismatchError,
    InvalidInputError,
    MissingDependencyError,
    ModelLoadError,
    NothingToIndexError,
    SapRagError,
    UnknownFamilyError,
    UnreadableInputError,
    WindowError,
)

__version__ = "0.1.0"

_LAZY = {
    "load_encoder": "sap_rag.encoders.loading",
    "PageEncoder": "sap_rag.encoders.encoder",
    "build_tiny": "sap_rag.encoders.tiny",
    "PageEncoding": "sap_rag.types",
    "PrunedPage": "sap_rag.types",
    "Pruner": "sap_rag.pruning.base",
    "SAPPruner": "sap_rag.pruning.sap",
    "calibrate": "sap_rag.calibration.calibrate",
    "Calibration": "sap_rag.calibration.calibrate",
    "select_window": "sap_rag.calibration.window",
    "maxsim": "sap_rag.search.maxsim",
    "maxsim_matrix": "sap_rag.search.maxsim",
    "score_retention": "sap_rag.search.maxsim",
    "SAPIndex": "sap_rag.index",
    "SearchHit": "sap_rag.index",
    "IndexStats": "sap_rag.index",
    "DocumentInfo": "sap_rag.index",
    "page_id": "sap_rag.index.results",
    "parse_page_id": "sap_rag.index.results",
    "relevance_score": "sap_rag.index.results",
    "IndexReadOnlyError": "sap_rag.index.errors",
    "StorageType": "sap_rag.index",
    "IndexLockedError": "sap_rag.index.errors",
    "IndexLockTimeoutError": "sap_rag.index.errors",
    "IndexStorageError": "sap_rag.index.errors",
    "IndexClosedError": "sap_rag.index.errors",
    "IndexFormatError": "sap_rag.index.errors",
    "IndexNotFoundError": "sap_rag.index.errors",
    "IndexExistsError": "sap_rag.index.errors",
    "EncoderMismatchError": "sap_rag.index.errors",
    "DocumentNotFoundError": "sap_rag.index.errors",
    "PRUNERS": "sap_rag.pruning.registry",
    "make_pruner": "sap_rag.pruning.registry",
    "pruner_names": "sap_rag.pruning.registry",
    "run_eval": "sap_rag.eval.harness",
    "load_dataset": "sap_rag.eval.datasets",
    "make_synthetic_dataset": "sap_rag.eval.synthetic",
    "DatasetError": "sap_rag.eval.errors",
    "connect": "sap_rag.serve.client",
    "SAPClient": "sap_rag.serve.client",
}

__all__ = [
    "__version__",
    "CalibrationError",
    "DimensionMismatchError",
    "InvalidInputError",
    "MissingDependencyError",
    "ModelLoadError",
    "NothingToIndexError",
    "SapRagError",
    "UnknownFamilyError",
    "UnreadableInputError",
    "WindowError",
    *sorted(_LAZY),
]

if TYPE_CHECKING:
    from .calibration.calibrate import Calibration, calibrate
    from .calibration.window import select_window
    from .encoders.encoder import PageEncoder
    from .encoders.loading import load_encoder
    from .encoders.tiny import build_tiny
    from .eval.datasets import load_dataset
    from .eval.errors import DatasetError
    from .eval.harness import run_eval
    from .eval.synthetic import make_synthetic_dataset
    from .index import DocumentInfo, IndexStats, SAPIndex, SearchHit, StorageType
    from .index.errors import (
        DocumentNotFoundError,
        EncoderMismatchError,
        IndexClosedError,
        IndexExistsError,
        IndexFormatError,
        IndexLockedError,
        IndexLockTimeoutError,
        IndexNotFoundError,
        IndexReadOnlyError,
        IndexStorageError,
    )
    from .index.results import page_id, parse_page_id, relevance_score
    from .pruning.base import Pruner
    from .pruning.registry import PRUNERS, make_pruner, pruner_names
    from .pruning.sap import SAPPruner
    from .search.maxsim import maxsim, maxsim_matrix, score_retention
    from .serve.client import SAPClient, connect
    from .types import PageEncoding, PrunedPage


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sap_rag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
