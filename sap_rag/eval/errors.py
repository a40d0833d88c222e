"""Errors of the evaluation harness."""

from __future__ import annotations

from ..errors import SapRagError

__all__ = ["DatasetError"]


class DatasetError(SapRagError):
    """A dataset directory or file is missing, or does not have the layout and columns expected.

    The message names the file and what was expected in it (ViDoRe v2 BEIR layout: ``corpus``,
    ``queries``, ``qrels``; ViDoRe v1: rows of ``query``, ``image``, ``image_filename``).
    """
