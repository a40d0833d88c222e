"""SAPPageLoader: PDFs and images as one LangChain ``Document`` per page, ready for ``SAPVectorStore``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document

__all__ = ["SAPPageLoader"]


class SAPPageLoader(BaseLoader):
    """One ``Document`` per page of each PDF or image (files, or folders searched recursively).

    ``page_content`` is the page's PDF text layer, else a label (``"page 1 of chart.png"``);
    ``metadata`` holds ``source`` (the absolute path), ``filename``, ``page`` (0-based, as
    LangChain's PDF loaders), ``total_pages`` and ``content_hash`` (of the file's bytes, as sap-rag's
    document ids) and ``page_id``, the id the page gets when its file is indexed by path or without
    ids (``SAPVectorStore.add_paths``, ``add_documents(docs)``, ``SAPIndex.add_documents``, the
    CLI): ``<content_hash>:p<n>``, also the Document's ``id``. So a text retriever over these
    Documents fuses with the page retriever by page: ``EnsembleRetriever(..., id_key="page_id")``.
    Because the hash is in the metadata, LangChain's indexing API sees an edited file, even an
    image whose Documents would otherwise look the same, as changed.

    Pages are not rendered here (only counted); ``SAPVectorStore.add_documents`` renders the page
    each Document names.
    """

    def __init__(self, paths: str | os.PathLike | Iterable[str | os.PathLike]) -> None:
        self.paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)

    def lazy_load(self) -> Iterator[Document]:
        from sap_rag.index.results import page_id, page_label
        from sap_rag.ingest.documents import content_id, discover, load_document
        from sap_rag.ingest.text import is_pdf, pdf_page_texts

        for path in discover(self.paths):
            data = Path(path).read_bytes()
            if is_pdf(path, data[:5]):
                texts = pdf_page_texts(path)
            else:
                texts = [""] * load_document(path).num_pages  # an image file; a TIFF may hold several pages
            source = os.fspath(Path(path).resolve())
            doc_id = content_id(data)
            for number, text in enumerate(texts, start=1):
                yield Document(
                    id=page_id(doc_id, number),
                    page_content=text or page_label(number, path.name),
                    metadata={
                        "source": source,
                        "filename": path.name,
                        "page": number - 1,
                        "total_pages": len(texts),
                        "content_hash": doc_id,
                        "page_id": page_id(doc_id, number),
                    },
                )
