"""The supported ColPali-family model families, detected from a checkpoint's config, never its name."""

from __future__ import annotations

from typing import Any

from ...errors import UnknownFamilyError
from . import gemma, idefics, qwen
from .base import FamilySpec

__all__ = ["FAMILIES", "FamilySpec", "family_for_config", "family_for_model_type", "get_family"]

FAMILIES: dict[str, FamilySpec] = {spec.name: spec for module in (gemma, qwen, idefics) for spec in module.SPECS}

ALIASES = {"colsmol": "colidefics3", "colqwen2.5": "colqwen2_5", "colqwen3.5": "colqwen3_5"}


def get_family(name: str) -> FamilySpec:
    """The family registered as ``name`` (case-insensitive; ``colsmol`` = ``colidefics3``)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in FAMILIES:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; supported: {', '.join(sorted(FAMILIES))} (alias colsmol)"
        )
    return FAMILIES[key]


def family_for_model_type(model_type: str, source: str = "the checkpoint") -> FamilySpec:
    """The family whose backbone has ``config.model_type == model_type``."""
    for spec in FAMILIES.values():
        if model_type in spec.model_types:
            return spec
    known = sorted(t for spec in FAMILIES.values() for t in spec.model_types)
    raise UnknownFamilyError(
        f"{source} has model_type {model_type!r}, which is not a supported ColPali-family backbone "
        f"(supported: {', '.join(known)}); pass a ColPali / ColQwen / ColSmol / ColModernVBert checkpoint"
    )


def family_for_config(config: dict[str, Any], source: str = "the checkpoint") -> tuple[FamilySpec, str]:
    """Family and model_type of a ``config.json`` dict: its architectures first, then its model_type."""
    model_type = str(config.get("model_type") or (config.get("text_config") or {}).get("model_type") or "")
    for architecture in config.get("architectures") or []:
        for spec in FAMILIES.values():
            if architecture in spec.architectures:
                return spec, model_type or spec.model_types[0]
    if not model_type:
        raise UnknownFamilyError(f"the config of {source} has no model_type; is it a transformers checkpoint?")
    return family_for_model_type(model_type, source), model_type
