"""Every pruning method by name: the registry the harness, the CLI and the index share."""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import InvalidInputError
from .anchor_pool import AnchorPoolPruner
from .base import Pruner
from .cluster import ClusterMergePruner
from .eos_adaptive import EOSAdaptivePruner
from .final_layer import FinalLayerPruner
from .hierarchical import HierarchicalPoolingPruner
from .random_pruner import RandomPruner
from .sap import SAPDebiasedPruner, SAPPruner
from .sap_max import SAPMaxPruner
from .spare import SpareLastTokenPruner, SparePruner

__all__ = ["PRUNERS", "make_pruner", "pruner_names"]

#: name -> Pruner class, in the order tables list them.
PRUNERS: dict[str, type[Pruner]] = {
    cls.name: cls
    for cls in (
        SAPPruner,
        SAPMaxPruner,
        SAPDebiasedPruner,
        AnchorPoolPruner,
        FinalLayerPruner,
        RandomPruner,
        ClusterMergePruner,
        HierarchicalPoolingPruner,
        EOSAdaptivePruner,
        SparePruner,
        SpareLastTokenPruner,
    )
}


def pruner_names() -> list[str]:
    """The registered pruner names.

    >>> pruner_names()  # doctest: +NORMALIZE_WHITESPACE
    ['sap', 'sap_max', 'sap_debiased', 'sap_anchor_pool', 'final_layer', 'random', 'cluster',
     'hierarchical', 'eos_adaptive', 'spare', 'spare_lasttoken']
    """
    return list(PRUNERS)


def make_pruner(name: str, keep_ratio: float = 0.1, **options: Any) -> Pruner:
    """Build the pruner registered as ``name`` with a keep ratio and its own options.

    >>> make_pruner("random", 0.2, seed=3)
    RandomPruner(keep_ratio=0.2, seed=3)
    >>> make_pruner("colbert", 0.1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    sap_rag.errors.InvalidInputError: unknown pruner 'colbert'; choose one of: sap, sap_max, sap_debiased, ...
    """
    cls = PRUNERS.get(str(name).strip().lower()) if isinstance(name, str) else None
    if cls is None:
        raise InvalidInputError(f"unknown pruner {name!r}; choose one of: {', '.join(PRUNERS)}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "keep_ratio")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"pruner {cls.name!r} has no option(s) {unknown}; its options are: {', '.join(accepted) or 'none'}"
        )
    return cls(keep_ratio, **options)
