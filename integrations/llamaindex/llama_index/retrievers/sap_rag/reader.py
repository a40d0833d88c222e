"""SAPPageReader: a LlamaIndex reader giving one ``ImageDocument`` per page of a PDF or image file."""

from __future__ import annotations

import base64
import io
import logging
import os
from pathlib import Path
from typing import Any

from llama_index.core.readers.base import BaseReader
from llama_index.core.schema import ImageDocument

from sap_rag.errors import InvalidInputError

from ._core import read_file_pages

logger = logging.getLogger(__name__)

__all__ = ["PAGE_KEYS", "SAPPageReader"]

PAGE_KEYS = ("file_path", "file_hash", "page_number", "total_pages")
"""Metadata every page document carries; ``VisualDocumentIndexer`` regroups pages by ``file_hash``."""
PRIVATE_PAGE_KEYS = ("file_path", "file_hash")
"""Kept out of LLM prompts and embeddings (``excluded_*_metadata_keys``): a local path and an id."""


class SAPPageReader(BaseReader):
    """Read a PDF or image file as one ``ImageDocument`` per page (a multi-page TIFF gives several).

    Each document holds the rendered page (PNG bytes, as LlamaIndex stores images), the page text
    (the PDF text layer; empty for images and scans) and metadata ``file_path`` (absolute),
    ``file_name``, ``file_hash`` (the content hash of the whole file: the id sap-rag gives the
    document), ``page_number`` (1-based) and ``total_pages``, over ``extra_info``. Its id is
    ``"<file_path>#page=<n>"``: stable while the file changes, so a docstore sees an edited file as
    the same documents with new hashes (upserts); the hash in the metadata also changes the
    ``IngestionPipeline`` cache key. ``file_path`` and ``file_hash`` are excluded from LLM prompts
    and embeddings (``excluded_llm_metadata_keys``); they stay in ``metadata`` for code.

    Use it directly, or as ``SimpleDirectoryReader(folder, file_extractor={".pdf": reader, ".png": reader})``.
    Then ``VisualDocumentIndexer``, or ``VectorStoreIndex`` over a ``SAPPageStore``, indexes each
    file's pages as one document.

    Args:
        dpi: PDF rendering resolution (sap-rag's default when None).
        password: for encrypted PDFs.
    """

    def __init__(self, *, dpi: int | None = None, password: str | None = None) -> None:
        self.dpi = dpi
        self.password = password

    def load_data(
        self, file: str | os.PathLike, extra_info: dict[str, Any] | None = None, fs: Any | None = None
    ) -> list[ImageDocument]:
        """The pages of ``file`` as ``ImageDocument``s, in page order.

        Raises:
            sap_rag.UnreadableInputError: the file is missing or cannot be read as pages.
            sap_rag.InvalidInputError: ``fs`` is a remote file system (only local files are read).
        """
        if fs is not None and "file" not in (getattr(fs, "protocol", None) or ("file",)):
            raise InvalidInputError(
                f"{file}: SAPPageReader reads local files only (got file system {type(fs).__name__}); "
                "copy the files locally first"
            )
        path = Path(file).resolve()
        document, texts = read_file_pages(path, dpi=self.dpi, password=self.password)
        total = document.num_pages
        out = []
        for number, (page, text) in enumerate(zip(document.pages, texts), start=1):
            buffer = io.BytesIO()
            page.save(buffer, format="PNG")
            metadata = {
                **(extra_info or {}),
                "file_path": os.fspath(path),
                "file_name": path.name,
                "file_hash": document.doc_id,
                "page_number": number,
                "total_pages": total,
            }
            out.append(
                ImageDocument(
                    id_=f"{os.fspath(path)}#page={number}",
                    image=base64.b64encode(buffer.getvalue()).decode("ascii"),
                    image_mimetype="image/png",
                    text=text,
                    metadata=metadata,
                    # the absolute path and the content hash are for code, not for prompts
                    excluded_llm_metadata_keys=list(PRIVATE_PAGE_KEYS),
                    excluded_embed_metadata_keys=list(PRIVATE_PAGE_KEYS),
                )
            )
        logger.debug("read %s: %d pages", path, total)
        return out
