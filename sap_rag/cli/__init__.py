"""The ``sap-rag`` command line: index, search, info, delete, show, calibrate, eval."""

from .main import main

__all__ = ["main"]
