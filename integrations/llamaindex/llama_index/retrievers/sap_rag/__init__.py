"""LlamaIndex integration of sap-rag.

- :class:`VisualDocumentIndexer`: a ``NodeParser`` (alone or in an ``IngestionPipeline``) that turns
  documents pointing at PDFs or images into one ``ImageNode`` per page and indexes the pages'
  SAP anchors into a ``SAPIndex``.
- :class:`SAPRetriever`: a ``BaseRetriever`` over a ``SAPIndex`` returning ``NodeWithScore(ImageNode)``,
  ready for ``RetrieverQueryEngine.from_args(retriever, llm=..., multimodal=True)``.

All behaviour lives in ``sap_rag``; this package translates types and call conventions.
"""

from .filters import UnsupportedFilterError, to_index_filter
from .indexer import VisualDocumentIndexer
from .retriever import SAPRetriever, hit_to_node

__all__ = ["SAPRetriever", "UnsupportedFilterError", "VisualDocumentIndexer", "hit_to_node", "to_index_filter"]
