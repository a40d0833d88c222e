"""The sap-rag server: one process that owns the model and the index, shared by apps, agents and browsers.

``create_app(index)`` is the FastAPI app (``sap-rag serve`` runs it with uvicorn); ``SAPClient``
(or ``sap_rag.connect(url)``) is its Python client, with the read API of ``SAPIndex``.
``pip install 'sap-rag[serve]'``. Names load on first use, so the client never imports FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["IndexService", "SAPClient", "ServeConfig", "connect", "create_app"]

_LAZY = {
    "create_app": "sap_rag.serve.app",
    "IndexService": "sap_rag.serve.service",
    "ServeConfig": "sap_rag.serve.config",
    "SAPClient": "sap_rag.serve.client",
    "connect": "sap_rag.serve.client",
}

if TYPE_CHECKING:
    from .app import create_app
    from .client import SAPClient, connect
    from .config import ServeConfig
    from .service import IndexService


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sap_rag.serve' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
