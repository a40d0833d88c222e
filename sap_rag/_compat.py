"""Import-time workarounds for the environment, applied only when they are needed."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

_TORCHVISION_OPS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold, float qiou_threshold) -> Tensor",
)
_guard_library = None  # keeps the torch.library.Library alive once defined


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work beside a CPU-only torch whose torchvision was built for CUDA.

    PyPI's torchvision wheel can be linked against CUDA libraries; next to a CPU torch its
    compiled ops fail to load and its import raises ``operator torchvision::nms does not exist``
    (which transformers reports as "Could not import module 'Gemma3Model'"). torchvision only
    needs the *schemas* of the two ops it registers fake kernels for, so declaring them lets the
    import succeed; the image transforms the processors use are pure Python and keep working.

    Returns True when the guard had to be applied. Must run before anything imports torchvision.
    """
    global _guard_library
    import importlib.util
    import sys

    if "torchvision" in sys.modules or _guard_library is not None:
        return False
    if importlib.util.find_spec("torchvision") is None:
        return False
    import torch

    try:
        torch.ops.torchvision.nms  # noqa: B018 - resolving the op is the check
        return False
    except (AttributeError, RuntimeError):
        pass
    try:
        import torchvision  # noqa: F401

        return False
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        # The failed import left a half-initialised module behind; drop it and retry below.
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _TORCHVISION_OPS:
        lib.define(schema)
    _guard_library = lib
    logger.debug(
        "torchvision's compiled ops do not load beside this torch build; declared the nms/qnms "
        "schemas so that its pure-Python image transforms can be imported."
    )
    return True


def import_colpali_engine():
    """Import ``colpali_engine.models`` with the torchvision guard applied first."""
    ensure_torchvision_importable()
    from colpali_engine import models

    return models
