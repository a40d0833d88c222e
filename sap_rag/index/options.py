"""Index options: how anchors are stored, and when and how search runs in stages."""

from __future__ import annotations

from enum import Enum
from typing import Any

from ..errors import InvalidInputError

__all__ = [
    "DEFAULT_COARSE",
    "DEFAULT_EXACT_PREFETCH_MAX_PAGES",
    "DEFAULT_MEAN_PREFETCH",
    "DEFAULT_POOLED_VECTORS",
    "DEFAULT_PREFETCH",
    "DEFAULT_SCAN",
    "DEFAULT_TWO_STAGE_THRESHOLD",
    "SCAN_AUTO_MIN_BATCH",
    "ScanMode",
    "StorageType",
    "TwoStageMode",
    "parse_scan",
    "parse_two_stage",
]

DEFAULT_TWO_STAGE_THRESHOLD = 20_000
"""Page count from which ``two_stage="auto"`` searches in two stages."""

DEFAULT_POOLED_VECTORS = 8
"""Pooled anchors stored per page for the prefetch stages (about 8% more bytes per pruned page)."""

DEFAULT_PREFETCH = 150
"""Candidates the pooled stage hands to the exact MaxSim rerank."""

DEFAULT_COARSE = 1_500
"""Candidates of the first stage's pooled probe (its mean-vector probe adds up to half as many)."""

DEFAULT_MEAN_PREFETCH = 1_000
"""Candidates the mean-vector stage hands to the exact rerank in an index without pooled vectors."""

DEFAULT_EXACT_PREFETCH_MAX_PAGES = 150_000
"""Up to this many pages the first stage scores every page (its pooled vectors against the mean
query: about 25 ms per 100,000 pages on one core, and it finds far more of the best pages than a
mean vector does); beyond, it walks the mean vectors' HNSW graph."""


class StorageType(str, Enum):
    """How the engine stores each anchor vector.

    - ``float16`` (default): half the bytes of float32. Search is exact MaxSim over the anchors
      and the query rounded to float16 (the engine rounds the query too; sap-rag rounds both
      before sending so every backend scores the same numbers).
    - ``float32``: exact MaxSim over the float32 anchors.
    - ``int8``: float16 anchors plus an int8 scalar-quantized copy kept in RAM; the scan runs on
      int8 and the best ``oversampling x k`` pages are rescored on float16. Approximate: the
      returned scores are exact float16 MaxSim, the ranking usually is. It adds disk, and with
      Qdrant Edge 0.9.0 it did not make the MaxSim scan faster (measured at 30,000 pages).
    """

    FLOAT16 = "float16"
    FLOAT32 = "float32"
    INT8 = "int8"

    @classmethod
    def parse(cls, value: Any) -> StorageType:
        try:
            return cls(value)
        except ValueError:
            raise InvalidInputError(f"storage must be one of {[s.value for s in cls]}, got {value!r}") from None

    @property
    def exact(self) -> bool:
        """True where search is exact MaxSim over the stored vectors (tested against a float64 brute force)."""
        return self is not StorageType.INT8


class TwoStageMode(str, Enum):
    """When to search in stages (prefetch stages on pooled and mean vectors, then exact MaxSim rerank)."""

    AUTO = "auto"  # from ``two_stage_threshold`` pages on
    ALWAYS = "always"
    NEVER = "never"


def parse_two_stage(value: Any) -> TwoStageMode:
    """``True``/``False``/``"auto"`` (or a :class:`TwoStageMode`) -> :class:`TwoStageMode`.

    >>> parse_two_stage(True), parse_two_stage("auto"), parse_two_stage(False)
    (<TwoStageMode.ALWAYS: 'always'>, <TwoStageMode.AUTO: 'auto'>, <TwoStageMode.NEVER: 'never'>)
    """
    if value is True:
        return TwoStageMode.ALWAYS
    if value is False:
        return TwoStageMode.NEVER
    try:
        return TwoStageMode(value)
    except ValueError:
        raise InvalidInputError(f"two_stage must be True, False or 'auto', got {value!r}") from None


DEFAULT_SCAN = "engine"
"""Where exact (one-stage) searches scan, unless the manifest's ``two_stage["scan"]`` or the call says
otherwise. The engine: measured on this project's shared 2-core machine (bench/scale.py), the copy
won only for batches, lost one query at a time, and is rebuilt whole after every write."""

SCAN_AUTO_MIN_BATCH = 8
"""``scan="auto"`` uses the anchor copy for batches of at least this many queries."""


class ScanMode(str, Enum):
    """Where an exact (one-stage, unfiltered) search computes MaxSim over every page.

    - ``engine``: the engine's own scan (one pass per query).
    - ``copy``: a derived, memory-mapped copy of the anchors inside the index
      (``derived/anchors.bin``, see :mod:`sap_rag.index.anchor_copy`), scanned once per batch of
      queries on all of torch's threads; built on first use, rebuilt after any change, never used
      stale; where it cannot be used (a read-only open of a stale copy, a filter) the engine scans.
    - ``auto``: the copy for batches of at least ``SCAN_AUTO_MIN_BATCH`` queries on the embedded
      engine (where sharing one pass pays), else the engine.

    Results are the same (float32 MaxSim; ranking identical ties aside).
    """

    AUTO = "auto"
    ENGINE = "engine"
    COPY = "copy"


def parse_scan(value: str | ScanMode) -> ScanMode:
    """A :class:`ScanMode` from its name, with a clear error otherwise."""
    try:
        return ScanMode(value)
    except ValueError:
        raise InvalidInputError(f"scan must be one of 'auto', 'engine' or 'copy', got {value!r}") from None
