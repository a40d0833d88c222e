"""Self-calibration: per-layer Score Retention over (query, page) pairs, and the window it implies."""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import CalibrationError, InvalidInputError
from ..pruning.base import budget, validate_keep_ratio
from ..search.maxsim import maxsim
from .window import DEFAULT_RHO, select_window

if TYPE_CHECKING:
    from ..encoders.encoder import PageEncoder

logger = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_CALIBRATION", "Calibration", "calibrate", "layer_score_retention"]

CALIBRATION_FORMAT = 1
# A local checkpoint directory holding this file is loaded with its window by default.
CHECKPOINT_CALIBRATION = "sap_calibration.json"


@dataclass
class Calibration:
    """The result of :func:`calibrate`: the SR curve per layer and the window chosen from it.

    ``layers[i]`` is the decoder layer whose mean / std Score Retention are ``sr_mean[i]`` /
    ``sr_std[i]`` (hybrid models have fewer scorable layers than ``num_layers``).
    """

    spec: str
    family: str
    model_type: str
    num_layers: int
    keep_ratio: float
    rho: float
    num_pairs: int
    layers: list[int]
    sr_mean: list[float]
    sr_std: list[float]
    window: list[int]
    format_version: int = CALIBRATION_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the calibration as JSON; returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), indent=2))
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> Calibration:
        """Read a calibration written by :meth:`save`."""
        source = Path(path)
        try:
            data = json.loads(source.read_text())
        except FileNotFoundError:
            raise CalibrationError(f"no calibration file at {source}; run sap_rag.calibrate first") from None
        except json.JSONDecodeError as exc:
            raise CalibrationError(f"{source} is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise CalibrationError(f"{source} does not hold a calibration object")
        version = data.get("format_version", 0)
        if version > CALIBRATION_FORMAT:
            raise CalibrationError(
                f"{source} has calibration format {version}, newer than this sap_rag understands "
                f"({CALIBRATION_FORMAT}); upgrade sap_rag"
            )
        try:
            calibration = cls(**data)
        except TypeError as exc:
            raise CalibrationError(f"{source} is not a sap_rag calibration ({exc})") from exc
        if len(calibration.layers) != len(calibration.sr_mean) or not calibration.window:
            raise CalibrationError(f"{source} is malformed: layers, SR values and window do not agree")
        return calibration

    def table(self) -> str:
        """A plain-text table of the SR curve with the window marked."""
        lines = ["layer  SR mean  SR std  window"]
        for layer, mean, std in zip(self.layers, self.sr_mean, self.sr_std):
            mark = "  *" if layer in self.window else ""
            lines.append(f"{layer:5d}  {mean:7.4f}  {std:6.4f}{mark}")
        return "\n".join(lines)


def layer_score_retention(
    query: torch.Tensor, embeddings: torch.Tensor, scores: torch.Tensor, keep_ratio: float
) -> float:
    """SR of one (query, page) pair when the page keeps its top ``keep_ratio`` tokens by ``scores``.

    Args:
        query: ``(n_q, dim)``.
        embeddings: ``(N, dim)`` the page's visual-token embeddings.
        scores: ``(N,)`` the ranking signal (one layer's in-degree).

    A pair whose full MaxSim is not positive scores 0, as in the authors' per-layer curves (it
    stays in the layer's average).
    """
    k = budget(keep_ratio, int(embeddings.shape[0]))
    kept = torch.sort(scores, descending=True, stable=True).indices[:k]
    full = maxsim(query, embeddings)
    if not full > 0.0:
        return 0.0
    return maxsim(query, embeddings[kept]) / full


def calibrate(
    encoder: PageEncoder,
    pairs: Sequence[tuple[str, Any]],
    keep_ratio: float = 0.1,
    rho: float = DEFAULT_RHO,
    *,
    batch_size: int | None = None,
    show_progress: bool = True,
) -> Calibration:
    """Measure per-layer Score Retention on ``pairs`` and choose the window with the paper's rule.

    Args:
        encoder: the encoder to calibrate.
        pairs: ``(query text, page image)`` pairs (a page may appear in several pairs; pass the same
            object or path and it is encoded once). 50 pairs already give stable windows.
        keep_ratio: the budget SR is measured at (0.10 in the paper).
        rho: window width as a fraction of depth.

    Returns:
        A :class:`Calibration`; pass it (or its saved JSON) as ``load_encoder(..., window=...)``.
    """
    keep_ratio = validate_keep_ratio(keep_ratio)
    pairs = list(pairs)
    if not pairs:
        raise CalibrationError("calibrate needs at least one (query, page image) pair")
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise InvalidInputError(f"pair #{i} must be a (query text, page image) tuple, got {pair!r:.80}")
    # Encode each distinct page once.
    page_keys: dict[Any, int] = {}
    images: list[Any] = []
    for _, image in pairs:
        key = image if isinstance(image, (str, os.PathLike)) else id(image)
        key = os.fspath(key) if isinstance(key, os.PathLike) else key
        if key not in page_keys:
            page_keys[key] = len(images)
            images.append(image)
    logger.info(
        "calibrating %s on %d pairs (%d pages), keep_ratio=%.3f", encoder.spec, len(pairs), len(images), keep_ratio
    )
    pages = encoder.encode_pages(images, batch_size=batch_size, indegree_layers="all", show_progress=show_progress)
    queries = encoder.encode_queries([query for query, _ in pairs], batch_size=batch_size)
    layers = list(encoder.scorable_layers)
    values = torch.zeros((len(pairs), len(layers)), dtype=torch.float64)
    non_positive = 0
    for p, ((_, image), query) in enumerate(zip(pairs, queries)):
        key = image if isinstance(image, (str, os.PathLike)) else id(image)
        key = os.fspath(key) if isinstance(key, os.PathLike) else key
        page = pages[page_keys[key]]
        if not maxsim(query, page.embeddings) > 0.0:
            non_positive += 1  # scores 0 on every layer, and stays in the average (the authors' rule)
            continue
        for j, layer in enumerate(layers):
            values[p, j] = layer_score_retention(query, page.embeddings, page.indegree[layer], keep_ratio)
    if non_positive == len(pairs):
        raise CalibrationError(
            "every pair's full MaxSim is not positive, so every layer's Score Retention is 0; "
            "calibrate with (query, page) pairs that the model scores above 0"
        )
    if non_positive:
        logger.warning(
            "%d of %d calibration pairs have a full MaxSim <= 0; they score 0 on every layer", non_positive, len(pairs)
        )
    mean = values.mean(dim=0)
    std = values.std(dim=0, unbiased=False) if values.shape[0] > 1 else torch.zeros_like(mean)
    window = select_window(mean.tolist(), rho, layers=layers)
    logger.info("calibrated window for %s: %s", encoder.spec, window)
    return Calibration(
        spec=encoder.spec,
        family=encoder.family,
        model_type=encoder.model_type,
        num_layers=encoder.num_layers,
        keep_ratio=keep_ratio,
        rho=rho,
        num_pairs=int(values.shape[0]),
        layers=layers,
        sr_mean=[float(v) for v in mean],
        sr_std=[0.0 if math.isnan(v) else float(v) for v in std],
        window=list(window),
        extra={"non_positive_pairs": non_positive},
    )
