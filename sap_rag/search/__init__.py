"""Search: late-interaction (MaxSim) scoring."""

from .maxsim import maxsim, maxsim_matrix, score_retention

__all__ = ["maxsim", "maxsim_matrix", "score_retention"]
