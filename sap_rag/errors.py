"""The package's errors: one base class, one subclass per kind of mistake.

Every message says what was wrong and how to fix it, so a framework user sees
a sentence, not a stack trace from deep inside a model.
"""

from __future__ import annotations

__all__ = [
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
]


class SapRagError(Exception):
    """Base class of every error raised on purpose by sap_rag."""


class InvalidInputError(SapRagError, ValueError):
    """An argument has the wrong type, value or shape (empty list, empty query, bad ratio...)."""


class UnreadableInputError(InvalidInputError):
    """A file or object that should be a page (image, PDF) cannot be read as one."""


class NothingToIndexError(InvalidInputError):
    """The files and folders given hold no PDF or image that could be indexed."""


class ModelLoadError(SapRagError):
    """A model spec (hub id, local directory, ``tiny:<family>``) cannot be loaded."""


class UnknownFamilyError(ModelLoadError, InvalidInputError):
    """The checkpoint or ``tiny:`` spec names no supported ColPali-family model."""


class WindowError(InvalidInputError):
    """A layer window is empty, unordered or outside the model's layers."""


class DimensionMismatchError(InvalidInputError):
    """Two sets of vectors that must share a dimension do not (query vs page, page vs index)."""


class CalibrationError(SapRagError):
    """Calibration data is missing, empty or degenerate, or a calibration file is malformed."""


class MissingDependencyError(SapRagError, ImportError):
    """An optional dependency is not installed; the message gives the install command."""
