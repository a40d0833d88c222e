"""Pruning: choose, per page, the vectors to index (SAP and the baselines it is compared with)."""

from .anchor_pool import AnchorAssign, AnchorPoolPruner
from .base import Pruner, budget, validate_keep_ratio
from .cluster import ClusterMergePruner
from .eos_adaptive import EOSAdaptivePruner
from .final_layer import FinalLayerPruner
from .hierarchical import HierarchicalPoolingPruner
from .random_pruner import RandomPruner
from .registry import PRUNERS, make_pruner, pruner_names
from .sap import Debias, HeadReduce, SAPDebiasedPruner, SAPPruner
from .sap_max import SAPMaxPruner
from .spare import SpareLastTokenPruner, SparePruner, SpareResidualPruner, TextSide

__all__ = [
    "PRUNERS",
    "AnchorAssign",
    "AnchorPoolPruner",
    "ClusterMergePruner",
    "Debias",
    "EOSAdaptivePruner",
    "FinalLayerPruner",
    "HeadReduce",
    "HierarchicalPoolingPruner",
    "Pruner",
    "RandomPruner",
    "SAPDebiasedPruner",
    "SAPMaxPruner",
    "SAPPruner",
    "SpareLastTokenPruner",
    "SparePruner",
    "SpareResidualPruner",
    "TextSide",
    "budget",
    "make_pruner",
    "pruner_names",
    "validate_keep_ratio",
]
