"""Ingestion: files, folders, PDFs and images -> documents of page images."""

from .documents import DEFAULT_INCLUDE, Document, IngestError, content_id, discover, load_document, load_documents
from .images import MAX_PAGE_PIXELS, load_image
from .pdf import DEFAULT_DPI, render_pdf

__all__ = [
    "DEFAULT_DPI",
    "DEFAULT_INCLUDE",
    "MAX_PAGE_PIXELS",
    "Document",
    "IngestError",
    "content_id",
    "discover",
    "load_document",
    "load_documents",
    "load_image",
    "render_pdf",
]
