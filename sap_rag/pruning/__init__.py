"""Pruning: choose, per page, the vectors to index."""

from .base import Pruner, budget, validate_keep_ratio
from .sap import HeadReduce, SAPPruner

__all__ = ["HeadReduce", "Pruner", "SAPPruner", "budget", "validate_keep_ratio"]
