"""Encoders: ColPali-family models -> page encodings with SAP's in-degrees, and query multi-vectors."""

from .._compat import ensure_torchvision_importable

# Everything below may import transformers, which imports torchvision: the guard must come first.
ensure_torchvision_importable()

# ruff: noqa: E402

from .encoder import PageEncoder
from .families import FAMILIES, FamilySpec, get_family
from .loading import detect_family, load_encoder
from .tiny import TinySize, build_tiny, tiny_families

__all__ = [
    "FAMILIES",
    "FamilySpec",
    "PageEncoder",
    "TinySize",
    "build_tiny",
    "detect_family",
    "get_family",
    "load_encoder",
    "tiny_families",
]
