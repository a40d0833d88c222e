"""Ingestion: turning files and objects into page images."""

from .images import load_image

__all__ = ["load_image"]
