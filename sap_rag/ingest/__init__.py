"""Ingestion: files, folders, PDFs and images -> documents of page images."""

from .documents import (
    DEFAULT_INCLUDE,
    SUPPORTED_TYPES,
    Document,
    IngestError,
    content_id,
    discover,
    load_document,
    load_documents,
)
from .images import MAX_ASPECT_RATIO, MAX_PAGE_PIXELS, load_image, pad_to_aspect
from .pdf import DEFAULT_DPI, render_pdf

__all__ = [
    "DEFAULT_DPI",
    "DEFAULT_INCLUDE",
    "MAX_ASPECT_RATIO",
    "MAX_PAGE_PIXELS",
    "SUPPORTED_TYPES",
    "Document",
    "IngestError",
    "content_id",
    "discover",
    "load_document",
    "load_documents",
    "load_image",
    "pad_to_aspect",
    "render_pdf",
]
