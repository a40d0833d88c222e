"""Where calibration pairs come from: a pairs JSONL file, or a retrieval dataset's relevance judgements."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CalibrationError

if TYPE_CHECKING:
    from ..eval.datasets import ImageSource, RetrievalDataset

__all__ = ["dataset_pairs", "read_pairs"]


def read_pairs(path: Path) -> list[tuple[str, Path]]:
    """(query, image path) pairs from a JSONL file of ``{"query": ..., "image": ...}`` objects.

    Relative image paths resolve against the file's folder.
    """
    if not path.is_file():
        raise CalibrationError(f"{path}: no such pairs file")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            query, image = row["query"], row["image"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CalibrationError(
                f'{path}:{number}: expected a JSON object with "query" and "image", got {line[:80]!r}'
            ) from exc
        image_path = Path(image)
        pairs.append((str(query), image_path if image_path.is_absolute() else path.parent / image_path))
    if not pairs:
        raise CalibrationError(f"{path}: no pairs found")
    return pairs


def dataset_pairs(dataset: RetrievalDataset, max_pairs: int | None = None) -> list[tuple[str, ImageSource]]:
    """Each query with each page judged relevant to it (grade > 0): the dataset's (query, page) pairs.

    In query order, then corpus order; ``max_pairs`` keeps the first ones. A page in several pairs
    is the same object each time, so :func:`~sap_rag.calibration.calibrate` encodes it once.

    >>> from sap_rag.eval.datasets import RetrievalDataset
    >>> data = RetrievalDataset("d", ["p1", "p2"], [b"one", b"two"], ["q1", "q2"], ["where?", "what?"],
    ...                         {"q1": {"p2": 1}, "q2": {"p1": 2, "p2": 1}})
    >>> dataset_pairs(data)
    [('where?', b'two'), ('what?', b'one'), ('what?', b'two')]
    >>> dataset_pairs(data, max_pairs=1)
    [('where?', b'two')]
    """
    if max_pairs is not None and max_pairs < 1:
        raise CalibrationError(f"max_pairs must be at least 1, got {max_pairs}")
    relevant = dataset.relevance_matrix()  # (Q, D), 1 where page d answers query q
    pairs: list[tuple[str, ImageSource]] = [
        (dataset.queries[q], dataset.images[d]) for q, d in zip(*relevant.nonzero())
    ]
    if not pairs:
        raise CalibrationError(f"{dataset.name}: no query has a relevant page, so there is nothing to calibrate on")
    return pairs[:max_pairs]
